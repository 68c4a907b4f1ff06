"""Edge generation: GPT-2 on ONNX Runtime (fp32, int8, int4) vs PyTorch eager ``generate``, same run, same CPU,
with the quantised graphs' quality measured on the trained starter model.

    python -m bench.edge_generation [--out bench/reports/edge_generation.json] [--repeats 5] [--concurrency 4]

Three parts, one JSON report:

- speed: GPT-2 base shaped (12 layers, 768 hidden, 12 heads, vocab 50257) with seeded random
  weights, so nothing is downloaded; speed does not depend on the values. Every path decodes
  greedily, batch 1, a 32-token prompt, exactly 64 new tokens (EOS suppressed, as
  ``min_new_tokens`` does for torch), on the same number of CPU threads. Runs alternate between
  paths so machine noise hits all alike; medians are reported, as ratios over torch.
- batching: ``--concurrency`` generations at once on each 124M graph, their decode steps batched
  (``max_batch`` = concurrency) vs each step run alone (``max_batch=1``); total tokens/s, and
  whether batching changes any token (it does for int8, which the edge therefore never batches).
- quality (and speed) on the starter GPT-2 (``netgpt/assets/starter/gpt2``, 2.2M parameters,
  trained here): the export's quality gate figures for int8 and int4 (its own held-out
  questions) and the same measure on the prompt task's held-out evaluation questions
  (``tasks/prompt_completion/heldout.py``): perplexity and greedy (arg-max) agreement vs fp32.
  Quality on random weights says nothing, so the 124M graphs' gate figures are reported but
  not relied on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedModel

from bench.measure import timed
from bench.models import random_model_folder
from edge_node.model.architecture import read_edge_config
from edge_node.model.decode_batch import DecodeBatcher
from edge_node.model.onnx_export import load_torch_decoder
from edge_node.model.ort_engine import OrtGpt2Model, create_session
from edge_node.model.quality_gate import INTENT_TOKENS, GateSequence, bundled_knowledge, greedy_continuation
from edge_node.model.quantize import (
    BATCH_INVARIANT,
    QualityGateFailed,
    ensure_quantized_export,
    measure_quality,
    open_cpu_session,
    quality_record,
    quantize_onnx,
)
from edge_node.serving.knowledge import KnowledgeBase
from edge_node.serving.prompt_format import ANSWER_CUE, INTENT_CUE, context_block
from netgpt.engine import ModelIdentity
from netgpt.tiny_models import default_cache_root
from tasks.prompt_completion.heldout import HELD_OUT

SEED = 0
PROMPT_TOKENS = 32
NEW_TOKENS = 64
BENCH_MODEL_VERSION = 1  # bump when the bench model's recipe changes
STARTER = Path(__file__).resolve().parent.parent / "netgpt" / "assets" / "starter" / "gpt2"
QUANTIZED = ("int8", "int4")
HELDOUT_ANSWER_TOKENS = 40


def ensure_bench_model(cache_root: Path) -> Path:
    """A GPT-2 base shaped folder with seeded random weights and the tiny tokenizer (built once)."""
    return random_model_folder(cache_root, f"gpt2-124m-seed{SEED}-v{BENCH_MODEL_VERSION}", SEED,
                               lambda: GPT2LMHeadModel(GPT2Config()))


def torch_generate(model: PreTrainedModel, prompt: list[int]) -> list[int]:
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


def random_prompt(rng: np.random.Generator, length: int, vocab: int, eos: int) -> list[int]:
    """``length`` random token ids, none of them EOS."""
    ids = rng.integers(0, vocab - 1, length)
    return [int(i) + (i >= eos) for i in ids]


def machine_info(threads: int) -> dict:
    return {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "onnxruntime": ort.__version__, "numpy": np.__version__, "threads": threads,
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),  # > cpus_usable: others shared the CPU, distrust
    }


def quantized_graph(model_dir: Path, quantization: str, cache_root: Path) -> tuple[Path, dict]:
    """The gated quantised export; where the gate fails (always, on random weights) the failure is reported and
    the graph built ungated, for speed only (remembered, so later runs skip the failing gate's minutes)."""
    ungated = cache_root / "bench" / f"{model_dir.name}-{quantization}-ungated"
    failure_file = ungated / "gate_failure.txt"
    if not failure_file.is_file():
        try:
            path = ensure_quantized_export(model_dir, quantization, cache_root)
            return path, {"gate": "passed", **quality_record(path)}
        except QualityGateFailed as failure:
            ungated.mkdir(parents=True, exist_ok=True)
            quantize_onnx(ensure_quantized_export(model_dir, "fp32", cache_root), ungated / "model.onnx", quantization)
            failure_file.write_text(str(failure))
    return ungated / "model.onnx", {"gate": "failed: an edge would not serve it; timed for speed only (on random "
                                            "weights the gate's figures mean nothing)",
                                    "error": failure_file.read_text()}


def open_graph(model_dir: Path, onnx_path: Path, threads: int, max_batch: int = 8) -> OrtGpt2Model:
    """An OrtGpt2Model over a given graph of ``model_dir`` (a GPT-2 or LLaMA folder: its tokenizer and config)."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    identity = ModelIdentity(name=model_dir.name, version=onnx_path.parent.name, sha256="")
    return OrtGpt2Model(create_session(onnx_path, "cpu", threads), tokenizer, identity,
                        read_edge_config(model_dir)[0], onnx_path, max_batch)


def race(sides: dict[str, Callable[[], list[int]]], repeats: int) -> tuple[dict, dict[str, list[int]]]:
    """Warm every side, then ``repeats`` rounds alternating sides; medians and tokens per side."""
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
    return results, tokens


def speed(model_dir: Path, cache_root: Path, threads: int, repeats: int,
          quantizations: tuple[str, ...] = QUANTIZED) -> tuple[dict, dict]:
    """Batch-1 decode speed of torch eager and the ORT graphs (fp32 + ``quantizations``) of a GPT-2 or LLaMA
    folder; (results, side info)."""
    torch_model, _ = load_torch_decoder(model_dir)
    eos, vocab = int(torch_model.config.eos_token_id), int(torch_model.config.vocab_size)
    prompt = random_prompt(np.random.default_rng(SEED), PROMPT_TOKENS, vocab, eos)
    graphs = {"fp32": (ensure_quantized_export(model_dir, "fp32", cache_root), {"gate": "n/a (reference)"})}
    graphs |= {q: quantized_graph(model_dir, q, cache_root) for q in quantizations}
    models = {q: open_graph(model_dir, path, threads) for q, (path, _) in graphs.items()}
    sides: dict[str, Callable[[], list[int]]] = {"torch_eager_generate": lambda: torch_generate(torch_model, prompt)}
    for q, model in models.items():
        sides[f"onnxruntime_{q}"] = lambda model=model: ort_generate(model, prompt, eos)
    results, tokens = race(sides, repeats)
    base = results["torch_eager_generate"]["tokens_per_s"]
    for row in results.values():
        row["ratio_over_torch"] = row["tokens_per_s"] / base
    reference = tokens["torch_eager_generate"]
    info = {"params": sum(p.numel() for p in torch_model.parameters()),
            "graph_mib": {q: round(path.stat().st_size / 2**20, 1) for q, (path, _) in graphs.items()},
            "greedy_tokens_equal_torch": {name: toks == reference for name, toks in tokens.items()},
            "gate": {q: g for q, (_, g) in graphs.items()}}
    return results, info


def generate_together(model: OrtGpt2Model, prompts: list[list[int]], eos: int) -> list[int]:
    """Every prompt on its own thread at once (as the edge's runner does); all tokens, prompt order."""
    outputs: list[list[int]] = [[] for _ in prompts]

    def one(i: int) -> None:
        outputs[i] = ort_generate(model, prompts[i], eos)

    workers = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return [t for out in outputs for t in out]


def batching(model_dir: Path, graphs: dict[str, Path], threads: int, concurrency: int, repeats: int) -> dict:
    """``concurrency`` generations at once per graph: decode steps batched vs one run per step; total tokens/s.

    The batched side is forced on for int8 too (the engine does not batch int8: see
    ``edge_node.model.quantize.BATCH_INVARIANT``) to show why: its tokens then differ from unbatched ones.
    """
    config, spec = read_edge_config(model_dir)
    eos, vocab = int(config["eos_token_id"]), spec.vocab_size
    rng = np.random.default_rng(SEED + 1)
    prompts = [random_prompt(rng, PROMPT_TOKENS - 3 * i, vocab, eos) for i in range(concurrency)]  # lengths differ
    report: dict[str, dict] = {}
    for quantization, path in graphs.items():
        batched = open_graph(model_dir, path, threads, concurrency)
        if batched.batcher is None:
            batched.batcher = DecodeBatcher(batched.session, spec.n_layer, concurrency)
        models = {"steps_batched": batched, "step_per_run": open_graph(model_dir, path, threads, 1)}
        times: dict[str, list[float]] = {name: [] for name in models}
        tokens = {name: generate_together(model, prompts, eos) for name, model in models.items()}  # warm-up
        for _ in range(repeats):
            for name, model in models.items():
                elapsed, _ = timed(lambda model=model: generate_together(model, prompts, eos))
                times[name].append(elapsed)
        rows: dict[str, dict] = {}
        for name, model in models.items():
            median, batcher = statistics.median(times[name]), model.batcher
            rows[name] = {"median_s": median, "tokens_per_s": concurrency * NEW_TOKENS / median,
                          "mean_batch": batcher.steps / batcher.runs if batcher and batcher.runs else 1.0}
        same = np.asarray(tokens["steps_batched"]) == np.asarray(tokens["step_per_run"])
        report[quantization] = {
            "results": rows, "served_batched": quantization in BATCH_INVARIANT,
            "greedy_tokens_identical": bool(same.all()), "greedy_tokens_agreement": float(same.mean()),
            "ratio_batched_over_per_step": rows["steps_batched"]["tokens_per_s"] / rows["step_per_run"]["tokens_per_s"]}
    return {"concurrency": concurrency, "graphs": report}


def heldout_sequences(model_dir: Path, reference: ort.InferenceSession, knowledge: KnowledgeBase) -> list[GateSequence]:
    """The evaluation set's questions as the edge prompts them, with fp32's greedy intent and answer."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    spec, eos = read_edge_config(model_dir)[1], tokenizer.eos_token_id
    sequences = []
    for q in HELD_OUT:
        facts = knowledge.facts_for(q.cell_id, q.question, 3)
        prompt = context_block(q.question, q.cell_id, knowledge.area(q.cell_id), facts, []) + INTENT_CUE
        ids = tokenizer.encode(prompt, add_special_tokens=False)
        intent = greedy_continuation(reference, spec, ids, INTENT_TOKENS, eos)
        sequences.append(GateSequence(ids, intent))
        line = tokenizer.decode(intent, skip_special_tokens=True).split("\n", 1)[0].rstrip()
        answer_ids = tokenizer.encode(f"{prompt}{line}{ANSWER_CUE}", add_special_tokens=False)
        sequences.append(GateSequence(answer_ids, greedy_continuation(reference, spec, answer_ids,
                                                                      HELDOUT_ANSWER_TOKENS, eos)))
    return sequences


def starter_quality(cache_root: Path) -> dict:
    spec = read_edge_config(STARTER)[1]
    fp32 = ensure_quantized_export(STARTER, "fp32", cache_root)
    reference = open_cpu_session(fp32)
    sequences = heldout_sequences(STARTER, reference, bundled_knowledge())
    report: dict[str, dict] = {}
    for q in QUANTIZED:
        path = ensure_quantized_export(STARTER, q, cache_root)  # raises if the starter fails its gate
        heldout = measure_quality(reference, open_cpu_session(path), sequences, spec, q)
        report[q] = {"export_gate": quality_record(path), "heldout_eval_questions": heldout.as_dict(),
                     "heldout_eval_passes_gate_thresholds": not heldout.failures()}
    return report


def run(repeats: int, cache_root: Path, concurrency: int) -> dict:
    threads = torch.get_num_threads()  # torch's default; ORT gets the same count
    load_at_start = round(os.getloadavg()[0], 2)
    started = time.perf_counter()
    big = ensure_bench_model(cache_root)
    big_graphs = {"fp32": ensure_quantized_export(big, "fp32", cache_root)}
    big_graphs |= {q: quantized_graph(big, q, cache_root)[0] for q in QUANTIZED}
    prepare_s = time.perf_counter() - started
    speed_big, info_big = speed(big, cache_root, threads, repeats)
    speed_starter, info_starter = speed(STARTER, cache_root, threads, repeats)
    return {
        "benchmark": "edge_generation",
        "workload": {"batch": 1, "prompt_tokens": PROMPT_TOKENS, "new_tokens": NEW_TOKENS, "greedy": True,
                     "repeats": repeats, "export_quantize_or_cache_s": round(prepare_s, 3)},
        "speed_gpt2_124m_random": {"model": {"shape": "gpt2-124m", "seed": SEED, **info_big}, "results": speed_big},
        "speed_starter": {"model": {"shape": "starter gpt2 (4 layers, 192 hidden)", **info_starter},
                          "results": speed_starter},
        "batching_gpt2_124m": batching(big, big_graphs, threads, concurrency, max(1, repeats // 2)),
        "quality_starter": starter_quality(cache_root),
        "machine": {**machine_info(threads), "loadavg_1m_at_start": load_at_start},
    }


def print_table(report: dict) -> None:
    for part in ("speed_gpt2_124m_random", "speed_starter"):
        print(f"{part}: {'path':<26}{'median s':>10}{'tok/s':>10}{'x torch':>9}")
        for name, row in report[part]["results"].items():
            print(f"{'':<{len(part) + 2}}{name:<26}{row['median_s']:>10.3f}{row['tokens_per_s']:>10.1f}"
                  f"{row['ratio_over_torch']:>9.2f}")
    batch = report["batching_gpt2_124m"]
    print(f"batching, {batch['concurrency']} concurrent generations on the 124M shape:")
    for q, part in batch["graphs"].items():
        rows = part["results"]
        print(f"  {q}: batched {rows['steps_batched']['tokens_per_s']:.1f} tok/s (mean batch "
              f"{rows['steps_batched']['mean_batch']:.2f}) vs per step {rows['step_per_run']['tokens_per_s']:.1f} tok/s"
              f" = {part['ratio_batched_over_per_step']:.2f}x; tokens identical {part['greedy_tokens_identical']} "
              f"({part['greedy_tokens_agreement']:.1%}); served batched: {part['served_batched']}")
    print(f"{'starter quality vs fp32':<28}{'texts':>6}{'ppl fp32':>10}{'ppl q':>10}{'+ppl':>8}{'agree':>8}"
          f"{'ans +ppl':>10}{'ans agree':>10}")
    for q, figures in report["quality_starter"].items():
        for label, record in (("gate", figures["export_gate"]), ("held-out eval", figures["heldout_eval_questions"])):
            whole, answers = record["whole_text"], record["answers"]
            print(f"{q + ' ' + label:<28}{record['texts']:>6}{whole['perplexity_fp32']:>10.1f}"
                  f"{whole['perplexity_quantized']:>10.1f}{whole['perplexity_increase']:>8.2%}"
                  f"{whole['greedy_agreement']:>8.1%}{answers['perplexity_increase']:>10.2%}"
                  f"{answers['greedy_agreement']:>10.1%}")
    print(machine_line(report["machine"]))


def machine_line(machine: dict) -> str:
    return (f"threads={machine['threads']}, cpus={machine['cpus_usable']}, {machine['processor']}; "
            f"load average {machine['loadavg_1m_at_start']} → {machine['loadavg_1m_at_end']}")


def save_and_print(report: dict, out: Path, print_table: Callable[[dict], None]) -> None:
    """Write the JSON report to ``out`` and print its table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"report: {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/reports/edge_generation.json"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: $NETGPT_CACHE_DIR or ~/.cache/netgpt")
    args = parser.parse_args(argv)
    report = run(max(1, args.repeats), args.cache_dir or default_cache_root(), max(2, args.concurrency))
    save_and_print(report, args.out, print_table)
    fp32_equal = all(report[p]["model"]["greedy_tokens_equal_torch"]["onnxruntime_fp32"]
                     for p in ("speed_gpt2_124m_random", "speed_starter"))
    if not fp32_equal:
        print("FAIL: ONNX Runtime fp32 and torch produced different greedy tokens", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
