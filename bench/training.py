"""Training figures: the starter recipes' throughput and wall time, and LoRA vs full fine-tuning.

    python -m bench.training [--recipe-steps 30] [--compare-steps 5] [--out bench/reports/training.json]

1. Starter recipes (``tasks.prompt_completion.starter``): each recipe's model and dataset, trained
   FULL for ``--recipe-steps`` steps with the recipe's hyper-parameters and thread budget (1):
   tokens/s, s/step and the projected wall time of the recipe's full step count, next to what
   ``make starter-models`` recorded in ``netgpt/assets/starter/recipe.json``.
2. LoRA vs full fine-tuning of the same model (a ~90M-parameter LLaMA, seeded random weights, the
   starter tokenizer, the cloud dataset, batch 2), each method in its own spawned child
   process so peak memory is its own: trainable parameters, optimizer state bytes (AdamW's
   tensors, counted), peak RSS of the process (``getrusage``) and peak RSS above the process's
   footprint before the model was loaded, tokens/s; every figure also as the ratio full / LoRA.

CPU only (torch's CPU allocator is malloc, so RSS is the training memory); the report says
whether a GPU was present. No GPU was available when this was written, so there is no 7B-shaped
LoRA step here.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from bench.distribution import machine
from netgpt.training.trainer import TrainConfig, TrainingRun, train
from tasks.prompt_completion.build import build_cloud_dataset
from tasks.prompt_completion.starter import DATASETS, DEFAULT_OUT, RECIPES, SEED, init_base, train_tokenizer

# GPT-2-base-sized (~90M parameters) so weights, gradients and optimizer state, not activations,
# dominate memory, as they do for the research's LLaMA-7B
COMPARE_SHAPE = {"hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 12,
                 "num_key_value_heads": 12, "max_position_embeddings": 512}
COMPARE_BATCH = 2


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def starter_tokenizer(work: Path) -> Any:
    """The committed starter tokenizer, else one trained by the recipe (same seed, same corpus)."""
    folder = DEFAULT_OUT / "tokenizer"
    if (folder / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(folder)
    from tasks.prompt_completion.build import corpus_texts

    tokenizer = train_tokenizer(corpus_texts(SEED))
    tokenizer.save_pretrained(work / "tokenizer")
    return tokenizer


def bench_recipes(work: Path, tokenizer: Any, steps: int) -> dict[str, Any]:
    recorded = {}
    if (DEFAULT_OUT / "recipe.json").is_file():
        recorded = json.loads((DEFAULT_OUT / "recipe.json").read_text()).get("models", {})
    out: dict[str, Any] = {}
    for recipe in RECIPES:
        dataset = DATASETS[recipe.name](work / f"{recipe.name}.jsonl", SEED, min(recipe.examples, 1000))
        base = init_base(recipe.name, tokenizer, work / f"base-{recipe.name}")
        config = TrainConfig(**{**asdict(recipe.config), "max_steps": steps, "warmup_steps": 2, "threads": 1,
                                "eval_fraction": 0.0})
        result = train(base, dataset, work / f"run-{recipe.name}", config)
        s_per_step = result.metrics["train_seconds"] / result.steps
        rec = recorded.get(recipe.name, {}).get("metrics", {})
        out[recipe.name] = {
            "params": result.total_params, "steps_measured": steps, "tokens_per_s": result.metrics["tokens_per_s"],
            "s_per_step": s_per_step, "projected_train_s": s_per_step * recipe.config.max_steps,
            "recipe_steps": recipe.config.max_steps,
            "recorded_train_s": rec.get("train_seconds"), "recorded_tokens_per_s": rec.get("tokens_per_s"),
            "recorded_final_train_loss": rec.get("train_loss"), "recorded_eval_loss": rec.get("eval_loss"),
        }
    return out


def _measure(method: str, base: Path, dataset: Path, work: Path, steps: int, threads: int) -> dict[str, float]:
    """In a fresh child process: load, train ``steps`` steps, count what the method costs."""
    torch.set_num_threads(threads)
    before = rss_bytes()
    config = TrainConfig(method=method, max_steps=steps, batch_size=COMPARE_BATCH, learning_rate=1e-4, seed=SEED,
                         threads=threads)
    run = TrainingRun(base, dataset, work / method, config)
    loaded = rss_bytes()
    run.step(0)  # warm-up (allocator, thread pools): in the peak, not in the timing
    tokens, started = 0, time.perf_counter()
    for step in range(1, steps):
        tokens += run.step(step)[1]
    elapsed = time.perf_counter() - started
    optimizer_bytes = sum(t.numel() * t.element_size() for state in run.optimizer.state.values()
                          for t in state.values() if isinstance(t, torch.Tensor))
    trainable = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    return {"trainable_params": trainable, "total_params": sum(p.numel() for p in run.model.parameters()),
            "optimizer_state_bytes": optimizer_bytes, "peak_rss_bytes": peak,
            "peak_training_bytes": peak - before, "model_loaded_bytes": loaded - before,
            "tokens_per_s": tokens / elapsed, "s_per_step": elapsed / (steps - 1)}


def bench_lora_vs_full(work: Path, tokenizer: Any, steps: int, threads: int) -> dict[str, Any]:
    eos = int(tokenizer.eos_token_id)
    torch.manual_seed(SEED)
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
                         **COMPARE_SHAPE)
    base = work / "compare-llama"
    LlamaForCausalLM(config).save_pretrained(base, safe_serialization=True)
    tokenizer.save_pretrained(base)
    dataset = build_cloud_dataset(work / "compare.jsonl", SEED, 256)
    methods: dict[str, dict[str, float]] = {}
    for method in ("lora", "full"):
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
            methods[method] = pool.submit(_measure, method, base, dataset, work, steps, threads).result()
    keys = ("trainable_params", "optimizer_state_bytes", "peak_rss_bytes", "peak_training_bytes", "s_per_step")
    ratios = {f"{key}_full_over_lora": methods["full"][key] / methods["lora"][key] for key in keys}
    return {"model": {"model_type": "llama", "vocab_size": len(tokenizer), **COMPARE_SHAPE},
            "steps": steps, "batch_size": COMPARE_BATCH, "threads": threads, "lora": "rank 8, alpha 16, q/k/v/o_proj",
            **methods, "ratios": ratios}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="training throughput and LoRA vs full fine-tuning")
    parser.add_argument("--recipe-steps", type=int, default=30)
    parser.add_argument("--compare-steps", type=int, default=5, help="at least 2 (the first is a warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the LoRA/full children")
    parser.add_argument("--out", type=Path, default=Path("bench/reports/training.json"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="netgpt-bench-training-") as tmp:
        work = Path(tmp)
        tokenizer = starter_tokenizer(work)
        report = {
            "bench": "training", "machine": machine(work),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "note": "CPU only: no GPU was available, so no 7B-shaped LoRA step was measured",
            "starter_recipes": bench_recipes(work, tokenizer, args.recipe_steps),
            "lora_vs_full": bench_lora_vs_full(work, tokenizer, args.compare_steps, args.threads),
        }
    report["wall_s"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    _print(report)
    print(f"report: {args.out}")
    return 0


def _print(report: dict[str, Any]) -> None:
    print(f"{'recipe':8} {'params':>10} {'tokens/s':>9} {'s/step':>7} {'projected s':>12} {'recorded s':>11}")
    for name, r in report["starter_recipes"].items():
        recorded = f"{r['recorded_train_s']:.0f}" if r["recorded_train_s"] else "-"
        print(f"{name:8} {r['params']:>10,} {r['tokens_per_s']:>9.0f} {r['s_per_step']:>7.2f} "
              f"{r['projected_train_s']:>12.0f} {recorded:>11}")
    cmp = report["lora_vs_full"]
    print(f"\nLoRA vs full, LLaMA {cmp['full']['total_params']:,} params, {cmp['steps']} steps of batch "
          f"{cmp['batch_size']}")
    print(f"{'':24} {'lora':>14} {'full':>14} {'full/lora':>10}")
    for key in ("trainable_params", "optimizer_state_bytes", "peak_rss_bytes", "peak_training_bytes", "s_per_step"):
        print(f"{key:24} {cmp['lora'][key]:>14,.2f} {cmp['full'][key]:>14,.2f} "
              f"{cmp['ratios'][key + '_full_over_lora']:>10.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
