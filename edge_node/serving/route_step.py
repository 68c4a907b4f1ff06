"""The ``route`` step, and the decision a workflow without one makes by its own rule.

The route step asks the routing policy (``edge_node.serving.routing``) about the prompt as the
steps before it left it: routed before personalisation, a confidence probe reads the concise
prompt. A workflow without a route step generates where its generation steps say: in the
cloud when it has a generate_cloud step and a cloud may take the request, else at the edge.
"""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import replace

import structlog

from cp.workflows import Step
from edge_node.serving.cloud_peers import CloudPeer
from edge_node.serving.data_policy import residency_detail
from edge_node.serving.learned_router import ProbedAnswer
from edge_node.serving.routing import Route, RoutingInputs
from edge_node.serving.step_context import StepContext
from edge_node.serving.workflow_state import Decision, RequestState
from netgpt.generation import SamplingParams
from netgpt.v1 import user_plane_pb2 as up_pb2

log = structlog.get_logger(__name__)


class Router:
    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx
        self._by_rule: Decision | None = None
        self._foreseen: Decision | None = None  # made by foresee(), taken by the route step

    async def route(self, step: Step, state: RequestState) -> RequestState:
        """The route step: the policy decides (unless the workflow cannot generate in the cloud); a decision
        foreseen before personalisation (:meth:`foresee`) stands."""
        foreseen, self._foreseen = self._foreseen, None
        inputs, peer = (foreseen.inputs, foreseen.peer) if foreseen is not None else self._inputs()
        inputs.question, inputs.facts = self.ctx.request.prompt, state.prompt.facts
        if foreseen is not None:
            route = foreseen.route
        elif self.ctx.plan.has("generate_cloud"):
            route = await self.ctx.services.policy.decide(inputs, lambda tokens: self._probe(state.prompt.text, tokens))
        else:
            route = self._edge_only()
        return replace(state, route=self._decided(route, inputs, peer))

    def foresee(self, state: RequestState) -> bool | None:
        """Whether the request will be answered in the cloud, when that is known before its prompt is
        personalised: the route step ran already, the policy decides without probing the edge model (the
        route step then takes this decision as it is), or the workflow has no route step. None: a probe of the
        personalised prompt will decide."""
        if state.route is not None:
            return state.route.route.to_cloud
        if not self.ctx.plan.has("route"):
            return self.by_rule().route.to_cloud
        if not self.ctx.plan.has("generate_cloud"):
            return False
        inputs, peer = self._inputs()
        route = self.ctx.services.policy.settled(inputs)
        if route is None:
            return None
        self._foreseen = Decision(route, inputs, peer)
        return route.to_cloud

    def by_rule(self) -> Decision:
        """The decision of a workflow without a route step, made once per request (so that its generation
        steps agree)."""
        if self._by_rule is None:
            inputs, peer = self._inputs()
            self._by_rule = self._decided(self._rule(inputs), inputs, peer)
        return self._by_rule

    def _rule(self, inputs: RoutingInputs) -> Route:
        name = self.ctx.plan.name
        if not self.ctx.plan.has("generate_cloud"):
            return self._edge_only()
        if inputs.residency:
            return Route(False, up_pb2.ROUTE_REASON_DATA_RESIDENCY, inputs.residency)
        if not inputs.cloud_available:
            return Route(False, up_pb2.ROUTE_REASON_CLOUD_UNAVAILABLE,
                         f"no cloud can take it: {inputs.cloud_unavailable}")
        return Route(True, up_pb2.ROUTE_REASON_WORKFLOW, f"workflow {name!r} generates in the cloud")

    def _edge_only(self) -> Route:
        return Route(False, up_pb2.ROUTE_REASON_WORKFLOW, f"workflow {self.ctx.plan.name!r} generates at the edge")

    def _inputs(self) -> tuple[RoutingInputs, CloudPeer | None]:
        """What routing weighs now, and the cloud the request would go to (None: none may take it)."""
        request, services, clock = self.ctx.request, self.ctx.services, self.ctx.clock
        peers = services.gateway.peers
        regions = services.data_policy.allowed_regions(request.ran.cell_id)
        peer = peers.pick(prefer=self.ctx.plan.cloud_node_id, regions=regions)
        budget_ms = request.latency_budget_ms
        inputs = RoutingInputs(
            task=request.request.task, preference=request.request.route, cloud_available=peer is not None,
            cell_id=request.ran.cell_id,
            cloud_queue=peer.status.load.queue_depth if peer else 0,
            cloud_estimate_ms=peer.estimate_ms if peer else 0.0,
            budget_left_ms=budget_ms - clock.ms() if budget_ms else None,
            cloud_unavailable="" if peer else peers.why_none(),
            allowed_regions=regions,
            residency=self._residency(request.ran.cell_id, regions) if peer is None else "",
        )
        return inputs, peer

    def _residency(self, cell_id: str, regions: frozenset[str] | None) -> str:
        """Why no cloud may take a request from ``cell_id`` though some could: "" when none could anyway."""
        usable = self.ctx.services.gateway.peers.usable_regions()
        return residency_detail(cell_id, regions, usable) if regions is not None and usable else ""

    def _decided(self, route: Route, inputs: RoutingInputs, peer: CloudPeer | None) -> Decision:
        log.info("edge.routed", to_cloud=route.to_cloud, reason=up_pb2.RouteReason.Name(route.reason),
                 detail=route.detail, cloud=peer.node_id if peer else "", workflow=self.ctx.plan.name,
                 **inputs.as_strings())
        return Decision(route, inputs, peer)

    async def _probe(self, prompt: str, tokens: int) -> ProbedAnswer:
        """The edge model's own first ``tokens`` answer tokens to ``prompt`` (greedy), with their log-probabilities."""
        request = self.ctx.request
        texts, logprobs = [], []
        pieces = self.ctx.services.runner.stream(request.served.model, self.ctx.prompt_ids(prompt),
                                                 SamplingParams(max_new_tokens=tokens))
        async with aclosing(pieces) as probe:
            async for piece in probe:
                texts.append(piece.text)
                logprobs.append(piece.logprob)
        return ProbedAnswer("".join(texts), tuple(logprobs))
