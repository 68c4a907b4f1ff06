"""The edge's deployable artifact: a GPT-2 or LLaMA folder → ONNX export + config + tokenizer, as one tar.

What an edge node unpacks must open with :meth:`OrtGpt2Model.load_exported` alone (no torch
export on the node), and must behave like the checkpoint it came from. So the artifact is
built, then checked the way a node will use it: logits of the graph against torch to ``1e-4`` (or
1e-5 of the largest logit, :meth:`~edge_node.model.onnx_export.Parity.within`; prefill and decode with
past, batch 1 and 2), then the tar is unpacked and opened like on a node and its greedy tokens
compared with torch's. A check that fails raises
ModelLoadError and leaves no artifact behind.

A quantised artifact (``quantization`` int8 | int4) packs the gated graph of
:func:`edge_node.model.quantize.ensure_quantized_export` instead; the fp32 export it comes from is
parity-checked as above, the gate's figures go into the manifest metadata, and the unpacked
artifact must give the same greedy tokens as that gated graph (torch's fp32 tokens are what the
gate compares against, position by position).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import onnx
import torch

from cmp.archive import is_pickle, pack, unpack
from edge_node.model.architecture import read_edge_config
from edge_node.model.onnx_export import (
    EXPORT_FORMAT_VERSION,
    ensure_onnx_export,
    load_torch_decoder,
    measure_parity,
    weights_sha256,
)
from edge_node.model.ort_engine import OrtGpt2Model, create_session
from edge_node.model.quantize import ensure_quantized_export, pick_quantization
from netgpt.engine import ModelLoadError
from netgpt.generation import SamplingParams, generate_tokens
from netgpt.hashing import sha256_file
from netgpt.torch_decode import TorchDecodeSession

PARITY_TOLERANCE = 1e-4
GREEDY_PROMPTS = ("the quick brown fox", "radio access network", "hello")
GREEDY_TOKENS = 16


@dataclass(frozen=True)
class EdgeArtifact:
    path: Path
    sha256: str
    size_bytes: int
    metadata: dict[str, str]  # goes into the store manifest


def artifact_files(model_dir: Path, export_dir: Path) -> dict[str, Path]:
    """Config, tokenizer and other small files of the checkpoint (not its weights), plus the export."""
    files = {p.name: p for p in Path(model_dir).iterdir()
             if p.is_file() and not p.name.startswith(".") and p.suffix != ".safetensors" and not is_pickle(p.name)}
    files.update({p.name: p for p in Path(export_dir).iterdir() if p.is_file()})
    return files


def _greedy(model: OrtGpt2Model, prompt: str) -> list[int]:
    ids = model.tokenizer.encode(prompt, add_special_tokens=False)
    params = SamplingParams(max_new_tokens=GREEDY_TOKENS)
    return [p.token_id for p in generate_tokens(model.new_session(), model.tokenizer, ids, params)]


def check_greedy(model_dir: Path, model: OrtGpt2Model) -> None:
    """The exported model's greedy tokens equal torch's on a few prompts."""
    torch_model, _ = load_torch_decoder(model_dir)
    params = SamplingParams(max_new_tokens=GREEDY_TOKENS)
    for prompt in GREEDY_PROMPTS:
        ids = model.tokenizer.encode(prompt, add_special_tokens=False)
        ours = _greedy(model, prompt)
        reference = TorchDecodeSession(torch_model, torch.device("cpu"))
        theirs = [p.token_id for p in generate_tokens(reference, model.tokenizer, ids, params)]
        if ours != theirs:
            raise ModelLoadError(f"ONNX greedy tokens differ from torch for {prompt!r}: {ours} vs {theirs}")


def check_same_greedy(model_dir: Path, model: OrtGpt2Model, gated: Path) -> None:
    """An unpacked quantised artifact decodes exactly like the gated graph it was packed from."""
    reference = OrtGpt2Model(create_session(gated, "cpu"), model.tokenizer, model.identity,
                             read_edge_config(model_dir)[0], gated)
    for prompt in GREEDY_PROMPTS:
        ours, theirs = _greedy(model, prompt), _greedy(reference, prompt)
        if ours != theirs:
            raise ModelLoadError(f"unpacked artifact's greedy tokens differ from the gated graph's for {prompt!r}: "
                                 f"{ours} vs {theirs}")


def build_edge_artifact(model_dir: Path, out: Path, tolerance: float = PARITY_TOLERANCE,
                        cache_root: Path | None = None, quantization: str = "fp32") -> EdgeArtifact:
    """Export (cached), check parity (and the quantisation gate), pack into ``out``, unpack and check greedy
    tokens; return what to publish."""
    model_dir, out = Path(model_dir), Path(out)
    weights = weights_sha256(model_dir)
    quantization = pick_quantization(model_dir, quantization, cache_root, weights=weights)
    onnx_path = ensure_onnx_export(model_dir, cache_root, weights=weights)
    parity = measure_parity(model_dir, onnx_path)
    if not parity.within(tolerance):
        raise ModelLoadError(f"ONNX export of {model_dir} differs from torch by {parity.max_abs_diff:.2e} "
                             f"(> {tolerance:g}, logits up to {parity.max_abs_logit:.3g}); not packed")
    served = ensure_quantized_export(model_dir, quantization, cache_root, weights=weights)
    pack(artifact_files(model_dir, served.parent), out)
    try:
        with TemporaryDirectory(prefix="netgpt-edge-artifact-") as tmp:
            unpacked = OrtGpt2Model.load_exported(unpack(out, Path(tmp) / "unpacked"), providers="cpu")
            if quantization == "fp32":
                check_greedy(model_dir, unpacked)
            else:
                check_same_greedy(model_dir, unpacked, served)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    graph = onnx.load(str(served), load_external_data=False)
    metadata = {
        "format": "tar",
        "runtime": "onnxruntime",
        "opset": str(max((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), default=0)),
        "export_format_version": str(EXPORT_FORMAT_VERSION),
        "parity_max_abs_diff": f"{parity.max_abs_diff:.3e}",
        "parity_max_abs_logit": f"{parity.max_abs_logit:.3g}",
        "greedy_tokens_checked": str(GREEDY_TOKENS * len(GREEDY_PROMPTS)),
        "weights_sha256": weights,
        "model_type": unpacked.spec.model_type,
        "quantization": quantization,
    }
    if quantization != "fp32":
        metadata |= quality_metadata(unpacked.quality)
    return EdgeArtifact(out, sha256_file(out), out.stat().st_size, metadata)


def quality_metadata(quality: dict[str, Any]) -> dict[str, str]:
    """The quantisation gate's figures as flat manifest strings."""
    flat = {}
    for scope in ("whole_text", "answers"):
        scores = quality.get(scope, {})
        for key in ("positions", "perplexity_fp32", "perplexity_quantized", "perplexity_increase",
                    "greedy_agreement"):
            if key in scores:
                flat[f"gate_{scope}_{key}"] = f"{scores[key]:.4g}" if isinstance(scores[key], float) else str(
                    scores[key])
    return flat
