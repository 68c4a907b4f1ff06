"""The trainer library (netgpt/training): datasets, LoRA vs full, checkpoints and resume, the worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from netgpt.errors import InvalidArgument
from netgpt.training.dataset import Example, alpaca_prompt, check_lengths, read_jsonl
from netgpt.training.trainer import Progress, TrainConfig, TrainingCancelled, train
from netgpt.training.worker import TrainingProcess


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def rows(n: int = 24) -> list[str]:
    return [json.dumps({"prompt": f"Where is venue {i}?\nAnswer:", "completion": f" Venue {i} is on street {i % 5}."})
            for i in range(n)]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_lines(tmp_path / "data.jsonl", rows())


def quick(method: str, **overrides: object) -> TrainConfig:
    defaults: dict[str, object] = {"method": method, "max_steps": 12, "batch_size": 4, "seed": 3,
                                   "learning_rate": 5e-3 if method == "lora" else 2e-3}
    return TrainConfig(**{**defaults, **overrides})  # type: ignore[arg-type]


@pytest.mark.parametrize(("line", "expected"), [
    ('{"prompt": "a", "completion": ', "malformed JSON"),
    ('["prompt", "completion"]', "expected a JSON object"),
    ('{"prompt": "a"}', "missing field 'completion'"),
    ('{"prompt": "  ", "completion": "b"}', "field 'prompt' is empty"),
    ('{"prompt": "a", "completion": 3}', "field 'completion' must be a string"),
    ('{"text": "a"}', "expected fields 'prompt' and 'completion'"),
])
def test_jsonl_errors_name_file_and_line(tmp_path: Path, line: str, expected: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [*rows(2), "", line])
    with pytest.raises(InvalidArgument) as error:
        read_jsonl(path)
    assert f"{path}:4" in str(error.value) and expected in str(error.value)


def test_empty_and_missing_files_are_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no examples"):
        read_jsonl(write_lines(tmp_path / "empty.jsonl", ["", "  "]))
    with pytest.raises(InvalidArgument, match="does not exist"):
        read_jsonl(tmp_path / "absent.jsonl")


def test_error_excerpt_is_short_and_escaped(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "bad.jsonl", ["{\x1b[31m" + "x" * 500])
    with pytest.raises(InvalidArgument) as error:
        read_jsonl(path)
    assert "\x1b" not in str(error.value) and "\\x1b" in str(error.value) and len(str(error.value)) < 300


def test_alpaca_records_become_prompt_completion(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "alpaca.jsonl", [
        json.dumps({"instruction": "Name a fish.", "input": "", "output": "Cod."}),
        json.dumps({"instruction": "Translate.", "input": "Hallo", "output": " Hello. "}),
    ])
    first, second = read_jsonl(path)
    assert first == Example(alpaca_prompt("Name a fish."), " Cod.")
    assert second.prompt == alpaca_prompt("Translate.", "Hallo") and "### Input:\nHallo" in second.prompt
    assert second.prompt.endswith("### Response:") and second.completion == " Hello."
    assert read_jsonl(path, max_examples=1) == [first]


def test_too_long_example_names_its_line(tiny, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny.gpt2_dir)
    path = write_lines(tmp_path / "long.jsonl", [*rows(2), "", json.dumps({"prompt": "word " * 600,
                                                                           "completion": " x"})])
    with pytest.raises(InvalidArgument, match=rf"{path}:4: \d+ tokens .* context of 512"):
        check_lengths(read_jsonl(path), tokenizer, 512, source=str(path))
    check_lengths(read_jsonl(path)[:2], tokenizer, 512)


def test_full_training_lowers_loss_and_trains_every_weight(tiny, dataset: Path, tmp_path: Path) -> None:
    seen: list[Progress] = []
    result = train(tiny.gpt2_dir, dataset, tmp_path / "work", quick("full", max_steps=30, eval_fraction=0.2),
                   progress=seen.append)
    assert result.trainable_params == result.total_params > 0
    assert result.metrics["train_loss"] < result.metrics["initial_train_loss"] - 0.5
    assert "eval_loss" in result.metrics and result.metrics["tokens_per_s"] > 0
    running = [p for p in seen if p.state == "running"]
    assert [p.step for p in running] == list(range(1, 31)) and seen[-1].state == "done"
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= {p.name for p in result.output_dir.iterdir()}
    assert not (tmp_path / "work" / "checkpoints").exists()


def test_lora_trains_only_the_adapter(tiny, dataset: Path, tmp_path: Path) -> None:
    rank = 4
    result = train(tiny.llama_dir, dataset, tmp_path / "work", quick("lora", lora_rank=rank))
    # tiny LLaMA: 2 layers, hidden 64, k/v 32 wide (2 KV heads of 16): LoRA adds r * (in + out) per projection
    assert result.trainable_params == 2 * rank * ((64 + 64) + (64 + 32) + (64 + 32) + (64 + 64))
    assert result.trainable_params < result.total_params / 10
    weights = load_file(str(result.output_dir / "adapter_model.safetensors"))
    assert sum(t.numel() for t in weights.values()) == result.trainable_params
    config = json.loads((result.output_dir / "adapter_config.json").read_text())
    assert sorted(config["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"] and config["r"] == rank
    assert result.metrics["train_loss"] < result.metrics["initial_train_loss"]


def test_unknown_target_module_lists_the_ones_that_fit(tiny, dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"'q_proj' are not in this gpt2 model; modules that fit: .*c_attn"):
        train(tiny.gpt2_dir, dataset, tmp_path / "work", quick("lora", target_modules=["q_proj"]))


def test_cancelled_then_restarted_run_resumes_and_matches_an_uninterrupted_one(
        tiny, dataset: Path, tmp_path: Path) -> None:
    config = quick("full", max_steps=10, checkpoint_every=2)  # tiny GPT-2 has dropout: the RNG must resume too
    reference = train(tiny.gpt2_dir, dataset, tmp_path / "ref", config)

    work = tmp_path / "work"
    steps: list[int] = []
    with pytest.raises(TrainingCancelled):
        train(tiny.gpt2_dir, dataset, work, config, progress=lambda p: steps.append(p.step),
              cancelled=lambda: bool(steps) and steps[-1] >= 7)
    assert not (work / "output").exists()
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == ["step-4", "step-6"]  # the last 2

    resumed: list[Progress] = []
    result = train(tiny.gpt2_dir, dataset, work, config, progress=resumed.append)
    assert [p.step for p in resumed if p.state == "running"][0] == 7  # continued after step 6
    expected = load_file(str(reference.output_dir / "model.safetensors"))
    got = load_file(str(result.output_dir / "model.safetensors"))
    assert expected.keys() == got.keys()
    assert all(torch.allclose(expected[k], got[k], atol=1e-6) for k in expected)
    assert result.metrics["train_loss"] == pytest.approx(reference.metrics["train_loss"], rel=1e-5)


async def test_worker_process_reports_progress_and_result(tiny, dataset: Path, tmp_path: Path) -> None:
    worker = TrainingProcess()
    worker.start(tiny.llama_dir, dataset, tmp_path / "work", quick("lora", max_steps=5, threads=1))
    updates = [p async for p in worker.progress()]
    result = await worker.result()
    assert [p.step for p in updates if p.state == "running"] == [1, 2, 3, 4, 5]
    assert result.steps == 5 and (result.output_dir / "adapter_model.safetensors").is_file()
    assert worker._process is not None and worker._process.exitcode == 0  # reaped


async def test_worker_process_keeps_invalid_argument(tiny, tmp_path: Path) -> None:
    bad = write_lines(tmp_path / "bad.jsonl", ['{"prompt": "a", "completion": 1}'])
    worker = TrainingProcess()
    worker.start(tiny.llama_dir, bad, tmp_path / "work", quick("lora"))
    with pytest.raises(InvalidArgument, match=r"bad.jsonl:1: field 'completion' must be a string"):
        await worker.result()
    assert worker._process is not None and not worker._process.is_alive()


async def test_worker_process_cancel_leaves_no_output(tiny, dataset: Path, tmp_path: Path) -> None:
    worker = TrainingProcess()
    worker.start(tiny.gpt2_dir, dataset, tmp_path / "work", quick("full", max_steps=10_000, threads=1))
    async for update in worker.progress():
        if update.state == "running":
            worker.cancel()
    with pytest.raises(TrainingCancelled, match="cancelled at step"):
        await worker.result()
    assert not (tmp_path / "work" / "output").exists()
    assert worker._process is not None and not worker._process.is_alive()


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_starter_models_name_the_fitting_venue_and_its_hours(name: str) -> None:
    """The committed starter models answer the demo's question from the listed facts (greedy)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from edge_node.daemon import load_knowledge
    from edge_node.serving.prompt_format import context_block
    from netgpt.config import EdgeConfig
    from node.runtime import starter_models

    folder = getattr(starter_models(), f"{name}_dir")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    knowledge, cell, question = load_knowledge(EdgeConfig()), "cell-harbour-1", "Where can I eat fresh seafood tonight?"
    block = context_block(question, cell, knowledge.area(cell), knowledge.facts_for(cell, question, 3), [])
    ids = tokenizer(f"{block}\nIntent: The user wants to eat seafood.\nAnswer:", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=40, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    answer = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert "Harbour Fish Market" in answer and "11:00-22:00" in answer, answer


def test_the_starter_recipe_gives_the_same_weights_serially_and_one_process_per_model(tmp_path: Path) -> None:
    """``--jobs 2`` (make starter-models) only saves wall time: the quick recipe's weights are byte-identical."""
    from tasks.prompt_completion.starter import build_starter

    serial = build_starter(tmp_path / "serial", quick=True, threads=1, jobs=1)
    parallel = build_starter(tmp_path / "parallel", quick=True, threads=1, jobs=2)
    assert serial["models"].keys() == parallel["models"].keys() == {"gpt2", "llama"}
    for name in ("gpt2", "llama"):
        weights = [(tmp_path / run / name / "model.safetensors").read_bytes() for run in ("serial", "parallel")]
        assert weights[0] == weights[1], name
        assert serial["models"][name]["metrics"]["train_loss"] == parallel["models"][name]["metrics"]["train_loss"]


def test_the_starter_recipe_retrains_one_model_on_self_instruct_phrasings_and_keeps_the_other(tmp_path: Path) -> None:
    """``--models gpt2 --phrasings FILE``: the edge's data asks some questions in generated words (recorded with
    the file's sha256); the LLaMA is copied over unchanged, with its recipe entry."""
    from tasks.prompt_completion.starter import build_starter

    out = tmp_path / "starter"
    first = build_starter(out, quick=True, threads=1)
    llama = (out / "llama" / "model.safetensors").read_bytes()
    phrasings = tmp_path / "phrasings.jsonl"
    phrasings.write_text(json.dumps({"text": "Any spot with grilled fish near me?", "need": "seafood", "kind": "find",
                                     "template": "Any spot with grilled fish near me?"}) + "\n")
    again = build_starter(out, quick=True, threads=1, models=["gpt2"], phrasings=phrasings)
    assert (out / "llama" / "model.safetensors").read_bytes() == llama
    assert again["models"]["llama"] == first["models"]["llama"]
    dataset = again["models"]["gpt2"]["dataset"]
    assert dataset["phrasings"]["templates"] == 1 and dataset["sha256"] != first["models"]["gpt2"]["dataset"]["sha256"]
    with pytest.raises(InvalidArgument, match="unknown starter model"):
        build_starter(out, quick=True, models=["gpt3"])


def test_the_committed_weights_stay_under_40_mb() -> None:
    """The starter and network-management models and the pretrained base's adapter are committed; the project
    allows 40 MB of them in all, and 10 MB for the adapter (the base itself comes from the package index)."""
    assets = Path(__file__).resolve().parents[1] / "netgpt" / "assets"
    sizes = {folder: sum(p.stat().st_size for p in (assets / folder).rglob("*") if p.is_file())
             for folder in ("starter", "netmgmt", "pretrained_adapter")}
    assert 0 < sum(sizes.values()) < 40_000_000, sizes
    assert 0 < sizes["pretrained_adapter"] < 10_000_000, sizes
