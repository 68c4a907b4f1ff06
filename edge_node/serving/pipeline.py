"""The edge's personalised-generation flow, one request at a time: the steps of its workflow
(the default: personalise → route → generate at the edge or in the cloud), run as the workflow's
DAG declares (``edge_node.serving.workflow_run``), then a summary.

It yields domain events (``up.events``) as the steps emit them — the comprehensive prompt,
tokens, a FellBack when the cloud fails mid-answer — and the summary last; the servicer
encodes them. A step that fails fails the request with the step named.

The concise prompt is desensitised first, before anything is stored, logged or forwarded
(unless the data policy names the workflow verbatim: then only the workflow's own desensitise
steps mask it, where they stand), and only clouds in the regions the data policy allows for
the request's cell are candidates (``edge_node.serving.data_policy``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

import structlog

from cp.workflows import PROMPT, Step
from edge_node.serving.answer_start import ANSWER_STARTS
from edge_node.serving.cloud_calls import CloudGateway
from edge_node.serving.data_policy import DataPolicy
from edge_node.serving.desensitise import Desensitised
from edge_node.serving.personalise import Personaliser
from edge_node.serving.request import EdgeRequest
from edge_node.serving.routing import PerformancePolicy, RoutingPolicy
from edge_node.serving.step_context import EdgeServices, StepContext
from edge_node.serving.workflow_plan import WorkflowPlan
from edge_node.serving.workflow_run import WorkflowRun
from edge_node.serving.workflow_state import Prompt, RequestState
from edge_node.serving.workflow_steps import EdgeSteps, PublishedPrompt
from netgpt.errors import FailedPrecondition, StartupError
from netgpt.timing import Stopwatch
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from up.events import Event, Latency, StepTiming, Summary
from up.runner import GenerationRunner

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class EdgeSettings:
    node_id: str
    cells: frozenset[str]
    answer_start: str = "venue"  # what the edge's answers begin with (edge_node.serving.answer_start)

    def __post_init__(self) -> None:
        if self.answer_start not in ANSWER_STARTS:
            raise StartupError(f"answer_start must be one of {', '.join(ANSWER_STARTS)}, got {self.answer_start!r}")


class EdgePipeline:
    def __init__(self, settings: EdgeSettings, runner: GenerationRunner, personaliser: Personaliser,
                 policy: RoutingPolicy, gateway: CloudGateway, data_policy: DataPolicy | None = None) -> None:
        self.settings = settings
        self.runner = runner
        self.personaliser = personaliser
        self.policy = policy
        self.gateway = gateway
        self.peers = gateway.peers
        self.data_policy = data_policy if data_policy is not None else DataPolicy()

    async def run(self, request: EdgeRequest) -> AsyncGenerator[Event, None]:
        """The request's events as its steps emit them, then its summary (or the failed step's error)."""
        events: asyncio.Queue[Event | None] = asyncio.Queue()  # None: the workflow is over
        workflow = asyncio.create_task(self._workflow(request, events.put_nowait))
        workflow.add_done_callback(lambda _: events.put_nowait(None))
        try:
            while (event := await events.get()) is not None:
                yield event
            yield workflow.result()
        finally:  # the UE went away (or the workflow is over): stop whatever still runs
            workflow.cancel()
            await asyncio.gather(workflow, return_exceptions=True)

    async def _workflow(self, request: EdgeRequest, emit: Callable[[Event], None]) -> Summary:
        clock, plan = Stopwatch(), self._plan(request.plan)
        services = EdgeServices(self.settings.node_id, self.runner, self.personaliser, self.policy, self.gateway,
                                self.data_policy, self.settings.answer_start)
        steps = EdgeSteps(StepContext(services, request, plan, clock, emit))
        initial = RequestState(prompt=Prompt(request.prompt))
        final_prompt = plan.last_writer(PROMPT)
        if final_prompt is None:
            steps.publish_prompt(initial)

        def after_step(step: Step, state: RequestState) -> None:
            if final_prompt is not None and step.id == final_prompt.id:
                steps.publish_prompt(state)

        run = WorkflowRun(plan, steps.functions, clock, after_step)
        final = await run.run(initial)
        assert steps.published is not None  # by the last writer of the prompt, or before any step ran
        return self._summary(request, plan, final, steps.published, run.timings, clock)

    def _plan(self, plan: WorkflowPlan) -> WorkflowPlan:
        """``plan`` led by a desensitise step unless the data policy lets its workflow keep the prompt verbatim."""
        return plan.led_by("desensitise") if self.data_policy.desensitises(plan.name) else plan

    def _summary(self, request: EdgeRequest, plan: WorkflowPlan, final: RequestState, published: PublishedPrompt,
                 timings: tuple[StepTiming, ...], clock: Stopwatch) -> Summary:
        answer = final.answer
        if answer is None:  # every generation step skipped: a plan cp.workflow_dataflow lets through
            raise FailedPrecondition(f"workflow {plan.name!r} ended without an answer: no generation step answered")
        masked = Desensitised(final.prompt.text, dict(final.redactions))
        routing_inputs = answer.decision.inputs.as_strings() | {"workflow": plan.name,
                                                                "desensitised": str(masked.total)}
        if masked.total:
            routing_inputs["redacted"] = masked.describe()
        summary = Summary(
            session_id=request.session_id, ai_flow_id=request.ran.ai_flow_id, terminated_at=answer.terminated_at,
            reason=answer.reason, reason_detail=answer.reason_detail, fallback=answer.fallback,
            latency=Latency(personalise_ms=published.at_ms, edge_generate_ms=answer.edge_generate_ms,
                            cloud_ms=answer.cloud_ms, time_to_first_token_ms=answer.first_token_ms,
                            total_ms=clock.ms()),
            prompt_tokens=published.prompt_tokens, completion_tokens=answer.completion_tokens,
            bytes_edge_to_cloud=answer.bytes_edge_to_cloud, edge_model=request.served.ref,
            cloud_model=answer.cloud_model, finish_reason=answer.finish_reason, text=answer.text,
            answer_cached=answer.answer_cached, coalesced=answer.coalesced, routing_inputs=routing_inputs,
            steps=timings,
        )
        log.info("edge.done", terminated_at=common_pb2.NodeRole.Name(summary.terminated_at),
                 reason=up_pb2.RouteReason.Name(summary.reason), completion_tokens=summary.completion_tokens,
                 total_ms=round(summary.latency.total_ms, 1), bytes_edge_to_cloud=summary.bytes_edge_to_cloud,
                 steps=[t.step_id for t in timings if not t.skipped])
        return summary

    def apply_policy(self, message: cp_pb2.RoutingPolicy) -> None:
        """A RoutingPolicy pushed by the control plane replaces the current thresholds and data rules."""
        if isinstance(self.policy, PerformancePolicy):
            self.policy = self.policy.updated(message)
            log.info("edge.policy", **{k: str(v) for k, v in vars(self.policy).items()})
        self.data_policy = self.data_policy.updated(message)
        log.info("edge.data_policy", residency_rules=len(self.data_policy.residency),
                 verbatim_workflows=sorted(self.data_policy.verbatim_workflows))
