"""The model ids the edge's OpenAI API answers to, and the route each one asks for.

- ``netgpt``: the edge's routing policy decides (answer at the edge or forward to a cloud);
- the edge's own model (its name, e.g. ``gpt2-starter``): answered at the edge;
- each reachable cloud's main model: forwarded to the cloud (``ROUTE_PREFERENCE_CLOUD``; when no
  cloud can take it the edge answers, and the summary says why).

Either way the request is personalised at the edge first: the id picks a route, not a raw model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge_node.openai_api.protocol import ModelNotFound
from edge_node.serving.cloud_peers import CloudPeers
from netgpt.errors import excerpt
from netgpt.model_slot import ModelSlot
from netgpt.v1 import user_plane_pb2 as up_pb2

AUTO_MODEL = "netgpt"
ROUTE_NAMES = {up_pb2.ROUTE_PREFERENCE_UNSPECIFIED: "auto", up_pb2.ROUTE_PREFERENCE_EDGE: "edge",
               up_pb2.ROUTE_PREFERENCE_CLOUD: "cloud"}


@dataclass(frozen=True)
class ListedModel:
    id: str
    route: up_pb2.RoutePreference
    owned_by: str  # the node that serves it
    version: str = ""


class ModelCatalogue:
    def __init__(self, node_id: str, slot: ModelSlot, clouds: CloudPeers) -> None:
        self.node_id = node_id
        self.slot = slot
        self.clouds = clouds

    def listed(self) -> list[ListedModel]:
        """The ids in order of precedence (an id served by the edge and a cloud means the edge)."""
        edge = self.slot.current.ref
        found = [ListedModel(AUTO_MODEL, up_pb2.ROUTE_PREFERENCE_UNSPECIFIED, self.node_id),
                 ListedModel(edge.name, up_pb2.ROUTE_PREFERENCE_EDGE, self.node_id, edge.version)]
        found += [ListedModel(ref.name, up_pb2.ROUTE_PREFERENCE_CLOUD, node_id, ref.version)
                  for node_id, ref in self.clouds.serving_models().items() if ref.name]
        unique: dict[str, ListedModel] = {}
        for model in found:
            unique.setdefault(model.id, model)
        return list(unique.values())

    def route_for(self, model_id: str) -> up_pb2.RoutePreference:
        for model in self.listed():
            if model.id == model_id:
                return model.route
        raise ModelNotFound(f"model {excerpt(model_id)} is not served here; GET /v1/models lists "
                            f"{', '.join(repr(m.id) for m in self.listed())}")

    def listing(self) -> dict[str, Any]:
        """The body of ``GET /v1/models``."""
        return {"object": "list", "data": [
            {"id": m.id, "object": "model", "created": 0, "owned_by": m.owned_by,
             "netgpt": {"route": ROUTE_NAMES[m.route], "version": m.version}} for m in self.listed()]}
