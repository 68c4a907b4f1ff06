"""Quantised edge exports (GPT-2 or LLaMA; int8 dynamic, int4 weight-only) behind a quality gate.

``fp32`` is the plain export of :mod:`edge_node.model.onnx_export`. From it:

- ``int8``: ONNX Runtime dynamic quantisation of every weight MatMul (int8 weights, per
  output channel; activations quantised per call) — ``DynamicQuantizeMatMul`` kernels.
- ``int4``: ``MatMulNBits`` (4-bit weights in blocks of 32, int8 compute), weight-only.

The exporter writes GPT-2's linear layers as ``Gemm`` (LLaMA's, bias-free, as ``MatMul``) and a tied LM
head as ``MatMul`` over a ``Transpose`` of the embedding; ONNX Runtime's quantisers only take ``MatMul`` with a constant
weight, so :func:`matmul_weights_graph` rewrites those first (same maths; parity-checked).

The gate (:func:`check_gate`) compares the quantised graph with the fp32 one on held-out text
(:mod:`edge_node.model.quality_gate`): perplexity may rise at most 5 % and greedy (arg-max) tokens must
agree on at least 90 % of positions, over the whole text and over the answer positions alone.
A quantised model that fails is never written to the cache, so it cannot be served.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnxruntime as ort
import structlog
from onnx import helper, numpy_helper

from edge_node.model.architecture import DecoderSpec, read_edge_config
from edge_node.model.onnx_export import (
    ATTENTION_MASK,
    INPUT_IDS,
    LOGITS,
    META_FILE,
    MODEL_FILE,
    POSITION_IDS,
    ensure_onnx_export,
    export_key,
    past_names,
)
from netgpt.config import AUTO_QUANTIZATION, EDGE_QUANTIZATIONS
from netgpt.engine import ModelLoadError
from netgpt.errors import one_line
from netgpt.tiny_models import default_cache_root

if TYPE_CHECKING:
    from edge_node.model.quality_gate import GateSequence

log = structlog.get_logger(__name__)

QUANTIZATIONS = EDGE_QUANTIZATIONS
# Graphs whose rows do not influence each other, so decode steps may be batched without changing any
# request's tokens. int8 is not: DynamicQuantizeLinear picks one activation scale for the whole batch
# tensor, so a row's rounding depends on its neighbours (measured: 1-2 % of greedy tokens change).
# MatMulNBits (int4) quantises activations per block of one row: batch-invariant, like fp32.
BATCH_INVARIANT = frozenset({"fp32", "int4"})
QUANTIZE_FORMAT_VERSION = 1  # bump when the rewrite or quantiser settings change
MAX_PERPLEXITY_INCREASE = 0.05  # quantised perplexity <= fp32 perplexity * 1.05
MIN_GREEDY_AGREEMENT = 0.90  # arg-max token equal to fp32's on >= 90 % of positions
INT4_BLOCK = 32


class QualityGateFailed(ModelLoadError):
    """A quantised model lost too much quality against fp32; it is not produced."""


@dataclass(frozen=True)
class Scores:
    positions: int
    perplexity_fp32: float
    perplexity_quantized: float
    greedy_agreement: float  # share of positions where the two arg-max tokens are equal

    @property
    def perplexity_increase(self) -> float:
        return self.perplexity_quantized / self.perplexity_fp32 - 1.0


@dataclass(frozen=True)
class QualityReport:
    quantization: str
    texts: int
    whole_text: Scores  # every next-token position of prompt + answer
    answers: Scores  # the answer positions only

    def failures(self) -> list[str]:
        """Human-readable reasons the gate fails (empty: it passes)."""
        reasons = []
        for scope, scores in (("whole text", self.whole_text), ("answers", self.answers)):
            if not scores.perplexity_increase <= MAX_PERPLEXITY_INCREASE:  # NaN fails too
                reasons.append(f"{scope}: perplexity {scores.perplexity_quantized:.4g} vs fp32 "
                               f"{scores.perplexity_fp32:.4g} (+{scores.perplexity_increase:.1%} > "
                               f"+{MAX_PERPLEXITY_INCREASE:.0%})")
            if not scores.greedy_agreement >= MIN_GREEDY_AGREEMENT:
                reasons.append(f"{scope}: greedy tokens agree on {scores.greedy_agreement:.1%} of "
                               f"{scores.positions} positions (< {MIN_GREEDY_AGREEMENT:.0%})")
        return reasons

    def as_dict(self) -> dict[str, object]:
        def scores(s: Scores) -> dict[str, object]:
            return asdict(s) | {"perplexity_increase": s.perplexity_increase}

        return {"quantization": self.quantization, "texts": self.texts, "whole_text": scores(self.whole_text),
                "answers": scores(self.answers),
                "thresholds": {"max_perplexity_increase": MAX_PERPLEXITY_INCREASE,
                               "min_greedy_agreement": MIN_GREEDY_AGREEMENT}}


def check_gate(report: QualityReport) -> None:
    """Raise :class:`QualityGateFailed` naming the figures when ``report`` misses a threshold."""
    reasons = report.failures()
    if reasons:
        raise QualityGateFailed(f"{report.quantization} model fails the quality gate on {report.texts} held-out "
                                f"texts: {'; '.join(reasons)}; not produced")


# --- graph rewrite and quantisers ----------------------------------------------------------------


def matmul_weights_graph(model: onnx.ModelProto) -> list[str]:
    """Rewrite ``model`` in place so every weight product is ``MatMul(x, W)``; return those nodes' names.

    ``Gemm(x, W, b)`` (alpha = beta = 1, no transA) becomes ``MatMul`` + ``Add``; a
    ``Transpose`` of a 2-D initializer (the tied LM head) becomes a transposed initializer.
    """
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    nodes: list[onnx.NodeProto] = []
    for index, node in enumerate(graph.node):
        node.name = node.name or f"node_{node.op_type}_{index}"
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Transpose" and node.input[0] in initializers and attrs.get("perm") == [1, 0]:
            weight = numpy_helper.to_array(initializers[node.input[0]])
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight.T), node.output[0]))
            continue
        plain_gemm = (node.op_type == "Gemm" and node.input[1] in initializers and not attrs.get("transA", 0)
                      and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0)
        if not plain_gemm:
            nodes.append(node)
            continue
        weight_name = node.input[1]
        if attrs.get("transB", 0):
            weight = numpy_helper.to_array(initializers[weight_name])
            weight_name = f"{weight_name}.transposed"
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight.T), weight_name))
        has_bias = len(node.input) > 2 and bool(node.input[2])
        product = f"{node.output[0]}.matmul" if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], weight_name], [product], name=f"{node.name}.matmul"))
        if has_bias:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}.bias"))
    del graph.node[:]
    graph.node.extend(nodes)
    constants = {i.name for i in graph.initializer}
    return [n.name for n in nodes if n.op_type == "MatMul" and n.input[1] in constants]


def quantize_onnx(fp32_path: Path, out_path: Path, quantization: str) -> None:
    """Write the ``quantization`` (int8 | int4) version of the fp32 graph at ``fp32_path`` to ``out_path``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # heavy: only when quantising
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    if quantization not in ("int8", "int4"):
        raise ModelLoadError(f"unknown quantization {quantization!r}; expected one of {', '.join(QUANTIZATIONS)}")
    model = onnx.load(str(fp32_path))
    weights = matmul_weights_graph(model)
    if quantization == "int4":
        logging.getLogger(MatMulNBitsQuantizer.__module__).setLevel(logging.WARNING)  # a line per node otherwise
        config = DefaultWeightOnlyQuantConfig(block_size=INT4_BLOCK, is_symmetric=True, accuracy_level=4)
        quantizer = MatMulNBitsQuantizer(model, algo_config=config, nodes_to_include=weights)
        quantizer.process()
        quantizer.model.save_model_to_file(str(out_path), False)
        return
    rewritten = out_path.with_name(f".{out_path.name}.matmul")
    onnx.save(model, str(rewritten))
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # quantize_dynamic logs a root INFO/WARNING line per tensor
    try:
        quantize_dynamic(str(rewritten), str(out_path), weight_type=QuantType.QInt8, per_channel=True,
                         nodes_to_quantize=weights, op_types_to_quantize=["MatMul"],
                         extra_options={"MatMulConstBOnly": True})
    finally:
        logging.disable(previous)
        rewritten.unlink(missing_ok=True)


