"""``netgpt eval prompt|routing|popularity|intent``: the research's tasks on data the models never saw.

``prompt`` runs the held-out questions through an all-in-one cluster with the models under test and
with the baseline models and adds the retrieval-only baseline; ``routing`` collects (or reads) both
the edge's and the cloud's answer per question, trains the learned router on the training split and
prints its quality/cost frontier on held-out questions; ``popularity`` and ``intent`` run
the edge's network-management models (ONNX, as the edge serves them) against their baselines.
Each prints one table (a row per method) and writes JSON with ``--json FILE``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.common import Subparsers, quiet

if TYPE_CHECKING:
    from tasks.routing.collect import Collected


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
    prompt.add_argument("--edge-intent", choices=("knowledge", "model", "none"), default="",
                        help="where the edge's Intent line comes from (default: the edge's intent_from): the knowledge "
                             "base when it decides else the edge model, always the model, or none (intent_tokens 0)")
    prompt.add_argument("--limit", type=int, default=0, help="only the first N questions (0: all)")
    prompt.add_argument("--max-new-tokens", type=int, default=0, help="answer length (default: the evaluation's)")
    prompt.add_argument("--json", "--out", dest="out", type=Path, help="write the report as JSON here")
    prompt.set_defaults(run=quiet(_prompt))
    _add_routing(tasks)
    for task, text in (("popularity", "popularity prediction: the fine-tuned GPT-2 vs persistence, time-of-day "
                                      "frequency and logistic regression, on the held-out intervals"),
                       ("intent", "intent inference: the fine-tuned GPT-2 vs a rule/regex extractor, on held-out "
                                  "phrasings and vocabulary")):
        parser = tasks.add_parser(task, help=text, description=text)
        parser.add_argument("--model", type=Path, default=None, help="a fine-tuned GPT-2 folder (default: packaged)")
        parser.add_argument("--limit", type=int, default=0, help="only the first N test items (0: all)")
        parser.add_argument("--json", "--out", dest="out", type=Path, help="write the report as JSON here")
        if task == "intent":
            parser.description = (f"{text}. --model pretrained: the SmolLM2-135M-Instruct reader (the shipped "
                                   "LoRA adapter, or --adapter DIR, merged and served through ONNX Runtime), "
                                   "with the ambiguous-request split")
            parser.add_argument("--adapter", type=Path, default=None,
                                help="with --model pretrained: a LoRA adapter folder (default: the shipped one)")
        parser.set_defaults(run=quiet(_netmgmt), task=task)


def _add_routing(tasks: Subparsers) -> None:
    text = ("the learned router's quality/cost frontier on held-out questions: share ended at the edge vs answer "
            "quality vs cloud calls and bytes, next to always-edge, always-cloud, today's rules and a random router")
    routing = tasks.add_parser("routing", help=text, description=text)
    source = routing.add_mutually_exclusive_group(required=True)
    source.add_argument("--collect", type=Path, metavar="FILE",
                        help="run the questions through a live cluster (minutes) and keep the answers here")
    source.add_argument("--from", dest="source", type=Path, metavar="FILE", help="routing data --collect wrote")
    routing.add_argument("--edge-model", default="starter", help="with --collect: edge GPT-2 (folder, starter, tiny)")
    routing.add_argument("--cloud-model", default="pretrained",
                         help="with --collect: cloud LLaMA (folder, .gguf, pretrained, starter, tiny)")
    routing.add_argument("--adapter", default="", help="with --collect: the cloud's LoRA adapter (as eval prompt)")
    routing.add_argument("--phrasings", type=int, default=80,
                         help="with --collect: self-instruct phrasings added to the dev set as training questions")
    routing.add_argument("--limit", type=int, default=0, help="with --collect: first N questions per split (0: all)")
    routing.add_argument("--label", choices=("key", "rule", "cloud"), default="key",
                         help="what 'edge answer good enough' is trained on: the answer key (evaluation), the "
                              "rule a deployment can check (names a listed venue, no other venue of the cell) or "
                              "the cloud as judge (names the venue the cloud's answer names)")
    routing.add_argument("--router-out", type=Path, metavar="FILE",
                         help="write the trained router's weights here (the edge's router_weights)")
    routing.add_argument("--json", "--out", dest="out", type=Path, help="write the frontier as JSON here")
    routing.add_argument("--plot", type=Path, metavar="FILE.png", help="draw the frontier as a PNG (matplotlib)")
    routing.set_defaults(run=quiet(_routing))


def _routing(args: argparse.Namespace) -> int:
    from tasks.routing.evaluate import evaluate, write_router

    if args.plot:
        _require_matplotlib()
    try:
        collected = _collected(args)
        result = evaluate(collected, args.label)
    except ValueError as e:
        raise SystemExit(f"netgpt eval routing: {e}") from e
    print(f"models: {collected.models}; {len(collected.records)} questions; cell load and cloud queue are "
          "constants offline (0)")
    _write(result, args.out)
    if args.router_out:
        write_router(result, args.router_out)
        print(f"wrote {args.router_out}")
    if args.plot:
        from tasks.routing.plot import draw

        draw(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _collected(args: argparse.Namespace) -> Collected:
    """The routing data: collected now through a live cluster (``--collect``), or read (``--from``)."""
    from tasks.routing.collect import Collected, collect

    if not args.collect:
        return Collected.read(args.source)
    from tqdm import tqdm

    from tasks.routing.questions import questions_by_split

    questions = questions_by_split(args.phrasings, args.limit)
    with tqdm(total=sum(map(len, questions.values())), desc="collect routing data", unit="q") as bar:
        collected = collect(questions, args.edge_model, args.cloud_model, args.adapter, progress=bar.update)
    collected.write(args.collect)
    print(f"wrote {args.collect}")
    return collected


def _require_matplotlib() -> None:
    """Fail before minutes of collection rather than after them."""
    from tasks.routing.plot import INSTALL

    if importlib.util.find_spec("matplotlib") is None:
        raise SystemExit(INSTALL)


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
        if args.task == "intent" and str(args.model) == "pretrained":
            report = module.evaluate_pretrained(args.adapter, limit=args.limit, progress=bar.update)
        else:
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
            report += evaluate(edge, cloud, questions, max_new_tokens, progress=bar.update, adapter=adapter,
                               intent=args.edge_intent)
    report += retrieval_baseline(questions)
    _write(report, args.out)
    return 0
