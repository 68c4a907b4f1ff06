"""The ``generate_edge`` and ``generate_cloud`` steps: alternatives, of which the side the request is
routed to answers (the other skips, as does one after a step that answered already).

A generate_cloud step answers at the edge itself when routing keeps the request there and the
workflow has no generate_edge step, and when the cloud fails before or during its stream: the
UE then gets a FellBack event and a complete edge answer. A cloud that answers RESOURCE_EXHAUSTED
is busy, not failed: the request falls back (reason CLOUD_BUSY) and the cloud stays in rotation.
Cloud calls go through :class:`CloudGateway`, which shares identical in-flight calls and replays
cached answers. Tokens stream to the UE as they come, tidied on the way when a post_process step
runs after the generation step. A new cloud answer to a desensitised prompt is kept as a distillation
sample when the edge keeps them (:mod:`edge_node.serving.distill_samples`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, replace

import structlog

from cp.workflows import Step
from edge_node.serving.answer_start import venue_start
from edge_node.serving.cloud_calls import CloudFailed
from edge_node.serving.cloud_peers import CloudPeer
from edge_node.serving.distill_samples import Sample
from edge_node.serving.post_process import StreamTidier
from edge_node.serving.route_step import Router
from edge_node.serving.step_context import StepContext
from edge_node.serving.workflow_run import Skipped
from edge_node.serving.workflow_state import Answered, Decision, Prompt, RequestState
from netgpt.v1 import common_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from up.convert import comprehensive_request
from up.events import Event, FellBack, Summary, Tokens
from up.local import Answer, stream_answer

log = structlog.get_logger(__name__)

EDGE, CLOUD = common_pb2.NODE_ROLE_EDGE, common_pb2.NODE_ROLE_CLOUD
STEP_OF_SIDE = {EDGE: "generate_edge", CLOUD: "generate_cloud"}


@dataclass(frozen=True)
class AnswerStream:
    """Where one generation's events go: to the UE, through the tidying when it is post-processed."""

    emit: Callable[[Event], None]
    tidy: StreamTidier | None

    def send(self, event: Tokens | FellBack) -> None:
        sent = self.tidy.feed(event) if self.tidy is not None else event
        if sent is not None:
            self.emit(sent)


