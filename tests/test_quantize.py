"""Quantised edge GPT-2: int8/int4 graphs of the trained starter model pass the quality gate and
serve; a graph that loses quality is refused with its figures and never cached."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import edge_node.model.quantize as quantize
from cmp.archive import unpack
from edge_node.daemon import load_edge_model
from edge_node.model.architecture import read_edge_config
from edge_node.model.artifact import build_edge_artifact
from edge_node.model.onnx_export import ensure_onnx_export
from edge_node.model.ort_engine import OrtGpt2Model
from edge_node.model.quality_gate import GATE_QUESTIONS
from edge_node.model.quantize import (
    MAX_PERPLEXITY_INCREASE,
    MIN_GREEDY_AGREEMENT,
    QualityGateFailed,
    QualityReport,
    Scores,
    check_gate,
    ensure_quantized_export,
    full_logits,
    matmul_weights_graph,
    open_cpu_session,
)
from netgpt.config import EdgeConfig
from netgpt.engine import ModelLoadError
from netgpt.generation import SamplingParams, generate_tokens
from tasks.prompt_completion.heldout import HELD_OUT
from tasks.prompt_completion.synth import real_cells
from tasks.prompt_completion.templates import all_phrasings

STARTER = Path(__file__).resolve().parent.parent / "netgpt" / "assets" / "starter" / "gpt2"
_WORD = re.compile(r"[a-z']+")


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("netgpt-quantize-cache")


def _onnx_dirs(cache_root: Path) -> set[str]:
    return {p.name for p in (cache_root / "onnx").iterdir()} if (cache_root / "onnx").is_dir() else set()


@pytest.mark.parametrize("quantization", ["int8", "int4"])
def test_starter_quantized_passes_the_gate_and_serves(cache_root: Path, quantization: str) -> None:
    model = OrtGpt2Model.load(STARTER, cache_root=cache_root, providers="cpu", quantization=quantization)
    assert model.quantization == quantization and model.identity.version.endswith(f"-{quantization}")
    quality = model.quality
    assert quality["texts"] == 2 * len(GATE_QUESTIONS)
    for scope in ("whole_text", "answers"):
        scores = quality[scope]
        assert scores["positions"] > 100
        assert scores["perplexity_increase"] <= MAX_PERPLEXITY_INCREASE
        assert scores["greedy_agreement"] >= MIN_GREEDY_AGREEMENT
    graph = onnx.load(str(model.onnx_path), load_external_data=False)
    ops = {node.op_type for node in graph.graph.node}
    assert ("DynamicQuantizeLinear" in ops or "MatMulInteger" in ops) if quantization == "int8" \
        else "MatMulNBits" in ops
    prompt = "Location: Harbour (cell cell-harbour-1).\nUser request: fish?\nIntent: The user wants"
    ids = model.tokenizer.encode(prompt, add_special_tokens=False)
    pieces = list(generate_tokens(model.new_session(), model.tokenizer, ids, SamplingParams(max_new_tokens=8)))
    assert pieces and all(np.isfinite(p.logprob) for p in pieces)


def test_cached_quantized_export_is_reused(cache_root: Path) -> None:
    first = ensure_quantized_export(STARTER, "int8", cache_root)
    stamp = first.stat().st_mtime_ns
    assert ensure_quantized_export(STARTER, "int8", cache_root) == first and first.stat().st_mtime_ns == stamp


def test_matmul_rewrite_keeps_the_logits(cache_root: Path, tmp_path: Path) -> None:
    fp32 = ensure_onnx_export(STARTER, cache_root)
    model = onnx.load(str(fp32))
    weights = matmul_weights_graph(model)
    _, spec = read_edge_config(STARTER)
    assert len(weights) == 4 * spec.n_layer + 1  # qkv, attn out, mlp in, mlp out per layer + LM head
    assert not {n.op_type for n in model.graph.node} & {"Gemm"}
    onnx.save(model, str(tmp_path / "rewritten.onnx"))
    ids = list(range(3, 40))
    before = full_logits(open_cpu_session(fp32), ids, spec)
    after = full_logits(open_cpu_session(tmp_path / "rewritten.onnx"), ids, spec)
    assert float(np.abs(before - after).max()) < 1e-4


def _damaging_quantizer(fp32_path: Path, out_path: Path, quantization: str) -> None:
    """A 'quantiser' that wrecks the weights (noise as large as the weights), to fail the gate."""
    model = onnx.load(str(fp32_path))
    rng = np.random.default_rng(0)
    for index, init in enumerate(model.graph.initializer):
        weight = numpy_helper.to_array(init)
        if weight.ndim == 2 and "wpe" not in init.name:
            noisy = weight + rng.normal(0, float(weight.std()) * 2, weight.shape).astype(weight.dtype)
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(noisy, init.name))
    onnx.save(model, str(out_path))


def test_a_model_failing_the_gate_is_refused_with_its_figures_and_not_cached(
        cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_onnx_export(STARTER, cache_root)
    before = _onnx_dirs(cache_root)
    monkeypatch.setattr(quantize, "quantize_onnx", _damaging_quantizer)
    monkeypatch.setattr(quantize, "QUANTIZE_FORMAT_VERSION", 999)  # a cache key of its own
    with pytest.raises(QualityGateFailed) as err:
        OrtGpt2Model.load(STARTER, cache_root=cache_root, providers="cpu", quantization="int8")
    message = str(err.value)
    assert "int8 model fails the quality gate" in message and "perplexity" in message and "vs fp32" in message
    assert "not produced" in message and "\n" not in message
    assert _onnx_dirs(cache_root) == before  # nothing cached, no staging left behind


def test_tampered_cached_figures_are_rechecked(cache_root: Path) -> None:
    path = ensure_quantized_export(STARTER, "int4", cache_root)
    meta_path = path.parent / "export.json"
    original = meta_path.read_text()
    meta = json.loads(original)
    meta["quality"]["answers"]["greedy_agreement"] = 0.5
    meta_path.write_text(json.dumps(meta))
    try:
        with pytest.raises(QualityGateFailed, match=r"answers: greedy tokens agree on 50.0% of"):
            ensure_quantized_export(STARTER, "int4", cache_root)
    finally:
        meta_path.write_text(original)


def test_gate_thresholds() -> None:
    good = Scores(100, 10.0, 10.4, 0.95)
    check_gate(QualityReport("int8", 4, good, good))
    worse = Scores(100, 10.0, 10.6, 0.95)
    with pytest.raises(QualityGateFailed, match=r"whole text: perplexity 10.6 vs fp32 10 \(\+6.0% > \+5%\)"):
        check_gate(QualityReport("int8", 4, worse, good))
    disagree = Scores(100, 10.0, 10.0, 0.89)
    with pytest.raises(QualityGateFailed, match=r"answers: greedy tokens agree on 89.0% of 100 positions"):
        check_gate(QualityReport("int4", 4, good, disagree))


def test_unknown_quantization_is_a_load_error(cache_root: Path) -> None:
    with pytest.raises(ModelLoadError, match="unknown quantization 'int3'; expected one of fp32, int8, int4"):
        OrtGpt2Model.load(STARTER, cache_root=cache_root, providers="cpu", quantization="int3")


def _grams(text: str, n: int = 4) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_gate_questions_are_held_out() -> None:
    """Phrasings of their own: no word 4-gram shared with the training templates or the evaluation set."""
    cells = real_cells()
    names = [v.name for _, venues in cells.values() for v in venues]
    seen: set[tuple[str, ...]] = set()
    for text in all_phrasings(names):
        seen |= _grams(text)
    for q in HELD_OUT:
        seen |= _grams(q.question)
    assert {cell for cell, _ in GATE_QUESTIONS} == set(cells)
    for _, question in GATE_QUESTIONS:
        assert not _grams(question) & seen, question


def test_edge_config_selects_the_quantized_graph() -> None:
    """The ``quantization`` and ``max_batch`` settings reach the model the edge daemon serves."""
    model = load_edge_model(EdgeConfig(model=str(STARTER), providers="cpu", quantization="int4", max_batch=3))
    assert model.quantization == "int4" and model.quality["quantization"] == "int4"
    assert model.batcher is not None and model.batcher.max_batch == 3
    int8 = load_edge_model(EdgeConfig(model=str(STARTER), providers="cpu", quantization="int8", max_batch=3))
    assert int8.quantization == "int8" and int8.batcher is None  # its rows are not batch-invariant


def test_quantized_edge_artifact_carries_the_gate_figures(cache_root: Path, tmp_path: Path) -> None:
    artifact = build_edge_artifact(STARTER, tmp_path / "edge.tar", cache_root=cache_root, quantization="int4")
    meta = artifact.metadata
    assert meta["quantization"] == "int4" and float(meta["parity_max_abs_diff"]) <= 1e-4  # of the fp32 source
    assert float(meta["gate_answers_greedy_agreement"]) >= MIN_GREEDY_AGREEMENT
    assert float(meta["gate_whole_text_perplexity_increase"]) <= MAX_PERPLEXITY_INCREASE
    served = OrtGpt2Model.load_exported(unpack(artifact.path, tmp_path / "unpacked"), providers="cpu")
    assert served.quantization == "int4" and served.batcher is not None


def test_auto_serves_int8_where_it_passes_the_gate_and_fp32_where_it_fails(
        cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default (``auto``): the starter's int8 graph passes, so the edge serves it; a model whose int8
    graph fails is served in fp32, and the failure is remembered so a restart does not quantise again."""
    auto = EdgeConfig().quantization
    assert auto == "auto"
    assert OrtGpt2Model.load(STARTER, cache_root=cache_root, providers="cpu", quantization=auto).quantization == "int8"
    monkeypatch.setattr(quantize, "quantize_onnx", _damaging_quantizer)
    monkeypatch.setattr(quantize, "QUANTIZE_FORMAT_VERSION", 998)  # a cache key of its own
    assert OrtGpt2Model.load(STARTER, cache_root=cache_root, providers="cpu", quantization=auto).quantization == "fp32"
    remembered = list((cache_root / "onnx").glob("*-int8-q998.gate-failed"))
    assert len(remembered) == 1 and "fails the quality gate" in remembered[0].read_text()
    monkeypatch.setattr(quantize, "quantize_onnx", lambda *args: pytest.fail("quantised again"))
    assert OrtGpt2Model.load(STARTER, cache_root=cache_root, providers="cpu", quantization=auto).quantization == "fp32"
