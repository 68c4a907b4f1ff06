"""``netgpt data ...``: build the training datasets (JSONL) of the research's tasks, and check one.

``build edge|cloud --out FILE --seed N --n N`` writes a seeded concise → comprehensive prompt →
answer dataset (formats: ``tasks/prompt_completion/build.py``, README "Datasets and evaluation")
with a progress bar (``--phrasings FILE``: the edge's with a share of self-instruct phrasings);
``build popularity`` the popularity model's windows of a view log (``--log``,
default the seeded synthetic one) and ``build intent`` the intent model's requests (``--labelled``,
default generated): the formats the shipped network-management models were trained on, for a
fine-tuning job (``netgpt train start --role edge ...``). ``check FILE`` validates a dataset,
built here or brought by a user, line by line. ``distill export --db FILE --out FILE`` writes the
distillation samples an edge keeps (``distill_samples = true``; README "The edge learns from the cloud") as a
dataset in the same format; it reads the edge's file while the edge runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import Subparsers, quiet, usage_error

BUILDERS = ("edge", "cloud", "popularity", "intent")


def add_commands(sub: Subparsers) -> None:
    data = sub.add_parser("data", help="build and check training datasets (JSONL)")
    actions = data.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="write a dataset: edge (a), cloud (b), popularity or intent")
    build.add_argument("which", choices=BUILDERS)
    build.add_argument("--out", type=Path, required=True, help="JSONL file to write")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--n", type=int, default=4000, help="number of examples (default: 4000)")
    build.add_argument("--log", type=Path, help="popularity: a view log CSV (timestamp,title) instead of the "
                                                "synthetic log of --seed")
    build.add_argument("--interval-s", type=int, default=21600, help="popularity: interval length (default: 6 h)")
    build.add_argument("--labelled", type=Path, help="intent: your labelled requests (JSONL: text + intent/target) "
                                                     "instead of generated ones")
    build.add_argument("--phrasings", type=Path, help="edge: self-instruct phrasings (python -m "
                                                      "tasks.prompt_completion.self_instruct) to ask a share of the "
                                                      "questions in")
    build.add_argument("--phrasings-share", type=float, default=0.3,
                       help="edge: share of the questions asked in --phrasings' words (default: 0.3)")
    build.set_defaults(run=quiet(_build))
    check = actions.add_parser("check", help="validate a JSONL dataset: every line {prompt, completion}")
    check.add_argument("file", type=Path)
    check.set_defaults(run=quiet(_check))
    distill = actions.add_parser("distill", help="the cloud's answers an edge kept for it to learn from")
    distill_actions = distill.add_subparsers(dest="distill_action", required=True)
    export = distill_actions.add_parser("export", help="write the edge's distillation samples as a JSONL dataset")
    export.add_argument("--db", type=Path, required=True,
                        help="the edge's samples file (its distill_db; default there: "
                             "$NETGPT_DATA_DIR/distill-<node_id>.sqlite)")
    export.add_argument("--out", type=Path, required=True, help="JSONL file to write")
    export.add_argument("--region", default="",
                        help="region the dataset goes to (the store's and the training node's): samples of cells "
                             "whose residency rules do not allow it are left out; none given: only unrestricted cells")
    export.set_defaults(run=quiet(_distill_export))


def _build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tasks.prompt_completion import build

    if args.n <= 0:
        return usage_error(args, f"--n must be positive, got {args.n}")
    if args.which in ("popularity", "intent"):
        return _build_task_dataset(args)
    if args.phrasings and args.which != "edge":
        return usage_error(args, "--phrasings is for the edge dataset")
    if args.phrasings:
        from netgpt.errors import InvalidArgument
        from tasks.prompt_completion.self_instruct import load_phrasings

        if not 0.0 <= args.phrasings_share <= 1.0:
            return usage_error(args, f"--phrasings-share must be within 0..1, got {args.phrasings_share}")
        try:
            phrasings = load_phrasings(args.phrasings)
        except InvalidArgument as exc:
            return usage_error(args, str(exc))
        with tqdm(total=args.n, desc="edge dataset", unit="ex") as bar:
            out = build.build_edge_dataset(args.out, args.seed, args.n, bar.update, phrasings, args.phrasings_share)
        print(f"wrote {args.n} examples to {out}")
        return 0
    builder = build.build_edge_dataset if args.which == "edge" else build.build_cloud_dataset
    with tqdm(total=args.n, desc=f"{args.which} dataset", unit="ex") as bar:
        out = builder(args.out, args.seed, args.n, progress=bar.update)
    print(f"wrote {args.n} examples to {out}")
    return 0


def _build_task_dataset(args: argparse.Namespace) -> int:
    from netgpt.errors import InvalidArgument

    try:
        count = _popularity_dataset(args) if args.which == "popularity" else _intent_dataset(args)
    except InvalidArgument as exc:
        return usage_error(args, str(exc))
    print(f"wrote {count} examples to {args.out}")
    return 0


def _popularity_dataset(args: argparse.Namespace) -> int:
    from edge_node.netmgmt.popularity import ViewLog
    from netgpt.errors import InvalidArgument
    from tasks.popularity.dataset import log_training_windows, write_dataset
    from tasks.popularity.synth import generate

    views = ViewLog.from_csv(args.log, args.interval_s) if args.log else generate(args.seed).view_log()
    windows = log_training_windows(views)
    if not windows:
        raise InvalidArgument(f"the view log has {views.num_intervals} intervals: too short for a training window "
                              "(12 intervals of titles, 12 of history, then the 5 % held out)")
    return write_dataset(args.out, windows[::max(1, len(windows) // args.n)][:args.n])


def _intent_dataset(args: argparse.Namespace) -> int:
    from tasks.intent.dataset import read_labelled, write_dataset
    from tasks.intent.generator import generate

    requests = read_labelled(args.labelled) if args.labelled else generate(args.n, args.seed)
    write_dataset(requests, args.out)
    return len(requests)


def _check(args: argparse.Namespace) -> int:
    from netgpt.errors import InvalidArgument
    from netgpt.training.dataset import read_jsonl

    try:
        examples = read_jsonl(args.file)
    except InvalidArgument as exc:
        return usage_error(args, str(exc))
    print(f"{args.file}: {len(examples)} examples OK")
    return 0


def _distill_export(args: argparse.Namespace) -> int:
    from edge_node.serving.distill_samples import DistillSamples
    from netgpt.errors import StartupError

    if not args.db.is_file():
        return usage_error(args, f"{args.db}: no such file (is distill_samples on at the edge, and distill_db this?)")
    try:
        samples = DistillSamples(str(args.db))
    except StartupError as exc:
        return usage_error(args, str(exc))
    try:
        count = samples.export(args.out, args.region or None)
        kept = len(samples)
    finally:
        samples.close()
    print(f"wrote {count} examples to {args.out} ({kept} samples kept at the edge; one line per prompt, "
          f"{'cells allowing ' + args.region if args.region else 'unrestricted cells'} only)")
    return 0
