"""The routing policy: each input flips the decision, and the control plane changes it at run time."""

from __future__ import annotations

import grpc
import pytest
from helpers import concise, eventually, generate, new_session

from edge_node.serving.learned_router import ProbedAnswer
from edge_node.serving.routing import PerformancePolicy, RoutingInputs
from netgpt.channels import open_channel
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2

CHAT, LOOKUP = up_pb2.TASK_CLASS_CHAT, up_pb2.TASK_CLASS_LOOKUP
AUTO, EDGE, CLOUD = up_pb2.ROUTE_PREFERENCE_UNSPECIFIED, up_pb2.ROUTE_PREFERENCE_EDGE, up_pb2.ROUTE_PREFERENCE_CLOUD


def inputs(**changes) -> RoutingInputs:
    base = {"task": CHAT, "preference": AUTO, "cloud_available": True, "cloud_queue": 0, "cloud_estimate_ms": 10.0,
            "budget_left_ms": None}
    return RoutingInputs(**(base | changes))


class Probe:
    def __init__(self, confidence: float) -> None:
        self.confidence, self.calls = confidence, 0

    async def __call__(self, tokens: int) -> ProbedAnswer:
        self.calls += 1
        return ProbedAnswer("probe", (self.confidence,))


@pytest.mark.parametrize("policy, changes, confidence, reason, probed", [
    (PerformancePolicy(), {}, 0.0, up_pb2.ROUTE_REASON_CLOUD_FORWARDED, 0),
    (PerformancePolicy(), {"task": LOOKUP}, 0.0, up_pb2.ROUTE_REASON_EDGE_CAPABLE, 0),
    (PerformancePolicy(), {"preference": EDGE}, 0.0, up_pb2.ROUTE_REASON_CLIENT_PREFERENCE, 0),
    (PerformancePolicy(), {"task": LOOKUP, "preference": CLOUD}, 0.0, up_pb2.ROUTE_REASON_CLIENT_PREFERENCE, 0),
    (PerformancePolicy(), {"cloud_available": False}, 0.0, up_pb2.ROUTE_REASON_CLOUD_UNAVAILABLE, 0),
    (PerformancePolicy(max_cloud_queue=2), {"cloud_queue": 2}, 0.0, up_pb2.ROUTE_REASON_CLOUD_BUSY, 0),
    (PerformancePolicy(max_cloud_queue=2), {"cloud_queue": 1}, 0.0, up_pb2.ROUTE_REASON_CLOUD_FORWARDED, 0),
    (PerformancePolicy(), {"budget_left_ms": 5.0}, 0.0, up_pb2.ROUTE_REASON_LATENCY_BUDGET, 0),
    (PerformancePolicy(), {"budget_left_ms": 50.0}, 0.0, up_pb2.ROUTE_REASON_CLOUD_FORWARDED, 0),
    (PerformancePolicy(confidence_threshold=-1.0), {}, -0.5, up_pb2.ROUTE_REASON_EDGE_CONFIDENT, 1),
    (PerformancePolicy(confidence_threshold=-1.0), {}, -1.5, up_pb2.ROUTE_REASON_CLOUD_FORWARDED, 1),
    (PerformancePolicy(confidence_threshold=-1.0), {"task": LOOKUP}, -0.5, up_pb2.ROUTE_REASON_EDGE_CAPABLE, 0),
])
async def test_each_input_flips_the_decision(policy, changes, confidence, reason, probed):
    probe, request = Probe(confidence), inputs(**changes)
    route = await policy.decide(request, probe)
    assert route.reason == reason, route.detail
    assert route.to_cloud == (reason in (up_pb2.ROUTE_REASON_CLOUD_FORWARDED, up_pb2.ROUTE_REASON_CLIENT_PREFERENCE)
                              and request.preference != EDGE)
    assert probe.calls == probed  # confidence is only paid for when it decides
    if probed:
        assert request.as_strings()["edge_confidence"] == f"{confidence:.3f}"
    settled = policy.settled(inputs(**changes))  # what the edge knows before it personalises the prompt
    assert settled is None if probed else settled == route


async def test_policy_set_through_the_control_plane_reaches_the_edge(cluster):
    async with open_channel(cluster.core.address) as channel:
        core = cp_grpc.ControlPlaneServiceStub(channel)
        always_confident = cp_pb2.RoutingPolicy(edge_tasks=[LOOKUP], confidence_threshold=-1000.0,
                                                confidence_probe_tokens=4)
        reply = await core.SetRoutingPolicy(cp_pb2.SetRoutingPolicyRequest(policy=always_confident), timeout=5)
        assert list(reply.node_ids) == ["edge-1"]
        assert (await core.GetRoutingPolicy(cp_pb2.GetRoutingPolicyRequest(), timeout=5)).policy == always_confident
        await eventually(lambda: cluster.edge.pipeline.policy.confidence_threshold == -1000.0, "the policy")

        session = await new_session(cluster.core.address, "cell-harbour-1")
        summary = (await generate(cluster.edge.address, concise(session, "Where can I eat?")))[-1].summary
        assert summary.reason == up_pb2.ROUTE_REASON_EDGE_CONFIDENT
        assert float(summary.routing_inputs["edge_confidence"]) >= -1000.0
        assert summary.routing_inputs["cloud_available"] == "true"

        await core.SetRoutingPolicy(cp_pb2.SetRoutingPolicyRequest(policy=cp_pb2.RoutingPolicy(edge_tasks=[LOOKUP])),
                                    timeout=5)
        await eventually(lambda: cluster.edge.pipeline.policy.confidence_threshold is None, "the reset", timeout_s=5)
        summary = (await generate(cluster.edge.address, concise(session, "Where can I eat?")))[-1].summary
        assert summary.reason == up_pb2.ROUTE_REASON_CLOUD_FORWARDED and "edge_confidence" not in summary.routing_inputs


@pytest.mark.parametrize("request_, code", [
    (cp_pb2.SetRoutingPolicyRequest(policy=cp_pb2.RoutingPolicy(confidence_threshold=0.5)),
     grpc.StatusCode.INVALID_ARGUMENT),
    (cp_pb2.SetRoutingPolicyRequest(policy=cp_pb2.RoutingPolicy(edge_tasks=[42])), grpc.StatusCode.INVALID_ARGUMENT),
    (cp_pb2.SetRoutingPolicyRequest(policy=cp_pb2.RoutingPolicy(), node_ids=["edge-nope"]), grpc.StatusCode.NOT_FOUND),
    (cp_pb2.SetRoutingPolicyRequest(policy=cp_pb2.RoutingPolicy(), node_ids=["cloud-1"]),
     grpc.StatusCode.INVALID_ARGUMENT),
])
async def test_bad_policies_are_refused(cluster, request_, code):
    async with open_channel(cluster.core.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await cp_grpc.ControlPlaneServiceStub(channel).SetRoutingPolicy(request_, timeout=5)
    assert err.value.code() == code
