"""The ``netgpt`` command: builds the parser from one module per command group and runs it.

Command groups, in ``--help`` order: daemons (core, cloud, edge), ask, nodes, policy, model,
workflow, data, train, eval, intent + popularity, pki, token, demo, ran-sim. Each module exposes
``add_commands(sub)``; errors become messages and exit statuses in one place (:func:`cli.common.report_error`).
"""

from __future__ import annotations

import argparse
import sys

import grpc

from cli import (
    ask,
    daemons,
    data,
    demo_command,
    eval,
    model,
    netmgmt,
    nodes,
    pki,
    policy,
    ran_sim,
    token,
    train,
    workflow,
)
from cli.common import report_error, use_client_identity
from netgpt.errors import StartupError

COMMAND_GROUPS = (daemons, ask, nodes, policy, model, workflow, data, train, eval, netmgmt, pki, token,
                  demo_command, ran_sim)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netgpt", description="NetGPT: LLMs inside the mobile network")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "client_identity", False):
            use_client_identity(args)
        return int(args.run(args))
    except (StartupError, grpc.aio.AioRpcError) as exc:
        return report_error(args, exc)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
