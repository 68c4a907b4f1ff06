"""`policy set` changes only the fields it names (SetRoutingPolicyRequest.update_mask): residency rules
and verbatim workflows are not wiped by an unrelated change, for all edges or one, through the core and
the command line, and the edge applies the merged policy."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2
from harness import start_cluster
from helpers import cli, eventually

from netgpt.channels import open_channel
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2

RULE = cp_pb2.ResidencyRule(cell_ids=["cell-station-3"], allowed_cloud_regions=["eu-west"])


@pytest.fixture(scope="module")
async def policy_cluster(tiny_models):
    running = await start_cluster(*tiny_models, heartbeat_interval_s=0.3)
    yield running
    await running.stop()


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


async def test_a_masked_change_keeps_the_other_fields_for_all_edges_and_per_edge(policy_cluster):
    async with open_channel(policy_cluster.core.address) as channel:
        core = cp_grpc.ControlPlaneServiceStub(channel)
        whole = cp_pb2.RoutingPolicy(edge_tasks=[up_pb2.TASK_CLASS_LOOKUP], residency=[RULE],
                                     verbatim_workflows=["raw"], max_cloud_queue=2)
        await core.SetRoutingPolicy(cp_pb2.SetRoutingPolicyRequest(policy=whole), timeout=5)
        await core.SetRoutingPolicy(cp_pb2.SetRoutingPolicyRequest(
            policy=cp_pb2.RoutingPolicy(max_cloud_queue=7), update_mask=mask("max_cloud_queue")), timeout=5)
        policy = (await core.GetRoutingPolicy(cp_pb2.GetRoutingPolicyRequest(), timeout=5)).policy
        assert policy.max_cloud_queue == 7 and list(policy.residency) == [RULE]
        assert list(policy.verbatim_workflows) == ["raw"] and list(policy.edge_tasks) == [up_pb2.TASK_CLASS_LOOKUP]
        edge = policy_cluster.edge.pipeline
        await eventually(lambda: edge.policy.max_cloud_queue == 7, "the merged policy at the edge", timeout_s=5)
        assert edge.data_policy.allowed_regions("cell-station-3") == {"eu-west"}
        assert not edge.data_policy.desensitises("raw")

        # one edge: only its field changes; then a change for all edges keeps that edge's own fields
        await core.SetRoutingPolicy(cp_pb2.SetRoutingPolicyRequest(
            policy=cp_pb2.RoutingPolicy(), node_ids=["edge-1"], update_mask=mask("verbatim_workflows")), timeout=5)
        await eventually(lambda: edge.data_policy.desensitises("raw"), "the per-edge change", timeout_s=5)
        await core.SetRoutingPolicy(cp_pb2.SetRoutingPolicyRequest(
            policy=cp_pb2.RoutingPolicy(confidence_threshold=-1.5), update_mask=mask("confidence_threshold")),
            timeout=5)
        await eventually(lambda: edge.policy.confidence_threshold == -1.5, "the change for all edges", timeout_s=5)
        assert edge.data_policy.desensitises("raw")  # the edge's own verbatim list stays empty
        assert edge.data_policy.allowed_regions("cell-station-3") == {"eu-west"}
        assert edge.policy.max_cloud_queue == 7

        # an optional field named but unset is cleared; the rest stays
        await core.SetRoutingPolicy(cp_pb2.SetRoutingPolicyRequest(
            policy=cp_pb2.RoutingPolicy(), update_mask=mask("confidence_threshold")), timeout=5)
        policy = (await core.GetRoutingPolicy(cp_pb2.GetRoutingPolicyRequest(), timeout=5)).policy
        assert not policy.HasField("confidence_threshold") and list(policy.residency) == [RULE]


@pytest.mark.parametrize("paths, words", [(["residency.cell_ids"], "residency.cell_ids"),
                                          (["no_such_field"], "no_such_field")])
async def test_a_mask_naming_no_policy_field_is_invalid_argument(policy_cluster, paths, words):
    async with open_channel(policy_cluster.core.address) as channel:
        core = cp_grpc.ControlPlaneServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await core.SetRoutingPolicy(cp_pb2.SetRoutingPolicyRequest(
                policy=cp_pb2.RoutingPolicy(), update_mask=mask(*paths)), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in err.value.details()
    assert "max_cloud_queue" in err.value.details()  # the fields it could name


async def test_a_masked_change_that_breaks_a_rule_changes_nothing(policy_cluster):
    async with open_channel(policy_cluster.core.address) as channel:
        core = cp_grpc.ControlPlaneServiceStub(channel)
        before = (await core.GetRoutingPolicy(cp_pb2.GetRoutingPolicyRequest(), timeout=5)).policy
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await core.SetRoutingPolicy(cp_pb2.SetRoutingPolicyRequest(
                policy=cp_pb2.RoutingPolicy(confidence_probe_tokens=1000, max_cloud_queue=1),
                update_mask=mask("max_cloud_queue", "confidence_probe_tokens")), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (await core.GetRoutingPolicy(cp_pb2.GetRoutingPolicyRequest(), timeout=5)).policy == before


async def test_policy_set_on_the_command_line_names_only_its_flags(policy_cluster, capsys):
    address = policy_cluster.core.address
    assert await cli("policy", "set", "--core", address, "--residency", "cell-a=eu-north",
                     "--verbatim-workflow", "raw") == 0
    assert await cli("policy", "set", "--core", address, "--max-cloud-queue", "3") == 0
    assert await cli("policy", "set", "--core", address, "--confidence-threshold", "off") == 0
    async with open_channel(address) as channel:
        policy = (await cp_grpc.ControlPlaneServiceStub(channel).GetRoutingPolicy(
            cp_pb2.GetRoutingPolicyRequest(), timeout=5)).policy
    assert policy.max_cloud_queue == 3 and not policy.HasField("confidence_threshold")
    assert [list(r.cell_ids) for r in policy.residency] == [["cell-a"]]
    assert list(policy.verbatim_workflows) == ["raw"]
    assert await cli("policy", "set", "--core", address, "--no-residency") == 0
    async with open_channel(address) as channel:
        policy = (await cp_grpc.ControlPlaneServiceStub(channel).GetRoutingPolicy(
            cp_pb2.GetRoutingPolicyRequest(), timeout=5)).policy
    assert not policy.residency and list(policy.verbatim_workflows) == ["raw"] and policy.max_cloud_queue == 3
    capsys.readouterr()
    assert await cli("policy", "set", "--core", address) == 2
    assert "name at least one field" in capsys.readouterr().err
