"""``netgpt eval prompt|popularity|intent``: the research's tasks on data the models never saw.

``prompt`` runs the held-out questions through an all-in-one cluster with the models under test and
with the baseline models and adds the retrieval-only baseline; ``popularity`` and ``intent`` run
the edge's network-management models (ONNX, as the edge serves them) against their baselines.
Each prints one table (a row per method) and writes JSON with ``--json FILE``.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

from cli.common import Subparsers, quiet


def add_commands(sub: Subparsers) -> None:
    evaluate = sub.add_parser("eval", help="evaluate models on held-out questions")
    tasks = evaluate.add_subparsers(dest="action", required=True)
    prompt = tasks.add_parser("prompt", help="concise -> comprehensive prompt -> answer, per route, vs baselines")
    prompt.add_argument("--edge-model", default="starter", help="edge GPT-2: a folder, starter or tiny")
    prompt.add_argument("--cloud-model", default="starter",
                        help="cloud LLaMA: a folder, a .gguf file, pretrained, starter or tiny")
    prompt.add_argument("--adapter", default="", help="the cloud model's LoRA adapter folder (default: none; for "
                                                      "pretrained, the shipped one; `none`: the bare base)")
    prompt.add_argument("--baseline-models", default="tiny",
                        help="models of the baseline rows, edge and cloud (default: tiny; none: no such rows)")
    prompt.add_argument("--questions", choices=("heldout", "dev"), default="heldout",
                        help="held-out questions (the reported figure) or the development set (for choosing "
                             "between recipe variants without touching the held-out set)")
    prompt.add_argument("--limit", type=int, default=0, help="only the first N questions (0: all)")
    prompt.add_argument("--max-new-tokens", type=int, default=0, help="answer length (default: the evaluation's)")
    prompt.add_argument("--json", "--out", dest="out", type=Path, help="write the report as JSON here")
    prompt.set_defaults(run=quiet(_prompt))
    for task, text in (("popularity", "popularity prediction: the fine-tuned GPT-2 vs persistence, time-of-day "
                                      "frequency and logistic regression, on the held-out intervals"),
                       ("intent", "intent inference: the fine-tuned GPT-2 vs a rule/regex extractor, on held-out "
                                  "phrasings and vocabulary")):
        parser = tasks.add_parser(task, help=text, description=text)
        parser.add_argument("--model", type=Path, default=None, help="a fine-tuned GPT-2 folder (default: packaged)")
        parser.add_argument("--limit", type=int, default=0, help="only the first N test items (0: all)")
        parser.add_argument("--json", "--out", dest="out", type=Path, help="write the report as JSON here")
        parser.set_defaults(run=quiet(_netmgmt), task=task)


def _write(report: Any, out: Path | None) -> None:
    print(report.table())
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")


def _netmgmt(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    module = importlib.import_module(f"tasks.{args.task}.evaluate")
    with tqdm(desc=f"eval {args.task}", unit="item") as bar:
        report = module.evaluate(model_dir=args.model, limit=args.limit, progress=bar.update)
    _write(report, args.out)
    return 0


def _prompt(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tasks.prompt_completion.devset import DEV
    from tasks.prompt_completion.evaluate import MAX_NEW_TOKENS, Report, evaluate, retrieval_baseline
    from tasks.prompt_completion.heldout import HELD_OUT

    chosen = DEV if args.questions == "dev" else HELD_OUT
    questions = chosen[:args.limit] if args.limit > 0 else chosen
    max_new_tokens = args.max_new_tokens or MAX_NEW_TOKENS
    pairs = [(args.edge_model, args.cloud_model, args.adapter)]
    if args.baseline_models != "none":
        pairs.append((args.baseline_models, args.baseline_models, ""))
    report = Report(max_new_tokens=max_new_tokens)
    for edge, cloud, adapter in pairs:
        with tqdm(total=len(questions), desc=f"eval {edge} + {cloud}", unit="q") as bar:
            report += evaluate(edge, cloud, questions, max_new_tokens, progress=bar.update, adapter=adapter)
    report += retrieval_baseline(questions)
    _write(report, args.out)
    return 0
