"""Cell load counts, driven through the RAN API (RanService.ReportCellLoad, generated stubs, real servers):
placement (sessions and workflows) avoids edges covering a saturated cell when another edge covers the cell,
and an edge forwards requests from a cell at or above its cell_offload_prb to the cloud, with the cell's load
in the request summary and in the learned router's features."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from deploy_helpers import publish, settled, tar_with
from harness import NO_TASK_MODELS, start_cluster
from helpers import concise, eventually, generate, new_session
from throwaway_ca import identity, tls

from edge_node.daemon import load_knowledge, start_edge
from edge_node.serving.cell_loads import CellLoads
from edge_node.serving.learned_router import LearnedRouter, ProbedAnswer
from edge_node.serving.routing import PerformancePolicy, RoutingInputs
from netgpt.channels import open_channel
from netgpt.config import EdgeConfig
from netgpt.v1 import common_pb2, ran_pb2, ran_pb2_grpc
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import workflow_pb2 as wf_pb2
from netgpt.v1 import workflow_pb2_grpc as wf_grpc

SHARED, ONLY_1, ONLY_2 = "cell-harbour-1", "cell-campus-2", "cell-station-3"  # edge-1 covers SHARED + ONLY_1
RAN = identity("ran", "ric-1")
ROUTING = {"router": "shadow", "cell_offload_prb": 0.8, "intent_tokens": 0, "answer_cache_ttl_s": 0.0}


@pytest.fixture(scope="module")
async def two_edges(models):
    gpt2, llama = models
    cluster = await start_cluster(gpt2, llama, heartbeat_interval_s=0.2, core={"cell_saturated_prb": 0.9},
                                  edge={"cells": [SHARED, ONLY_1], **ROUTING})
    deploy_dir = Path(tempfile.mkdtemp(prefix="netgpt-edge-2-"))
    cluster.scratch.append(deploy_dir)
    config = EdgeConfig(**{**tls("edge", "edge-2"), "node_id": "edge-2", "listen": "127.0.0.1:0",
                           "core": cluster.core.address, "cells": [SHARED, ONLY_2], "profiles_db": ":memory:",
                           "deploy_dir": str(deploy_dir), **ROUTING, **NO_TASK_MODELS})
    edge_2 = await start_edge(config, gpt2, load_knowledge(config))
    await eventually(lambda: any(s.info.node_id == "edge-2" and s.health == common_pb2.NODE_HEALTH_SERVING
                                 for s in cluster.core.registry.statuses(common_pb2.NODE_ROLE_EDGE)),
                     "edge-2 registered")
    yield cluster, edge_2
    await edge_2.stop(1.0)
    await cluster.stop()


async def report(core: str, **prb: float) -> None:
    """ReportCellLoad as the RAN: ``shared=0.95`` etc. (SHARED, ONLY_1, ONLY_2 by their short names)."""
    names = {"shared": SHARED, "only_1": ONLY_1, "only_2": ONLY_2}
    cells = [ran_pb2.CellLoad(cell_id=names[k], prb_utilization=v, connected_ues=int(v * 100)) for k, v in prb.items()]
    async with open_channel(core, RAN) as channel:
        await ran_pb2_grpc.RanServiceStub(channel).ReportCellLoad(ran_pb2.ReportCellLoadRequest(cells=cells),
                                                                   timeout=10)


async def placed_on(core: str) -> tuple[str, str]:
    """(serving edge of a new session in the shared cell, edge the shared cell's workflow places its steps on)."""
    session = await new_session(core, SHARED)
    async with open_channel(core) as channel:
        workflow = (await wf_grpc.WorkflowServiceStub(channel).GetWorkflow(
            wf_pb2.GetWorkflowRequest(name="chat-shared"), timeout=5)).workflow
    edges = {s.node_id for s in workflow.placement if s.role == common_pb2.NODE_ROLE_EDGE}
    assert len(edges) == 1, workflow
    return session.serving_edge.node_id, edges.pop()


async def test_placement_avoids_edges_covering_a_saturated_cell(two_edges):
    cluster, _ = two_edges
    core = cluster.core.address
    spec = wf_pb2.WorkflowSpec(name="chat-shared", latency_budget_ms=5000, priority=1, cell_id=SHARED, steps=[
        wf_pb2.WorkflowStep(id="personalise", function="personalise"),
        wf_pb2.WorkflowStep(id="generate", function="generate_edge", after=["personalise"])])
    async with open_channel(core) as channel:
        await wf_grpc.WorkflowServiceStub(channel).ApplyWorkflow(wf_pb2.ApplyWorkflowRequest(spec=spec), timeout=5)

    await report(core, only_2=0.95, only_1=0.2, shared=0.5)  # edge-2's other cell is saturated
    assert await placed_on(core) == ("edge-1", "edge-1")
    await report(core, only_2=0.1, only_1=0.92)  # now edge-1's is
    assert await placed_on(core) == ("edge-2", "edge-2")
    await report(core, only_2=0.95)  # both are: saturation no longer tells them apart, and nothing is refused
    assert (await new_session(core, SHARED)).serving_edge.node_id in ("edge-1", "edge-2")
    assert (await new_session(core, ONLY_2)).serving_edge.node_id == "edge-2"  # the only edge of a saturated cell
    await report(core, only_1=0.1, only_2=0.1)


async def ask(core: str, cell_id: str) -> up_pb2.GenerationSummary:
    session = await new_session(core, cell_id)
    request = concise(session, "Where can I eat fresh seafood tonight?", max_new_tokens=6)
    return (await generate(session.serving_edge.address, request))[-1].summary


async def test_a_loaded_cell_sends_chat_to_the_cloud_and_the_router_reads_its_load(two_edges):
    cluster, edge_2 = two_edges
    core = cluster.core.address
    edges = (cluster.edge, edge_2)

    def edges_know(cell_id: str, prb: float) -> bool:
        return all(e.pipeline.policy.cell_loads.prb(cell_id) == pytest.approx(prb) for e in edges)

    await report(core, shared=0.5)
    await eventually(lambda: edges_know(SHARED, 0.5), "both edges to learn the shared cell's load")
    moderate = await ask(core, SHARED)
    assert moderate.reason == up_pb2.ROUTE_REASON_CLOUD_FORWARDED  # the rules (router in shadow), not the load
    assert moderate.routing_inputs["cell_load"] == "0.500" and moderate.routing_inputs["router.cell_load"] == "0.5"

    await report(core, shared=0.85)
    await eventually(lambda: edges_know(SHARED, 0.85), "both edges to learn the shared cell's new load")
    loaded = await ask(core, SHARED)
    assert loaded.terminated_at == common_pb2.NODE_ROLE_CLOUD and loaded.reason == up_pb2.ROUTE_REASON_CELL_LOAD
    assert "PRB load 0.85 >= cell_offload_prb 0.80" in loaded.reason_detail
    assert "router_p_good" not in loaded.routing_inputs  # decided before the router's probe: no edge tokens spent

    session = await new_session(core, SHARED)
    lookup = concise(session, "Where is the harbour?", task=up_pb2.TASK_CLASS_LOOKUP, max_new_tokens=6)
    kept = (await generate(session.serving_edge.address, lookup))[-1].summary
    assert kept.reason == up_pb2.ROUTE_REASON_EDGE_CAPABLE  # what must stay at the edge still does

    await report(core, shared=0.1)


async def test_the_edge_keeps_only_its_cells_loads_and_a_policy_update_keeps_them():
    loads = CellLoads(frozenset({SHARED}))
    loads.apply(cp_pb2.NodeCommand(cell_loads=cp_pb2.CellLoads(prb_utilization={
        SHARED: 0.9, ONLY_2: 0.5})))
    assert (loads.prb(SHARED), loads.prb(ONLY_2)) == (0.9, None)
    policy = PerformancePolicy(cell_offload_prb=0.8, cell_loads=loads).updated(cp_pb2.RoutingPolicy(max_cloud_queue=3))
    assert policy.cell_loads is loads and policy.max_cloud_queue == 3

    async def probe(tokens: int) -> ProbedAnswer:
        raise AssertionError("no probe: the load decides")

    chat = {"task": up_pb2.TASK_CLASS_CHAT, "preference": up_pb2.ROUTE_PREFERENCE_UNSPECIFIED,
            "cloud_available": True}
    loaded = RoutingInputs(**chat, cell_id=SHARED)
    assert (await policy.decide(loaded, probe)).reason == up_pb2.ROUTE_REASON_CELL_LOAD
    unreported = RoutingInputs(**chat, cell_id=ONLY_2)
    assert (await policy.decide(unreported, probe)).reason == up_pb2.ROUTE_REASON_CLOUD_FORWARDED
    assert "cell_load" not in unreported.as_strings() and loaded.as_strings()["cell_load"] == "0.900"


async def test_a_router_version_reaches_every_router_edge_from_the_core(two_edges, tmp_path: Path):
    """Both edges here route with a (shadow) router: a deploy to the edges' role reaches both, each fetching the
    few-KB artifact from the core (no peer plan: the router slot's shelf is not served to peers)."""
    cluster, edge_2 = two_edges
    router = LearnedRouter.untrained(probe_tokens=4)
    weights = tmp_path / "router.json"
    weights.write_text(json.dumps({**router.to_json(), "version": "untrained-4"}))
    async with open_channel(cluster.core.address) as channel:
        stub = cmp_grpc.ComputePlaneServiceStub(channel)
        await publish(stub, tar_with(tmp_path / "router.tar", {"learned_router.json": weights.read_bytes()}),
                      "learned-router", "u4", common_pb2.MODEL_KIND_ROUTER)
        reply = await stub.DeployModel(cmp_pb2.DeployModelRequest(name="learned-router", version="u4"), timeout=5)
        commands = {n.node_id: n.deployments[0].command_id for n in reply.nodes}
        states = {node: await settled(stub, node, command) for node, command in commands.items()}
    assert {n: s.phase for n, s in states.items()} == {"edge-1": common_pb2.DEPLOYMENT_PHASE_SERVING,
                                                       "edge-2": common_pb2.DEPLOYMENT_PHASE_SERVING}
    assert all([t.node_id for t in s.sources] == [""] for s in states.values()), states  # "": the core
    assert all(e.pipeline.policy.router.version == "untrained-4" for e in (cluster.edge, edge_2))