# --- quality measurement -----------------------------------------------------------------------


def open_cpu_session(onnx_path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def full_logits(session: ort.InferenceSession, ids: Sequence[int], spec: DecoderSpec) -> np.ndarray:
    """Logits of every position of ``ids`` in one prefill (empty past), shape (len, vocab)."""
    empty = np.zeros((1, spec.kv_heads, 0, spec.head_dim), np.float32)
    feed: dict[str, np.ndarray] = {INPUT_IDS: np.asarray([ids], np.int64),
                                   ATTENTION_MASK: np.ones((1, len(ids)), np.int64),
                                   POSITION_IDS: np.arange(len(ids), dtype=np.int64)[None]}
    feed |= {name: empty for name in past_names(spec.n_layer)}
    logits: np.ndarray = session.run([LOGITS], feed)[0][0]
    return logits


def _next_token_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    top = logits.max(-1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(logits - top).sum(-1))
    result: np.ndarray = log_z - logits[np.arange(len(targets)), targets]
    return result


def _scores(nll_ref: list[float], nll_quant: list[float], agree: list[bool]) -> Scores:
    if not agree:
        return Scores(0, math.nan, math.nan, math.nan)
    return Scores(len(agree), math.exp(float(np.mean(nll_ref))), math.exp(float(np.mean(nll_quant))),
                  float(np.mean(agree)))


def measure_quality(reference: ort.InferenceSession, candidate: ort.InferenceSession,
                    sequences: Sequence[GateSequence], spec: DecoderSpec, quantization: str) -> QualityReport:
    """Teacher-forced comparison of two graphs over ``sequences``: perplexity of each, arg-max agreement."""
    whole: tuple[list[float], list[float], list[bool]] = ([], [], [])
    answers: tuple[list[float], list[float], list[bool]] = ([], [], [])
    for seq in sequences:
        ids = seq.prompt + seq.answer
        if len(ids) < 2:
            continue
        targets = np.asarray(ids[1:], np.int64)
        ref = full_logits(reference, ids, spec)[:-1]
        quant = full_logits(candidate, ids, spec)[:-1]
        nll_ref, nll_quant = _next_token_nll(ref, targets), _next_token_nll(quant, targets)
        agree = ref.argmax(-1) == quant.argmax(-1)
        first_answer = len(seq.prompt) - 1  # logits at this position predict the first answer token
        for bucket, start in ((whole, 0), (answers, first_answer)):
            bucket[0].extend(nll_ref[start:].tolist())
            bucket[1].extend(nll_quant[start:].tolist())
            bucket[2].extend(agree[start:].tolist())
    return QualityReport(quantization, len(sequences), _scores(*whole), _scores(*answers))


# --- the cached, gated export ------------------------------------------------------------------


def _quantized_dir(model_dir: Path, quantization: str, cache_root: Path | None, weights: str | None) -> Path:
    key = f"{export_key(model_dir, weights)}-{quantization}-q{QUANTIZE_FORMAT_VERSION}"
    return (Path(cache_root) if cache_root is not None else default_cache_root()) / "onnx" / key


def _recheck_cached(folder: Path) -> None:
    """A cached export passed the gate when written; thresholds may have tightened since."""
    try:
        quality = json.loads((folder / META_FILE).read_text())["quality"]
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"quantized export {folder} has no readable quality record: {one_line(exc)}") from exc
    report = QualityReport(quality["quantization"], quality["texts"],
                           *(Scores(**{k: v for k, v in quality[scope].items() if k != "perplexity_increase"})
                             for scope in ("whole_text", "answers")))
    check_gate(report)


