"""A :class:`~netgpt.generation.DecodeSession` over any transformers causal LM."""

from __future__ import annotations

import numpy as np
import torch
from transformers import DynamicCache, PreTrainedModel


class TorchDecodeSession:
    def __init__(self, model: PreTrainedModel, device: torch.device) -> None:
        self._model = model
        self._device = device
        self._cache: DynamicCache | None = None

    @torch.inference_mode()
    def _forward(self, ids: list[int]) -> np.ndarray:
        input_ids = torch.tensor([ids], dtype=torch.long, device=self._device)
        if self._cache is None:
            self._cache = DynamicCache(config=self._model.config)
        out = self._model(input_ids=input_ids, past_key_values=self._cache, use_cache=True)
        logits: np.ndarray = out.logits[0, -1].float().cpu().numpy()
        return logits

    def prefill(self, input_ids: list[int]) -> np.ndarray:
        self._cache = None
        return self._forward(input_ids)

    def advance(self, token_id: int) -> np.ndarray:
        return self._forward([token_id])
