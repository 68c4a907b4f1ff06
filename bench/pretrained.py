"""The pretrained base on the cloud: import, node start, first token, batching, LoRA vs full fine-tuning.

    python -m bench.pretrained [--out bench/reports/pretrained.json] [--train-steps 4]

All on SmolLM2-135M-Instruct from the pinned package (``--model pretrained``), float32 on the CPU:

- import: the GGUF → a servable safetensors folder in a fresh cache (cold), then again (warm: the
  cache by sha256); a node's cold start is import + load, its warm start cache hit + load;
- first token: prefill of real comprehensive prompts (the cloud dataset's, in the chat template,
  ~100-160 tokens) through the packed engine with the shipped adapter, one at a time, median;
- streams: aggregate tokens/s at 1 and 8 concurrent streams, batched (the cloud's scheduler) vs one
  at a time (``batching = false``), the same requests in the same run (``bench.cloud_batching``);
- training: LoRA (the adapter recipe's settings) vs full fine-tuning of the same base, a few steps
  each in a process of its own: trainable parameters, peak resident memory, seconds per step.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
import transformers

from bench.cloud_batching import run_case
from bench.measure import timed
from cloud_node.llama_engine import LlamaModel
from netgpt.chat_format import as_model_prompt
from netgpt.checkpoint.importer import import_checkpoint
from netgpt.checkpoint.pretrained import GGUF_SHA256, PRETRAINED_NAME, pretrained_base, pretrained_gguf, shipped_adapter
from netgpt.generation import SamplingParams
from netgpt.training.dataset import read_jsonl
from tasks.prompt_completion.adapter_recipe import TRAIN
from tasks.prompt_completion.build import build_cloud_dataset


def import_and_start(work: Path) -> dict[str, float]:
    """Cold: convert into an empty cache and load; warm: the same with the cache filled."""
    gguf = pretrained_gguf()
    cold_import, imported = timed(lambda: import_checkpoint(gguf, work / "cache", expected_sha256=GGUF_SHA256))
    cold_load, _ = timed(lambda: LlamaModel.load(imported.folder, device="cpu", dtype="float32"))
    warm_import, again = timed(lambda: import_checkpoint(gguf, work / "cache", expected_sha256=GGUF_SHA256))
    warm_load, _ = timed(lambda: LlamaModel.load(again.folder, device="cpu", dtype="float32"))
    assert imported.converted and not again.converted
    return {"import_cold_s": round(cold_import, 2), "import_warm_s": round(warm_import, 2),
            "node_cold_start_s": round(cold_import + cold_load, 2),
            "node_warm_start_s": round(warm_import + warm_load, 2)}


def first_token_ms(model: LlamaModel, prompts: list[str], repeats: int = 3) -> dict[str, float]:
    """Prefill alone (what the first token waits for at the cloud), median over prompts × repeats."""
    times, lengths = [], []
    for _ in range(repeats):
        for prompt in prompts:
            ids = model.tokenizer.encode(as_model_prompt(model.tokenizer, prompt), add_special_tokens=False)
            session = model.new_packed_session()
            started = time.perf_counter()
            session.prefill(ids)
            times.append((time.perf_counter() - started) * 1000.0)
            lengths.append(len(ids))
    return {"prompt_tokens_median": statistics.median(lengths),
            "first_token_p50_ms": round(statistics.median(times), 1), "first_token_min_ms": round(min(times), 1)}


def training_cost(base: Path, dataset: Path, method: str, steps: int) -> dict[str, Any]:
    """A few steps of ``method`` in a child process (its own peak memory), the recipe's other settings."""
    config = replace(TRAIN, method=method, max_steps=steps, warmup_steps=1, eval_fraction=0.0,
                     learning_rate=TRAIN.learning_rate if method == "lora" else 2e-5)
    code = ("import json, resource, sys; from pathlib import Path; from netgpt.training.trainer import TrainConfig, "
            "train; c = TrainConfig(**json.loads(sys.argv[1])); "
            "r = train(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), c); "
            "print(json.dumps({'trainable_params': r.trainable_params, 'total_params': r.total_params, "
            "'steps': r.steps, 'train_seconds': r.metrics['train_seconds'], "
            "'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")
    with tempfile.TemporaryDirectory(prefix=f"bench-{method}-") as work:
        done = subprocess.run([sys.executable, "-c", code, json.dumps(asdict(config)), str(base), str(dataset), work],
                              capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["seconds_per_step"] = round(result["train_seconds"] / max(result["steps"], 1), 2)
    return {"method": method, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("bench/reports/pretrained.json"))
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=4, help="steps of each training method (0: skip)")
    args = parser.parse_args()
    report: dict[str, Any] = {"bench": "pretrained", "model": "SmolLM2-135M-Instruct (pinned GGUF, float32)",
                              "torch": torch.__version__, "transformers": transformers.__version__,
                              "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                              "processor": platform.processor() or platform.machine(),
                              "note": "2-core VM on a shared host: compare ratios from one run"}
    with tempfile.TemporaryDirectory(prefix="bench-pretrained-") as tmp:
        work = Path(tmp)
        report["start"] = import_and_start(work)
        print(f"import: cold {report['start']['import_cold_s']} s, warm {report['start']['import_warm_s']} s; node "
              f"start cold {report['start']['node_cold_start_s']} s, warm {report['start']['node_warm_start_s']} s")
        rows = read_jsonl(build_cloud_dataset(work / "cloud.jsonl", 99, 16))
        prompts = [row.prompt for row in rows]
        base_dir = pretrained_base().folder
        adapter = shipped_adapter()
        model = LlamaModel.load(base_dir, adapter_dir=adapter, device="cpu", dtype="float32", name=PRETRAINED_NAME)
        report["adapter"] = str(adapter) if adapter else None
        report["first_token"] = first_token_ms(model, prompts[:8])
        print(f"first token: {report['first_token']}")
        params = SamplingParams(max_new_tokens=args.new_tokens)
        run_case([model], [model], model, 2, params, 1, prompts)  # warm-up
        report["streams"] = [run_case([model], [model], model, n, params, args.repeats, prompts) for n in (1, 8)]
        for case in report["streams"]:
            print(f"{case['streams']} streams: one at a time {case['serialised']['tokens_per_s']} tok/s, batched "
                  f"{case['batched']['tokens_per_s']} tok/s, x{case['speedup_tokens_per_s']}")
        del model
        if args.train_steps:
            dataset = build_cloud_dataset(work / "train.jsonl", 5, 64)
            report["training"] = [training_cost(base_dir, dataset, method, args.train_steps)
                                  for method in ("lora", "full")]
            for row in report["training"]:
                print(f"training {row['method']}: {row['trainable_params']:,} trainable of {row['total_params']:,}, "
                      f"peak {row['peak_rss_mb']:.0f} MB, {row['seconds_per_step']} s/step")
    report["bench_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
