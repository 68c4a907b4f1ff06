"""The popularity model's recipe: the starter GPT-2 (``netgpt/assets/starter/gpt2``) with the prompt
format's special tokens added (embeddings resized), fine-tuned FULL with the project's trainer on
the labelled windows of the training 95 % of seeded synthetic logs (seeds 2024..2027), saved as fp16 safetensors with
``recipe.json`` (seed, dataset sha256, steps, losses, train seconds, machine, evaluation) under
``netgpt/assets/netmgmt/popularity``.

``python -m tasks.popularity.recipe [--quick] [--threads N] [--out DIR]``; ``make netmgmt-models``
runs it. ``--quick`` trains a few steps on a few windows and skips the evaluation: it checks the
recipe, not the model.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from dataclasses import asdict, replace
from importlib import resources
from pathlib import Path
from typing import Any

import structlog
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from edge_node.netmgmt.popularity import DEFAULT_LAGS, DEFAULT_TOP_K, SPECIAL_TOKENS
from netgpt.logs import configure_logging
from netgpt.training.dataset import file_sha256
from netgpt.training.trainer import TrainConfig, train
from tasks.popularity.dataset import TARGET_STRIDE, log_training_windows, write_dataset
from tasks.popularity.intervals import TRAIN_TOP_K, LabelledWindow, chronological_split
from tasks.popularity.synth import DEFAULT_SEED, SynthConfig, generate
from tasks.prompt_completion.starter import _progress_logger, _replace, folder_bytes, save_fp16
from tasks.recipes import recipe_arguments

log = structlog.get_logger("netgpt.popularity.recipe")

SEED = DEFAULT_SEED
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "netgpt" / "assets" / "netmgmt" / "popularity"
# ~108 tokens per example, 1,700 per step: ~11.5 minutes at ~3,800 tokens/s on one CPU thread
TRAIN = TrainConfig(method="full", max_steps=1500, batch_size=16, learning_rate=2e-3, warmup_steps=30,
                    weight_decay=0.01, seed=SEED, eval_fraction=0.02)
QUICK_WINDOWS = 160
# Windows from the training 95 % of several logs: the titles' names are drawn from one pool with a
# different popularity in each log, so the model has to read the history, not remember names.
TRAIN_LOGS = 4


def starter_gpt2() -> Path:
    return Path(str(resources.files("netgpt.assets").joinpath("starter", "gpt2")))


def build_base(folder: Path, starter: Path | None = None) -> Path:
    """The starter GPT-2 with SPECIAL_TOKENS in its tokenizer and embeddings: the trainer's base."""
    starter = starter or starter_gpt2()
    tokenizer = AutoTokenizer.from_pretrained(starter)
    tokenizer.add_tokens(list(SPECIAL_TOKENS), special_tokens=True)
    torch.manual_seed(SEED)  # mean-resizing draws the new rows around the mean embedding
    model = AutoModelForCausalLM.from_pretrained(starter, dtype=torch.float32)
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def build_model(out: Path = DEFAULT_OUT, quick: bool = False, threads: int = 0, evaluate_model: bool = True,
                seed: int = SEED) -> dict[str, Any]:
    """Run the recipe into ``out`` (replaced only at the end); returns what recipe.json records."""
    started = time.perf_counter()
    synth = SynthConfig()
    seeds = [seed] if quick else [seed + i for i in range(TRAIN_LOGS)]
    train_windows: list[LabelledWindow] = []
    for log_seed in seeds:
        view_log = generate(log_seed, synth).view_log()
        split = chronological_split(view_log.num_intervals, DEFAULT_LAGS)  # recorded in recipe.json
        train_windows += log_training_windows(view_log)  # ~4,460 per log
    if quick:
        train_windows = train_windows[:: max(1, len(train_windows) // QUICK_WINDOWS)]
    config = replace(TRAIN, seed=seed, threads=threads)
    if quick:
        config = replace(config, max_steps=12, warmup_steps=2, batch_size=8)
    with tempfile.TemporaryDirectory(prefix="netgpt-popularity-") as tmp:
        work = Path(tmp)
        dataset = work / "popularity.jsonl"
        examples = write_dataset(dataset, train_windows)
        base = build_base(work / "base")
        result = train(base, dataset, work / "run", config, progress=_progress_logger("popularity"))
        staging = work / "popularity"
        save_fp16(result.output_dir, PreTrainedTokenizerFast.from_pretrained(result.output_dir), staging)
        record: dict[str, Any] = {
            "task": "popularity", "seed": seed, "quick": quick,
            "base": "netgpt/assets/starter/gpt2 + special tokens " + " ".join(SPECIAL_TOKENS),
            "data": {"synthetic_log": {k: v for k, v in asdict(synth).items()}, "log_seeds": seeds,
                     "lags": DEFAULT_LAGS, "top_k": TRAIN_TOP_K, "served_top_k": DEFAULT_TOP_K,
                     "selection": "top_k by views in the lags intervals before the window",
                     "target_stride": TARGET_STRIDE,
                     "train_targets": [split.train_targets.start, split.train_targets.stop],
                     "held_out_targets": [split.test_targets.start, split.test_targets.stop],
                     "examples": examples, "sha256": file_sha256(dataset)},
            "train": {k: v for k, v in asdict(config).items() if k != "threads"},
            "params": result.total_params, "steps": result.steps,
            "metrics": {k: round(v, 4) for k, v in result.metrics.items()},
            "train_seconds": round(result.metrics.get("train_seconds", 0.0), 1),
            "machine": f"{platform.machine()} CPU, {threads or torch.get_num_threads()} torch thread(s)",
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
            "bytes": folder_bytes(staging),
        }
        if evaluate_model and not quick:
            from tasks.popularity.evaluate import evaluate

            record["evaluation"] = evaluate(staging, seed=seed).to_json()
        record["wall_seconds"] = round(time.perf_counter() - started, 1)
        (staging / "recipe.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        _replace(staging, out)
    return record


def main(argv: list[str] | None = None) -> int:
    args = recipe_arguments(__doc__, DEFAULT_OUT, argv)
    configure_logging(json=False, level="info")
    record = build_model(args.out, args.quick, args.threads, evaluate_model=not args.no_eval)
    print(json.dumps(record["metrics"], indent=2))
    if "evaluation" in record:
        print(record["evaluation"]["table"])
    print(f"train {record['train_seconds']} s, wall {record['wall_seconds']} s, "
          f"{record['bytes'] / 2**20:.2f} MiB in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