def ensure_quantized_export(model_dir: Path, quantization: str, cache_root: Path | None = None,
                            weights: str | None = None) -> Path:
    """The gated ``quantization`` export of a GPT-2 or LLaMA folder (``fp32``: the plain export), quantising once.

    Raises :class:`QualityGateFailed` (and caches nothing) when the quantised graph misses the
    gate on the held-out texts of :mod:`edge_node.model.quality_gate`.
    """
    if quantization not in QUANTIZATIONS:
        raise ModelLoadError(f"unknown quantization {quantization!r}; expected one of {', '.join(QUANTIZATIONS)}")
    model_dir = Path(model_dir)
    fp32_path = ensure_onnx_export(model_dir, cache_root, weights)
    if quantization == "fp32":
        return fp32_path
    final = _quantized_dir(model_dir, quantization, cache_root, weights)
    if (final / MODEL_FILE).is_file():
        _recheck_cached(final)
        log.info("onnx.quantize.cached", path=str(final / MODEL_FILE), quantization=quantization)
        return final / MODEL_FILE
    from edge_node.model.quality_gate import gate_sequences  # needs the tokenizer and knowledge base

    started = time.perf_counter()
    _, spec = read_edge_config(model_dir)
    staging = Path(tempfile.mkdtemp(prefix=".quantize-", dir=final.parent))
    try:
        try:
            quantize_onnx(fp32_path, staging / MODEL_FILE, quantization)
        except ModelLoadError:
            raise
        except Exception as exc:  # the quantisers raise many types; report one line
            raise ModelLoadError(f"cannot quantize {fp32_path} to {quantization}: {one_line(exc)}") from exc
        reference = open_cpu_session(fp32_path)
        report = measure_quality(reference, open_cpu_session(staging / MODEL_FILE),
                                 gate_sequences(model_dir, reference, spec), spec, quantization)
        log.info("onnx.quantize.gate", quantization=quantization, passed=not report.failures(),
                 **{f"{scope}_{k}": round(v, 4) for scope, s in (("whole", report.whole_text),
                                                                 ("answers", report.answers))
                    for k, v in (("ppl_increase", s.perplexity_increase), ("agreement", s.greedy_agreement))})
        check_gate(report)
        meta = json.loads((fp32_path.parent / META_FILE).read_text())
        meta |= {"quantization": quantization, "quantize_format_version": QUANTIZE_FORMAT_VERSION,
                 "quality": report.as_dict()}
        (staging / META_FILE).write_text(json.dumps(meta, indent=2))
        try:
            staging.rename(final)
        except OSError:
            if not (final / MODEL_FILE).is_file():
                raise
            log.info("onnx.quantize.race_lost", path=str(final))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("onnx.quantize.done", path=str(final / MODEL_FILE), quantization=quantization,
             seconds=round(time.perf_counter() - started, 3))
    return final / MODEL_FILE


