"""Several LoRA adapters in one packed step: two matmuls per projection, whatever the number of adapters.

Every adapter's ``A`` is stacked along the rank into one ``(Σr, in)`` matrix and every ``B``
side by side into one ``(out, Σr)``. A step computes ``x·A_allᵀ`` for all its rows at once,
zeroes the columns of the adapters a row does not use, multiplies by ``B_allᵀ`` and scales each
row by its adapter's ``scaling`` — peft's unmerged ``B(A(x)) * scaling`` for every row, with
exact zeros from the other adapters' columns. It costs Σr columns per row instead of r, small
next to the base projection, and replaces a loop of slice, two matmuls, scale and add per
adapter, each a kernel of its own (and on CPU a parallel region of its own). Rows without an
adapter add exact zeros.

Stacks are cached per set of adapters (a few sets; a set holds its adapters' matrices alive
until it is evicted).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cloud_node.lora_weights import LoraWeights

_CACHED_SETS = 4  # adapter sets whose stacks are kept between steps


@dataclass(frozen=True)
class _Stack:
    a: torch.Tensor  # (Σr, in)
    b: torch.Tensor  # (out, Σr)
    layout: tuple[tuple[int, int, float], ...]  # per stacked adapter: (its slot in the step's set, rank, scaling)


class StackCache:
    """Stacked matrices per (adapter set, layer, projection); ``None`` where no adapter of the set adapts it."""

    def __init__(self) -> None:
        self._sets: OrderedDict[tuple[LoraWeights, ...], dict[tuple[int, str], _Stack | None]] = OrderedDict()

    def stacks(self, adapters: tuple[LoraWeights, ...]) -> dict[tuple[int, str], _Stack | None]:
        found = self._sets.get(adapters)
        if found is None:
            found = self._sets[adapters] = {}
            while len(self._sets) > _CACHED_SETS:
                self._sets.popitem(last=False)
        else:
            self._sets.move_to_end(adapters)
        return found


class StepLora:
    """The LoRA of one packed step whose rows use two or more adapters."""

    def __init__(self, groups: Sequence[tuple[int, int, LoraWeights]], total: int, device: torch.device,
                 cache: StackCache) -> None:
        adapters: list[LoraWeights] = []
        slots = torch.full((total,), -1, dtype=torch.long)
        for start, end, lora in groups:
            if lora not in adapters:
                adapters.append(lora)
            slots[start:end] = adapters.index(lora)
        self.adapters = tuple(adapters)
        self.row_slots = slots.to(device)
        self._stacks = cache.stacks(self.adapters)
        self._masks: dict[tuple[tuple[int, int, float], ...], tuple[torch.Tensor, torch.Tensor]] = {}

    def add(self, y: torch.Tensor, x: torch.Tensor, layer: int, name: str) -> None:
        """``y += Σ_adapter rows' B(A(x)) * scaling`` for projection ``name`` of ``layer``, in place."""
        key = (layer, name)
        if key not in self._stacks:
            self._stacks[key] = self._stack(layer, name)
        stack = self._stacks[key]
        if stack is None:
            return
        mask, scale = self._mask(stack)
        rows = x.to(stack.a.dtype)
        y += F.linear(F.linear(rows, stack.a) * mask, stack.b) * scale

    def _stack(self, layer: int, name: str) -> _Stack | None:
        pairs = [(slot, lora.pairs[(layer, name)]) for slot, lora in enumerate(self.adapters)
                 if (layer, name) in lora.pairs]
        if not pairs:
            return None
        return _Stack(torch.cat([p.a for _, p in pairs]), torch.cat([p.b for _, p in pairs], dim=1),
                      tuple((slot, p.a.shape[0], p.scaling) for slot, p in pairs))

    def _mask(self, stack: _Stack) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, Σr) 0/1: the columns of each row's own adapter; (rows, 1): that adapter's scaling (0: none)."""
        found = self._masks.get(stack.layout)
        if found is None:
            device, dtype = stack.a.device, stack.a.dtype
            columns = torch.tensor([slot for slot, rank, _ in stack.layout for _ in range(rank)], device=device)
            by_slot = [0.0] * (len(self.adapters) + 1)  # the last entry: rows without an adapter (slot -1)
            for slot, _, scaling in stack.layout:
                by_slot[slot] = scaling
            mask = (self.row_slots.unsqueeze(1) == columns.unsqueeze(0)).to(dtype)
            scale = torch.tensor(by_slot, device=device, dtype=dtype)[self.row_slots].unsqueeze(1)
            found = self._masks[stack.layout] = (mask, scale)
        return found


class GroupLora:
    """The LoRA of a step whose adapted rows all use one adapter (or none): its rows' own matmuls."""

    def __init__(self, groups: Sequence[tuple[int, int, LoraWeights]]) -> None:
        self.groups = groups

    def add(self, y: torch.Tensor, x: torch.Tensor, layer: int, name: str) -> None:
        for start, end, lora in self.groups:
            pair = lora.pairs.get((layer, name))
            if pair is not None:
                rows = x[:, start:end].to(pair.a.dtype)
                y[:, start:end] += F.linear(F.linear(rows, pair.a), pair.b) * pair.scaling


def step_lora(groups: Sequence[tuple[int, int, LoraWeights]], total: int, device: torch.device,
              cache: StackCache) -> GroupLora | StepLora:
    """How a step of ``total`` rows applies its adapters (``groups``: row ranges per adapter)."""
    if len({id(lora) for _, _, lora in groups}) > 1:
        return StepLora(groups, total, device, cache)
    return GroupLora(groups)
