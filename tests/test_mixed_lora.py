"""Several adapters in one step (two stacked matmuls per projection) = each row through its own adapter."""

from __future__ import annotations

import torch

from cloud_node.lora_weights import LoraPair, LoraWeights
from cloud_node.mixed_lora import GroupLora, StackCache, StepLora, step_lora

IN, OUT = 16, 12


def _adapter(name: str, rank: int, scaling: float, projections: tuple[str, ...], seed: int) -> LoraWeights:
    generator = torch.Generator().manual_seed(seed)
    return LoraWeights(name, {(0, p): LoraPair(torch.randn(rank, IN, generator=generator),
                                               torch.randn(OUT, rank, generator=generator), scaling)
                              for p in projections})


def test_rows_get_their_own_adapter_with_its_rank_scaling_and_projections() -> None:
    a = _adapter("a", 4, 2.0, ("q_proj", "v_proj"), 1)
    b = _adapter("b", 8, 0.5, ("q_proj",), 2)  # another rank, and no v_proj
    c = _adapter("c", 2, 1.0, ("q_proj", "v_proj"), 3)
    # rows 0-2: a, 3: no adapter, 4-5: b, 6-8: c, 9: a again (a second range of the same adapter)
    groups = [(0, 3, a), (4, 6, b), (6, 9, c), (9, 10, a)]
    x = torch.randn(1, 10, IN, generator=torch.Generator().manual_seed(4))
    base = torch.randn(1, 10, OUT, generator=torch.Generator().manual_seed(5))
    mixed = step_lora(groups, 10, torch.device("cpu"), StackCache())
    assert isinstance(mixed, StepLora)
    for projection in ("q_proj", "v_proj", "o_proj"):
        expected, got = base.clone(), base.clone()
        GroupLora(groups).add(expected, x, 0, projection)
        mixed.add(got, x, 0, projection)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        assert torch.equal(got[0, 3], base[0, 3])  # the row without an adapter is untouched
    assert not torch.equal(base, _added(groups, x, base, "q_proj"))  # the adapters do change the rows


def _added(groups: list[tuple[int, int, LoraWeights]], x: torch.Tensor, base: torch.Tensor, name: str) -> torch.Tensor:
    y = base.clone()
    GroupLora(groups).add(y, x, 0, name)
    return y


def test_one_adapter_keeps_the_per_group_path_and_stacks_are_reused_per_adapter_set() -> None:
    a, b = _adapter("a", 4, 1.0, ("q_proj",), 1), _adapter("b", 4, 1.0, ("q_proj",), 2)
    assert isinstance(step_lora([(0, 2, a), (2, 3, a)], 3, torch.device("cpu"), StackCache()), GroupLora)
    cache = StackCache()
    first = cache.stacks((a, b))
    assert cache.stacks((a, b)) is first and cache.stacks((b, a)) is not first
    for n in range(5):  # older sets are evicted: their adapters are not held forever
        cache.stacks(tuple(_adapter(f"x{n}", 2, 1.0, ("q_proj",), n) for _ in range(2)))
    assert cache.stacks((a, b)) is not first
