"""What a request carries from workflow step to workflow step at the edge.

:class:`RequestState` has one attribute per field of ``cp.workflows.FIELDS``; a step gets the
state as the steps it runs after left it and returns it with only the fields its function
writes replaced (``cp.workflows.FUNCTIONS``: who writes what). It is immutable, so two
concurrent steps never see each other's half-done work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from edge_node.serving.cloud_peers import CloudPeer
from edge_node.serving.post_process import StreamTidier
from edge_node.serving.routing import Route, RoutingInputs
from netgpt.v1 import common_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2


@dataclass(frozen=True)
class Prompt:
    """The text the next step works on: the concise prompt, masked or made comprehensive by the steps so far."""

    text: str
    facts: tuple[str, ...] = ()  # the knowledge-base facts the text includes


@dataclass(frozen=True)
class Decision:
    """Where the request is answered and why (the route step's, or the workflow's own rule without one)."""

    route: Route
    inputs: RoutingInputs
    peer: CloudPeer | None  # the cloud it would go to; None when none can take it


@dataclass(frozen=True)
class Answered:
    """What a generation step produced (and, once it ran, a post_process step tidied)."""

    decision: Decision  # what the generation acted on
    terminated_at: common_pb2.NodeRole
    reason: up_pb2.RouteReason  # the decision's, or why the cloud could not answer after all
    reason_detail: str
    text: str
    completion_tokens: int
    finish_reason: up_pb2.FinishReason
    first_token_ms: float
    edge_generate_ms: float = 0.0
    cloud_ms: float = 0.0
    bytes_edge_to_cloud: int = 0
    cloud_model: common_pb2.ModelRef | None = None
    fallback: bool = False
    answer_cached: bool = False
    coalesced: bool = False
    tidy: StreamTidier | None = None  # the tidying of the stream, until a post_process step finishes it


@dataclass(frozen=True)
class RequestState:
    prompt: Prompt
    redactions: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))  # kind -> masked
    route: Decision | None = None
    answer: Answered | None = None

    def changed(self, other: RequestState) -> set[str]:
        """The fields ``other`` holds a different value in (compared by identity: values are immutable)."""
        return {f.name for f in fields(self) if getattr(self, f.name) is not getattr(other, f.name)}

    def values(self, names: set[str]) -> dict[str, object]:
        return {name: getattr(self, name) for name in names}

    def updated(self, values: Mapping[str, object]) -> RequestState:
        """This state with ``values`` (field name -> value, as :meth:`values` took them from another state)."""
        changes: dict[str, Any] = dict(values)
        return replace(self, **changes)
