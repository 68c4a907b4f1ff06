"""Cloud LLaMA engine: parity with HF generate, LoRA adapters, load errors, threads."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from cloud_node.llama_engine import LlamaModel
from cloud_node.lora import make_lora_adapter
from netgpt.engine import ModelLoadError
from netgpt.generation import SamplingParams, generate_tokens
from netgpt.hashing import sha256_file, sha256_of_files
from netgpt.tiny_models import TinyModels, ensure_tiny_models

PROMPTS = ["the quick brown fox", "radio access network", "hello"]
GREEDY = SamplingParams(max_new_tokens=16)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    return ensure_tiny_models(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def base(tiny: TinyModels) -> LlamaModel:
    return LlamaModel.load(tiny.llama_dir, device="cpu")


@pytest.fixture(scope="session")
def adapter_dir(tiny: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lora_adapter(tiny.llama_dir, tmp_path_factory.mktemp("lora") / "adapter", seed=7)


@pytest.fixture(scope="session")
def adapted(tiny: TinyModels, adapter_dir: Path) -> LlamaModel:
    return LlamaModel.load(tiny.llama_dir, adapter_dir=adapter_dir, device="cpu")


def engine_greedy(model: LlamaModel, prompt: str) -> list[int]:
    ids = model.tokenizer.encode(prompt, add_special_tokens=False)
    return [p.token_id for p in generate_tokens(model.new_session(), model.tokenizer, ids, GREEDY)]


def hf_greedy(model: LlamaModel, prompt: str) -> list[int]:
    ids = model.tokenizer.encode(prompt, add_special_tokens=False)
    input_ids = torch.tensor([ids])
    with torch.inference_mode():
        out = model.model.generate(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
            max_new_tokens=GREEDY.max_new_tokens, pad_token_id=model.tokenizer.eos_token_id,
        )
    new = out[0, len(ids):].tolist()
    eos = model.tokenizer.eos_token_id
    return new[: new.index(eos)] if eos in new else new


def test_identity_and_metadata(base: LlamaModel, tiny: TinyModels) -> None:
    weights = sorted(tiny.llama_dir.glob("*.safetensors"))
    assert base.identity.sha256 == sha256_of_files(weights)
    assert base.identity.version == base.identity.sha256[:12]
    assert base.identity.name == tiny.llama_dir.name
    assert base.max_context == 512
    assert base.device == "cpu"


def test_explicit_name_and_version(tiny: TinyModels) -> None:
    model = LlamaModel.load(tiny.llama_dir, device="cpu", name="llama-tiny", version="v3")
    assert (model.identity.name, model.identity.version) == ("llama-tiny", "v3")


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_matches_hf_generate(base: LlamaModel, prompt: str) -> None:
    ours = engine_greedy(base, prompt)
    assert len(ours) > 0
    assert ours == hf_greedy(base, prompt)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_adapter_greedy_matches_hf_generate(adapted: LlamaModel, prompt: str) -> None:
    assert engine_greedy(adapted, prompt) == hf_greedy(adapted, prompt)


def test_adapter_changes_output_and_identity(base: LlamaModel, adapted: LlamaModel, adapter_dir: Path) -> None:
    assert any(engine_greedy(base, p) != engine_greedy(adapted, p) for p in PROMPTS)
    assert adapted.identity.sha256 != base.identity.sha256
    assert adapted.identity.version != base.identity.version
    assert adapted.adapter_dir == adapter_dir


def test_adapter_is_seeded(tiny: TinyModels, adapter_dir: Path, tmp_path: Path) -> None:
    again = make_lora_adapter(tiny.llama_dir, tmp_path / "again", seed=7)
    other = make_lora_adapter(tiny.llama_dir, tmp_path / "other", seed=8)
    name = "adapter_model.safetensors"
    assert sha256_file(again / name) == sha256_file(adapter_dir / name)
    assert sha256_file(other / name) != sha256_file(adapter_dir / name)


def test_merged_adapter_matches_unmerged(tiny: TinyModels, adapter_dir: Path, adapted: LlamaModel) -> None:
    merged = LlamaModel.load(tiny.llama_dir, adapter_dir=adapter_dir, device="cpu", merge=True)
    assert engine_greedy(merged, PROMPTS[0]) == engine_greedy(adapted, PROMPTS[0])


def _wider_llama(tiny: TinyModels, folder: Path) -> Path:
    """A LLaMA folder like the tiny one but with a different hidden size."""
    config = LlamaConfig.from_pretrained(tiny.llama_dir)
    config.hidden_size, config.intermediate_size = 32, 64
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return folder


def test_mismatched_adapter_refused(tiny: TinyModels, tmp_path: Path) -> None:
    other_base = _wider_llama(tiny, tmp_path / "wide")
    bad = make_lora_adapter(other_base, tmp_path / "bad")
    with pytest.raises(ModelLoadError, match="adapter") as info:
        LlamaModel.load(tiny.llama_dir, adapter_dir=bad, device="cpu")
    assert "\n" not in str(info.value)
    assert "q_proj" in str(info.value) or "v_proj" in str(info.value)


def test_adapter_for_missing_module_refused(tiny: TinyModels, adapter_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(adapter_dir, bad)
    config = json.loads((bad / "adapter_config.json").read_text())
    config["target_modules"] = ["no_such_proj"]
    (bad / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="adapter"):
        LlamaModel.load(tiny.llama_dir, adapter_dir=bad, device="cpu")


def test_pickled_adapter_refused(tiny: TinyModels, adapter_dir: Path, tmp_path: Path) -> None:
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(adapter_dir / "adapter_config.json", pickled)
    torch.save({}, pickled / "adapter_model.bin")
    with pytest.raises(ModelLoadError, match="safetensors"):
        LlamaModel.load(tiny.llama_dir, adapter_dir=pickled, device="cpu")


@pytest.mark.parametrize("case", ["missing", "no_adapter_config", "not_lora"])
def test_invalid_adapter_folder(tiny: TinyModels, adapter_dir: Path, tmp_path: Path, case: str) -> None:
    folder = tmp_path / "adapter"
    if case != "missing":
        shutil.copytree(adapter_dir, folder)
    if case == "no_adapter_config":
        (folder / "adapter_config.json").unlink()
    if case == "not_lora":
        config = json.loads((folder / "adapter_config.json").read_text())
        config["peft_type"] = "PROMPT_TUNING"
        (folder / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="adapter"):
        LlamaModel.load(tiny.llama_dir, adapter_dir=folder, device="cpu")


@pytest.mark.parametrize("case", ["missing", "no_config", "gpt2", "no_weights"])
def test_invalid_model_folder(tiny: TinyModels, tmp_path: Path, case: str) -> None:
    folder = {"missing": tmp_path / "nope", "gpt2": tiny.gpt2_dir}.get(case, tmp_path / "model")
    if case in ("no_config", "no_weights"):
        shutil.copytree(tiny.llama_dir, folder)
        (folder / "config.json").unlink() if case == "no_config" else None
        for weights in folder.glob("*.safetensors") if case == "no_weights" else []:
            weights.unlink()
    with pytest.raises(ModelLoadError) as info:
        LlamaModel.load(folder, device="cpu")
    assert "\n" not in str(info.value)


def test_bad_device_and_dtype(tiny: TinyModels) -> None:
    with pytest.raises(ModelLoadError, match="dtype"):
        LlamaModel.load(tiny.llama_dir, device="cpu", dtype="float8")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA"):
            LlamaModel.load(tiny.llama_dir, device="cuda")


def test_concurrent_sessions_match_sequential(adapted: LlamaModel) -> None:
    expected = {p: engine_greedy(adapted, p) for p in PROMPTS[:2]}
    results: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(prompt: str) -> None:
        try:
            start.wait()
            results[prompt] = engine_greedy(adapted, prompt)
        except BaseException as exc:  # surfaced below; a thread can't fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(p,)) for p in PROMPTS[:2]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert results == expected


def test_sha256_of_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"x" * (3 << 20) + b"tail")
    b.write_bytes(b"other")
    assert sha256_of_files([a]) == sha256_file(a)
    assert sha256_of_files([a, b]) != sha256_of_files([b, a])
    assert sha256_of_files([a, b]) != sha256_file(a)
    with pytest.raises(ValueError):
        sha256_of_files([])
