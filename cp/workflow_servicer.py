"""WorkflowService: thin gRPC layer over the workflow table, with the proto <-> domain conversion."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from cp.placement import AppliedWorkflow, WorkflowTable
from cp.workflow_dataflow import check_dataflow
from cp.workflows import Workflow, from_mapping, parse_toml
from netgpt.errors import InvalidArgument
from netgpt.v1 import workflow_pb2 as wf_pb2
from netgpt.v1 import workflow_pb2_grpc as wf_grpc


class WorkflowServicer(wf_grpc.WorkflowServiceServicer):
    def __init__(self, table: WorkflowTable) -> None:
        self.table = table

    async def ApplyWorkflow(self, request: wf_pb2.ApplyWorkflowRequest,
                            context: grpc.aio.ServicerContext) -> wf_pb2.ApplyWorkflowResponse:
        applied = self.table.apply(workflow_from_request(request))
        return wf_pb2.ApplyWorkflowResponse(workflow=workflow_to_proto(applied))

    async def GetWorkflow(self, request: wf_pb2.GetWorkflowRequest,
                          context: grpc.aio.ServicerContext) -> wf_pb2.GetWorkflowResponse:
        return wf_pb2.GetWorkflowResponse(workflow=workflow_to_proto(self.table.get(request.name)))

    async def ListWorkflows(self, request: wf_pb2.ListWorkflowsRequest,
                            context: grpc.aio.ServicerContext) -> wf_pb2.ListWorkflowsResponse:
        return wf_pb2.ListWorkflowsResponse(workflows=[workflow_to_proto(w) for w in self.table.list()])

    async def DeleteWorkflow(self, request: wf_pb2.DeleteWorkflowRequest,
                             context: grpc.aio.ServicerContext) -> wf_pb2.DeleteWorkflowResponse:
        self.table.delete(request.name)
        return wf_pb2.DeleteWorkflowResponse()


def workflow_from_request(request: wf_pb2.ApplyWorkflowRequest) -> Workflow:
    """The validated workflow: a well-formed DAG whose steps hand each other their fields consistently."""
    source = request.WhichOneof("source")
    if source == "spec_toml":
        workflow = parse_toml(request.spec_toml)
    elif source == "spec":
        workflow = from_mapping(spec_to_mapping(request.spec))
    else:
        raise InvalidArgument("ApplyWorkflowRequest needs spec or spec_toml")
    check_dataflow(workflow.steps)
    return workflow


def spec_to_mapping(spec: wf_pb2.WorkflowSpec) -> dict[str, Any]:
    """The structured spec as the data a TOML file would give (zero = absent, so "required" reads right)."""
    mapping: dict[str, Any] = {"name": spec.name, "cell_id": spec.cell_id, "steps": [
        {"id": s.id, "function": s.function, "after": list(s.after)} for s in spec.steps]}
    for key in ("latency_budget_ms", "priority"):
        if getattr(spec, key):
            mapping[key] = getattr(spec, key)
    return mapping


def spec_to_proto(workflow: Workflow) -> wf_pb2.WorkflowSpec:
    steps = [wf_pb2.WorkflowStep(id=s.id, function=s.function, after=s.after) for s in workflow.steps]
    return wf_pb2.WorkflowSpec(name=workflow.name, latency_budget_ms=workflow.latency_budget_ms,
                               priority=workflow.priority, steps=steps, cell_id=workflow.cell_id)


def workflow_to_proto(applied: AppliedWorkflow) -> wf_pb2.Workflow:
    message = wf_pb2.Workflow(spec=spec_to_proto(applied.workflow), placement_error=applied.error,
                              placed_at=_timestamp(applied.placed_at), applied_at=_timestamp(applied.applied_at))
    if applied.placement is not None:
        message.estimated_latency_ms = applied.placement.estimated_latency_ms
        message.critical_path.extend(applied.placement.critical_path)
        message.placement.extend(
            wf_pb2.StepPlacement(step_id=s.step_id, function=s.function, node_id=s.node_id,
                                 node_address=s.node_address, role=s.role) for s in applied.placement.steps)
    return message


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp
