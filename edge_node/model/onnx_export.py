"""GPT-2 or LLaMA-family → ONNX with a KV cache, cached on disk by content hash, and checked against torch.

One graph serves prefill and decode: it takes ``input_ids``/``position_ids`` (batch, seq),
``attention_mask`` (batch, past+seq) and ``past_key_values.{i}.key|value`` (batch, kv_heads,
past, head_dim) and returns ``logits`` (batch, seq, vocab) and ``present.{i}.key|value``
(batch, kv_heads, past+seq, head_dim). A past of length 0 is a prefill. Both architectures
export to this one signature; what differs (layers, KV heads — LLaMA's GQA keeps fewer than
its query heads —, head size, torch class) is their :class:`~edge_node.model.architecture.DecoderSpec`.

Why the wrapper: the dynamo exporter cannot take a ``DynamicCache`` as a graph input, so
:class:`_FlatCacheDecoder` rebuilds one from flat tensors and flattens the result again. We
trace with sizes ≥ 2 on every dynamic axis (torch.export specialises 0/1). The legacy
(TorchScript) exporter is not used: it silently produces wrong logits for this model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch
from transformers import DynamicCache, GPT2LMHeadModel, LlamaForCausalLM, PreTrainedModel

from edge_node.model.architecture import DecoderSpec, read_edge_config
from netgpt.engine import ModelLoadError
from netgpt.errors import one_line
from netgpt.hashing import sha256_file, sha256_of_files
from netgpt.tiny_models import default_cache_root

log = structlog.get_logger(__name__)

EXPORT_FORMAT_VERSION = 1  # bump when the graph's inputs/outputs or export recipe change
RELATIVE_TOLERANCE = 1e-5  # of the largest |logit|: see Parity.within
MODEL_FILE = "model.onnx"
META_FILE = "export.json"
INPUT_IDS, ATTENTION_MASK, POSITION_IDS, LOGITS = "input_ids", "attention_mask", "position_ids", "logits"


def past_names(n_layer: int) -> list[str]:
    """Graph input names of the KV cache, layer-major: key then value."""
    return [f"past_key_values.{i}.{kv}" for i in range(n_layer) for kv in ("key", "value")]


def present_names(n_layer: int) -> list[str]:
    """Graph output names of the updated KV cache, same order as :func:`past_names`."""
    return [f"present.{i}.{kv}" for i in range(n_layer) for kv in ("key", "value")]


_TORCH_CLASSES: dict[str, type[PreTrainedModel]] = {"gpt2": GPT2LMHeadModel, "llama": LlamaForCausalLM}


class _FlatCacheDecoder(torch.nn.Module):
    """A decoder LM whose KV cache goes in and out as flat tensors (exportable signature)."""

    def __init__(self, model: PreTrainedModel, n_layer: int) -> None:
        super().__init__()
        self.model = model
        self.n_layer = n_layer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pairs = [(past[2 * i], past[2 * i + 1]) for i in range(self.n_layer)]
        cache = DynamicCache(ddp_cache_data=pairs, config=self.model.config)
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            past_key_values=cache, use_cache=True, return_dict=True,
        )
        flat: list[torch.Tensor] = []
        for layer in out.past_key_values.layers:
            flat += [layer.keys, layer.values]
        return (out.logits, *flat)


def load_torch_decoder(model_dir: Path) -> tuple[PreTrainedModel, DecoderSpec]:
    """Validate a GPT-2 or LLaMA folder and load it in float32, eval mode; ModelLoadError on any problem."""
    _, spec = read_edge_config(model_dir)
    try:
        model = _TORCH_CLASSES[spec.model_type].from_pretrained(model_dir, dtype=torch.float32)
    except Exception as exc:  # transformers raises many types; report one line
        raise ModelLoadError(f"cannot load {spec.model_type} weights from {model_dir}: {one_line(exc)}") from exc
    return model.eval(), spec  # type: ignore[no-untyped-call]  # transformers leaves eval() unannotated


def _example_inputs(spec: DecoderSpec, batch: int = 2, seq: int = 3, past: int = 4) -> tuple[torch.Tensor, ...]:
    input_ids = torch.randint(0, spec.vocab_size, (batch, seq))
    attention_mask = torch.ones(batch, past + seq, dtype=torch.long)
    position_ids = torch.arange(past, past + seq).unsqueeze(0).expand(batch, seq).contiguous()
    cache = [torch.randn(batch, spec.kv_heads, past, spec.head_dim) for _ in range(2 * spec.n_layer)]
    return (input_ids, attention_mask, position_ids, *cache)


def export_decoder_onnx(model_dir: Path, out_dir: Path) -> Path:
    """Export a local HF GPT-2 or LLaMA folder to ``out_dir/model.onnx`` (KV cache in/out); return its path.

    The export is staged in a temporary sibling folder and renamed into place, so a
    reader never sees half a model. If ``out_dir`` already holds a complete export
    (another process won the race), that one is kept and returned.
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    model, spec = load_torch_decoder(model_dir)
    n_layer = spec.n_layer
    batch, seq, past, total = (torch.export.Dim(n) for n in ("batch", "seq", "past", "total"))
    dynamic_shapes = {
        "input_ids": {0: batch, 1: seq},
        "attention_mask": {0: batch, 1: total},
        "position_ids": {0: batch, 1: seq},
        "past": tuple({0: batch, 2: past} for _ in range(2 * n_layer)),
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir.parent))
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # exporter deprecation chatter, not actionable here
            program = torch.onnx.export(
                _FlatCacheDecoder(model, n_layer), _example_inputs(spec), dynamo=True, dynamic_shapes=dynamic_shapes,
                input_names=[INPUT_IDS, ATTENTION_MASK, POSITION_IDS, *past_names(n_layer)],
                output_names=[LOGITS, *present_names(n_layer)], verbose=False,
            )
            # None only without dynamo; external data only past 2 GB
            program.save(staging / MODEL_FILE, external_data=None)  # type: ignore[union-attr]
        meta = {"format_version": EXPORT_FORMAT_VERSION, "source": str(model_dir.resolve()), **spec.as_meta(),
                "torch": torch.__version__}
        (staging / META_FILE).write_text(json.dumps(meta, indent=2))
        try:
            staging.rename(out_dir)
        except OSError:
            if not (out_dir / MODEL_FILE).is_file():
                raise
            log.info("onnx.export.race_lost", path=str(out_dir))
    except Exception as exc:
        raise ModelLoadError(f"cannot export {model_dir} to ONNX: {one_line(exc)}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir / MODEL_FILE


export_gpt2_onnx = export_decoder_onnx  # the name callers knew before LLaMA exports


def weights_sha256(model_dir: Path) -> str:
    """The identity of a model folder's weights (also what ``ModelIdentity.sha256`` reports)."""
    return sha256_of_files(sorted(Path(model_dir).glob("*.safetensors")))


def export_key(model_dir: Path, weights: str | None = None) -> str:
    """Content hash of config.json + weights + export format: same key ⇒ same graph.

    ``weights``: :func:`weights_sha256` when the caller already has it (hashing a real
    checkpoint's weights costs a noticeable part of start-up).
    """
    model_dir = Path(model_dir)
    read_edge_config(model_dir)
    parts = f"{sha256_file(model_dir / 'config.json')}\n{weights or weights_sha256(model_dir)}"
    return f"v{EXPORT_FORMAT_VERSION}-{hashlib.sha256(parts.encode('ascii')).hexdigest()[:32]}"


def ensure_onnx_export(model_dir: Path, cache_root: Path | None = None, weights: str | None = None) -> Path:
    """Return the cached ONNX export of ``model_dir``, exporting once if absent.

    Cached under ``<cache_root or $NETGPT_CACHE_DIR or ~/.cache/netgpt>/onnx/<key>/`` so
    a restarted edge node skips the (tens of seconds) export of a real checkpoint.
    """
    started = time.perf_counter()
    key = export_key(model_dir, weights)
    final = (Path(cache_root) if cache_root is not None else default_cache_root()) / "onnx" / key
    path = final / MODEL_FILE
    if path.is_file():
        log.info("onnx.export.cached", path=str(path), seconds=round(time.perf_counter() - started, 3))
        return path
    path = export_decoder_onnx(model_dir, final)
    log.info("onnx.export.done", path=str(path), seconds=round(time.perf_counter() - started, 3))
    return path


def _torch_step(model: PreTrainedModel, ids: np.ndarray, mask: np.ndarray, pos: np.ndarray,
                cache: DynamicCache) -> np.ndarray:
    with torch.inference_mode():
        out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                    position_ids=torch.from_numpy(pos), past_key_values=cache, use_cache=True)
    logits: np.ndarray = out.logits.float().numpy()
    return logits


