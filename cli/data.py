"""``netgpt data ...``: build the concise → comprehensive prompt → answer datasets, and check a JSONL file.

``build edge|cloud --out FILE --seed N --n N`` writes a seeded dataset (formats:
``tasks/prompt_completion/build.py``, README "Datasets and evaluation") with a progress bar;
``check FILE`` validates a dataset, built here or brought by a user, line by line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import Subparsers, quiet, usage_error

BUILDERS = ("edge", "cloud")


def add_commands(sub: Subparsers) -> None:
    data = sub.add_parser("data", help="build and check training datasets (JSONL)")
    actions = data.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="write a seeded dataset for the edge (a) or the cloud (b) model")
    build.add_argument("which", choices=BUILDERS)
    build.add_argument("--out", type=Path, required=True, help="JSONL file to write")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--n", type=int, default=4000, help="number of examples (default: 4000)")
    build.set_defaults(run=quiet(_build))
    check = actions.add_parser("check", help="validate a JSONL dataset: every line {prompt, completion}")
    check.add_argument("file", type=Path)
    check.set_defaults(run=quiet(_check))


def _build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tasks.prompt_completion import build

    if args.n <= 0:
        return usage_error(args, f"--n must be positive, got {args.n}")
    builder = build.build_edge_dataset if args.which == "edge" else build.build_cloud_dataset
    with tqdm(total=args.n, desc=f"{args.which} dataset", unit="ex") as bar:
        out = builder(args.out, args.seed, args.n, progress=bar.update)
    print(f"wrote {args.n} examples to {out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from netgpt.errors import InvalidArgument
    from netgpt.training.dataset import read_jsonl

    try:
        examples = read_jsonl(args.file)
    except InvalidArgument as exc:
        return usage_error(args, str(exc))
    print(f"{args.file}: {len(examples)} examples OK")
    return 0
