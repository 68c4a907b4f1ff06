"""The edge node's engine: a local HF GPT-2 or LLaMA-family folder, exported once to ONNX, run by ONNX Runtime.

Both architectures export to one graph signature (:mod:`edge_node.model.onnx_export`); the engine
reads the KV cache's shape and the context limit from the folder's
:class:`~edge_node.model.architecture.DecoderSpec`, so everything below serves either.

Precision: ``quantization`` picks the graph — ``fp32`` (the parity-checked export), ``int8`` or
``int4`` (:mod:`edge_node.model.quantize`: produced once from fp32 and only if it passes the quality gate).

Thread safety: one ``InferenceSession`` is shared by every decode session. ORT's ``run``
is thread-safe and each session owns its KV cache, so unlike the cloud's serialised engine
no lock is needed. On CPU, concurrent requests' decode steps are batched
(:mod:`edge_node.model.decode_batch`, up to ``max_batch`` per run): a decode step is bound by reading
the weights, which a batch reads once. Not for int8 graphs, whose rows are not independent
(:data:`edge_node.model.quantize.BATCH_INVARIANT`): their steps run one per session, concurrently.

KV cache on CUDA (and with ``max_batch=1``): ``present`` outputs of one step are bound, as ORT
values on the execution device, as ``past`` inputs of the next (io_binding), so the cache stays
on the GPU. Batching is CPU-only: batching on CUDA would need the caches packed on the device.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnxruntime as ort
import structlog
from transformers import AutoTokenizer

from edge_node.model.architecture import DecoderSpec, decoder_spec, read_edge_config
from edge_node.model.decode_batch import BatchedDecodeSession, DecodeBatcher
from edge_node.model.onnx_export import (
    ATTENTION_MASK,
    INPUT_IDS,
    LOGITS,
    MODEL_FILE,
    POSITION_IDS,
    past_names,
    present_names,
    weights_sha256,
)
from edge_node.model.prefill_gate import OPEN, PrefillGate
from edge_node.model.prefix_cache import CHUNKED_BLOCK, DEFAULT_BLOCK, EdgePrefixCache, prefill_plan
from edge_node.model.quantize import BATCH_INVARIANT, ensure_quantized_export, pick_quantization, quality_record
from netgpt.engine import ModelIdentity, ModelLoadError
from netgpt.errors import one_line
from netgpt.generation import DecodeSession, Tokenizer
from netgpt.hashing import sha256_file

log = structlog.get_logger(__name__)

CUDA_EP, CPU_EP = "CUDAExecutionProvider", "CPUExecutionProvider"
PROVIDER_CHOICES = ("auto", "cpu", "cuda")


def session_options(intra_op_threads: int = 0) -> ort.SessionOptions:
    """All graph optimisations (constant folding, fusions; without them decode is ~7x slower).

    ``intra_op_threads=0`` lets ORT pick (one per physical core, like torch's default).
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # a decoder is one chain of ops
    options.intra_op_num_threads = intra_op_threads
    # Idle pool threads sleep instead of busy-waiting between decode steps: measured the
    # same tokens/s, and the cores stay free for gRPC, detokenising and other sessions.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


# ORT's logger severities: 0 verbose, 1 info, 2 warning (its default), 3 error, 4 fatal.
_ORT_DEFAULT_SEVERITY, _ORT_FATAL_ONLY = 2, 4


@contextmanager
def _ort_quiet() -> Iterator[None]:
    """Silence ONNX Runtime's process-wide logger while it tries a provider that may not load.

    A CUDA provider that cannot load is logged by ORT's *default* logger (a red error plus
    a warning on stderr, for every session), which session options cannot silence. ORT has
    no getter for that severity; this project never changes it, so it goes back to ORT's default.
    """
    ort.set_default_logger_severity(_ORT_FATAL_ONLY)
    try:
        yield
    finally:
        ort.set_default_logger_severity(_ORT_DEFAULT_SEVERITY)


def _no_cuda_driver() -> str | None:
    """Why this machine cannot run CUDA at all (no NVIDIA driver), or None; asks the OS, not ORT, so it is quiet."""
    if sys.platform == "darwin":
        return "no CUDA on macOS"
    driver = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    try:
        ctypes.CDLL(driver)
    except OSError:
        return f"no NVIDIA driver ({driver} not found)"
    return None


def _cuda_provider_failure() -> str:
    """One line saying why ORT's CUDA provider library did not load (usually a missing CUDA/cuDNN library)."""
    capi = Path(ort.__file__).parent / "capi"
    shared, cuda = (("onnxruntime_providers_shared.dll", "onnxruntime_providers_cuda.dll") if sys.platform == "win32"
                    else ("libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so"))
    try:
        ctypes.CDLL(str(capi / shared), mode=getattr(ctypes, "RTLD_GLOBAL", 0))
        ctypes.CDLL(str(capi / cuda))
    except OSError as exc:
        return f"ONNX Runtime's CUDA provider cannot load: {one_line(exc)}"
    return "ONNX Runtime's CUDA provider loads but no CUDA device could be used"


def _cuda_unavailable() -> str | None:
    """Why CUDA is out of the question before asking ORT (which would print its failure), or None."""
    if CUDA_EP not in ort.get_available_providers():
        return "this onnxruntime build has no CUDA execution provider"
    return _no_cuda_driver()


def create_session(onnx_path: Path, providers: str = "auto", intra_op_threads: int = 0) -> ort.InferenceSession:
    """An InferenceSession on the provider asked for; ModelLoadError if it cannot be honoured.

    ``auto`` probes quietly: CUDA is tried only where the wheel has the CUDA provider and an
    NVIDIA driver is present, and then with ORT's logger silenced, because ORT falls back to
    CPU on its own (after printing a red error) when the provider cannot load. What counts is
    ``get_providers()`` after creation. One ``ort.provider`` event says what was chosen and why.
    """
    if providers not in PROVIDER_CHOICES:
        raise ModelLoadError(f"unknown providers {providers!r}; expected one of {', '.join(PROVIDER_CHOICES)}")
    reason = "requested" if providers == "cpu" else _cuda_unavailable()
    wants_cuda = reason is None
    if providers == "cuda" and not wants_cuda:
        raise ModelLoadError(f"providers 'cuda' requested but CUDA is not usable here: {reason}")
    requested = [CUDA_EP, CPU_EP] if wants_cuda else [CPU_EP]
    try:
        with _ort_quiet() if wants_cuda else nullcontext():
            session = ort.InferenceSession(str(onnx_path), session_options(intra_op_threads), providers=requested)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise ModelLoadError(f"cannot open {onnx_path} with ONNX Runtime: {one_line(exc)}") from exc
    active = session.get_providers()
    if wants_cuda:
        reason = "CUDA device available" if CUDA_EP in active else _cuda_provider_failure()
    if providers == "cuda" and CUDA_EP not in active:
        raise ModelLoadError(f"providers 'cuda' requested but CUDA is not usable here: {reason}")
    log.info("ort.provider", provider=active[0], requested=providers, reason=reason)
    return session


class OrtDecodeSession:
    """Batch-1 decoder over a shared InferenceSession; owns its KV cache between steps."""

    def __init__(self, session: ort.InferenceSession, n_layer: int, kv_heads: int, head_dim: int,
                 max_context: int, device: str, prefixes: EdgePrefixCache | None = None,
                 gate: PrefillGate = OPEN) -> None:
        self._session = session
        self._prefixes = prefixes
        self._gate = gate
        self._past_names = past_names(n_layer)
        self._present_names = present_names(n_layer)
        self._empty_shape = (1, kv_heads, 0, head_dim)
        self._max_context = max_context
        self._device = device  # "cpu" or "cuda": where present/past tensors live
        self._binding = session.io_binding()
        self._past: list[ort.OrtValue] | None = None
        self._length = 0  # tokens already in the cache

    def prefill(self, input_ids: list[int]) -> np.ndarray:
        if not input_ids:
            raise ValueError("prefill needs at least one token")
        past, runs = prefill_plan(self._prefixes, input_ids)
        past = past or [np.zeros(self._empty_shape, np.float32) for _ in self._past_names]
        self._past = [ort.OrtValue.ortvalue_from_numpy(a, self._device, 0) for a in past]
        self._length = runs[0][0]
        with self._gate.prefill():
            for start, end in runs:
                logits = self._forward(input_ids[start:end])
        if self._prefixes is not None:
            self._prefixes.store(input_ids, lambda: [v.numpy() for v in self._past or []])
        return logits

    def advance(self, token_id: int) -> np.ndarray:
        if self._past is None:
            raise RuntimeError("advance() called before prefill()")
        self._gate.before_step()
        return self._forward([token_id])

    def _forward(self, ids: list[int]) -> np.ndarray:
        start, seq = self._length, len(ids)
        if start + seq > self._max_context:
            raise ValueError(f"context of {start + seq} tokens exceeds the model's {self._max_context}")
        binding = self._binding
        binding.bind_cpu_input(INPUT_IDS, np.asarray([ids], dtype=np.int64))
        binding.bind_cpu_input(ATTENTION_MASK, np.ones((1, start + seq), dtype=np.int64))
        binding.bind_cpu_input(POSITION_IDS, np.arange(start, start + seq, dtype=np.int64)[None])
        for name, value in zip(self._past_names, self._past, strict=True):  # type: ignore[arg-type]  # set by prefill
            binding.bind_ortvalue_input(name, value)
        binding.bind_output(LOGITS, "cpu")
        for name in self._present_names:
            binding.bind_output(name, self._device)
        self._session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        self._past = list(outputs[1:])
        self._length = start + seq
        return np.array(outputs[0].numpy()[0, -1], dtype=np.float32)  # own copy: the buffer is ORT's


def _load_tokenizer(folder: Path) -> Tokenizer:
    try:
        # transformers types decode() for batches too (str | list[str]); for one id list it returns str
        return cast(Tokenizer, AutoTokenizer.from_pretrained(folder))
    except Exception as exc:  # tokenizers/transformers raise many types; report one line
        raise ModelLoadError(f"cannot load tokenizer from {folder}: {one_line(exc)}") from exc


class OrtGpt2Model:
    """A GPT-2 or LLaMA-family model served by ONNX Runtime, implementing ``LanguageModel``.

    The name is historical (GPT-2 was the edge's only architecture); :data:`OrtEdgeModel` names it too.
    """

    def __init__(self, session: ort.InferenceSession, tokenizer: Tokenizer, identity: ModelIdentity,
                 config: dict[str, Any], onnx_path: Path, max_batch: int = 8, prefix_cache_mb: float = 0.0,
                 prefill_first: bool = False) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.identity = identity
        self.onnx_path = onnx_path
        self.spec: DecoderSpec = decoder_spec(config, onnx_path.parent)
        self.max_context = self.spec.max_context
        self.provider = session.get_providers()[0]  # the EP actually used, after any fallback
        self._n_layer = self.spec.n_layer
        self._device = "cuda" if self.provider == CUDA_EP else "cpu"
        quality = quality_record(onnx_path)
        self.quantization = str(quality.get("quantization", "fp32"))
        self.quality = quality  # the quantisation gate's figures (empty for fp32)
        batch = max_batch if self._device == "cpu" and self.quantization in BATCH_INVARIANT else 1
        self.batcher = DecodeBatcher(session, self._n_layer, batch) if batch > 1 else None
        kv_bytes_per_token = self._n_layer * 2 * self.spec.kv_heads * self.spec.head_dim * 4  # float32 keys, values
        chunked = self.quantization not in BATCH_INVARIANT  # int8: a run per block, so fewer, larger blocks
        self.gate = PrefillGate(enabled=prefill_first)  # decode steps wait while a prompt is prefilled
        self.prefixes = (EdgePrefixCache(kv_bytes_per_token, prefix_cache_mb, block=CHUNKED_BLOCK if chunked else
                                         DEFAULT_BLOCK, chunked=chunked) if prefix_cache_mb > 0 else None)

    @classmethod
    def load(
        cls,
        model_dir: Path,
        cache_root: Path | None = None,
        providers: str = "auto",
        name: str | None = None,
        version: str | None = None,
        intra_op_threads: int = 0,
        quantization: str = "fp32",
        max_batch: int = 8,
        prefix_cache_mb: float = 0.0,
        prefill_first: bool = False,
    ) -> OrtGpt2Model:
        """Validate a local GPT-2 or LLaMA folder, export it to ONNX once (cached), open it; ModelLoadError on a
        problem.

        ``intra_op_threads`` caps ORT's CPU thread pool (0: ORT's default); an edge box
        that also runs other work may want fewer than all cores. ``quantization``: auto |
        fp32 | int8 | int4 (auto: int8 where it passes the quality gate, else fp32); a quantised graph
        that fails the quality gate raises QualityGateFailed.
        ``max_batch``: most concurrent decode steps run as one (1: no batching). ``prefix_cache_mb``: keys and
        values of prompt beginnings kept for reuse (:mod:`edge_node.model.prefix_cache`; 0: none).
        ``prefill_first``: decode steps wait while a prompt is prefilled (:mod:`edge_node.model.prefill_gate`).
        """
        model_dir = Path(model_dir)
        config, _ = read_edge_config(model_dir)
        tokenizer = _load_tokenizer(model_dir)
        sha = weights_sha256(model_dir)
        quantization = pick_quantization(model_dir, quantization, cache_root, weights=sha)
        onnx_path = ensure_quantized_export(model_dir, quantization, cache_root, weights=sha)
        default_version = sha[:12] if quantization == "fp32" else f"{sha[:12]}-{quantization}"
        identity = ModelIdentity(name=name or model_dir.resolve().name, version=version or default_version, sha256=sha)
        return cls._open(onnx_path, tokenizer, identity, config, providers, intra_op_threads, max_batch,
                         prefix_cache_mb, prefill_first)

    @classmethod
    def load_exported(cls, folder: Path, providers: str = "auto", name: str | None = None,
                      version: str | None = None, sha256: str | None = None,
                      intra_op_threads: int = 0, max_batch: int = 8, prefix_cache_mb: float = 0.0,
                      prefill_first: bool = False) -> OrtGpt2Model:
        """Open an already-exported folder (what an edge artifact unpacks to) without torch.

        The folder holds ``model.onnx`` (+ ``export.json``), the checkpoint's ``config.json`` and
        the tokenizer files; ``sha256`` is the artifact's (default: that of model.onnx).
        """
        folder = Path(folder)
        config, _ = read_edge_config(folder, weights=False)
        onnx_path = folder / MODEL_FILE
        if not onnx_path.is_file():
            raise ModelLoadError(f"exported model folder {folder} has no {MODEL_FILE}")
        tokenizer = _load_tokenizer(folder)
        sha = sha256 or sha256_file(onnx_path)
        identity = ModelIdentity(name=name or folder.name, version=version or sha[:12], sha256=sha)
        return cls._open(onnx_path, tokenizer, identity, config, providers, intra_op_threads, max_batch,
                         prefix_cache_mb, prefill_first)

    @classmethod
    def _open(cls, onnx_path: Path, tokenizer: Tokenizer, identity: ModelIdentity, config: dict[str, Any],
              providers: str, intra_op_threads: int, max_batch: int, prefix_cache_mb: float,
              prefill_first: bool) -> OrtGpt2Model:
        session = create_session(onnx_path, providers, intra_op_threads)
        model = cls(session, tokenizer, identity, config, onnx_path, max_batch, prefix_cache_mb, prefill_first)
        log.info("ort.model.loaded", model=identity.name, version=identity.version, provider=model.provider,
                 onnx=str(onnx_path), quantization=model.quantization,
                 max_batch=model.batcher.max_batch if model.batcher else 1)
        return model

    def new_session(self) -> DecodeSession:
        """A fresh single-sequence decoder with its own KV cache; safe to drive from any worker thread."""
        if self.batcher is not None:
            return BatchedDecodeSession(self.session, self.batcher, self._n_layer, self.spec.kv_heads,
                                        self.spec.head_dim, self.max_context, self.prefixes, self.gate)
        return OrtDecodeSession(self.session, self._n_layer, self.spec.kv_heads, self.spec.head_dim,
                                self.max_context, self._device, self.prefixes, self.gate)


OrtEdgeModel = OrtGpt2Model
