"""``netgpt demo``: the all-in-one offline demo (``cli.demo``), imported only when it runs."""

from __future__ import annotations

import argparse
import asyncio

from cli.common import Subparsers
from netgpt.logs import configure_logging


def add_commands(sub: Subparsers) -> None:
    demo = sub.add_parser("demo", help="all-in-one offline demo on loopback")
    demo.add_argument("--edge-model", default="starter",
                      help="GPT-2 folder, `starter` (default: the trained starter model) or `tiny` (random weights)")
    demo.add_argument("--cloud-model", default="pretrained",
                      help="LLaMA folder or .gguf file, `pretrained` (default: SmolLM2-135M-Instruct from the pinned "
                           "package with the shipped LoRA adapter), `starter` (the trained starter model) or `tiny`")
    demo.add_argument("--adapter", default="", help="LoRA adapter folder for the cloud model (`none`: the bare base)")
    demo.add_argument("--log-level", default="warning")
    demo.set_defaults(run=_demo)


def _demo(args: argparse.Namespace) -> int:
    from cli.demo import run_demo  # core, nodes, torch and ONNX Runtime

    configure_logging(json=False, level=args.log_level)
    asyncio.run(run_demo(args.edge_model, args.cloud_model, args.adapter))
    return 0
