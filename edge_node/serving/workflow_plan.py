"""What a request does at the edge, from the workflow it names (cp/workflows.py defines the functions).

The default plan — personalise, route, generate at the edge or in the cloud — is what
every request without a workflow gets.
"""

from __future__ import annotations

from dataclasses import dataclass

from netgpt.errors import FailedPrecondition
from netgpt.v1 import common_pb2, workflow_pb2


@dataclass(frozen=True)
class WorkflowPlan:
    name: str
    functions: frozenset[str]
    cloud_node_id: str = ""  # where the core placed generate_cloud, if anywhere

    def has(self, function: str) -> bool:
        return function in self.functions


DEFAULT_PLAN = WorkflowPlan("default", frozenset({"personalise", "route", "generate_edge", "generate_cloud"}))


def plan_from_workflow(workflow: workflow_pb2.Workflow) -> WorkflowPlan:
    if workflow.placement_error:
        raise FailedPrecondition(f"workflow {workflow.spec.name!r} cannot be placed now: {workflow.placement_error}")
    cloud = [p.node_id for p in workflow.placement
             if p.function == "generate_cloud" and p.role == common_pb2.NODE_ROLE_CLOUD]
    return WorkflowPlan(workflow.spec.name, frozenset(step.function for step in workflow.spec.steps),
                        cloud[0] if cloud else "")