def pick_quantization(model_dir: Path, quantization: str, cache_root: Path | None = None,
                      weights: str | None = None) -> str:
    """``auto`` → ``int8`` where the int8 graph passes the quality gate, else ``fp32``; any other choice as given.

    int8 halves the weights a decode step reads and doubled edge tokens/s on this 2-core CPU, for the
    124M GPT-2 and the 2M starter alike (``bench.edge_generation``). A failed gate is remembered beside
    the cache (``*.gate-failed``), so a later start does not quantise and measure again to learn it.
    """
    if quantization != AUTO_QUANTIZATION:
        return quantization
    failed = _quantized_dir(Path(model_dir), "int8", cache_root, weights).with_suffix(".gate-failed")
    if failed.is_file():
        log.info("onnx.quantize.auto", chosen="fp32", reason=failed.read_text().strip()[:500])
        return "fp32"
    try:
        ensure_quantized_export(Path(model_dir), "int8", cache_root, weights)
    except QualityGateFailed as exc:
        failed.parent.mkdir(parents=True, exist_ok=True)
        failed.write_text(str(exc) + "\n")
        log.warning("onnx.quantize.auto", chosen="fp32", reason=str(exc))
        return "fp32"
    log.info("onnx.quantize.auto", chosen="int8")
    return "int8"


def quality_record(onnx_path: Path) -> dict[str, object]:
    """The gate figures stored beside a quantised export (empty for fp32)."""
    try:
        meta = json.loads((Path(onnx_path).parent / META_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    quality: dict[str, object] = meta.get("quality", {})
    return quality
