"""``netgpt nodes``: the topology as the core sees it."""

from __future__ import annotations

from netgpt.channels import DEFAULT_TIMEOUT_S, open_channel
from netgpt.node_status import models_served
from netgpt.words import enum_word
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc

ROLES = {"all": common_pb2.NODE_ROLE_UNSPECIFIED, "edge": common_pb2.NODE_ROLE_EDGE,
         "cloud": common_pb2.NODE_ROLE_CLOUD}


def format_nodes(nodes: list[common_pb2.NodeStatus]) -> str:
    header = f"{'NODE':<16} {'ROLE':<6} {'HEALTH':<8} {'ADDRESS':<22} {'CELLS':<40} {'LOAD':<10} MODELS"
    rows = [header]
    for n in nodes:
        role = enum_word(common_pb2.NodeRole, n.info.role)
        health = enum_word(common_pb2.NodeHealth, n.health)
        load = f"{n.load.active_requests}+{n.load.queue_depth}q"
        models = ", ".join(f"{m.name}@{m.version}" for m in models_served(n))
        rows.append(f"{n.info.node_id:<16} {role:<6} {health:<8} {n.info.address:<22} "
                    f"{','.join(n.info.cell_ids) or '-':<40} {load:<10} {models}")
    return "\n".join(rows)


async def print_nodes(core_address: str, role: str = "all") -> None:
    async with open_channel(core_address) as channel:
        reply = await cp_grpc.ControlPlaneServiceStub(channel).ListNodes(
            cp_pb2.ListNodesRequest(role=ROLES[role]), timeout=DEFAULT_TIMEOUT_S)
    print(format_nodes(list(reply.nodes)))
