"""The edge's AI functions as the step functions of one request's workflow (``edge_node.serving.workflow_run``
runs them): each takes the request state as the steps it runs after left it and returns it with
what its function writes (``cp.workflows.FUNCTIONS``) replaced.

- ``desensitise`` masks personal identifiers in the prompt as it stands (``edge_node.serving.desensitise``);
- ``personalise`` makes the prompt comprehensive (``edge_node.serving.personalise``);
- ``route`` and the generation steps: ``edge_node.serving.route_step``, ``edge_node.serving.generate_steps``;
- ``post_process`` releases the tidied rest of an answer that streamed tidied (``edge_node.serving.post_process``).

The UE gets the prompt the answer is generated from (a PromptBuilt event) as soon as the last
step that writes the prompt is done, or at once when none does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from types import MappingProxyType

import structlog

from cp.workflows import Step
from edge_node.serving.desensitise import desensitise
from edge_node.serving.generate_steps import Generation
from edge_node.serving.route_step import Router
from edge_node.serving.step_context import StepContext
from edge_node.serving.workflow_run import Skipped, StepFunction
from edge_node.serving.workflow_state import Prompt, RequestState
from up.events import PromptBuilt

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PublishedPrompt:
    prompt_tokens: int
    at_ms: float  # when the UE was sent it: the summary's personalise_ms


class EdgeSteps:
    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx
        self.router = router = Router(ctx)
        generation = Generation(ctx, router)
        self.functions: dict[str, StepFunction] = {
            "desensitise": self.desensitise, "personalise": self.personalise, "route": router.route,
            "generate_edge": generation.generate_edge, "generate_cloud": generation.generate_cloud,
            "post_process": self.post_process,
        }
        self.published: PublishedPrompt | None = None

    async def desensitise(self, step: Step, state: RequestState) -> RequestState:
        masked = desensitise(state.prompt.text)
        if masked.total:
            log.info("edge.desensitised", workflow=self.ctx.plan.name, masked=masked.total, kinds=masked.describe())
        counts = Counter(state.redactions) + Counter(masked.counts)
        return replace(state, prompt=replace(state.prompt, text=masked.text),
                       redactions=MappingProxyType(dict(counts)))

    async def personalise(self, step: Step, state: RequestState) -> RequestState:
        request = self.ctx.request
        built = await self.ctx.services.personaliser.build(state.prompt.text, request.ran.cell_id, request.ran.ue_id,
                                                           request.request.params.max_new_tokens,
                                                           request.served.model, to_cloud=self.router.foresee(state))
        return replace(state, prompt=Prompt(built.text, tuple(built.facts)))

    async def post_process(self, step: Step, state: RequestState) -> RequestState | Skipped:
        answer = state.answer
        if answer is None:
            return Skipped("no generation step before it answered")
        if answer.tidy is None:
            return Skipped("a post_process step before it tidied the answer")
        rest = answer.tidy.finish()
        if rest is not None:
            self.ctx.emit(rest)
        return replace(state, answer=replace(answer, text=answer.tidy.text, tidy=None))

    def publish_prompt(self, state: RequestState) -> None:
        """Send the UE the prompt its answer will be generated from."""
        ctx, prompt = self.ctx, state.prompt
        tokens = len(ctx.prompt_ids(prompt.text))
        self.published = PublishedPrompt(prompt_tokens=tokens, at_ms=ctx.clock.ms())
        log.info("edge.personalised", cell_id=ctx.request.ran.cell_id, facts=len(prompt.facts), prompt_tokens=tokens,
                 personalise_ms=round(self.published.at_ms, 1))
        ctx.emit(PromptBuilt(text=prompt.text, facts=prompt.facts, prompt_tokens=tokens,
                             edge_node_id=ctx.services.node_id))
