"""``netgpt workflow apply|show``: declarative workflows of AI functions, placed by the core."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import DEFAULT_TIMEOUT_S, Subparsers, add_core_flag, call_core, on_core, sync, usage_error
from netgpt.v1 import common_pb2
from netgpt.v1 import workflow_pb2 as wf_pb2
from netgpt.v1 import workflow_pb2_grpc as wf_grpc
from netgpt.words import enum_word


def add_commands(sub: Subparsers) -> None:
    workflow = sub.add_parser("workflow", help="apply a workflow of AI functions, or show where the core placed it")
    actions = workflow.add_subparsers(dest="action", required=True)
    apply = actions.add_parser("apply", help="validate and place a workflow TOML file (see examples/workflow.toml)")
    apply.add_argument("file", help="TOML file with a [workflow] table and [[workflow.steps]]")
    add_core_flag(apply)
    apply.set_defaults(run=run_apply)
    show = actions.add_parser("show", help="the placement of one workflow, or of all")
    show.add_argument("name", nargs="?", default="", help="workflow name; default: every applied workflow")
    add_core_flag(show)
    show.set_defaults(run=sync(_show))


def format_workflow(workflow: wf_pb2.Workflow) -> str:
    """A header line (budget, estimate, critical path or error) and one row per step."""
    spec = workflow.spec
    head = f"workflow {spec.name}: budget {spec.latency_budget_ms} ms, priority {spec.priority}"
    if spec.cell_id:
        head += f", cell {spec.cell_id}"
    if workflow.placement_error:
        return f"{head}\n  not placed: {workflow.placement_error}"
    head += (f", estimated {workflow.estimated_latency_ms:.0f} ms along "
             f"{' -> '.join(workflow.critical_path)}")
    rows = [head, f"  {'STEP':<16} {'FUNCTION':<16} {'ROLE':<6} {'NODE':<16} ADDRESS"]
    for p in workflow.placement:
        role = enum_word(common_pb2.NodeRole, p.role)
        rows.append(f"  {p.step_id:<16} {p.function:<16} {role:<6} {p.node_id:<16} {p.node_address}")
    return "\n".join(rows)


async def apply_file(core: str, path: Path) -> wf_pb2.Workflow:
    request = wf_pb2.ApplyWorkflowRequest(spec_toml=path.read_text(encoding="utf-8"))
    reply: wf_pb2.ApplyWorkflowResponse = await call_core(core, wf_grpc.WorkflowServiceStub,
                                                          lambda stub: stub.ApplyWorkflow, request)
    return reply.workflow


async def fetch(core: str, name: str = "") -> list[wf_pb2.Workflow]:
    """One workflow by name (NOT_FOUND if unknown), or every applied workflow."""

    async def get(stub: wf_grpc.WorkflowServiceStub) -> list[wf_pb2.Workflow]:
        if name:
            reply = await stub.GetWorkflow(wf_pb2.GetWorkflowRequest(name=name), timeout=DEFAULT_TIMEOUT_S)
            return [reply.workflow]
        listed = await stub.ListWorkflows(wf_pb2.ListWorkflowsRequest(), timeout=DEFAULT_TIMEOUT_S)
        return list(listed.workflows)

    return await on_core(core, wf_grpc.WorkflowServiceStub, get)


def run_apply(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        return usage_error(args, f"no such file {str(path)!r}")
    return sync(_apply)(args)


async def _apply(args: argparse.Namespace) -> int:
    print(format_workflow(await apply_file(args.core, Path(args.file))))
    return 0


async def _show(args: argparse.Namespace) -> int:
    workflows = await fetch(args.core, args.name)
    print("\n\n".join(format_workflow(w) for w in workflows) if workflows else "no workflows applied")
    return 0
