"""Tokenised examples → padded batches with completion-only labels, in a seeded, resumable order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from netgpt.training.dataset import Example, TextEncoder, example_ids

IGNORE_INDEX = -100  # label value torch's cross-entropy skips


@dataclass(frozen=True)
class Tokenised:
    ids: list[int]
    labels: list[int]  # IGNORE_INDEX over the prompt, the token ids over completion + EOS

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def tokenise(examples: Sequence[Example], tokenizer: TextEncoder, eos_id: int) -> list[Tokenised]:
    out = []
    for example in examples:
        prompt, completion = example_ids(example, tokenizer)
        completion = [*completion, eos_id]
        out.append(Tokenised(prompt + completion, [IGNORE_INDEX] * len(prompt) + completion))
    return out


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    @property
    def tokens(self) -> int:
        """Real (not padding) tokens the forward pass processed."""
        return int(self.attention_mask.sum())


def collate(items: Sequence[Tokenised], pad_id: int) -> Batch:
    """Right-padded to the longest item: padding is masked out of attention and of the loss."""
    width = max(len(item.ids) for item in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item.ids)
        ids[row, :n] = torch.tensor(item.ids)
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(item.labels)
    return Batch(ids, mask, labels)


def epoch_order(size: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of one epoch: a function of (seed, epoch) only, so a resumed run sees the
    same order as an uninterrupted one."""
    return np.random.default_rng([seed, epoch]).permutation(size)


def batch_indices(size: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Indices of the examples of training step ``step`` (0-based): consecutive slices of an endless
    sequence of per-epoch permutations; a batch may straddle two epochs."""
    start = step * batch_size
    out: list[int] = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), size)
        order = epoch_order(size, seed, epoch)
        out.extend(int(i) for i in order[offset: offset + batch_size - len(out)])
    return out


def split_eval(items: list[Tokenised], fraction: float, seed: int) -> tuple[list[Tokenised], list[Tokenised]]:
    """(train, eval): a seeded random ``fraction`` held out for evaluation (at least one row when > 0)."""
    if fraction <= 0 or len(items) < 2:
        return items, []
    count = min(len(items) - 1, max(1, round(len(items) * fraction)))
    order = np.random.default_rng([seed, 7919]).permutation(len(items))
    held = set(int(i) for i in order[:count])
    return ([item for i, item in enumerate(items) if i not in held],
            [item for i, item in enumerate(items) if i in held])
