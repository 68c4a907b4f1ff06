"""``netgpt ask``: establish a session and stream one answer through the edge, hop by hop."""

from __future__ import annotations

import argparse

from cli.common import Subparsers, add_core_flag, enum_choices, quiet, sync
from netgpt.v1 import user_plane_pb2 as up_pb2

TASKS = enum_choices(up_pb2.TaskClass)
ROUTES = enum_choices(up_pb2.RoutePreference, unspecified="auto")


def add_commands(sub: Subparsers) -> None:
    ask = sub.add_parser("ask", help="establish a session and stream one answer through the edge")
    ask.add_argument("prompt")
    add_core_flag(ask)
    ask.add_argument("--ue", default="ue-1", help="UE id")
    ask.add_argument("--cell", default="cell-harbour-1", help="cell the UE is attached to")
    ask.add_argument("--task", choices=TASKS, default="chat")
    ask.add_argument("--route", choices=ROUTES, default="auto")
    ask.add_argument("--workflow", default="", metavar="NAME",
                     help="run the steps of this workflow (applied with `netgpt workflow apply`)")
    ask.add_argument("--max-new-tokens", type=int, default=0)
    ask.add_argument("--budget-ms", type=int, default=0, help="QoS latency budget (0: none)")
    ask.add_argument("--timeout", type=float, default=60.0, help="deadline in seconds")
    ask.set_defaults(run=quiet(sync(_ask)))


async def _ask(args: argparse.Namespace) -> int:
    from appkit.client import Question, ask
    from cli.printer import Printer

    question = Question(prompt=args.prompt, ue_id=args.ue, cell_id=args.cell, task=TASKS[args.task],
                        route=ROUTES[args.route], workflow=args.workflow, max_new_tokens=args.max_new_tokens,
                        latency_budget_ms=args.budget_ms, timeout_s=args.timeout)
    await ask(args.core, question, Printer())
    return 0
