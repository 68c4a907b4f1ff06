"""Backend-neutral token generation.

Edge (ONNX Runtime) and cloud (torch) engines only implement :class:`DecodeSession`
— "prefill these ids, then feed one token at a time, give me last-position logits".
Sampling, stop conditions, cancellation and incremental detokenisation live here,
once, so both planes behave identically.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. ``temperature == 0`` (or ``top_k == 1``) means greedy."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0 or self.top_k == 1


@dataclass(frozen=True)
class TokenPiece:
    """One generated token and the text it completed (may be empty mid-codepoint)."""

    token_id: int
    text: str
    logprob: float


class DecodeSession(Protocol):
    """A single-sequence decoder holding its own KV cache."""

    def prefill(self, input_ids: list[int]) -> np.ndarray:
        """Run the prompt; return float32 logits of the last position, shape (vocab,)."""

    def advance(self, token_id: int) -> np.ndarray:
        """Append one token; return the next logits, shape (vocab,)."""


class Tokenizer(Protocol):
    eos_token_id: int | None

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...

    def decode(self, ids: list[int], skip_special_tokens: bool = ...) -> str: ...


class GenerationCancelled(Exception):
    """Raised inside the decode loop when the caller went away (deadline, cancel)."""


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max()
    result: np.ndarray = shifted - np.log(np.exp(shifted).sum())
    return result


def choose_token(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> int:
    """Greedy, or temperature + top-k + nucleus (top-p) sampling over ``logits``."""
    if params.greedy:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / params.temperature
    if params.top_k > 0 and params.top_k < scaled.size:
        kth = np.partition(scaled, -params.top_k)[-params.top_k]
        scaled = np.where(scaled < kth, -np.inf, scaled)
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs)
        cumulative = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cumulative, params.top_p) + 1)]
        mask = np.zeros_like(probs)
        mask[keep] = probs[keep]
        probs = mask / mask.sum()
    return int(rng.choice(probs.size, p=probs))


class IncrementalDecoder:
    """Turns a growing id list into text deltas without splitting UTF-8 sequences."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._emitted = ""

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        text = self._tokenizer.decode(self._ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # incomplete multi-byte character: wait for more
            return ""
        delta = text[len(self._emitted) :]
        self._emitted = text
        return delta


def generate_tokens(
    session: DecodeSession,
    tokenizer: Tokenizer,
    prompt_ids: list[int],
    params: SamplingParams,
    cancel: threading.Event | None = None,
) -> Iterator[TokenPiece]:
    """Yield tokens until EOS, ``max_new_tokens`` or ``cancel`` is set.

    Cancellation is checked before every forward pass so an abandoned request
    stops consuming compute within one token.
    """
    if not prompt_ids:
        raise ValueError("prompt encodes to zero tokens")
    rng = np.random.default_rng(params.seed)
    decoder = IncrementalDecoder(tokenizer)
    eos = tokenizer.eos_token_id
    _check(cancel)
    logits = session.prefill(prompt_ids)
    for produced in range(1, params.max_new_tokens + 1):
        token = choose_token(logits, params, rng)
        logprob = float(log_softmax(logits)[token])
        if eos is not None and token == eos:
            return
        yield TokenPiece(token_id=token, text=decoder.push(token), logprob=logprob)
        if produced == params.max_new_tokens:
            return
        _check(cancel)
        logits = session.advance(token)


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise GenerationCancelled()
