"""Prefix reuse at the edge: prefill saved and first token with and without the edge's prefix cache, same run.

    python -m bench.edge_prefix_reuse [--edge-model starter|gpt2-124m|DIR] [--quantization fp32|int8] [--rounds 2]

The 71 held-out questions' prompts as the edge builds them (bundled knowledge base: location block, the facts
that fit, the request), through two copies of one edge model on ONNX Runtime: prefix cache off
(``prefix_cache_mb = 0``) and on (the edge's default), alternating so machine noise hits both alike. Per
question, the two prompts an undecided request prefills: its intent prompt (then ``--intent-tokens`` greedy
tokens: the reading), and its answer prompt, which starts with the intent prompt; the answer's first token
is the request's wait after the reading. Times are prefill plus the first greedy token. Round 1 sees every
question once (cold: only what questions of a cell share, and each answer prompt's own intent prompt); later
rounds in a new order (warm: every prompt seen, an upper bound). ``gpt2-124m``: the full-size GPT-2 shape with
seeded random weights (``bench.edge_generation``); its figures are time, not text.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

from bench.edge_generation import ensure_bench_model
from bench.measure import machine, pct, write_report
from bench.prefix_reuse import held_out_blocks
from edge_node.model.ort_engine import OrtGpt2Model
from edge_node.serving.prompt_format import answer_prompt, intent_prompt
from netgpt.config import EdgeConfig
from netgpt.generation import SamplingParams, generate_tokens
from netgpt.logs import configure_logging
from netgpt.tiny_models import default_cache_root

REPORT = Path(__file__).parent / "reports" / "edge_prefix_reuse.json"
STARTER = Path(__file__).resolve().parent.parent / "netgpt" / "assets" / "starter" / "gpt2"


def first_token_ms(model: OrtGpt2Model, ids: list[int], new_tokens: int) -> tuple[float, str]:
    """Prefill and the first greedy token, in ms, and the text of ``new_tokens`` greedy tokens."""
    start = time.perf_counter()
    pieces = generate_tokens(model.new_session(), model.tokenizer, ids, SamplingParams(max_new_tokens=new_tokens))
    first = next(pieces, None)
    elapsed = (time.perf_counter() - start) * 1000
    return elapsed, "".join(p.text for p in ([first] if first else []) + list(pieces))


def one_request(model: OrtGpt2Model, block: str, intent_tokens: int) -> tuple[float, float, int]:
    """(intent first token ms, answer first token ms, answer prompt tokens) of one undecided request."""
    intent_ms, reading = first_token_ms(model, model.tokenizer.encode(intent_prompt(block)), intent_tokens)
    answer = model.tokenizer.encode(answer_prompt(block, reading))
    answer_ms, _ = first_token_ms(model, answer, 1)
    return intent_ms, answer_ms, len(answer)


def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = {"starter": STARTER, "gpt2-124m": None}.get(args.edge_model, Path(args.edge_model))
    folder = folder or ensure_bench_model(default_cache_root())
    models = {name: OrtGpt2Model.load(folder, providers="cpu", quantization=args.quantization, max_batch=1,
                                      prefix_cache_mb=mb, intra_op_threads=args.threads)
              for name, mb in (("off", 0.0), ("on", EdgeConfig().prefix_cache_mb))}
    texts = held_out_blocks()
    one_request(models["off"], texts[0], args.intent_tokens)  # warm-up (threads, allocators); nothing cached
    prefixes = models["on"].prefixes
    assert prefixes is not None
    rounds = []
    for round_no in range(1, args.rounds + 1):
        order = list(range(len(texts)))
        random.Random(round_no).shuffle(order)
        times: dict[str, dict[str, list[float]]] = {n: {"intent": [], "answer": []} for n in models}  # first token
        before, tokens = (prefixes.stats.reused_tokens, prefixes.stats.prompt_tokens), []
        for i, index in enumerate(order):
            for name in (("off", "on") if i % 2 else ("on", "off")):
                intent_ms, answer_ms, answer_tokens = one_request(models[name], texts[index], args.intent_tokens)
                times[name]["intent"].append(intent_ms)
                times[name]["answer"].append(answer_ms)
                tokens.append(answer_tokens)
        reused = prefixes.stats.reused_tokens - before[0]
        prompt = prefixes.stats.prompt_tokens - before[1]
        rounds.append({
            "round": round_no, "questions": len(order), "answer_prompt_tokens_p50": pct(tokens, 50),
            "reused_share_of_prefilled_prompts": round(reused / prompt, 3),
            **{f"{step}_first_token_ms_{name}_p{q}": round(pct(times[name][step], q), 1)
               for step in ("intent", "answer") for name in models for q in (50, 95)},
            **{f"{step}_first_token_p50_on_over_off": round(pct(times["on"][step], 50) / pct(times["off"][step], 50),
                                                            3) for step in ("intent", "answer")}})
        print(json.dumps(rounds[-1]))
    return {"machine": machine(), "edge_model": args.edge_model, "quantization": models["on"].quantization,
            "threads": args.threads, "intent_tokens": args.intent_tokens,
            "prefix_cache_mb": EdgeConfig().prefix_cache_mb, "block": prefixes.block, "rounds": rounds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edge-model", default="gpt2-124m", help="gpt2-124m (default), starter, or a model folder")
    parser.add_argument("--quantization", default="fp32", choices=["fp32", "int8"])
    parser.add_argument("--intent-tokens", type=int, default=EdgeConfig().intent_tokens)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    configure_logging(json=True, level="warning")
    write_report(args.out, run(args))


if __name__ == "__main__":
    main()
