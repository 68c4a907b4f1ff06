"""The learned router as a compute-plane model version (MODEL_KIND_ROUTER): published, deployed and rolled
back with `netgpt model` like any model, through a real core and edge on loopback. A request in flight at
the swap finishes with the router it started with; a bad router artifact is refused and the old one kept."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest
from deploy_helpers import deploy, publish, settled, tar_with
from harness import start_cluster
from helpers import cli, concise, eventually, generate, new_session
from slow_model import SlowModel

from edge_node.serving.learned_router import FEATURES, LearnedRouter
from netgpt.channels import open_channel
from netgpt.node_status import models_served
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2

ROUTER = common_pb2.MODEL_KIND_ROUTER
LONG = "Where can I eat fresh seafood tonight?"  # 7 words: the length router trusts the edge on it


def router_file(path: Path, version: str, bias: float = 0.0, word_weight: float = 0.0) -> Path:
    """``word_weight`` 10: P(good) ~1 on questions over five words, ~0 on shorter ones; 0: P = sigmoid(bias)."""
    weights = [word_weight if name == "question_words" else 0.0 for name in FEATURES]
    means = [5.5 if name == "question_words" else 0.0 for name in FEATURES]
    router = LearnedRouter(FEATURES, tuple(weights), bias, tuple(means), (1.0,) * len(FEATURES), 4, version)
    path.write_text(json.dumps(router.to_json()))
    return path


@pytest.fixture
async def cluster(models, tmp_path: Path):
    gpt2, llama = models
    weights = router_file(tmp_path / "length.json", "length", word_weight=10)
    running = await start_cluster(
        SlowModel(gpt2, 0.0), llama, heartbeat_interval_s=0.2, core={"store_dir": str(tmp_path / "store")},
        edge={"router": "learned", "router_weights": str(weights),
              "deploy_dir": str(tmp_path / "edge-deploy"), "intent_tokens": 0, "answer_cache_ttl_s": 0.0,
              "cloud_token_timeout_s": 120.0})
    yield running
    await running.stop()


async def ask(cluster, prompt: str = LONG) -> up_pb2.GenerationSummary:
    session = await new_session(cluster.core.address)
    return (await generate(cluster.edge.address, concise(session, prompt, max_new_tokens=6)))[-1].summary


def router_served(cluster) -> common_pb2.ModelRef | None:
    """The router the core's registry says edge-1 serves (from its heartbeats)."""
    status = cluster.core.registry.node_status("edge-1")
    return next((m for m in models_served(status) if m.kind == ROUTER), None)


async def test_router_versions_deploy_swap_and_roll_back(cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    core = cluster.core.address
    started = await eventually(lambda: router_served(cluster), "edge-1 to advertise its router")
    assert (started.name, started.version) == ("learned-router", "length")

    async def netgpt(*argv: str) -> int:
        return await cli(*argv, "--core", core)

    cloud_only = router_file(tmp_path / "cloud-only.json", "cloud-only", bias=-12.0)
    assert await netgpt("model", "publish", str(cloud_only), "--name", "learned-router", "--version", "v2",
                        "--kind", "router") == 0

    gate = cluster.edge.slot.current.model.gate
    gate.close()  # a request held in its probe, i.e. inside the length router's decision
    held = asyncio.create_task(ask(cluster))
    try:
        await eventually(lambda: gate.waiting == 1, "a request to wait in its probe")
        assert await netgpt("model", "deploy", "learned-router", "v2", "--wait") == 0
        await eventually(lambda: getattr(router_served(cluster), "version", "") == "v2", "v2 advertised")
    finally:
        gate.open()
    old = await held
    assert old.reason == up_pb2.ROUTE_REASON_EDGE_CONFIDENT and "learned router length" in old.reason_detail

    new = await ask(cluster)
    assert new.reason == up_pb2.ROUTE_REASON_CLOUD_FORWARDED and float(new.routing_inputs["router_p_good"]) < 0.001

    # a router artifact the edge cannot use: refused with its reason, v2 keeps routing
    bad = tar_with(tmp_path / "bad.tar", {"learned_router.json": json.dumps(
        {**json.loads(cloud_only.read_text()), "features": ["bogus"] * len(FEATURES)}).encode()})
    async with open_channel(core) as channel:
        stub = cmp_grpc.ComputePlaneServiceStub(channel)
        await publish(stub, bad, "learned-router", "bad", ROUTER)
        state = await settled(stub, "edge-1", (await deploy(stub, "learned-router", "bad"))["edge-1"])
    assert state.phase == common_pb2.DEPLOYMENT_PHASE_FAILED and "unknown features ['bogus']" in state.error
    assert state.error_code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert (await ask(cluster)).reason == up_pb2.ROUTE_REASON_CLOUD_FORWARDED

    assert await netgpt("model", "rollback", "edge-1", "--wait") == 0  # back to the router served before v2
    await eventually(lambda: getattr(router_served(cluster), "version", "") == "length", "length advertised")
    assert (await ask(cluster)).reason == up_pb2.ROUTE_REASON_EDGE_CONFIDENT
    assert cluster.edge.slot.current.ref.kind == common_pb2.MODEL_KIND_ONNX_EDGE  # the GPT-2 slot was not touched

    out = capsys.readouterr().out
    assert "published learned-router v2 (router" in out and "edge-1: deploy learned-router v2: serving" in out


async def test_bad_router_files_are_refused_before_publishing(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "logistic-regression", "features": ["question_words"], "weights": [1.0],
                               "bias": 0.0, "means": [0.0], "scales": [0.0], "probe_tokens": 4}))
    code = await cli("model", "publish", str(bad), "--name", "learned-router", "--version", "x", "--kind", "router",
                     "--core", "127.0.0.1:1")
    assert code == 2 and "scales must be > 0" in capsys.readouterr().err


async def test_a_router_does_not_deploy_to_an_edge_that_routes_by_rules(models, tmp_path: Path):
    running = await start_cluster(*models, heartbeat_interval_s=0.2, core={"store_dir": str(tmp_path / "store")})
    try:
        artifact = tar_with(tmp_path / "router.tar", {"learned_router.json": router_file(
            tmp_path / "r.json", "r").read_bytes()})
        async with open_channel(running.core.address) as channel:
            stub = cmp_grpc.ComputePlaneServiceStub(channel)
            await publish(stub, artifact, "learned-router", "v1", ROUTER)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.DeployModel(cmp_pb2.DeployModelRequest(name="learned-router", version="v1"), timeout=5)
    finally:
        await running.stop()
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "edge-1 routes by rules" in refused.value.details()
