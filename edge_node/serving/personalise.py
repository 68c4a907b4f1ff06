"""Concise prompt → comprehensive prompt: location facts from the knowledge base, the user's
stated preferences from their edge-held profile, and the edge GPT-2's own reading of what
the user wants (the NetGPT "personalisation" step). Nothing else of the profile (id,
history) goes into the prompt, so nothing else can reach the cloud."""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import dataclass

from edge_node.serving.knowledge import KnowledgeBase
from edge_node.serving.profiles import ProfileStore
from edge_node.serving.prompt_format import MAX_FACTS, answer_prompt, context_block, intent_prompt
from netgpt.engine import LanguageModel
from netgpt.generation import SamplingParams
from up.local import encode_prompt
from up.runner import GenerationRunner


@dataclass(frozen=True)
class Personalised:
    text: str
    facts: list[str]  # the knowledge-base facts the text includes


class Personaliser:
    def __init__(self, knowledge: KnowledgeBase, profiles: ProfileStore, runner: GenerationRunner,
                 intent_tokens: int = 12, max_facts: int = MAX_FACTS) -> None:
        self.knowledge = knowledge
        self.profiles = profiles
        self.runner = runner
        self.intent_tokens = intent_tokens
        self.max_facts = max_facts

    async def build(self, concise: str, cell_id: str, user_id: str, answer_tokens: int,
                    model: LanguageModel) -> Personalised:
        """``answer_tokens``: what the answer will need, so an oversized prompt fails before any work;
        ``model``: the edge model the request pinned."""
        area = self.knowledge.area(cell_id)
        facts = self.knowledge.facts_for(cell_id, concise, self.max_facts)
        profile = self.profiles.find(user_id) if user_id else None
        preferences = profile.preferences if profile else []
        block = context_block(concise, cell_id, area, facts, preferences)
        ids = encode_prompt(model, intent_prompt(block), self.intent_tokens + answer_tokens,
                            "with local context, the")
        intent = await self._intent(model, ids) if self.intent_tokens else ""
        text = answer_prompt(block, intent)
        if profile is not None:
            self.profiles.record_prompt(user_id, concise)
        return Personalised(text=text, facts=facts)

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
