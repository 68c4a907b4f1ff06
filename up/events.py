"""What a generation yields, in domain terms: the edge pipeline and the cloud generator produce
these, and ``up.convert`` alone turns them into (and back from) ``GenerateResponse`` messages.

Enum-valued fields hold the protocol's enum numbers (``NodeRole``, ``RouteReason``,
``FinishReason``): they are plain ints, shared vocabulary rather than wire messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netgpt.v1 import common_pb2


@dataclass(frozen=True)
class PromptBuilt:
    """The comprehensive prompt the edge built from a concise one."""

    text: str
    facts: tuple[str, ...]
    prompt_tokens: int
    edge_node_id: str


@dataclass(frozen=True)
class Tokens:
    """Generated text and the token ids behind it (``source``: the NodeRole that generated it)."""

    text: str
    token_ids: tuple[int, ...]
    source: int


@dataclass(frozen=True)
class FellBack:
    """The cloud failed mid-answer: the client discards what streamed and gets an edge answer next."""

    reason: str
    discarded_tokens: int


@dataclass
class Latency:
    personalise_ms: float = 0.0
    edge_generate_ms: float = 0.0
    cloud_ms: float = 0.0
    time_to_first_token_ms: float = 0.0
    total_ms: float = 0.0


@dataclass
class Summary:
    """The last event of every generation: where it terminated, why, and what it cost."""

    session_id: str = ""
    ai_flow_id: str = ""
    terminated_at: int = 0  # NodeRole
    reason: int = 0  # RouteReason
    reason_detail: str = ""
    fallback: bool = False
    latency: Latency = field(default_factory=Latency)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    bytes_edge_to_cloud: int = 0
    edge_model: common_pb2.ModelRef | None = None
    cloud_model: common_pb2.ModelRef | None = None
    finish_reason: int = 0  # FinishReason
    text: str = ""
    answer_cached: bool = False
    coalesced: bool = False
    routing_inputs: dict[str, str] = field(default_factory=dict)


Event = PromptBuilt | Tokens | FellBack | Summary
