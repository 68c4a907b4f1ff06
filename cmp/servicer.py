"""ComputePlaneService: which model versions are served where (from heartbeats and registration)."""

from __future__ import annotations

from cp.registry import NodeRegistry
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc


def served_models(registry: NodeRegistry, role: int) -> list[cmp_pb2.ServedModel]:
    """Group nodes by the exact model (name, version, sha256) they serve."""
    by_model: dict[tuple[str, str, str, int], list[str]] = {}
    for status in registry.statuses(role):
        models = status.load.models_served or status.info.capabilities.models
        for model in models:
            key = (model.name, model.version, model.sha256, model.kind)
            by_model.setdefault(key, []).append(status.info.node_id)
    return [
        cmp_pb2.ServedModel(model=common_pb2.ModelRef(name=n, version=v, sha256=s, kind=k), node_ids=ids)
        for (n, v, s, k), ids in sorted(by_model.items())
    ]


class ComputePlaneServicer(cmp_grpc.ComputePlaneServiceServicer):
    def __init__(self, registry: NodeRegistry) -> None:
        self.registry = registry

    async def ListModels(self, request: cmp_pb2.ListModelsRequest, context) -> cmp_pb2.ListModelsResponse:
        return cmp_pb2.ListModelsResponse(models=served_models(self.registry, request.role))
