"""Generation on this node's own model, shared by the edge and cloud user planes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

from netgpt.chat_format import as_model_prompt
from netgpt.engine import LanguageModel
from netgpt.generation import SamplingParams, StartConstraint
from netgpt.timing import Stopwatch
from netgpt.v1 import common_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from up.events import Tokens
from up.limits import check_fits
from up.runner import GenerationRunner


@dataclass
class Answer:
    """What one generation produced, accumulated while streaming."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    max_new_tokens: int = 0
    first_token_ms: float = 0.0

    @property
    def finish_reason(self) -> up_pb2.FinishReason:
        if self.max_new_tokens and len(self.token_ids) >= self.max_new_tokens:
            return up_pb2.FINISH_REASON_MAX_TOKENS
        return up_pb2.FINISH_REASON_EOS


def encode_prompt(model: LanguageModel, prompt: str, max_new_tokens: int, where: str) -> list[int]:
    """Token ids for ``prompt``, or InvalidArgument when prompt + generation exceed the context."""
    ids = model.tokenizer.encode(as_model_prompt(model.tokenizer, prompt), add_special_tokens=False)
    check_fits(len(ids), max_new_tokens, model.max_context, where)
    return ids


async def stream_answer(runner: GenerationRunner, model: LanguageModel, prompt_ids: list[int],
                        params: SamplingParams, source: common_pb2.NodeRole, answer: Answer,
                        clock: Stopwatch, start: StartConstraint | None = None) -> AsyncIterator[Tokens]:
    """Yield one Tokens event per token, filling ``answer`` (and its first-token time) as it goes (``start``:
    what the first tokens spell)."""
    answer.max_new_tokens = params.max_new_tokens
    async with aclosing(runner.stream(model, prompt_ids, params, start=start)) as pieces:
        async for piece in pieces:
            if not answer.token_ids:
                answer.first_token_ms = clock.ms()
            answer.text += piece.text
            answer.token_ids.append(piece.token_id)
            yield Tokens(text=piece.text, token_ids=(piece.token_id,), source=source)
