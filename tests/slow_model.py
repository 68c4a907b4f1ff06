"""A real model made slower and EOS-free: stands in for a slower accelerator so tests can act
mid-stream (cancel, kill, overload) deterministically. Everything else is the real engine."""

from __future__ import annotations

import time

import numpy as np

from netgpt.engine import LanguageModel
from netgpt.generation import DecodeSession


class SlowSession:
    def __init__(self, inner: DecodeSession, delay_s: float, eos: int | None) -> None:
        self._inner, self._delay_s, self._eos = inner, delay_s, eos

    def prefill(self, input_ids: list[int]) -> np.ndarray:
        time.sleep(self._delay_s)
        return self._mask(self._inner.prefill(input_ids))

    def advance(self, token_id: int) -> np.ndarray:
        time.sleep(self._delay_s)
        return self._mask(self._inner.advance(token_id))

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

    def new_session(self) -> DecodeSession:
        return SlowSession(self._model.new_session(), self.delay_s, self.tokenizer.eos_token_id)
