"""Edge GPT-2 on ONNX Runtime: export parity with torch, greedy equality, export cache, load errors."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from decode_helpers import step_together
from helpers import captured_events
from transformers import DynamicCache, GPT2LMHeadModel

from edge_node.model.decode_batch import DecodeBatcher
from edge_node.model.onnx_export import (
    check_parity,
    ensure_onnx_export,
    export_gpt2_onnx,
    past_names,
)
from edge_node.model.ort_engine import CUDA_EP, OrtGpt2Model
from netgpt.engine import ModelLoadError
from netgpt.generation import SamplingParams, generate_tokens
from netgpt.hashing import sha256_of_files
from netgpt.tiny_models import TinyModels, ensure_tiny_models
from netgpt.torch_decode import TorchDecodeSession

TOL = 1e-4
PROMPTS = ["the quick brown fox", "radio access network", "hello"]


def _export_events(logs: list[dict]) -> list[str]:
    """Only ours: servers left running by other test modules log from their own threads."""
    return [e["event"] for e in logs if str(e["event"]).startswith("onnx.export.")]


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("netgpt-cache")


@pytest.fixture(scope="module")
def tiny(cache_root: Path) -> TinyModels:
    return ensure_tiny_models(cache_root)


@pytest.fixture(scope="module")
def onnx_path(tiny: TinyModels, cache_root: Path) -> Path:
    return ensure_onnx_export(tiny.gpt2_dir, cache_root)


@pytest.fixture(scope="module")
def torch_model(tiny: TinyModels) -> GPT2LMHeadModel:
    return GPT2LMHeadModel.from_pretrained(tiny.gpt2_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def raw_session(onnx_path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def edge_model(tiny: TinyModels, cache_root: Path) -> OrtGpt2Model:
    return OrtGpt2Model.load(tiny.gpt2_dir, cache_root=cache_root, providers="cpu")


def test_graph_signature(raw_session: ort.InferenceSession, torch_model: GPT2LMHeadModel) -> None:
    n_layer = torch_model.config.n_layer
    inputs = [i.name for i in raw_session.get_inputs()]
    outputs = [o.name for o in raw_session.get_outputs()]
    assert inputs == ["input_ids", "attention_mask", "position_ids", *past_names(n_layer)]
    assert outputs[0] == "logits" and len(outputs) == 1 + 2 * n_layer
    batch, _, past, _ = raw_session.get_inputs()[3].shape
    assert isinstance(batch, str) and isinstance(past, str)  # dynamic axes, not traced sizes


def test_check_parity_helper(tiny: TinyModels, onnx_path: Path) -> None:
    assert check_parity(tiny.gpt2_dir, onnx_path, prompt_lengths=(1, 5, 17), batch_sizes=(1, 2)) < TOL


def _torch_logits(model: GPT2LMHeadModel, ids, mask, pos, cache: DynamicCache) -> np.ndarray:
    with torch.inference_mode():
        out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                    position_ids=torch.from_numpy(pos), past_key_values=cache, use_cache=True)
    return out.logits.numpy()


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("length", [1, 5, 17])
def test_raw_graph_prefill_and_decode_match_torch(
    raw_session: ort.InferenceSession, torch_model: GPT2LMHeadModel, batch: int, length: int
) -> None:
    config = torch_model.config
    heads, head_dim = config.n_head, config.n_embd // config.n_head
    rng = np.random.default_rng(length * 10 + batch)
    ids = rng.integers(0, config.vocab_size, (batch, length), dtype=np.int64)
    mask = np.ones((batch, length), np.int64)
    pos = np.tile(np.arange(length, dtype=np.int64), (batch, 1))
    empty = {n: np.zeros((batch, heads, 0, head_dim), np.float32) for n in past_names(config.n_layer)}

    cache = DynamicCache(config=config)
    expected = _torch_logits(torch_model, ids, mask, pos, cache)
    outputs = raw_session.run(None, {"input_ids": ids, "attention_mask": mask, "position_ids": pos, **empty})
    assert outputs[0].shape == (batch, length, config.vocab_size)
    np.testing.assert_allclose(outputs[0], expected, rtol=0, atol=TOL)
    for layer in range(config.n_layer):  # present == torch's cache, so decode starts from the same state
        np.testing.assert_allclose(outputs[1 + 2 * layer], cache.layers[layer].keys.numpy(), rtol=0, atol=TOL)
        np.testing.assert_allclose(outputs[2 + 2 * layer], cache.layers[layer].values.numpy(), rtol=0, atol=TOL)

    step = rng.integers(0, config.vocab_size, (batch, 1), dtype=np.int64)  # one decode step with past
    mask2 = np.ones((batch, length + 1), np.int64)
    pos2 = np.full((batch, 1), length, np.int64)
    expected2 = _torch_logits(torch_model, step, mask2, pos2, cache)
    past = dict(zip(past_names(config.n_layer), outputs[1:], strict=True))
    outputs2 = raw_session.run(None, {"input_ids": step, "attention_mask": mask2, "position_ids": pos2, **past})
    assert outputs2[1].shape == (batch, heads, length + 1, head_dim)
    np.testing.assert_allclose(outputs2[0], expected2, rtol=0, atol=TOL)


def test_attention_mask_is_honoured(raw_session: ort.InferenceSession, torch_model: GPT2LMHeadModel) -> None:
    """Batch 2 with a left-padded row: real positions match torch, so the mask is wired, not ignored."""
    config = torch_model.config
    heads, head_dim = config.n_head, config.n_embd // config.n_head
    ids = np.random.default_rng(3).integers(0, config.vocab_size, (2, 6), dtype=np.int64)
    mask = np.ones((2, 6), np.int64)
    mask[0, :2] = 0
    pos = np.clip(np.cumsum(mask, axis=1) - 1, 0, None).astype(np.int64)
    empty = {n: np.zeros((2, heads, 0, head_dim), np.float32) for n in past_names(config.n_layer)}
    expected = _torch_logits(torch_model, ids, mask, pos, DynamicCache(config=config))
    got = raw_session.run(None, {"input_ids": ids, "attention_mask": mask, "position_ids": pos, **empty})[0]
    np.testing.assert_allclose(got[0, 2:], expected[0, 2:], rtol=0, atol=TOL)
    np.testing.assert_allclose(got[1], expected[1], rtol=0, atol=TOL)
    unmasked = raw_session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(mask),
                                      "position_ids": pos, **empty})[0]
    assert np.abs(unmasked[0, 2:] - got[0, 2:]).max() > 1e-3


def test_decode_session_logits_match_torch_session(edge_model: OrtGpt2Model, torch_model: GPT2LMHeadModel) -> None:
    ids = edge_model.tokenizer.encode("radio access network", add_special_tokens=False)
    ours, ref = edge_model.new_session(), TorchDecodeSession(torch_model, torch.device("cpu"))
    np.testing.assert_allclose(ours.prefill(ids), ref.prefill(ids), rtol=0, atol=TOL)
    for token in (5, 17, 200):
        np.testing.assert_allclose(ours.advance(token), ref.advance(token), rtol=0, atol=TOL)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_tokens_identical_to_torch(edge_model: OrtGpt2Model, torch_model: GPT2LMHeadModel, prompt: str) -> None:
    params = SamplingParams(max_new_tokens=20)
    tokenizer = edge_model.tokenizer
    ids = tokenizer.encode(prompt, add_special_tokens=False)
    ours = [p.token_id for p in generate_tokens(edge_model.new_session(), tokenizer, ids, params)]
    ref_session = TorchDecodeSession(torch_model, torch.device("cpu"))
    ref = [p.token_id for p in generate_tokens(ref_session, tokenizer, ids, params)]
    assert ours == ref and len(ours) > 0

    input_ids = torch.tensor([ids])
    with torch.inference_mode():
        out = torch_model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                                   max_new_tokens=20, pad_token_id=tokenizer.eos_token_id)
    hf = out[0, len(ids):].tolist()
    eos = tokenizer.eos_token_id
    assert ours == (hf[: hf.index(eos)] if eos in hf else hf)


def test_concurrent_sessions_share_one_inference_session(edge_model: OrtGpt2Model) -> None:
    """No lock: each decode session owns its cache; concurrent decode steps batch; same tokens as alone."""
    params = SamplingParams(max_new_tokens=20)
    tokenizer = edge_model.tokenizer
    prompts = [tokenizer.encode(p, add_special_tokens=False) for p in PROMPTS * 2]
    sequential = [[t.token_id for t in generate_tokens(edge_model.new_session(), tokenizer, ids, params)]
                  for ids in prompts]
    results: list[list[int] | None] = [None] * len(prompts)

    def worker(i: int) -> None:
        results[i] = [t.token_id for t in generate_tokens(edge_model.new_session(), tokenizer, prompts[i], params)]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == sequential


def test_batched_decode_steps_match_torch_across_lengths(edge_model: OrtGpt2Model,
                                                        torch_model: GPT2LMHeadModel) -> None:
    """Sessions at different lengths step as one ORT run (left-padded caches) and still match torch."""
    batcher = DecodeBatcher(edge_model.session, torch_model.config.n_layer, max_batch=4, gather_s=30.0)
    model = OrtGpt2Model(edge_model.session, edge_model.tokenizer, edge_model.identity,
                         torch_model.config.to_dict(), edge_model.onnx_path, max_batch=1)
    model.batcher = batcher  # a gather window long enough that all three always meet
    prompts = [[3, 9, 27], [5] * 11, [7, 8]]
    ours = [model.new_session() for _ in prompts]
    refs = [TorchDecodeSession(torch_model, torch.device("cpu")) for _ in prompts]
    for session, ref, ids in zip(ours, refs, prompts, strict=True):
        np.testing.assert_allclose(session.prefill(ids), ref.prefill(ids), rtol=0, atol=TOL)
    tokens = [[5, 17, 200, 4], [1, 2, 3, 4], [40, 41, 42, 43]]
    got = step_together(ours, tokens)
    assert batcher.steps == 12 and batcher.runs == 4  # every step of the three ran as one batch
    for i, ref in enumerate(refs):
        for token, logits in zip(tokens[i], got[i], strict=True):
            np.testing.assert_allclose(logits, ref.advance(token), rtol=0, atol=TOL)


def test_unbatched_sessions_match_torch(tiny: TinyModels, cache_root: Path, torch_model: GPT2LMHeadModel) -> None:
    """``max_batch=1``: the io-binding decoder (what CUDA uses) is exact too."""
    model = OrtGpt2Model.load(tiny.gpt2_dir, cache_root=cache_root, providers="cpu", max_batch=1)
    assert model.batcher is None
    ids = model.tokenizer.encode("radio access network", add_special_tokens=False)
    ours, ref = model.new_session(), TorchDecodeSession(torch_model, torch.device("cpu"))
    np.testing.assert_allclose(ours.prefill(ids), ref.prefill(ids), rtol=0, atol=TOL)
    for token in (5, 17, 200):
        np.testing.assert_allclose(ours.advance(token), ref.advance(token), rtol=0, atol=TOL)


def test_model_identity_and_limits(edge_model: OrtGpt2Model, tiny: TinyModels) -> None:
    sha = sha256_of_files(sorted(tiny.gpt2_dir.glob("*.safetensors")))
    assert edge_model.identity.sha256 == sha and edge_model.identity.version == sha[:12]
    assert edge_model.identity.name == "gpt2"
    assert edge_model.max_context == 512
    assert edge_model.provider == "CPUExecutionProvider"
    session = edge_model.new_session()
    with pytest.raises(RuntimeError):
        session.advance(1)
    with pytest.raises(ValueError):
        session.prefill([1] * 513)


def test_second_ensure_reuses_cache(tiny: TinyModels, onnx_path: Path, cache_root: Path) -> None:
    before = onnx_path.stat().st_mtime_ns
    with captured_events() as logs:
        again = ensure_onnx_export(tiny.gpt2_dir, cache_root)
    assert again == onnx_path
    assert again.stat().st_mtime_ns == before
    assert _export_events(logs) == ["onnx.export.cached"]


def test_changed_config_gets_a_new_export(tiny: TinyModels, cache_root: Path, tmp_path: Path, onnx_path: Path) -> None:
    folder = tmp_path / "gpt2-b"
    shutil.copytree(tiny.gpt2_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["layer_norm_epsilon"] = 1e-6  # a config change alone must change the key
    (folder / "config.json").write_text(json.dumps(config))
    with captured_events() as logs:
        other = ensure_onnx_export(folder, cache_root)
    assert other != onnx_path and other.is_file()
    assert _export_events(logs) == ["onnx.export.done"]


def test_export_into_existing_complete_folder_keeps_it(tiny: TinyModels, onnx_path: Path) -> None:
    """The race case: someone else renamed a complete export into place first."""
    before = onnx_path.stat().st_mtime_ns
    assert export_gpt2_onnx(tiny.gpt2_dir, onnx_path.parent) == onnx_path
    assert onnx_path.stat().st_mtime_ns == before
    assert not [p for p in onnx_path.parent.parent.iterdir() if p.name.startswith(".export-")]


def _broken(tiny: TinyModels, tmp_path: Path, how: str) -> Path:
    folder = tmp_path / how
    shutil.copytree(tiny.gpt2_dir, folder)
    if how == "no-config":
        (folder / "config.json").unlink()
    elif how == "bert":  # an architecture the edge does not serve (GPT-2 and LLaMA are)
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config | {"model_type": "bert"}))
    elif how == "no-weights":
        for weights in folder.glob("*.safetensors"):
            weights.unlink()
    elif how == "bad-json":
        (folder / "config.json").write_text("{not json")
    elif how == "truncated-weights":
        for weights in folder.glob("*.safetensors"):
            weights.write_bytes(weights.read_bytes()[:100])
    return folder


@pytest.mark.parametrize("how", ["no-config", "bert", "no-weights", "bad-json", "truncated-weights", "missing"])
def test_invalid_folders_raise_model_load_error(tiny: TinyModels, tmp_path: Path, cache_root: Path, how: str) -> None:
    folder = tmp_path / "nowhere" if how == "missing" else _broken(tiny, tmp_path, how)
    with pytest.raises(ModelLoadError) as excinfo:
        OrtGpt2Model.load(folder, cache_root=cache_root, providers="cpu")
    assert "\n" not in str(excinfo.value)
    with pytest.raises(ModelLoadError):
        ensure_onnx_export(folder, cache_root)


def test_unknown_provider_is_refused(tiny: TinyModels, cache_root: Path) -> None:
    with pytest.raises(ModelLoadError, match="unknown providers"):
        OrtGpt2Model.load(tiny.gpt2_dir, cache_root=cache_root, providers="tpu")


def _cuda_usable(onnx_path: Path) -> bool:
    if CUDA_EP not in ort.get_available_providers():
        return False
    session = ort.InferenceSession(str(onnx_path), providers=[CUDA_EP, "CPUExecutionProvider"])
    return CUDA_EP in session.get_providers()


def test_cuda_without_gpu_is_a_load_error(tiny: TinyModels, cache_root: Path, onnx_path: Path) -> None:
    if _cuda_usable(onnx_path):
        pytest.skip("ONNX Runtime's CUDA provider is usable on this machine")
    with pytest.raises(ModelLoadError, match="cuda"):
        OrtGpt2Model.load(tiny.gpt2_dir, cache_root=cache_root, providers="cuda")


def test_auto_provider_gives_a_working_session(
    tiny: TinyModels, cache_root: Path, torch_model: GPT2LMHeadModel
) -> None:
    model = OrtGpt2Model.load(tiny.gpt2_dir, cache_root=cache_root, providers="auto")
    assert model.provider == model.session.get_providers()[0]
    ids = model.tokenizer.encode("hello", add_special_tokens=False)
    assert model.new_session().prefill(ids).shape == (torch_model.config.vocab_size,)
