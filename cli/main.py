"""The ``netgpt`` command: daemons (core, cloud, edge), the client (ask, nodes) and the demo."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

import grpc

from netgpt import config as cfg
from cli.model import add_model_commands
from cli.policy import add_policy_commands
from cli.workflow import add_workflow_commands
from netgpt.errors import StartupError
from netgpt.logs import configure_logging

TASKS = {"chat": 1, "lookup": 2}
ROUTES = {"auto": 0, "edge": 1, "cloud": 2}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except StartupError as exc:
        print(f"netgpt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except grpc.aio.AioRpcError as exc:
        print(f"netgpt {args.command}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netgpt", description="NetGPT: LLMs inside the mobile network")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, cls, run, text in (
        ("core", cfg.CoreConfig, _run_core, "core controller: control plane + compute plane"),
        ("cloud", cfg.CloudConfig, _run_cloud, "cloud node: LLaMA (+LoRA) on torch"),
        ("edge", cfg.EdgeConfig, _run_edge, "edge node: GPT-2 on ONNX Runtime, personalisation, routing"),
    ):
        daemon = sub.add_parser(name, help=text, description=f"{text}. Settings: defaults < --config [{name}] "
                                f"< NETGPT_{name.upper()}_<KEY> env < flags.")
        cfg.add_flags(daemon, cls)
        daemon.set_defaults(run=run)

    ask = sub.add_parser("ask", help="establish a session and stream one answer through the edge")
    ask.add_argument("prompt")
    ask.add_argument("--core", default="127.0.0.1:50051", help="core controller address")
    ask.add_argument("--ue", default="ue-1", help="UE id")
    ask.add_argument("--cell", default="cell-harbour-1", help="cell the UE is attached to")
    ask.add_argument("--task", choices=TASKS, default="chat")
    ask.add_argument("--route", choices=ROUTES, default="auto")
    ask.add_argument("--max-new-tokens", type=int, default=0)
    ask.add_argument("--budget-ms", type=int, default=0, help="QoS latency budget (0: none)")
    ask.add_argument("--timeout", type=float, default=60.0, help="deadline in seconds")
    ask.set_defaults(run=_run_ask)

    nodes = sub.add_parser("nodes", help="list the topology the core knows")
    nodes.add_argument("--core", default="127.0.0.1:50051")
    nodes.add_argument("--role", choices=["all", "edge", "cloud"], default="all")
    nodes.set_defaults(run=_run_nodes)

    add_policy_commands(sub)
    add_model_commands(sub)
    add_workflow_commands(sub)

    demo = sub.add_parser("demo", help="all-in-one offline demo on loopback")
    demo.add_argument("--edge-model", default="tiny", help="GPT-2 folder (default: built-in tiny model)")
    demo.add_argument("--cloud-model", default="tiny", help="LLaMA folder (default: built-in tiny model)")
    demo.add_argument("--adapter", default="", help="optional LoRA adapter folder for the cloud model")
    demo.add_argument("--log-level", default="warning")
    demo.set_defaults(run=_run_demo)
    return parser


def _daemon(section: str, cls: type, serve: Callable) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        config = cfg.load(cls, section, args)
        configure_logging(json=True, level=config.log_level)
        asyncio.run(serve(config))
        return 0

    return run


async def _serve_core(config: cfg.CoreConfig) -> None:
    from core.daemon import start_core
    from netgpt.server import serve_until_signalled

    handle = await start_core(config)
    await serve_until_signalled(handle, config.grace_s)


async def _serve_cloud(config: cfg.CloudConfig) -> None:
    from cloud_node.daemon import load_cloud_model, start_cloud
    from netgpt.server import serve_until_signalled

    model = await asyncio.to_thread(load_cloud_model, config)
    await serve_until_signalled(await start_cloud(config, model), config.grace_s)


async def _serve_edge(config: cfg.EdgeConfig) -> None:
    from edge_node.daemon import load_edge_model, load_knowledge, start_edge
    from netgpt.server import serve_until_signalled

    knowledge = load_knowledge(config)
    model = await asyncio.to_thread(load_edge_model, config)
    await serve_until_signalled(await start_edge(config, model, knowledge), config.grace_s)


_run_core = _daemon("core", cfg.CoreConfig, _serve_core)
_run_cloud = _daemon("cloud", cfg.CloudConfig, _serve_cloud)
_run_edge = _daemon("edge", cfg.EdgeConfig, _serve_edge)


def _run_ask(args: argparse.Namespace) -> int:
    from cli.client import Printer, Question, ask

    configure_logging(json=False, level="warning")
    question = Question(prompt=args.prompt, ue_id=args.ue, cell_id=args.cell, task=TASKS[args.task],
                        route=ROUTES[args.route], max_new_tokens=args.max_new_tokens,
                        latency_budget_ms=args.budget_ms, timeout_s=args.timeout)
    asyncio.run(ask(args.core, question, Printer()))
    return 0


def _run_nodes(args: argparse.Namespace) -> int:
    from cli.topology import print_nodes

    configure_logging(json=False, level="warning")
    asyncio.run(print_nodes(args.core, args.role))
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from cli.demo import run_demo

    configure_logging(json=False, level=args.log_level)
    asyncio.run(run_demo(args.edge_model, args.cloud_model, args.adapter))
    return 0


if __name__ == "__main__":
    sys.exit(main())