@dataclass(frozen=True)
class Parity:
    """How far the graph's logits are from torch's, and how large torch's logits are."""

    max_abs_diff: float
    max_abs_logit: float

    def within(self, tolerance: float) -> bool:
        """``max_abs_diff <= tolerance``, widened to :data:`RELATIVE_TOLERANCE` of the largest logit.

        Why relative too: float32 round-off grows with depth and with the logits' magnitude. The tiny and
        starter models stay far below 1e-4; SmolLM2-135M (30 layers, logits up to ~36) differs by up to
        1.7e-4 — with identical greedy tokens, which the artifact checks separately.
        """
        return self.max_abs_diff <= max(tolerance, RELATIVE_TOLERANCE * self.max_abs_logit)


def check_parity(model_dir: Path, onnx_path: Path, **options: Any) -> float:
    """Max |logits(ONNX) − logits(torch)| over prompts, batch sizes and decode steps with past
    (``options``: those of :func:`measure_parity`)."""
    return measure_parity(model_dir, onnx_path, **options).max_abs_diff


def measure_parity(
    model_dir: Path,
    onnx_path: Path,
    prompt_lengths: Sequence[int] = (1, 5, 17),
    batch_sizes: Sequence[int] = (1, 2),
    decode_steps: int = 2,
    seed: int = 0,
) -> Parity:
    """:class:`Parity` of logits(ONNX) against logits(torch) over prompts, batch sizes and decode steps with past.

    Both sides keep their own cache (torch a ``DynamicCache``, ONNX its ``present``
    outputs fed back as ``past``), so drift accumulated over steps is measured too.
    Runs on the CPU provider: parity is about the graph, not the device.
    """
    import onnxruntime as ort  # local: keep torch-only importers of this module light

    model, spec = load_torch_decoder(Path(model_dir))
    n_layer = spec.n_layer
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    worst, scale = 0.0, 0.0
    for batch in batch_sizes:
        for length in prompt_lengths:
            ids = rng.integers(0, spec.vocab_size, (batch, length), dtype=np.int64)
            cache = DynamicCache(config=model.config)
            past = {n: np.zeros((batch, spec.kv_heads, 0, spec.head_dim), np.float32) for n in past_names(n_layer)}
            start = 0
            for _ in range(decode_steps + 1):
                seq = ids.shape[1]
                mask = np.ones((batch, start + seq), np.int64)
                pos = np.tile(np.arange(start, start + seq, dtype=np.int64), (batch, 1))
                expected = _torch_step(model, ids, mask, pos, cache)
                outputs = session.run(None, {INPUT_IDS: ids, ATTENTION_MASK: mask, POSITION_IDS: pos, **past})
                worst = max(worst, float(np.abs(outputs[0] - expected).max()))
                scale = max(scale, float(np.abs(expected).max()))
                past = dict(zip(past_names(n_layer), outputs[1:], strict=True))
                start += seq
                ids = expected[:, -1].argmax(-1).astype(np.int64)[:, None]  # greedy next token
    return Parity(worst, scale)
