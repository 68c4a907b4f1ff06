"""``netgpt eval prompt``: the concise → comprehensive prompt → answer task on the held-out questions.

Runs the held-out set through an all-in-one cluster with the models under test and with the
baseline models, adds the retrieval-only baseline, prints one table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.common import Subparsers, quiet


def add_commands(sub: Subparsers) -> None:
    evaluate = sub.add_parser("eval", help="evaluate models on held-out questions")
    tasks = evaluate.add_subparsers(dest="action", required=True)
    prompt = tasks.add_parser("prompt", help="concise -> comprehensive prompt -> answer, per route, vs baselines")
    prompt.add_argument("--edge-model", default="starter", help="edge GPT-2: a folder, starter or tiny")
    prompt.add_argument("--cloud-model", default="starter", help="cloud LLaMA: a folder, starter or tiny")
    prompt.add_argument("--baseline-models", default="tiny",
                        help="models of the baseline rows, edge and cloud (default: tiny; none: no such rows)")
    prompt.add_argument("--limit", type=int, default=0, help="only the first N held-out questions (0: all)")
    prompt.add_argument("--max-new-tokens", type=int, default=0, help="answer length (default: the evaluation's)")
    prompt.add_argument("--out", type=Path, help="write the report as JSON here")
    prompt.set_defaults(run=quiet(_prompt))


def _prompt(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tasks.prompt_completion.evaluate import MAX_NEW_TOKENS, Report, evaluate, retrieval_baseline
    from tasks.prompt_completion.heldout import HELD_OUT

    questions = HELD_OUT[:args.limit] if args.limit > 0 else HELD_OUT
    max_new_tokens = args.max_new_tokens or MAX_NEW_TOKENS
    pairs = [(args.edge_model, args.cloud_model)]
    if args.baseline_models != "none":
        pairs.append((args.baseline_models, args.baseline_models))
    report = Report(max_new_tokens=max_new_tokens)
    for edge, cloud in pairs:
        with tqdm(total=len(questions), desc=f"eval {edge} + {cloud}", unit="q") as bar:
            report += evaluate(edge, cloud, questions, max_new_tokens, progress=bar.update)
    report += retrieval_baseline(questions)
    print(report.table())
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0
