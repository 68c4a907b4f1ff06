"""``netgpt policy show|set``: the edges' routing policy, through the control plane."""

from __future__ import annotations

import argparse
import asyncio

from netgpt.channels import DEFAULT_TIMEOUT_S, open_channel
from netgpt.words import enum_word
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2


def add_policy_commands(sub: argparse._SubParsersAction) -> None:
    policy = sub.add_parser("policy", help="show or change the edges' routing policy at run time")
    actions = policy.add_subparsers(dest="action", required=True)
    show = actions.add_parser("show", help="the policy set for all edges")
    show.add_argument("--core", default="127.0.0.1:50051")
    show.set_defaults(run=_run_show)
    change = actions.add_parser("set", help="replace the policy (all edges, or --node)")
    change.add_argument("--core", default="127.0.0.1:50051")
    change.add_argument("--node", action="append", default=[], help="edge node id (repeatable); default: all")
    change.add_argument("--edge-tasks", default="lookup", help="task classes answered at the edge, e.g. lookup,chat")
    change.add_argument("--confidence-threshold", type=float, default=None,
                        help="mean token log-probability; omit to turn the confidence probe off")
    change.add_argument("--probe-tokens", type=int, default=0)
    change.add_argument("--max-cloud-queue", type=int, default=0)
    change.set_defaults(run=_run_set)


def describe(policy: cp_pb2.RoutingPolicy) -> str:
    tasks = ",".join(enum_word(up_pb2.TaskClass, t) for t in policy.edge_tasks) or "-"
    threshold = f"{policy.confidence_threshold:g}" if policy.HasField("confidence_threshold") else "off"
    return (f"edge_tasks={tasks} confidence_threshold={threshold} "
            f"probe_tokens={policy.confidence_probe_tokens or 'default'} max_cloud_queue={policy.max_cloud_queue or 'off'}")


def _run_show(args: argparse.Namespace) -> int:
    async def show() -> cp_pb2.GetRoutingPolicyResponse:
        async with open_channel(args.core) as channel:
            return await cp_grpc.ControlPlaneServiceStub(channel).GetRoutingPolicy(
                cp_pb2.GetRoutingPolicyRequest(), timeout=DEFAULT_TIMEOUT_S)

    reply = asyncio.run(show())
    print(describe(reply.policy) if reply.HasField("policy") else "no policy set through the core (edges use their config)")
    return 0


def _run_set(args: argparse.Namespace) -> int:
    tasks = [up_pb2.TaskClass.Value(f"TASK_CLASS_{t.strip().upper()}") for t in args.edge_tasks.split(",") if t.strip()]
    policy = cp_pb2.RoutingPolicy(edge_tasks=tasks, confidence_probe_tokens=args.probe_tokens,
                                  max_cloud_queue=args.max_cloud_queue)
    if args.confidence_threshold is not None:
        policy.confidence_threshold = args.confidence_threshold

    async def change() -> cp_pb2.SetRoutingPolicyResponse:
        async with open_channel(args.core) as channel:
            return await cp_grpc.ControlPlaneServiceStub(channel).SetRoutingPolicy(
                cp_pb2.SetRoutingPolicyRequest(policy=policy, node_ids=args.node), timeout=DEFAULT_TIMEOUT_S)

    reply = asyncio.run(change())
    print(f"{describe(policy)} -> queued for {', '.join(reply.node_ids) or 'no edge yet'}")
    return 0
