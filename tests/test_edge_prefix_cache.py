"""Prefix reuse at the edge (``prefix_cache_mb``): prompts that share a beginning prefill only the rest, with
the same logits as a one-pass prefill (float32, GPT-2 and LLaMA, alone and batched); an int8 graph gives a
request the same tokens whatever earlier requests left in the cache; the budget holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_node.model.architecture import read_edge_config
from edge_node.model.onnx_export import ensure_onnx_export
from edge_node.model.ort_engine import OrtGpt2Model, create_session
from edge_node.model.prefix_cache import EdgePrefixCache
from edge_node.model.quantize import quantize_onnx
from netgpt.generation import SamplingParams, generate_tokens
from netgpt.tiny_models import TinyModels

TOL = 1e-4
PREAMBLE = list(range(3, 43))  # 40 tokens: two whole blocks of 16 shared by every prompt below
PROMPTS = [PREAMBLE + [50, 51, 52], PREAMBLE + [60, 61], PREAMBLE + [50, 51, 52, 53, 54], PREAMBLE[:33]]


def _model(folder: Path, prefix_cache_mb: float, max_batch: int) -> OrtGpt2Model:
    return OrtGpt2Model.load(folder, providers="cpu", max_batch=max_batch, prefix_cache_mb=prefix_cache_mb)


def _greedy(model: OrtGpt2Model, ids: list[int], tokens: int = 8) -> list[int]:
    return [p.token_id for p in generate_tokens(model.new_session(), model.tokenizer, ids,
                                                SamplingParams(max_new_tokens=tokens))]


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
@pytest.mark.parametrize("max_batch", [1, 8])
def test_a_shared_beginning_is_prefilled_once_with_the_one_pass_logits(tiny: TinyModels, architecture: str,
                                                                        max_batch: int):
    folder = tiny.gpt2_dir if architecture == "gpt2" else tiny.llama_dir
    plain, reusing = _model(folder, 0, max_batch), _model(folder, 4, max_batch)
    assert plain.prefixes is None and reusing.prefixes is not None
    for ids in PROMPTS:
        one_pass, with_reuse = plain.new_session(), reusing.new_session()
        np.testing.assert_allclose(with_reuse.prefill(ids), one_pass.prefill(ids), rtol=0, atol=TOL)
        for token in (7, 8, 9):  # the cache the session continues from is whole
            np.testing.assert_allclose(with_reuse.advance(token), one_pass.advance(token), rtol=0, atol=TOL)
        assert _greedy(reusing, ids) == _greedy(plain, ids)
    stats = reusing.prefixes.stats
    assert stats.reused_tokens >= 32 * (2 * len(PROMPTS) - 1)  # every prompt but the first found 2 blocks
    assert stats.reused_tokens < stats.prompt_tokens  # and prefilled at least a token of its own


def test_an_int8_graph_gives_a_request_the_same_tokens_cold_and_warm(tiny: TinyModels, tmp_path: Path):
    """int8 scales activations per run: prompts are prefilled a block per run, wherever the cache stops."""
    int8_path = tmp_path / "model.onnx"
    quantize_onnx(ensure_onnx_export(tiny.gpt2_dir), int8_path, "int8")
    fp32 = OrtGpt2Model.load(tiny.gpt2_dir, providers="cpu", max_batch=1)

    def int8_model() -> OrtGpt2Model:
        model = OrtGpt2Model(create_session(int8_path, "cpu"), fp32.tokenizer, fp32.identity,
                             read_edge_config(tiny.gpt2_dir)[0], int8_path, max_batch=1)
        spec = model.spec
        model.prefixes = EdgePrefixCache(spec.n_layer * 2 * spec.kv_heads * spec.head_dim * 4, 4, chunked=True)
        return model

    warm = int8_model()
    cold_logits = {i: warm.new_session().prefill(ids) for i, ids in enumerate(PROMPTS)}  # each finds more cached
    for i, ids in enumerate(PROMPTS):
        fresh = int8_model()  # nothing cached
        np.testing.assert_array_equal(fresh.new_session().prefill(ids), cold_logits[i])
        np.testing.assert_array_equal(warm.new_session().prefill(ids), cold_logits[i])
    assert warm.prefixes is not None and warm.prefixes.stats.reused_tokens > 0


def test_the_cache_stays_within_its_budget_and_keeps_the_newest(tiny: TinyModels):
    spec = OrtGpt2Model.load(tiny.gpt2_dir, providers="cpu").spec
    block_bytes = spec.n_layer * 2 * spec.kv_heads * spec.head_dim * 4 * 16
    model = _model(tiny.gpt2_dir, 6.5 * block_bytes / (1 << 20), 1)  # room for 6 blocks
    assert model.prefixes is not None
    capacity = model.prefixes._trie.capacity
    assert capacity == 6
    for n in range(30):
        model.new_session().prefill([n + 100, *PREAMBLE])  # 30 different beginnings, 2 blocks each
    assert len(model.prefixes) <= capacity and model.prefixes.stats.evicted_blocks > 0
    before = model.prefixes.stats.reused_tokens
    model.new_session().prefill([129, *PREAMBLE, 5])  # the newest beginning is still there
    assert model.prefixes.stats.reused_tokens - before == 32
