"""Generation on this node's own model, shared by the edge and cloud user planes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

from netgpt.engine import LanguageModel
from netgpt.generation import SamplingParams
from netgpt.timing import Stopwatch
from netgpt.v1 import user_plane_pb2 as up_pb2
from up.convert import Answer, token_event
from up.limits import check_fits
from up.runner import GenerationRunner


def encode_prompt(model: LanguageModel, prompt: str, max_new_tokens: int, where: str) -> list[int]:
    """Token ids for ``prompt``, or InvalidArgument when prompt + generation exceed the context."""
    ids = model.tokenizer.encode(prompt, add_special_tokens=False)
    check_fits(len(ids), max_new_tokens, model.max_context, where)
    return ids


async def stream_answer(
    runner: GenerationRunner,
    model: LanguageModel,
    prompt_ids: list[int],
    params: SamplingParams,
    source: int,
    answer: Answer,
    clock: Stopwatch,
) -> AsyncIterator[up_pb2.GenerateResponse]:
    """Yield one TokenChunk per token, filling ``answer`` (and its first-token time) as it goes."""
    answer.max_new_tokens = params.max_new_tokens
    async with aclosing(runner.stream(model, prompt_ids, params)) as pieces:
        async for piece in pieces:
            if not answer.token_ids:
                answer.first_token_ms = clock.ms()
            answer.add(piece)
            yield token_event(piece, source)
