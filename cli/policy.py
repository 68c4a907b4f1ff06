"""``netgpt policy show|set``: the edges' routing policy, through the control plane."""

from __future__ import annotations

import argparse

from cli.common import Subparsers, add_core_flag, call_core, enum_choices, enum_list, sync
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.words import enum_word

TASKS = enum_choices(up_pb2.TaskClass)


def add_commands(sub: Subparsers) -> None:
    policy = sub.add_parser("policy", help="show or change the edges' routing policy at run time")
    actions = policy.add_subparsers(dest="action", required=True)
    show = actions.add_parser("show", help="the policy set for all edges")
    add_core_flag(show)
    show.set_defaults(run=sync(_show))
    change = actions.add_parser("set", help="replace the policy (all edges, or --node)")
    add_core_flag(change)
    change.add_argument("--node", action="append", default=[], help="edge node id (repeatable); default: all")
    change.add_argument("--edge-tasks", type=enum_list(TASKS), default="lookup", metavar="TASK,TASK",
                        help=f"task classes answered at the edge, of {', '.join(TASKS)} (default: lookup)")
    change.add_argument("--confidence-threshold", type=float, default=None,
                        help="mean token log-probability; omit to turn the confidence probe off")
    change.add_argument("--probe-tokens", type=int, default=0)
    change.add_argument("--max-cloud-queue", type=int, default=0)
    change.add_argument("--residency", type=residency_rule, action="append", default=[], metavar="CELLS=REGIONS",
                        help="requests from CELLS (comma-separated, * for all) go only to clouds in REGIONS "
                             "(comma-separated; empty: none, they stay at the edge); repeatable")
    change.add_argument("--verbatim-workflow", action="append", default=[], metavar="NAME",
                        help="a workflow whose requests skip desensitisation (repeatable); default: none")
    change.set_defaults(run=sync(_set))


def residency_rule(text: str) -> cp_pb2.ResidencyRule:
    """``cell-a,cell-b=eu-west,eu-north`` (``*`` for every cell; nothing after ``=``: no region)."""
    cells, sep, regions = text.partition("=")
    if not sep or not cells.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not CELLS=REGIONS (e.g. 'cell-1,cell-2=eu-west')")
    cell_ids = [] if cells.strip() == "*" else [c.strip() for c in cells.split(",") if c.strip()]
    return cp_pb2.ResidencyRule(cell_ids=cell_ids, allowed_cloud_regions=[r.strip() for r in regions.split(",")
                                                                          if r.strip()])


def describe(policy: cp_pb2.RoutingPolicy) -> str:
    tasks = ",".join(enum_word(up_pb2.TaskClass, t) for t in policy.edge_tasks) or "-"
    threshold = f"{policy.confidence_threshold:g}" if policy.HasField("confidence_threshold") else "off"
    return (f"edge_tasks={tasks} confidence_threshold={threshold} "
            f"probe_tokens={policy.confidence_probe_tokens or 'default'} "
            f"max_cloud_queue={policy.max_cloud_queue or 'off'}"
            + "".join(f" residency={','.join(r.cell_ids) or '*'}={','.join(r.allowed_cloud_regions) or 'none'}"
                      for r in policy.residency)
            + (f" verbatim_workflows={','.join(policy.verbatim_workflows)}" if policy.verbatim_workflows else ""))


async def _show(args: argparse.Namespace) -> int:
    reply = await call_core(args.core, cp_grpc.ControlPlaneServiceStub, lambda stub: stub.GetRoutingPolicy,
                            cp_pb2.GetRoutingPolicyRequest())
    print(describe(reply.policy) if reply.HasField("policy")
          else "no policy set through the core (edges use their config)")
    return 0


async def _set(args: argparse.Namespace) -> int:
    policy = cp_pb2.RoutingPolicy(edge_tasks=args.edge_tasks, confidence_probe_tokens=args.probe_tokens,
                                  max_cloud_queue=args.max_cloud_queue, residency=args.residency,
                                  verbatim_workflows=args.verbatim_workflow)
    if args.confidence_threshold is not None:
        policy.confidence_threshold = args.confidence_threshold
    reply = await call_core(args.core, cp_grpc.ControlPlaneServiceStub, lambda stub: stub.SetRoutingPolicy,
                            cp_pb2.SetRoutingPolicyRequest(policy=policy, node_ids=args.node))
    print(f"{describe(policy)} -> queued for {', '.join(reply.node_ids) or 'no edge yet'}")
    return 0
