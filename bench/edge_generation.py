"""Edge generation speed: GPT-2 124M on ONNX Runtime vs PyTorch eager ``generate``, same run, same CPU.

    python -m bench.edge_generation [--out bench/reports/edge_generation.json] [--repeats 5]

The model is GPT-2 base shaped (12 layers, 768 hidden, 12 heads, vocab 50257) with
seeded random weights, so nothing is downloaded; speed does not depend on the values.
Both sides decode greedily, batch 1, a 32-token prompt, exactly 64 new tokens (EOS
suppressed, as ``min_new_tokens`` does for torch), on the same number of CPU threads.
Runs alternate torch/ORT so machine noise hits both alike; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

from edge_node.onnx_export import ensure_onnx_export
from edge_node.ort_engine import OrtGpt2Model
from netgpt.tiny_models import default_cache_root, ensure_tiny_models

SEED = 0
PROMPT_TOKENS = 32
NEW_TOKENS = 64
BENCH_MODEL_VERSION = 1  # bump when the bench model's recipe changes


def ensure_bench_model(cache_root: Path) -> Path:
    """A GPT-2 base shaped folder with seeded random weights and the tiny tokenizer (built once)."""
    final = cache_root / "bench" / f"gpt2-124m-seed{SEED}-v{BENCH_MODEL_VERSION}"
    if (final / "config.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    try:
        torch.manual_seed(SEED)
        GPT2LMHeadModel(GPT2Config()).eval().save_pretrained(staging, safe_serialization=True)
        # the loader needs a tokenizer.json; the measured loops use ids, never text
        for item in ensure_tiny_models(cache_root).tokenizer_dir.iterdir():
            shutil.copy(item, staging / item.name)
        try:
            staging.rename(final)
        except OSError:  # a concurrent run won the race; its folder is identical
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def torch_generate(model: GPT2LMHeadModel, prompt: list[int]) -> list[int]:
    input_ids = torch.tensor([prompt])
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
            max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, pad_token_id=model.config.eos_token_id,
        )
    return out[0, len(prompt):].tolist()


def ort_generate(model: OrtGpt2Model, prompt: list[int], eos: int) -> list[int]:
    """What ``generate_tokens`` does for greedy decoding, minus detokenisation, with EOS suppressed."""
    session = model.new_session()
    logits = session.prefill(prompt)
    tokens: list[int] = []
    while True:
        logits[eos] = -np.inf
        tokens.append(int(np.argmax(logits)))
        if len(tokens) == NEW_TOKENS:
            return tokens
        logits = session.advance(tokens[-1])


def timed(fn: Callable[[], list[int]]) -> tuple[float, list[int]]:
    started = time.perf_counter()
    tokens = fn()
    return time.perf_counter() - started, tokens


def machine_info(threads: int) -> dict:
    return {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "onnxruntime": ort.__version__, "numpy": np.__version__, "threads": threads,
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),  # > cpus_usable: others shared the CPU, distrust
    }


def run(repeats: int, cache_root: Path) -> dict:
    model_dir = ensure_bench_model(cache_root)
    started = time.perf_counter()
    onnx_path = ensure_onnx_export(model_dir, cache_root)
    export_s = time.perf_counter() - started
    threads = torch.get_num_threads()  # torch's default; ORT gets the same count
    torch_model = GPT2LMHeadModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    ort_model = OrtGpt2Model.load(model_dir, cache_root=cache_root, providers="cpu", intra_op_threads=threads)
    eos = int(torch_model.config.eos_token_id)
    prompt = np.random.default_rng(SEED).integers(0, eos, PROMPT_TOKENS).tolist()
    load_at_start = round(os.getloadavg()[0], 2)

    sides = {"torch_eager_generate": lambda: torch_generate(torch_model, prompt),
             "onnxruntime_decode_session": lambda: ort_generate(ort_model, prompt, eos)}
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    tokens: dict[str, list[int]] = {}
    for name, fn in sides.items():  # warm-up: allocator, thread pools, kernel selection
        _, tokens[name] = timed(fn)
    for _ in range(repeats):
        for name, fn in sides.items():
            elapsed, produced = timed(fn)
            seconds[name].append(elapsed)
            if produced != tokens[name]:
                raise SystemExit(f"{name} is not deterministic across runs")
    results = {name: {"median_s": statistics.median(s), "tokens_per_s": NEW_TOKENS / statistics.median(s),
                      "runs_s": [round(x, 4) for x in s]} for name, s in seconds.items()}
    torch_side, ort_side = results["torch_eager_generate"], results["onnxruntime_decode_session"]
    return {
        "benchmark": "edge_generation",
        "model": {"shape": "gpt2-124m", "params": sum(p.numel() for p in torch_model.parameters()),
                  "seed": SEED, "onnx": str(onnx_path), "onnx_provider": ort_model.provider},
        "workload": {"batch": 1, "prompt_tokens": PROMPT_TOKENS, "new_tokens": NEW_TOKENS, "greedy": True,
                     "repeats": repeats, "export_or_cache_s": round(export_s, 3)},
        "results": results,
        "ratio_ort_over_torch": ort_side["tokens_per_s"] / torch_side["tokens_per_s"],
        "greedy_tokens_identical": tokens["torch_eager_generate"] == tokens["onnxruntime_decode_session"],
        "machine": {**machine_info(threads), "loadavg_1m_at_start": load_at_start},
    }


def print_table(report: dict) -> None:
    print(f"{'path':<30}{'median s':>10}{'tok/s':>10}")
    for name, row in report["results"].items():
        print(f"{name:<30}{row['median_s']:>10.3f}{row['tokens_per_s']:>10.1f}")
    machine = report["machine"]
    print(f"ratio ORT/torch: {report['ratio_ort_over_torch']:.2f}x  "
          f"(threads={machine['threads']}, cpus={machine['cpus_usable']}, {machine['processor']})")
    print(f"greedy tokens identical: {report['greedy_tokens_identical']}  "
          f"(load average {machine['loadavg_1m_at_start']} → {machine['loadavg_1m_at_end']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/reports/edge_generation.json"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: $NETGPT_CACHE_DIR or ~/.cache/netgpt")
    args = parser.parse_args(argv)
    report = run(max(1, args.repeats), args.cache_dir or default_cache_root())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"report: {args.out}")
    if not report["greedy_tokens_identical"]:
        print("FAIL: ONNX Runtime and torch produced different greedy tokens", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
