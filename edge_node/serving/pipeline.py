"""The edge's personalised-generation flow, one request at a time:

concise prompt → personalise → route → (cloud stream | edge answer) → summary.

It yields domain events (``up.events``); the servicer encodes them. If the cloud fails
before or during its stream, the UE gets a FellBack event and a complete edge answer
instead; a cloud that sends nothing for ``cloud_token_timeout_s`` (before its first token
or between two) counts as failed, so a black-holed or stalled cloud never hangs the UE.
A cloud that answers RESOURCE_EXHAUSTED is busy, not failed: the request falls back
(reason CLOUD_BUSY) and the cloud stays in rotation. Cloud calls go through
:class:`CloudGateway`, which shares identical in-flight calls and replays cached answers.

The concise prompt is desensitised first, before anything is stored, logged or forwarded
(unless the data policy names the workflow verbatim), and only clouds in the regions the
data policy allows for the request's cell are candidates (``edge_node.serving.data_policy``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

import structlog

from edge_node.serving.cloud_calls import CloudFailed, CloudGateway
from edge_node.serving.cloud_peers import CloudPeer
from edge_node.serving.data_policy import DataPolicy, residency_detail
from edge_node.serving.desensitise import Desensitised, desensitise
from edge_node.serving.personalise import Personalised, Personaliser
from edge_node.serving.post_process import post_processed
from edge_node.serving.request import EdgeRequest
from edge_node.serving.routing import PerformancePolicy, Route, RoutingInputs, RoutingPolicy
from netgpt.generation import SamplingParams
from netgpt.timing import Stopwatch
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from up.convert import comprehensive_request
from up.events import Event, FellBack, PromptBuilt, Summary, Tokens
from up.local import Answer, encode_prompt, stream_answer
from up.runner import GenerationRunner

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class EdgeSettings:
    node_id: str
    cells: frozenset[str]


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

    async def run(self, request: EdgeRequest) -> AsyncIterator[Event]:
        """The request's events, tidied as they stream when its workflow has a post_process step."""
        events = self._steps(request)
        if request.plan.has("post_process"):
            events = post_processed(events)
        async with aclosing(events) as stream:
            async for event in stream:
                yield event

    async def _steps(self, request: EdgeRequest) -> AsyncGenerator[Event, None]:
        clock, plan, params = Stopwatch(), request.plan, request.request.params
        model = request.served.model
        masked = self._desensitised(request)
        concise = masked.text
        if plan.has("personalise"):
            personalised = await self.personaliser.build(concise, request.ran.cell_id, request.ran.ue_id,
                                                         params.max_new_tokens, model)
        else:
            personalised = Personalised(text=concise, facts=[])
        prompt_ids = encode_prompt(model, personalised.text, params.max_new_tokens, "comprehensive")
        summary = Summary(session_id=request.session_id, ai_flow_id=request.ran.ai_flow_id,
                          edge_model=request.served.ref, prompt_tokens=len(prompt_ids))
        summary.latency.personalise_ms = clock.ms()
        log.info("edge.personalised", cell_id=request.ran.cell_id, facts=len(personalised.facts),
                 prompt_tokens=len(prompt_ids), personalise_ms=round(summary.latency.personalise_ms, 1))
        yield PromptBuilt(text=personalised.text, facts=tuple(personalised.facts), prompt_tokens=len(prompt_ids),
                          edge_node_id=self.settings.node_id)

        regions = self.data_policy.allowed_regions(request.ran.cell_id)
        peer = self.peers.pick(prefer=plan.cloud_node_id, regions=regions)
        budget_ms = request.latency_budget_ms
        inputs = RoutingInputs(
            task=request.request.task, preference=request.request.route, cloud_available=peer is not None,
            cloud_queue=peer.status.load.queue_depth if peer else 0,
            cloud_estimate_ms=peer.estimate_ms if peer else 0.0,
            budget_left_ms=budget_ms - summary.latency.personalise_ms if budget_ms else None,
            cloud_unavailable="" if peer else self.peers.why_none(),
            allowed_regions=regions,
            residency=self._residency(request.ran.cell_id, regions) if peer is None else "",
        )
        route = await self._route(request, inputs, prompt_ids)
        summary.reason, summary.reason_detail = route.reason, route.detail
        summary.routing_inputs = inputs.as_strings() | {"workflow": plan.name, "desensitised": str(masked.total)}
        if masked.total:
            summary.routing_inputs["redacted"] = masked.describe()
        log.info("edge.routed", to_cloud=route.to_cloud, reason=up_pb2.RouteReason.Name(route.reason),
                 detail=route.detail, cloud=peer.node_id if peer else "", **summary.routing_inputs)

        if route.to_cloud and peer is not None:
            forward = comprehensive_request(request.session_id, personalised.text, params, request.forward_ran(),
                                            request.request.task)
            summary.bytes_edge_to_cloud = forward.ByteSize()
            try:
                async for event in self._via_cloud(peer, forward, summary, clock, request.deadline_s,
                                                   request.ran.ue_id):
                    yield event
                return
            except CloudFailed as failure:
                yield self._fell_back(peer, failure, summary)

        async for event in self._at_edge(request, prompt_ids, summary, clock):
            yield event

    async def _route(self, request: EdgeRequest, inputs: RoutingInputs, prompt_ids: list[int]) -> Route:
        """The policy decides when the workflow has a route step; otherwise its generation step does."""
        plan = request.plan
        if not plan.has("generate_cloud"):
            return Route(False, up_pb2.ROUTE_REASON_WORKFLOW, f"workflow {plan.name!r} generates at the edge")
        if inputs.residency and not plan.has("route"):
            return Route(False, up_pb2.ROUTE_REASON_DATA_RESIDENCY, inputs.residency)
        if plan.has("route"):
            return await self.policy.decide(inputs, lambda tokens: self._confidence(request, prompt_ids, tokens))
        if not inputs.cloud_available:
            return Route(False, up_pb2.ROUTE_REASON_CLOUD_UNAVAILABLE,
                         f"no cloud can take it: {inputs.cloud_unavailable}")
        return Route(True, up_pb2.ROUTE_REASON_WORKFLOW, f"workflow {plan.name!r} generates in the cloud")

    async def _confidence(self, request: EdgeRequest, prompt_ids: list[int], tokens: int) -> float:
        """Mean token log-probability of the edge model's own first ``tokens`` answer tokens."""
        logprobs = []
        params = SamplingParams(max_new_tokens=tokens)
        async with aclosing(self.runner.stream(request.served.model, prompt_ids, params)) as probe:
            async for piece in probe:
                logprobs.append(piece.logprob)
        return sum(logprobs) / len(logprobs) if logprobs else float("-inf")

    def _desensitised(self, request: EdgeRequest) -> Desensitised:
        """The concise prompt with personal identifiers masked, unless the data policy says verbatim."""
        plan = request.plan
        if not plan.has("desensitise") and not self.data_policy.desensitises(plan.name):
            return Desensitised(request.prompt)
        masked = desensitise(request.prompt)
        if masked.total:
            log.info("edge.desensitised", workflow=plan.name, masked=masked.total, kinds=masked.describe())
        return masked

    def _residency(self, cell_id: str, regions: frozenset[str] | None) -> str:
        """Why no cloud may take a request from ``cell_id`` though some could: "" when none could anyway."""
        usable = self.peers.usable_regions()
        return residency_detail(cell_id, regions, usable) if regions is not None and usable else ""

    def apply_policy(self, message: cp_pb2.RoutingPolicy) -> None:
        """A RoutingPolicy pushed by the control plane replaces the current thresholds and data rules."""
        if isinstance(self.policy, PerformancePolicy):
            self.policy = self.policy.updated(message)
            log.info("edge.policy", **{k: str(v) for k, v in vars(self.policy).items()})
        self.data_policy = self.data_policy.updated(message)
        log.info("edge.data_policy", residency_rules=len(self.data_policy.residency),
                 verbatim_workflows=sorted(self.data_policy.verbatim_workflows))

    def _fell_back(self, peer: CloudPeer, failure: CloudFailed, summary: Summary) -> FellBack:
        """Record a cloud that could not answer; the request goes on at the edge."""
        if failure.busy:
            summary.reason = up_pb2.ROUTE_REASON_CLOUD_BUSY
            summary.reason_detail = f"cloud {peer.node_id} is at capacity: {failure.reason}"
        else:
            self.peers.record_failure(peer, failure.reason)
            summary.reason = up_pb2.ROUTE_REASON_CLOUD_FAILED
            summary.reason_detail = f"cloud {peer.node_id} failed: {failure.reason}"
        log.warning("edge.cloud_failed", cloud=peer.node_id, reason=failure.reason, busy=failure.busy,
                    discarded_tokens=failure.discarded_tokens)
        summary.fallback = True
        return FellBack(reason=failure.reason, discarded_tokens=failure.discarded_tokens)

    async def _at_edge(self, request: EdgeRequest, prompt_ids: list[int], summary: Summary,
                       clock: Stopwatch) -> AsyncIterator[Event]:
        started, answer = clock.ms(), Answer()
        async for event in stream_answer(self.runner, request.served.model, prompt_ids, request.request.params,
                                         common_pb2.NODE_ROLE_EDGE, answer, clock):
            yield event
        summary.terminated_at = common_pb2.NODE_ROLE_EDGE
        summary.latency.edge_generate_ms = clock.ms() - started
        yield self._finish(summary, answer.first_token_ms, len(answer.token_ids), answer.finish_reason, answer.text,
                           clock)

    async def _via_cloud(self, peer: CloudPeer, forward: up_pb2.GenerateRequest, summary: Summary,
                         clock: Stopwatch, deadline_s: float | None, owner: str) -> AsyncIterator[Event]:
        """Relay the cloud's answer (new, shared or cached); raise CloudFailed before the summary on a fault.
        ``owner``: the UE the answer derives from (what DeleteProfile erases)."""
        started = clock.ms()
        served = self.gateway.open(peer, forward, deadline_s, owner=owner)
        summary.answer_cached, summary.coalesced = served.mode == "cache", served.mode == "coalesced"
        if served.mode != "cloud":
            summary.bytes_edge_to_cloud = 0  # this request itself sent nothing upstream
        streamed, first_token_ms, cloud_summary = 0, 0.0, Summary()
        async with aclosing(served.events) as events:
            async for event in events:
                if isinstance(event, Tokens):
                    if not streamed:
                        first_token_ms = clock.ms()
                        if served.mode == "cloud":
                            self.peers.record_first_token(peer, first_token_ms - started)
                    streamed += len(event.token_ids)
                    yield event
                elif isinstance(event, Summary):
                    cloud_summary = event
        summary.terminated_at = common_pb2.NODE_ROLE_CLOUD
        summary.cloud_model = cloud_summary.cloud_model
        summary.latency.cloud_ms = clock.ms() - started
        yield self._finish(summary, first_token_ms, cloud_summary.completion_tokens, cloud_summary.finish_reason,
                           cloud_summary.text, clock)

    def _finish(self, summary: Summary, first_token_ms: float, completion_tokens: int,
                finish_reason: up_pb2.FinishReason, text: str, clock: Stopwatch) -> Summary:
        summary.latency.time_to_first_token_ms = first_token_ms
        summary.latency.total_ms = clock.ms()
        summary.completion_tokens = completion_tokens
        summary.finish_reason = finish_reason
        summary.text = text
        log.info("edge.done", terminated_at=common_pb2.NodeRole.Name(summary.terminated_at),
                 reason=up_pb2.RouteReason.Name(summary.reason), completion_tokens=completion_tokens,
                 total_ms=round(summary.latency.total_ms, 1), bytes_edge_to_cloud=summary.bytes_edge_to_cloud)
        return summary
