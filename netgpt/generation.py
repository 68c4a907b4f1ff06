"""Backend-neutral token generation.

Edge (ONNX Runtime) and cloud (torch) engines only implement :class:`DecodeSession`
— "prefill these ids, then feed one token at a time, give me last-position logits".
Sampling, stop conditions, cancellation and incremental detokenisation live here,
once, so both planes behave identically.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
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


class StartConstraint:
    """The first tokens spell one of ``starts`` (token-id sequences): at each step only a token that keeps some
    start possible is picked (the likeliest of them when greedy); once one start is complete, or none can be
    continued, the rest is free. The edge begins its answers with the name of a venue its prompt lists this way
    (``edge_node.serving.answer_start``), so it never runs two names together or names one that is not listed."""

    def __init__(self, starts: Sequence[Sequence[int]]) -> None:
        self._starts = {tuple(start) for start in starts if start}
        self._written: tuple[int, ...] = ()
        self.active = bool(self._starts)

    def allowed(self) -> set[int]:
        """The tokens that keep a start possible (empty once the constraint is over)."""
        if not self.active:
            return set()
        n = len(self._written)
        return {start[n] for start in self._starts if len(start) > n and start[:n] == self._written}

    def push(self, token: int) -> None:
        if self.active:
            self._written += (token,)
            self.active = self._written not in self._starts and bool(self.allowed())

    def mask(self, logits: np.ndarray) -> np.ndarray:
        """``logits`` with every token the constraint rules out at -inf (as they are when it is over)."""
        allowed = self.allowed()
        if not allowed:
            return logits
        masked = np.full_like(logits, -np.inf)
        index = np.fromiter(allowed, dtype=np.int64)
        masked[index] = logits[index]
        return masked


class TokenPicker:
    """One request's sampling and stop conditions, fed one logits vector at a time.

    The single-sequence loop (:func:`generate_tokens`) and the cloud's batch scheduler both
    pick through it, so a request samples and stops the same way however it is run.
    """

    def __init__(self, tokenizer: Tokenizer, params: SamplingParams, start: StartConstraint | None = None) -> None:
        self._params = params
        self._start = start
        self._rng = np.random.default_rng(params.seed)
        self._decoder = IncrementalDecoder(tokenizer)
        self._eos = tokenizer.eos_token_id
        self.produced = 0

    @property
    def done(self) -> bool:
        """``max_new_tokens`` reached: no further forward pass is needed."""
        return self.produced >= self._params.max_new_tokens

    def pick(self, logits: np.ndarray) -> TokenPiece | None:
        """The next token, or None when the model chose EOS (the request is finished)."""
        token = choose_token(self._start.mask(logits) if self._start is not None else logits, self._params, self._rng)
        logprob = float(log_softmax(logits)[token])  # the model's own, before any constraint
        if self._start is not None:
            self._start.push(token)
        if self._eos is not None and token == self._eos:
            return None
        self.produced += 1
        return TokenPiece(token_id=token, text=self._decoder.push(token), logprob=logprob)


def generate_tokens(
    session: DecodeSession,
    tokenizer: Tokenizer,
    prompt_ids: list[int],
    params: SamplingParams,
    cancel: threading.Event | None = None,
    start: StartConstraint | None = None,
) -> Iterator[TokenPiece]:
    """Yield tokens until EOS, ``max_new_tokens`` or ``cancel`` is set (``start``: what the first ones spell).

    Cancellation is checked before every forward pass so an abandoned request
    stops consuming compute within one token.
    """
    if not prompt_ids:
        raise ValueError("prompt encodes to zero tokens")
    picker = TokenPicker(tokenizer, params, start)
    _check(cancel)
    logits = session.prefill(prompt_ids)
    while not picker.done:
        piece = picker.pick(logits)
        if piece is None:
            return
        yield piece
        if picker.done:
            return
        _check(cancel)
        logits = session.advance(piece.token_id)


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise GenerationCancelled()
