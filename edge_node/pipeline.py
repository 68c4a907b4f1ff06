"""The edge's personalised-generation flow, one request at a time:

concise prompt → personalise → route → (cloud stream | edge answer) → summary.

If the cloud fails before or during its stream, the UE gets a Fallback event and a
complete edge answer instead; a cloud that sends nothing for ``cloud_token_timeout_s``
(before its first token or between two) counts as failed, so a black-holed or stalled
cloud never hangs the UE. Cloud calls go through :class:`CloudGateway`, which shares
identical in-flight calls and replays cached answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

import structlog

from edge_node.cloud_calls import CloudFailed, CloudGateway
from edge_node.cloud_peers import CloudPeer
from edge_node.desensitise import desensitise
from edge_node.personalise import Personalised, Personaliser
from edge_node.routing import PerformancePolicy, Route, RoutingInputs, RoutingPolicy
from edge_node.workflow_plan import DEFAULT_PLAN, WorkflowPlan, post_process
from netgpt.engine import LanguageModel
from netgpt.generation import SamplingParams
from netgpt.model_slot import ModelSlot
from netgpt.timing import Stopwatch
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from up.convert import Answer, summary_event
from up.limits import Limits, check_request
from up.local import encode_prompt, stream_answer
from up.runner import GenerationRunner

log = structlog.get_logger(__name__)


@dataclass
class EdgeSettings:
    node_id: str
    limits: Limits


class EdgePipeline:
    def __init__(self, settings: EdgeSettings, slot: ModelSlot, runner: GenerationRunner,
                 personaliser: Personaliser, policy: RoutingPolicy, gateway: CloudGateway) -> None:
        self.settings = settings
        self.slot = slot
        self.runner = runner
        self.personaliser = personaliser
        self.policy = policy
        self.gateway = gateway
        self.peers = gateway.peers

    @property
    def model(self) -> LanguageModel:
        """The model this request pinned when it started (``run``): a hot swap never splits a request."""
        return self.slot.active().model

    @property
    def model_ref(self) -> common_pb2.ModelRef:
        return self.slot.active().ref

    def validate(self, request: up_pb2.GenerateRequest) -> tuple[str, SamplingParams]:
        """Everything checkable before any work starts (so bad input costs nothing)."""
        return check_request(request, self.settings.limits)

    async def run(self, request: up_pb2.GenerateRequest, checked: tuple[str, SamplingParams],
                  session: cp_pb2.AiSession, deadline_s: float | None,
                  plan: WorkflowPlan = DEFAULT_PLAN) -> AsyncIterator[up_pb2.GenerateResponse]:
        """The request's events; ``checked`` is :meth:`validate`'s result, ``plan`` says which steps run."""
        self.slot.pin()  # this request uses the model serving now to its end, whatever deploys meanwhile
        async with aclosing(self._steps(request, checked, session, deadline_s, plan)) as events:
            async for event in events:
                if event.HasField("summary") and plan.has("post_process"):
                    event.summary.text = post_process(event.summary.text)
                yield event

    async def _steps(self, request: up_pb2.GenerateRequest, checked: tuple[str, SamplingParams],
                     session: cp_pb2.AiSession, deadline_s: float | None,
                     plan: WorkflowPlan) -> AsyncIterator[up_pb2.GenerateResponse]:
        clock = Stopwatch()
        concise, params = checked
        masked = 0
        if plan.has("desensitise"):
            concise, masked = desensitise(concise)
        cell_id = request.ran.cell_id or session.cell_id
        if plan.has("personalise"):
            personalised = await self.personaliser.build(concise, cell_id, session.ue_id, params.max_new_tokens)
        else:
            personalised = Personalised(text=concise, facts=[])
        prompt_ids = encode_prompt(self.model, personalised.text, params.max_new_tokens, "comprehensive")
        summary = up_pb2.GenerationSummary(
            session_id=session.session_id, ai_flow_id=session.ai_flow_id, edge_model=self.model_ref,
            prompt_tokens=len(prompt_ids),
        )
        summary.latency.personalise_ms = clock.ms()
        log.info("edge.personalised", cell_id=cell_id, facts=len(personalised.facts), prompt_tokens=len(prompt_ids),
                 personalise_ms=round(summary.latency.personalise_ms, 1))
        yield up_pb2.GenerateResponse(comprehensive_prompt=up_pb2.ComprehensivePrompt(
            text=personalised.text, knowledge_used=personalised.facts, prompt_tokens=len(prompt_ids),
            edge_node_id=self.settings.node_id))

        peer = self.peers.pick(prefer=plan.cloud_node_id)
        budget_ms = session.qos.latency_budget_ms or request.ran.qos.latency_budget_ms
        inputs = RoutingInputs(
            task=request.task, preference=request.route, cloud_available=peer is not None,
            cloud_queue=peer.status.load.queue_depth if peer else 0,
            cloud_estimate_ms=peer.estimate_ms if peer else 0.0,
            budget_left_ms=budget_ms - summary.latency.personalise_ms if budget_ms else None,
        )
        route = await self._route(plan, inputs, prompt_ids)
        summary.reason, summary.reason_detail = route.reason, route.detail
        recorded = inputs.as_strings() | {"workflow": plan.name, "desensitised": str(masked)}
        summary.routing_inputs.update(recorded)
        log.info("edge.routed", to_cloud=route.to_cloud, reason=up_pb2.RouteReason.Name(route.reason),
                 detail=route.detail, cloud=peer.node_id if peer else "", **recorded)

        if route.to_cloud and peer is not None:
            forward = self._forward_request(request, session, personalised, cell_id)
            summary.bytes_edge_to_cloud = forward.ByteSize()
            try:
                async for event in self._via_cloud(peer, forward, summary, clock, deadline_s):
                    yield event
                return
            except CloudFailed as failure:
                self.peers.record_failure(peer)
                log.warning("edge.cloud_failed", cloud=peer.node_id, reason=failure.reason,
                            discarded_tokens=failure.discarded_tokens)
                summary.fallback = True
                summary.reason = up_pb2.ROUTE_REASON_CLOUD_FAILED
                summary.reason_detail = f"cloud {peer.node_id} failed: {failure.reason}"
                yield up_pb2.GenerateResponse(fallback=up_pb2.Fallback(
                    reason=failure.reason, discarded_tokens=failure.discarded_tokens))

        async for event in self._at_edge(prompt_ids, params, summary, clock):
            yield event

    async def _route(self, plan: WorkflowPlan, inputs: RoutingInputs, prompt_ids: list[int]) -> Route:
        """The policy decides when the workflow has a route step; otherwise its generation step does."""
        if not plan.has("generate_cloud"):
            return Route(False, up_pb2.ROUTE_REASON_WORKFLOW, f"workflow {plan.name!r} generates at the edge")
        if plan.has("route"):
            return await self.policy.decide(inputs, lambda tokens: self._confidence(prompt_ids, tokens))
        if not inputs.cloud_available:
            return Route(False, up_pb2.ROUTE_REASON_CLOUD_UNAVAILABLE, "no healthy cloud node is known")
        return Route(True, up_pb2.ROUTE_REASON_WORKFLOW, f"workflow {plan.name!r} generates in the cloud")

    async def _confidence(self, prompt_ids: list[int], tokens: int) -> float:
        """Mean token log-probability of the edge model's own first ``tokens`` answer tokens."""
        logprobs = []
        async with aclosing(self.runner.stream(self.model, prompt_ids, SamplingParams(max_new_tokens=tokens))) as probe:
            async for piece in probe:
                logprobs.append(piece.logprob)
        return sum(logprobs) / len(logprobs) if logprobs else float("-inf")

    def apply_policy(self, message: cp_pb2.RoutingPolicy) -> None:
        """A RoutingPolicy pushed by the control plane replaces the current thresholds."""
        if isinstance(self.policy, PerformancePolicy):
            self.policy = self.policy.updated(message)
            log.info("edge.policy", **{k: str(v) for k, v in vars(self.policy).items()})

    def _forward_request(self, request: up_pb2.GenerateRequest, session: cp_pb2.AiSession,
                         personalised: Personalised, cell_id: str) -> up_pb2.GenerateRequest:
        ran = up_pb2.GenerateRequest().ran
        ran.CopyFrom(request.ran)
        ran.cell_id, ran.ai_flow_id = cell_id, session.ai_flow_id
        ran.ue_id = ""  # the UE's identity stays at the edge; the flow id is enough to trace
        ran.slice_id = ran.slice_id or session.slice_id
        if not ran.HasField("qos"):
            ran.qos.CopyFrom(session.qos)
        return up_pb2.GenerateRequest(session_id=session.session_id, kind=up_pb2.PROMPT_KIND_COMPREHENSIVE,
                                      prompt=personalised.text, ran=ran, params=request.params, task=request.task)

    async def _at_edge(self, prompt_ids: list[int], params: SamplingParams, summary: up_pb2.GenerationSummary,
                       clock: Stopwatch) -> AsyncIterator[up_pb2.GenerateResponse]:
        started, answer = clock.ms(), Answer()
        async for event in stream_answer(self.runner, self.model, prompt_ids, params,
                                         common_pb2.NODE_ROLE_EDGE, answer, clock):
            yield event
        summary.terminated_at = common_pb2.NODE_ROLE_EDGE
        summary.latency.edge_generate_ms = clock.ms() - started
        self._finish(summary, answer.first_token_ms, len(answer.token_ids), answer.finish_reason, answer.text, clock)
        yield summary_event(summary)

    async def _via_cloud(self, peer: CloudPeer, forward: up_pb2.GenerateRequest, summary: up_pb2.GenerationSummary,
                         clock: Stopwatch, deadline_s: float | None) -> AsyncIterator[up_pb2.GenerateResponse]:
        """Relay the cloud's answer (new, shared or cached); raise CloudFailed before the summary on a fault."""
        started = clock.ms()
        served = self.gateway.open(peer, forward, deadline_s)
        summary.answer_cached, summary.coalesced = served.mode == "cache", served.mode == "coalesced"
        if served.mode != "cloud":
            summary.bytes_edge_to_cloud = 0  # this request itself sent nothing upstream
        streamed, first_token_ms, cloud_summary = 0, 0.0, None
        async with aclosing(served.events) as events:
            async for event in events:
                if event.HasField("tokens"):
                    if not streamed:
                        first_token_ms = clock.ms()
                        if served.mode == "cloud":
                            self.peers.record_first_token(peer, first_token_ms - started)
                    streamed += len(event.tokens.token_ids)
                    yield event
                elif event.HasField("summary"):
                    cloud_summary = event.summary
        summary.terminated_at = common_pb2.NODE_ROLE_CLOUD
        summary.cloud_model.CopyFrom(cloud_summary.cloud_model)
        summary.latency.cloud_ms = clock.ms() - started
        self._finish(summary, first_token_ms, cloud_summary.completion_tokens, cloud_summary.finish_reason,
                     cloud_summary.text, clock)
        yield summary_event(summary)

    def _finish(self, summary: up_pb2.GenerationSummary, first_token_ms: float, completion_tokens: int,
                finish_reason: int, text: str, clock: Stopwatch) -> None:
        summary.latency.time_to_first_token_ms = first_token_ms
        summary.latency.total_ms = clock.ms()
        summary.completion_tokens = completion_tokens
        summary.finish_reason = finish_reason
        summary.text = text
        log.info("edge.done", terminated_at=common_pb2.NodeRole.Name(summary.terminated_at),
                 reason=up_pb2.RouteReason.Name(summary.reason), completion_tokens=completion_tokens,
                 total_ms=round(summary.latency.total_ms, 1), bytes_edge_to_cloud=summary.bytes_edge_to_cloud)
