"""Cloud continuous batching vs today's serialised engine: same model, same prompts, same run.

    python -m bench.cloud_batching [--out bench/reports/cloud_batching.json] [--streams 1,4,8,16]

The model is a seeded random-weight LLaMA of 58M parameters (hidden 512, 8 layers,
8 heads, MLP 1376, vocab 32000) with the tiny tokenizer; speed does not depend on the
values. For each number of concurrent streams both engines get the same requests (a
prompt of about 30 tokens, greedy, ``--new-tokens`` each) all at once, ``--repeats``
times alternating the engines (the median run of each is reported):

- ``serialised``: ``batching = false``: a GenerationRunner with one worker thread per
  stream, each decoding with HF forward + KV cache, forward passes behind the model lock;
  with adapters, one full model object per adapter (base loaded again + peft), as the
  cloud deployed adapters before batching;
- ``batched``: ``batching = true``: the BatchingRunner and its scheduler, one packed
  forward pass per step for every running request; with adapters, all on one base.

``mixed`` runs the same with requests spread round-robin over 4 different LoRA
adapters (r=8 on q/k/v/o). Reported per case: aggregate tokens/s (all tokens of all
streams / wall time), p50/p95 time to first token, and batched/serialised ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

from bench.models import random_model_folder
from cloud_node.batching_runner import BatchingRunner
from cloud_node.llama_engine import LlamaModel
from cloud_node.lora import make_lora_adapter
from cloud_node.scheduler import BatchScheduler
from netgpt.engine import LanguageModel
from netgpt.generation import SamplingParams, TokenPiece
from netgpt.tiny_models import default_cache_root
from up.runner import GenerationRunner

SEED = 0
BENCH_MODEL_VERSION = 1
ADAPTERS = 4
PROMPTS = [
    "Location: harbour district, cell 7. User profile: prefers seafood, budget moderate. Request: where to eat",
    "Location: old town, cell 3. User profile: cyclist, likes museums. Request: plan an afternoon nearby",
    "Location: airport, cell 12. User profile: business traveller. Request: quickest way to the centre",
    "Location: stadium, cell 5. User profile: family with children. Request: quiet place after the match",
]


def ensure_bench_llama(cache_root: Path) -> Path:
    """The 58M LLaMA folder (seeded random weights + the tiny tokenizer), built once."""
    config = LlamaConfig(vocab_size=32000, hidden_size=512, intermediate_size=1376, num_hidden_layers=8,
                         num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=2048)
    return random_model_folder(cache_root, f"llama-58m-seed{SEED}-v{BENCH_MODEL_VERSION}", SEED,
                               lambda: LlamaForCausalLM(config))


def ensure_adapters(model_dir: Path, cache_root: Path) -> list[Path]:
    folders = []
    for seed in range(ADAPTERS):
        folder = cache_root / "bench" / f"llama-58m-lora{seed}-v{BENCH_MODEL_VERSION}"
        if not (folder / "adapter_model.safetensors").is_file():
            make_lora_adapter(model_dir, folder, r=8, seed=seed, target_modules=("q_proj", "k_proj", "v_proj",
                                                                                   "o_proj"), scale=0.05)
        folders.append(folder)
    return folders


async def drive(stream: Callable[[LanguageModel, list[int]], AsyncIterator[TokenPiece]],
                models: list[LanguageModel], streams: int,
                prompts: Sequence[str] = PROMPTS) -> tuple[dict[str, float], list[list[int]]]:
    """``streams`` concurrent requests (model i % len(models), prompt i % len(prompts)) started at once."""
    first_ms: list[float] = []
    counts: list[int] = []
    tokens: list[list[int]] = [[] for _ in range(streams)]

    async def one(index: int) -> None:
        model = models[index % len(models)]
        ids = model.tokenizer.encode(prompts[index % len(prompts)], add_special_tokens=False)
        began, produced = time.perf_counter(), 0
        async for piece in stream(model, ids):
            tokens[index].append(piece.token_id)
            if not produced:
                first_ms.append((time.perf_counter() - began) * 1000.0)
            produced += 1
        counts.append(produced)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(streams)))
    wall = time.perf_counter() - started
    ordered = sorted(first_ms)
    return {"streams": streams, "tokens": sum(counts), "wall_s": round(wall, 3),
            "tokens_per_s": round(sum(counts) / wall, 1),
            "first_token_p50_ms": round(statistics.median(ordered), 1),
            "first_token_p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1)}, tokens


def run_case(serial_models: list[LanguageModel], batched_models: list[LanguageModel], base: LlamaModel,
             streams: int, params: SamplingParams, repeats: int = 1,
             prompts: Sequence[str] = PROMPTS) -> dict[str, object]:
    """Both engines ``repeats`` times, alternating so machine noise hits both alike; the median run of each.

    Each run gets a fresh runner that is shut down, its threads joined, before the other engine
    runs: every thread that ran torch keeps an OpenMP team, and once libgomp manages more threads
    than there are CPUs it stops spin-waiting between parallel regions, which alone cost the
    batched engine 30-50 % of its speed while the serialised engine's idle workers were alive."""
    runs: dict[str, list[dict[str, float]]] = {"serialised": [], "batched": []}
    same = 0

    def serial() -> GenerationRunner:
        return GenerationRunner(max_concurrency=streams, max_queue=streams)

    def batched() -> GenerationRunner:
        return BatchingRunner(BatchScheduler(base.packed, max_batch=max(streams, 1), max_batch_tokens=512,
                                             kv_cache_mb=1024.0, max_queue=streams))

    async def one_run(make: Callable[[], GenerationRunner], models: list[LanguageModel]) \
            -> tuple[dict[str, float], list[list[int]]]:
        runner = make()
        try:
            return await drive(lambda m, ids: runner.stream(m, ids, params), models, streams, prompts)
        finally:
            await asyncio.to_thread(runner.shutdown, True)

    async def alternate() -> None:  # one event loop: the runners' asyncio primitives belong to it
        nonlocal same
        for _ in range(repeats):
            result, serial_tokens = await one_run(serial, serial_models)
            runs["serialised"].append(result)
            result, batched_tokens = await one_run(batched, batched_models)
            runs["batched"].append(result)
            same += sum(a == b for a, b in zip(serial_tokens, batched_tokens, strict=True))

    asyncio.run(alternate())
    median = {name: sorted(results, key=lambda r: r["tokens_per_s"])[len(results) // 2]
              for name, results in runs.items()}
    return {"streams": streams, **median,
            "all_tokens_per_s": {name: [r["tokens_per_s"] for r in results] for name, results in runs.items()},
            "speedup_tokens_per_s": round(median["batched"]["tokens_per_s"] / median["serialised"]["tokens_per_s"], 2),
            # greedy streams whose tokens are identical on both engines (HF/peft serialised vs packed batched)
            "greedy_streams_identical": f"{same}/{streams * repeats}",
            "first_token_p50_ratio": round(median["batched"]["first_token_p50_ms"] /
                                           median["serialised"]["first_token_p50_ms"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/reports/cloud_batching.json"))
    parser.add_argument("--streams", default="1,4,8,16")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cache = default_cache_root()
    model_dir = ensure_bench_llama(cache)
    adapter_dirs = ensure_adapters(model_dir, cache)
    base = LlamaModel.load(model_dir, device=args.device, dtype=args.dtype)
    views: list[LanguageModel] = [base.adapter_view(folder, f"lora-{i}", "v1") for i, folder in
                                  enumerate(adapter_dirs)]
    full_models: list[LanguageModel] = [LlamaModel.load(model_dir, adapter_dir=folder, device=args.device,
                                                        dtype=args.dtype) for folder in adapter_dirs]
    params = SamplingParams(max_new_tokens=args.new_tokens)
    levels = [int(n) for n in args.streams.split(",")]
    run_case([base], [base], base, 2, params)  # warm-up: allocator, threads, lazy modules
    report: dict[str, object] = {
        "bench": "cloud_batching",
        "model": "LLaMA 58M random weights (hidden 512, 8 layers, 8 heads, MLP 1376, vocab 32000)",
        "new_tokens_per_stream": args.new_tokens, "repeats": args.repeats,
        "device": str(base.torch_device), "dtype": base.dtype,
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "transformers": transformers.__version__, "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "note": "2-core VM on a shared host: compare ratios from one run, not absolute numbers across runs",
        "base": [], "mixed_adapters": [],
    }
    for streams in levels:
        case = run_case([base], [base], base, streams, params, args.repeats)
        report["base"].append(case)  # type: ignore[union-attr]
        print(f"base   {streams:>2} streams: serialised {case['serialised']['tokens_per_s']:>7} tok/s, "
              f"batched {case['batched']['tokens_per_s']:>7} tok/s, x{case['speedup_tokens_per_s']}, "
              f"identical greedy streams {case['greedy_streams_identical']}", flush=True)
    for streams in levels:
        if streams < ADAPTERS:
            continue
        case = run_case(full_models, views, base, streams, params, args.repeats)
        report["mixed_adapters"].append(case)  # type: ignore[union-attr]
        print(f"mixed  {streams:>2} streams ({ADAPTERS} adapters): serialised "
              f"{case['serialised']['tokens_per_s']:>7} tok/s, batched {case['batched']['tokens_per_s']:>7} tok/s, "
              f"x{case['speedup_tokens_per_s']}, "
              f"identical greedy streams {case['greedy_streams_identical']}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
