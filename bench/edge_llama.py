"""Edge generation with a LLaMA-family model: SmolLM2-135M-Instruct (the pretrained base) on ONNX Runtime, fp32
and int8, against PyTorch eager ``generate``, in one run on the same CPU.

    python -m bench.edge_llama [--out bench/reports/edge_llama.json] [--repeats 3]

The model is the pretrained base (``netgpt.checkpoint.pretrained``: 134.5M parameters, 30 layers, 9 query
heads over 3 KV heads), imported from its package on first use; its ONNX exports are made and cached the way an
edge node makes them, and int8 is the graph that passed the quality gate (its figures are in the report; if it
failed, the ungated graph is timed and the failure reported). Workload as in :mod:`bench.edge_generation`:
greedy, batch 1, a 32-token prompt, exactly 64 new tokens (EOS suppressed), same thread count for every path,
runs alternating between paths, medians. Per path:

- ``tokens_per_s``: the whole generation (prefill + 64 tokens), as the GPT-2 figures are;
- ``first_token_ms``: the prompt's prefill up to the first token, timed alone (torch: one forward with a cache).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bench.edge_generation import (
    PROMPT_TOKENS,
    SEED,
    machine_info,
    machine_line,
    open_graph,
    quantized_graph,
    race,
    random_prompt,
    save_and_print,
    speed,
)
from edge_node.model.onnx_export import load_torch_decoder
from edge_node.model.quantize import ensure_quantized_export
from netgpt.checkpoint.pretrained import PRETRAINED_NAME, pretrained_base
from netgpt.tiny_models import default_cache_root

QUANTIZED = ("int8",)
TORCH = "torch_eager_generate"


def first_token(model_dir: Path, cache_root: Path, threads: int, repeats: int) -> dict[str, dict]:
    """Median time from a prompt to the first token's logits, torch eager vs each ORT graph."""
    torch_model, spec = load_torch_decoder(model_dir)
    eos = int(torch_model.config.eos_token_id)
    prompt = random_prompt(np.random.default_rng(SEED), PROMPT_TOKENS, spec.vocab_size, eos)

    def torch_first() -> list[int]:
        with torch.inference_mode():
            out = torch_model(input_ids=torch.tensor([prompt]), use_cache=True)
        return [int(out.logits[0, -1].argmax())]

    sides: dict[str, Callable[[], list[int]]] = {TORCH: torch_first}
    graphs = {"fp32": ensure_quantized_export(model_dir, "fp32", cache_root)}
    graphs |= {q: quantized_graph(model_dir, q, cache_root)[0] for q in QUANTIZED}
    for q, path in graphs.items():
        model = open_graph(model_dir, path, threads, max_batch=1)
        sides[f"onnxruntime_{q}"] = lambda model=model: [int(np.argmax(model.new_session().prefill(prompt)))]
    results, tokens = race(sides, repeats)
    return {name: {"first_token_ms": row["median_s"] * 1000, "first_token_runs_s": row["runs_s"],
                   "first_token_equals_torch": tokens[name] == tokens[TORCH]} for name, row in results.items()}


def run(repeats: int, cache_root: Path, threads: int) -> dict:
    torch.set_num_threads(threads)  # ORT gets the same count
    load_at_start = round(os.getloadavg()[0], 2)
    started = time.perf_counter()
    model_dir = pretrained_base(cache_root).folder
    ensure_quantized_export(model_dir, "fp32", cache_root)
    for q in QUANTIZED:
        quantized_graph(model_dir, q, cache_root)
    prepare_s = time.perf_counter() - started
    generation, info = speed(model_dir, cache_root, threads, repeats, QUANTIZED)
    first = first_token(model_dir, cache_root, threads, repeats)
    results = {name: {**row, **first[name]} for name, row in generation.items()}
    return {
        "benchmark": "edge_llama",
        "model": {"name": PRETRAINED_NAME, "folder": str(model_dir), **info},
        "workload": {"batch": 1, "prompt_tokens": PROMPT_TOKENS, "new_tokens": 64, "greedy": True,
                     "repeats": repeats, "import_export_quantize_or_cache_s": round(prepare_s, 3)},
        "results": results,
        "machine": {**machine_info(threads), "loadavg_1m_at_start": load_at_start},
    }


def print_table(report: dict) -> None:
    print(f"{report['model']['name']} ({report['model']['params'] / 1e6:.1f}M), batch 1, "
          f"{report['workload']['prompt_tokens']}-token prompt, {report['workload']['new_tokens']} new tokens")
    print(f"{'path':<26}{'tok/s':>8}{'x torch':>9}{'first token ms':>16}{'greedy = torch':>16}{'graph MiB':>11}")
    equal = report["model"]["greedy_tokens_equal_torch"]
    for name, row in report["results"].items():
        size = report["model"]["graph_mib"].get(name.removeprefix("onnxruntime_"), "")
        print(f"{name:<26}{row['tokens_per_s']:>8.1f}{row['ratio_over_torch']:>9.2f}{row['first_token_ms']:>16.1f}"
              f"{str(equal[name]):>16}{size!s:>11}")
    for q, gate in report["model"]["gate"].items():
        figures = "".join(f"; {scope}: perplexity {gate[scope]['perplexity_increase']:+.2%}, greedy agreement "
                          f"{gate[scope]['greedy_agreement']:.1%}"
                          for scope in ("whole_text", "answers") if scope in gate)
        print(f"{q} gate: {gate.get('gate')}{figures}")
    print(machine_line(report["machine"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/reports/edge_llama.json"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="CPU threads of torch and ONNX Runtime alike (default: torch's, one per core); on a "
                             "CPU other work shares, 1 keeps torch eager's per-op thread barriers out of the figures")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: $NETGPT_CACHE_DIR or ~/.cache/netgpt")
    args = parser.parse_args(argv)
    report = run(max(1, args.repeats), args.cache_dir or default_cache_root(), max(1, args.threads))
    save_and_print(report, args.out, print_table)
    if not report["model"]["greedy_tokens_equal_torch"]["onnxruntime_fp32"]:
        print("FAIL: ONNX Runtime fp32 and torch produced different greedy tokens", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
