"""``netgpt nodes``: the topology as the core sees it."""

from __future__ import annotations

import argparse
import time

from cli.common import Subparsers, add_core_flag, call_core, enum_choices, quiet, sync
from netgpt.node_status import models_served
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.words import enum_word

# The core is not a node of the registry, so it is no filter here.
ROLES = enum_choices(common_pb2.NodeRole, unspecified="all", exclude={"core"})


def add_commands(sub: Subparsers) -> None:
    nodes = sub.add_parser("nodes", help="list the topology the core knows")
    add_core_flag(nodes)
    nodes.add_argument("--role", choices=ROLES, default="all")
    nodes.set_defaults(run=quiet(sync(_nodes)))


def format_nodes(nodes: list[common_pb2.NodeStatus], now: float | None = None) -> str:
    """The serving and stale nodes as a table; the lost ones (silent past the core's node_lost_after_s,
    their jobs moved elsewhere) in a table of their own below it, with how long they have been silent."""
    lost = [n for n in nodes if n.health == common_pb2.NODE_HEALTH_LOST]
    header = f"{'NODE':<16} {'ROLE':<6} {'HEALTH':<8} {'ADDRESS':<22} {'CELLS':<40} {'LOAD':<10} MODELS"
    rows = [header]
    for n in nodes:
        if n.health == common_pb2.NODE_HEALTH_LOST:
            continue
        role = enum_word(common_pb2.NodeRole, n.info.role)
        health = enum_word(common_pb2.NodeHealth, n.health)
        load = f"{n.load.active_requests}+{n.load.queue_depth}q"
        models = ", ".join(f"{m.name}@{m.version}" for m in models_served(n))
        rows.append(f"{n.info.node_id:<16} {role:<6} {health:<8} {n.info.address:<22} "
                    f"{','.join(n.info.cell_ids) or '-':<40} {load:<10} {models}")
    if lost:
        now = time.time() if now is None else now
        rows += ["", f"LOST: {len(lost)} node(s) silent past the core's node_lost_after_s (dropped after "
                     "node_retention_s); their training jobs moved to other nodes",
                 f"{'NODE':<16} {'ROLE':<6} {'SILENT':<10} {'ADDRESS':<22} LAST HEARTBEAT"]
        for n in lost:
            seen = n.last_heartbeat.seconds
            silent = f"{max(now - seen, 0):.0f} s"
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seen)) + "Z"
            rows.append(f"{n.info.node_id:<16} {enum_word(common_pb2.NodeRole, n.info.role):<6} {silent:<10} "
                        f"{n.info.address:<22} {when}")
    return "\n".join(rows)


async def list_nodes(core: str, role: str = "all") -> list[common_pb2.NodeStatus]:
    reply = await call_core(core, cp_grpc.ControlPlaneServiceStub, lambda stub: stub.ListNodes,
                            cp_pb2.ListNodesRequest(role=ROLES[role]))
    return list(reply.nodes)


async def _nodes(args: argparse.Namespace) -> int:
    print(format_nodes(await list_nodes(args.core, args.role)))
    return 0