class Generation:
    def __init__(self, ctx: StepContext, router: Router) -> None:
        self.ctx = ctx
        self.router = router

    async def generate_edge(self, step: Step, state: RequestState) -> RequestState | Skipped:
        return await self._generate(step, state, EDGE)

    async def generate_cloud(self, step: Step, state: RequestState) -> RequestState | Skipped:
        return await self._generate(step, state, CLOUD)

    async def _generate(self, step: Step, state: RequestState, side: common_pb2.NodeRole) -> RequestState | Skipped:
        if state.answer is not None:
            return Skipped("a generation step before it answered")
        decision = state.route or self.router.by_rule()
        routed = CLOUD if decision.route.to_cloud else EDGE
        if routed != side and self.ctx.plan.has(STEP_OF_SIDE[routed]):
            return Skipped(f"routed to the {'cloud' if routed == CLOUD else 'edge'}")
        stream = AnswerStream(self.ctx.emit, StreamTidier() if self.ctx.plan.post_processed(step) else None)
        if decision.route.to_cloud and decision.peer is not None:
            answered = await self._via_cloud(decision.peer, state.prompt, decision, stream)
        else:
            answered = await self._at_edge(state.prompt, decision, stream, decision.route.reason,
                                           decision.route.detail)
        return replace(state, answer=answered)

    async def _at_edge(self, prompt: Prompt, decision: Decision, stream: AnswerStream, reason: up_pb2.RouteReason,
                       detail: str, fallback: bool = False) -> Answered:
        request, clock = self.ctx.request, self.ctx.clock
        started, answer, model = clock.ms(), Answer(), request.served.model
        start = venue_start(model, prompt.facts, self.ctx.services.answer_start)
        async for event in stream_answer(self.ctx.services.runner, model, self.ctx.prompt_ids(prompt.text),
                                         request.request.params, EDGE, answer, clock, start):
            stream.send(event)
        return Answered(decision=decision, terminated_at=EDGE, reason=reason, reason_detail=detail, text=answer.text,
                        completion_tokens=len(answer.token_ids), finish_reason=answer.finish_reason,
                        first_token_ms=answer.first_token_ms, edge_generate_ms=clock.ms() - started,
                        fallback=fallback, tidy=stream.tidy)

    async def _via_cloud(self, peer: CloudPeer, prompt: Prompt, decision: Decision,
                         stream: AnswerStream) -> Answered:
        """Relay the cloud's answer (new, shared or cached); an edge answer when the cloud fails."""
        request, clock, peers = self.ctx.request, self.ctx.clock, self.ctx.services.gateway.peers
        forward = comprehensive_request(request.session_id, prompt.text, request.request.params,
                                        request.forward_ran(), request.request.task)
        started = clock.ms()
        served = self.ctx.services.gateway.open(peer, forward, request.deadline_s, owner=request.ran.ue_id)
        # ``owner``: the UE the answer derives from (what DeleteProfile erases)
        sent = forward.ByteSize() if served.mode == "cloud" else 0  # a cached or shared answer sent nothing
        cached, coalesced = served.mode == "cache", served.mode == "coalesced"
        streamed, first_token_ms, cloud_summary = 0, 0.0, Summary()
        try:
            async with aclosing(served.events) as events:
                async for event in events:
                    if isinstance(event, Tokens):
                        if not streamed:
                            first_token_ms = clock.ms()
                            if served.mode == "cloud":
                                peers.record_first_token(peer, first_token_ms - started)
                        streamed += len(event.token_ids)
                        stream.send(event)
                    elif isinstance(event, Summary):
                        cloud_summary = event
            if served.mode == "cloud":
                self._keep_sample(prompt.text, cloud_summary)
        except CloudFailed as failure:
            reason, detail = self._fell_back(peer, failure)
            stream.send(FellBack(reason=failure.reason, discarded_tokens=failure.discarded_tokens))
            answered = await self._at_edge(prompt, decision, stream, reason, detail, fallback=True)
            return replace(answered, bytes_edge_to_cloud=sent, answer_cached=cached, coalesced=coalesced)
        return Answered(decision=decision, terminated_at=CLOUD, reason=decision.route.reason,
                        reason_detail=decision.route.detail, text=cloud_summary.text,
                        completion_tokens=cloud_summary.completion_tokens, finish_reason=cloud_summary.finish_reason,
                        first_token_ms=first_token_ms, cloud_ms=clock.ms() - started,
                        bytes_edge_to_cloud=sent, cloud_model=cloud_summary.cloud_model, answer_cached=cached,
                        coalesced=coalesced, tidy=stream.tidy)

    def _keep_sample(self, prompt: str, answer: Summary) -> None:
        """The cloud's answer as a distillation sample, where the edge keeps them (its setting, and the core's
        policy does not say otherwise) and the prompt was desensitised."""
        samples, ran = self.ctx.services.gateway.samples, self.ctx.request.ran
        policy = self.ctx.services.data_policy
        if samples is None or not policy.distill_samples or not self.ctx.plan.has("desensitise"):
            return
        allowed = policy.allowed_regions(ran.cell_id)
        model = f"{answer.cloud_model.name}@{answer.cloud_model.version}" if answer.cloud_model else ""
        if samples.keep(Sample(ran.ue_id, ran.cell_id, allowed, prompt, answer.text, model)):
            log.debug("edge.distill_sample_kept", cell=ran.cell_id, samples=len(samples))

    def _fell_back(self, peer: CloudPeer, failure: CloudFailed) -> tuple[up_pb2.RouteReason, str]:
        """Record a cloud that could not answer; the request goes on at the edge, for this reason."""
        log.warning("edge.cloud_failed", cloud=peer.node_id, reason=failure.reason, busy=failure.busy,
                    discarded_tokens=failure.discarded_tokens)
        if failure.busy:
            return up_pb2.ROUTE_REASON_CLOUD_BUSY, f"cloud {peer.node_id} is at capacity: {failure.reason}"
        self.ctx.services.gateway.peers.record_failure(peer, failure.reason)
        return up_pb2.ROUTE_REASON_CLOUD_FAILED, f"cloud {peer.node_id} failed: {failure.reason}"
