"""The cloud's prefill (what a UE's first token waits for at the cloud) by prompt length, on the pretrained base.

    python -m bench.prefill_length [--lengths 50,76,100,139] [--repeats 7] [--out bench/reports/prefill_length.json]

SmolLM2-135M-Instruct (the pinned package's GGUF, float32, no adapter) through the cloud's packed session, one
prompt at a time: the first tokens of a comprehensive prompt from the cloud's training data, cut to each length.
Median and minimum over ``--repeats`` runs per length (a warm-up run first). Issue 24's goal is ≤ 150 ms for a
~100-token prompt; ``bench.pretrained`` measures real prompts in the chat template with the adapter on.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from cloud_node.llama_engine import LlamaModel
from netgpt.checkpoint.pretrained import pretrained_base
from netgpt.training.dataset import read_jsonl
from tasks.prompt_completion.build import build_cloud_dataset


def prefill_ms(model: LlamaModel, ids: list[int], repeats: int) -> dict[str, float]:
    model.new_packed_session().prefill(ids)  # warm-up
    times = []
    for _ in range(repeats):
        session = model.new_packed_session()
        started = time.perf_counter()
        session.prefill(ids)
        times.append((time.perf_counter() - started) * 1000.0)
    return {"p50_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lengths", default="50,76,100,139")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench/reports/prefill_length.json"))
    args = parser.parse_args(argv)
    model = LlamaModel.load(pretrained_base().folder, device="cpu", dtype="float32")
    with tempfile.TemporaryDirectory(prefix="bench-prefill-") as work:
        rows = read_jsonl(build_cloud_dataset(Path(work) / "cloud.jsonl", 99, 16))
    longest = max((row.prompt for row in rows), key=len)
    ids = model.tokenizer.encode(longest, add_special_tokens=False)
    lengths = [int(n) for n in args.lengths.split(",")]
    if max(lengths) > len(ids):
        raise SystemExit(f"the longest training prompt has {len(ids)} tokens; ask for at most that many")
    report = {"bench": "prefill_length", "model": "SmolLM2-135M-Instruct (pinned GGUF, float32, no adapter)",
              "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
              "prefill": {str(n): prefill_ms(model, ids[:n], args.repeats) for n in lengths}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["prefill"]))


if __name__ == "__main__":
    main()
