"""Prefix reuse at the cloud: prefill saved and first token with and without the prefix cache, same run.

    python -m bench.prefix_reuse [--cloud-model pretrained|starter|tiny] [--rounds 2] [--max-new-tokens 4]

The comprehensive prompts of the 71 held-out questions (``tasks/prompt_completion/heldout.py``), built
as the edge builds them (bundled knowledge base: location block, the facts that fit, the request; the
intent line left empty), encoded as the cloud encodes them (the chat template where the model has one),
are sent one at a time to two batching schedulers on the same weights: prefix cache off
(``prefix_cache_mb = 0``) and on (the cloud's default). Requests alternate between the two so machine
noise hits both alike; the held-out set is asked ``--rounds`` times in a new shuffled order each round
(in round 1 the cache is cold, from round 2 on every prompt has been seen: an upper bound). Reports the
share of prompt tokens not prefilled and the first token p50/p95 of each, per round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from contextlib import aclosing
from pathlib import Path
from typing import Any

from bench.measure import machine, pct, write_report
from cloud_node.batching_runner import BatchingRunner
from cloud_node.daemon import load_cloud_model
from cloud_node.scheduler import BatchScheduler
from edge_node.model.quality_gate import bundled_knowledge
from edge_node.serving.prompt_format import answer_prompt, context_block
from netgpt.config import CloudConfig
from netgpt.engine import LanguageModel
from netgpt.generation import SamplingParams
from netgpt.logs import configure_logging
from tasks.prompt_completion.heldout import HELD_OUT
from up.local import encode_prompt

REPORT = Path(__file__).parent / "reports" / "prefix_reuse.json"


def held_out_blocks() -> list[str]:
    """The context block of each held-out question, as the edge builds it (no user preferences)."""
    knowledge = bundled_knowledge()
    return [context_block(q.question, q.cell_id, knowledge.area(q.cell_id),
                          knowledge.facts_for(q.cell_id, q.question, 3), []) for q in HELD_OUT]


def comprehensive_prompts() -> list[str]:
    return [answer_prompt(block, "") for block in held_out_blocks()]


async def first_token_ms(runner: BatchingRunner, model: LanguageModel, ids: list[int], params: SamplingParams) -> float:
    start = time.perf_counter()
    first = None
    async with aclosing(runner.stream(model, ids, params)) as pieces:
        async for _piece in pieces:
            first = first if first is not None else time.perf_counter() - start
    return (first if first is not None else time.perf_counter() - start) * 1000


async def run(args: argparse.Namespace) -> dict[str, Any]:
    config = CloudConfig(model=args.cloud_model)
    model = load_cloud_model(config)
    params = SamplingParams(max_new_tokens=args.max_new_tokens)
    encoded = [encode_prompt(model, text, params.max_new_tokens, "comprehensive") for text in comprehensive_prompts()]
    packed = getattr(model, "packed")  # noqa: B009  # a LlamaModel: the batching path's engine
    runners = {name: BatchingRunner(BatchScheduler(packed, config.max_batch, config.max_batch_tokens,
                                                   config.kv_cache_mb, config.max_queue, prefix_cache_mb=mb))
               for name, mb in (("off", 0.0), ("on", config.prefix_cache_mb))}
    await first_token_ms(runners["off"], model, encoded[0], params)  # warm-up: allocators, threads (not cached)
    rounds = []
    try:
        for round_no in range(1, args.rounds + 1):
            order = list(range(len(encoded)))
            random.Random(round_no).shuffle(order)
            times: dict[str, list[float]] = {"off": [], "on": []}
            prefixes = runners["on"].scheduler.prefixes
            assert prefixes is not None
            before = (prefixes.stats.reused_tokens, prefixes.stats.prompt_tokens)
            for i, index in enumerate(order):
                for name in (("off", "on") if i % 2 else ("on", "off")):
                    times[name].append(await first_token_ms(runners[name], model, encoded[index], params))
            reused = prefixes.stats.reused_tokens - before[0]
            prompt = prefixes.stats.prompt_tokens - before[1]
            rounds.append({
                "round": round_no, "prompts": len(order), "prompt_tokens_mean": round(prompt / len(order), 1),
                "reused_share": round(reused / prompt, 3),
                **{f"first_token_ms_{name}_p{q}": round(pct(times[name], q), 1) for name in times for q in (50, 95)},
                "first_token_p50_on_over_off": round(pct(times["on"], 50) / pct(times["off"], 50), 3)})
            print(json.dumps(rounds[-1]))
    finally:
        for runner in runners.values():
            runner.shutdown()
    return {"machine": machine(), "cloud_model": args.cloud_model, "max_new_tokens": args.max_new_tokens,
            "prefix_cache_mb": config.prefix_cache_mb, "block": prefixes.block, "rounds": rounds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cloud-model", default="pretrained", help="pretrained (default), starter or tiny")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    configure_logging(json=True, level="warning")
    report = asyncio.run(run(args))
    write_report(args.out, report)


if __name__ == "__main__":
    main()
