"""A real model made slower and EOS-free: stands in for a slower accelerator so tests can act
mid-stream (cancel, kill, overload) deterministically. Everything else is the real engine.

Its ``gate`` holds every decode step while closed, so a test can keep a request in flight
for as long as it needs (e.g. across a hot swap) without relying on timing.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from netgpt.engine import LanguageModel
from netgpt.generation import DecodeSession


class Gate:
    """Open by default; while closed, decode steps wait (and are counted in ``waiting``)."""

    def __init__(self) -> None:
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self.waiting = 0

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    def pass_through(self) -> None:
        if self._open.is_set():
            return
        with self._lock:
            self.waiting += 1
        self._open.wait()
        with self._lock:
            self.waiting -= 1


class SlowSession:
    def __init__(self, inner: DecodeSession, delay_s: float, eos: int | None, gate: Gate) -> None:
        self._inner, self._delay_s, self._eos, self._gate = inner, delay_s, eos, gate

    def prefill(self, input_ids: list[int]) -> np.ndarray:
        self._step()
        return self._mask(self._inner.prefill(input_ids))

    def advance(self, token_id: int) -> np.ndarray:
        self._step()
        return self._mask(self._inner.advance(token_id))

    def _step(self) -> None:
        self._gate.pass_through()
        time.sleep(self._delay_s)

    def _mask(self, logits: np.ndarray) -> np.ndarray:
        if self._eos is not None:
            logits = logits.copy()
            logits[self._eos] = -np.inf
        return logits


class SlowModel:
    def __init__(self, model: LanguageModel, delay_s: float = 0.02) -> None:
        self._model = model
        self.delay_s = delay_s
        self.identity = model.identity
        self.tokenizer = model.tokenizer
        self.max_context = model.max_context
        self.device = getattr(model, "device", "cpu")
        self.dtype = getattr(model, "dtype", "float32")
        self.provider = getattr(model, "provider", "cpu")
        self.gate = Gate()

    def new_session(self) -> DecodeSession:
        return SlowSession(self._model.new_session(), self.delay_s, self.tokenizer.eos_token_id, self.gate)
