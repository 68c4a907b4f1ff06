"""Requests that name a workflow follow its steps at the edge; the default workflow is today's flow."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from helpers import concise, generate, new_session

from netgpt.channels import open_channel
from netgpt.v1 import common_pb2, workflow_pb2, workflow_pb2_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "workflow.toml"


def spec(name: str, *functions: str) -> workflow_pb2.WorkflowSpec:
    steps = [workflow_pb2.WorkflowStep(id=f, function=f, after=[functions[i - 1]] if i else [])
             for i, f in enumerate(functions)]
    return workflow_pb2.WorkflowSpec(name=name, latency_budget_ms=5000, priority=1, steps=steps)


async def apply(cluster, request: workflow_pb2.ApplyWorkflowRequest) -> workflow_pb2.Workflow:
    async with open_channel(cluster.core.address) as channel:
        return (await workflow_pb2_grpc.WorkflowServiceStub(channel).ApplyWorkflow(request, timeout=5)).workflow


async def test_example_workflow_desensitises_personalises_and_post_processes(cluster):
    workflow = await apply(cluster, workflow_pb2.ApplyWorkflowRequest(spec_toml=EXAMPLE.read_text()))
    assert {p.function: p.node_id for p in workflow.placement}["generate_cloud"] == "cloud-1"
    session = await new_session(cluster.core.address, "cell-harbour-1")
    prompt = "Book seafood for two, mail me at jo@example.com or call +44 20 7946 0958"
    events = await generate(cluster.edge.address, concise(session, prompt, workflow="personalised-chat"))
    comprehensive = events[0].comprehensive_prompt.text
    assert "[email]" in comprehensive and "[phone]" in comprehensive
    assert "jo@example.com" not in comprehensive and "7946" not in comprehensive  # never left the edge
    assert "Harbour Fish Market" in comprehensive  # personalised
    summary = events[-1].summary
    assert summary.routing_inputs["workflow"] == "personalised-chat" and summary.routing_inputs["desensitised"] == "2"
    assert summary.terminated_at == common_pb2.NODE_ROLE_CLOUD
    assert summary.text == " ".join(summary.text.split())  # post-processed


async def test_edge_only_workflow_never_calls_the_cloud(cluster):
    await apply(cluster, workflow_pb2.ApplyWorkflowRequest(spec=spec("edge-only", "personalise", "generate_edge")))
    session = await new_session(cluster.core.address)
    events = await generate(cluster.edge.address, concise(session, "Plan my evening", workflow="edge-only"))
    summary = events[-1].summary
    assert summary.terminated_at == common_pb2.NODE_ROLE_EDGE and summary.reason == up_pb2.ROUTE_REASON_WORKFLOW
    assert summary.bytes_edge_to_cloud == 0


async def test_cloud_workflow_without_personalisation_forwards_the_concise_prompt(cluster):
    await apply(cluster, workflow_pb2.ApplyWorkflowRequest(spec=spec("plain-cloud", "generate_cloud")))
    session = await new_session(cluster.core.address)
    request = concise(session, "Tell me a joke", workflow="plain-cloud", task=up_pb2.TASK_CLASS_LOOKUP)
    events = await generate(cluster.edge.address, request)
    assert events[0].comprehensive_prompt.text == "Tell me a joke" and not events[0].comprehensive_prompt.knowledge_used
    summary = events[-1].summary
    assert summary.terminated_at == common_pb2.NODE_ROLE_CLOUD and summary.reason == up_pb2.ROUTE_REASON_WORKFLOW


async def test_default_and_unknown_workflows(cluster):
    session = await new_session(cluster.core.address)
    summary = (await generate(cluster.edge.address, concise(session, "Where can I eat?")))[-1].summary
    assert summary.routing_inputs["workflow"] == "default" and summary.routing_inputs["desensitised"] == "0"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await generate(cluster.edge.address, concise(session, "hello", workflow="no-such-workflow"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "no-such-workflow" in err.value.details()
