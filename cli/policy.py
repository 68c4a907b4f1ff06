"""``netgpt policy show|set``: the edges' routing policy, through the control plane."""

from __future__ import annotations

import argparse
import sys

from google.protobuf import field_mask_pb2

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
    change = actions.add_parser("set", help="change the fields named (all edges, or --node); the rest stay as they are")
    add_core_flag(change)
    change.add_argument("--node", action="append", default=[], help="edge node id (repeatable); default: all")
    change.add_argument("--edge-tasks", type=enum_list(TASKS), default=None, metavar="TASK,TASK",
                        help=f"task classes answered at the edge, of {', '.join(TASKS)} (the first policy set "
                             "for all edges defaults to lookup)")
    change.add_argument("--confidence-threshold", type=threshold, default=argparse.SUPPRESS, metavar="LOGPROB|off",
                        help="mean token log-probability (<= 0); off: turn the confidence probe off")
    change.add_argument("--probe-tokens", type=int, default=None)
    change.add_argument("--max-cloud-queue", type=int, default=None, help="0: no limit")
    change.add_argument("--residency", type=residency_rule, action="append", default=None, metavar="CELLS=REGIONS",
                        help="requests from CELLS (comma-separated, * for all) go only to clouds in REGIONS "
                             "(comma-separated; empty: none, they stay at the edge); repeatable: the rules given "
                             "replace the current ones")
    change.add_argument("--no-residency", action="store_true", help="remove every residency rule")
    change.add_argument("--verbatim-workflow", action="append", default=None, metavar="NAME",
                        help="a workflow whose requests skip desensitisation (repeatable; replaces the list)")
    change.add_argument("--no-verbatim-workflows", action="store_true",
                        help="no workflow skips desensitisation")
    change.add_argument("--distill-samples", choices=("on", "off", "default"), default=None,
                        help="edges keep the cloud's answers as distillation samples (only those whose own "
                             "distill_samples setting is on); default: each edge's setting decides")
    change.set_defaults(run=sync(_set))


def threshold(text: str) -> float | None:
    """A confidence threshold, or None for ``off``."""
    if text.strip().lower() == "off":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'off'") from None


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
            + (f" verbatim_workflows={','.join(policy.verbatim_workflows)}" if policy.verbatim_workflows else "")
            + (f" distill_samples={'on' if policy.distill_samples else 'off'}"
               if policy.HasField("distill_samples") else ""))


async def _show(args: argparse.Namespace) -> int:
    reply = await call_core(args.core, cp_grpc.ControlPlaneServiceStub, lambda stub: stub.GetRoutingPolicy,
                            cp_pb2.GetRoutingPolicyRequest())
    print(describe(reply.policy) if reply.HasField("policy")
          else "no policy set through the core (edges use their config)")
    return 0


def change_of(args: argparse.Namespace, first: bool) -> tuple[cp_pb2.RoutingPolicy, list[str]]:
    """The policy fields the flags name, and their names (the update mask); ``first``: no policy has been
    set for all edges yet, so an unnamed edge_tasks takes the old default (lookup)."""
    policy, fields = cp_pb2.RoutingPolicy(), []
    if args.edge_tasks is not None or first:
        policy.edge_tasks.extend(args.edge_tasks if args.edge_tasks is not None else [up_pb2.TASK_CLASS_LOOKUP])
        fields.append("edge_tasks")
    if "confidence_threshold" in vars(args):  # absent when not given; None for off
        if args.confidence_threshold is not None:
            policy.confidence_threshold = args.confidence_threshold
        fields.append("confidence_threshold")
    if args.probe_tokens is not None:
        policy.confidence_probe_tokens = args.probe_tokens
        fields.append("confidence_probe_tokens")
    if args.max_cloud_queue is not None:
        policy.max_cloud_queue = args.max_cloud_queue
        fields.append("max_cloud_queue")
    if args.residency is not None or args.no_residency:
        policy.residency.extend(args.residency or [])
        fields.append("residency")
    if args.verbatim_workflow is not None or args.no_verbatim_workflows:
        policy.verbatim_workflows.extend(args.verbatim_workflow or [])
        fields.append("verbatim_workflows")
    if args.distill_samples is not None:
        if args.distill_samples != "default":
            policy.distill_samples = args.distill_samples == "on"
        fields.append("distill_samples")
    return policy, fields


async def _set(args: argparse.Namespace) -> int:
    first = False
    if not args.node:
        current = await call_core(args.core, cp_grpc.ControlPlaneServiceStub, lambda stub: stub.GetRoutingPolicy,
                                  cp_pb2.GetRoutingPolicyRequest())
        first = not current.HasField("policy")
    policy, fields = change_of(args, first)
    if not fields:
        print("netgpt policy set: name at least one field to change (see --help)", file=sys.stderr)
        return 2
    request = cp_pb2.SetRoutingPolicyRequest(policy=policy, node_ids=args.node,
                                             update_mask=field_mask_pb2.FieldMask(paths=fields))
    reply = await call_core(args.core, cp_grpc.ControlPlaneServiceStub, lambda stub: stub.SetRoutingPolicy, request)
    print(f"{', '.join(fields)} changed -> queued for {', '.join(reply.node_ids) or 'no edge yet'}")
    return 0
