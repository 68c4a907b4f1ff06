"""What the edge's step functions work with for one request: the request and its plan, the edge's
services as they were when it began, its clock, and where its events go (the UE's stream)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from edge_node.serving.cloud_calls import CloudGateway
from edge_node.serving.data_policy import DataPolicy
from edge_node.serving.personalise import Personaliser
from edge_node.serving.request import EdgeRequest
from edge_node.serving.routing import RoutingPolicy
from edge_node.serving.workflow_plan import WorkflowPlan
from netgpt.timing import Stopwatch
from up.events import Event
from up.local import encode_prompt
from up.runner import GenerationRunner


@dataclass(frozen=True)
class EdgeServices:
    """The edge's parts the steps use; a request keeps the policies it began with, as it keeps its model."""

    node_id: str
    runner: GenerationRunner
    personaliser: Personaliser
    policy: RoutingPolicy
    gateway: CloudGateway
    data_policy: DataPolicy
    answer_start: str = "venue"  # EdgeConfig.answer_start


@dataclass
class StepContext:
    services: EdgeServices
    request: EdgeRequest
    plan: WorkflowPlan  # the request's plan as it runs (with the data policy's desensitise step, if any)
    clock: Stopwatch  # started when the request's workflow began
    emit: Callable[[Event], None]
    _encoded: dict[str, list[int]] = field(default_factory=dict)

    def prompt_ids(self, text: str) -> list[int]:
        """``text`` as the answer's prompt in tokens of the request's model; InvalidArgument when it and the
        answer would not fit the model's context."""
        if text not in self._encoded:
            request = self.request
            self._encoded[text] = encode_prompt(request.served.model, text, request.request.params.max_new_tokens,
                                                "comprehensive")
        return self._encoded[text]
