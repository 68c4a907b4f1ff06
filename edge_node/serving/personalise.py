"""Concise prompt → comprehensive prompt: location facts from the knowledge base, the user's
stated preferences from their edge-held profile, and the edge GPT-2's own reading of what
the user wants (the NetGPT "personalisation" step). Nothing else of the profile (id,
history) goes into the prompt, so nothing else can reach the cloud.

The reading costs a prefill and up to ``intent_tokens`` decode steps before anything else of the
request can start (246-359 ms of a full-size edge's first token, issue 29). When the knowledge base
decides (one venue matched, nothing else near it: :attr:`Retrieval.decisive`), the prompt lists that
venue alone and the model's reading would add nothing a reader of the prompt lacks, so the line is left
empty instead (``intent_from = "knowledge"``, the default): the prompt the edge GPT-2 and the cloud's
adapter saw without an intent in 15 % of their training answers (``NO_INTENT_SHARE``). A line written from
the venue ("The user wants Harbour Fish Market (restaurant).") was tried on the dev set and lost a question:
the cloud copied it into its answer or echoed the request.

The line is left empty too when the request is known to go to the cloud before it is personalised (the
routing policy decides without probing the edge model, as by default): on the development set the cloud's
adapter answered 29 of 34 questions with the edge's lines and 29 of 34 with none (`netgpt eval prompt
--questions dev --edge-intent none`), so the reading only delayed the cloud call. ``cloud_intent = true``
reads it for those requests as well."""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import dataclass

import structlog

from edge_node.serving.knowledge import KnowledgeBase, Retrieval
from edge_node.serving.profiles import ProfileStore
from edge_node.serving.prompt_format import MAX_FACTS, answer_prompt, context_block, intent_prompt
from netgpt.engine import LanguageModel
from netgpt.errors import StartupError
from netgpt.generation import SamplingParams
from up.local import encode_prompt
from up.runner import GenerationRunner

log = structlog.get_logger(__name__)
INTENT_SOURCES = ("knowledge", "model")  # EdgeConfig.intent_from


@dataclass(frozen=True)
class Personalised:
    text: str
    facts: list[str]  # the knowledge-base facts the text includes
    intent_from: str = "model"  # knowledge | model | none (intent_tokens = 0) | cloud-route


class Personaliser:
    def __init__(self, knowledge: KnowledgeBase, profiles: ProfileStore, runner: GenerationRunner,
                 intent_tokens: int = 12, max_facts: int = MAX_FACTS, intent_from: str = "knowledge",
                 cloud_intent: bool = False) -> None:
        if intent_from not in INTENT_SOURCES:
            raise StartupError(f"intent_from must be one of {', '.join(INTENT_SOURCES)}, got {intent_from!r}")
        self.knowledge = knowledge
        self.profiles = profiles
        self.runner = runner
        self.intent_tokens = intent_tokens
        self.max_facts = max_facts
        self.intent_from = intent_from
        self.cloud_intent = cloud_intent

    async def build(self, concise: str, cell_id: str, user_id: str, answer_tokens: int,
                    model: LanguageModel, to_cloud: bool | None = None) -> Personalised:
        """``answer_tokens``: what the answer will need, so an oversized prompt fails before any work;
        ``model``: the edge model the request pinned; ``to_cloud``: where the request will be answered, when
        that is known already (True: the intent line is left empty unless ``cloud_intent``)."""
        area = self.knowledge.area(cell_id)
        found = self.knowledge.retrieve(cell_id, concise, self.max_facts)
        facts = [venue.as_fact() for venue in found.venues]
        profile = self.profiles.find(user_id) if user_id else None
        preferences = profile.preferences if profile else []
        block = context_block(concise, cell_id, area, facts, preferences)
        ids = encode_prompt(model, intent_prompt(block), self.intent_tokens + answer_tokens,
                            "with local context, the")
        source = self._source(found, to_cloud)
        intent = await self._intent(model, ids) if source == "model" else ""
        log.debug("edge.intent", intent_from=source, facts=len(facts))
        text = answer_prompt(block, intent)
        if profile is not None:
            self.profiles.record_prompt(user_id, concise)
        return Personalised(text=text, facts=facts, intent_from=source)

    def _source(self, found: Retrieval, to_cloud: bool | None) -> str:
        """Where this request's intent line comes from: ``knowledge``, ``model``, ``none`` or ``cloud-route``
        (left empty: the request goes to the cloud, whose reader does as well without it)."""
        if not self.intent_tokens:
            return "none"
        if to_cloud and not self.cloud_intent:
            return "cloud-route"
        return "knowledge" if self.intent_from == "knowledge" and found.decisive else "model"

    async def _intent(self, model: LanguageModel, ids: list[int]) -> str:
        """A short greedy continuation of "The user wants" from the edge model."""
        params = SamplingParams(max_new_tokens=self.intent_tokens)
        pieces: list[str] = []
        async with aclosing(self.runner.stream(model, ids, params)) as stream:
            async for piece in stream:
                if "\n" in piece.text:
                    pieces.append(piece.text.split("\n", 1)[0])
                    break
                pieces.append(piece.text)
        return "".join(pieces).rstrip()
