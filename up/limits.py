"""Request limits and the request → SamplingParams conversion, with errors that name the limit."""

from __future__ import annotations

from dataclasses import dataclass

from netgpt.errors import InvalidArgument
from netgpt.generation import SamplingParams
from netgpt.v1 import user_plane_pb2 as up_pb2

MAX_TEMPERATURE = 5.0


@dataclass(frozen=True)
class Limits:
    max_prompt_chars: int = 2000
    max_new_tokens: int = 256  # hard cap a request may ask for
    default_new_tokens: int = 48  # used when the request says 0


def check_prompt(prompt: str, limits: Limits) -> str:
    """Return the stripped prompt, or raise InvalidArgument naming the violated limit."""
    text = prompt.strip()
    if not text:
        raise InvalidArgument("prompt is empty; send at least one non-space character")
    if len(prompt) > limits.max_prompt_chars:
        raise InvalidArgument(
            f"prompt is {len(prompt)} characters; the limit is max_prompt_chars={limits.max_prompt_chars}"
        )
    return text


def sampling_params(params: up_pb2.GenerationParams, limits: Limits) -> SamplingParams:
    if params.max_new_tokens > limits.max_new_tokens:
        raise InvalidArgument(
            f"params.max_new_tokens={params.max_new_tokens} exceeds the limit max_new_tokens={limits.max_new_tokens}"
        )
    if not 0.0 <= params.temperature <= MAX_TEMPERATURE:
        raise InvalidArgument(f"params.temperature must be within [0, {MAX_TEMPERATURE}], got {params.temperature}")
    if not 0.0 <= params.top_p <= 1.0:
        raise InvalidArgument(f"params.top_p must be within [0, 1], got {params.top_p}")
    return SamplingParams(
        max_new_tokens=params.max_new_tokens or limits.default_new_tokens,
        temperature=params.temperature,
        top_k=params.top_k,
        top_p=params.top_p if params.top_p > 0 else 1.0,
        seed=params.seed if params.HasField("seed") else None,
    )


def check_fits(prompt_tokens: int, max_new_tokens: int, max_context: int, where: str) -> None:
    """Prompt plus generation must fit the model's context window."""
    if prompt_tokens + max_new_tokens > max_context:
        raise InvalidArgument(
            f"{where} prompt is {prompt_tokens} tokens; with max_new_tokens={max_new_tokens} it exceeds "
            f"the model context of {max_context} tokens"
        )
