"""Faults: cloud down or killed mid-stream, deadlines, overload — never a hang, never lost work."""

from __future__ import annotations

import grpc
import pytest
from harness import start_cluster
from helpers import concise, eventually, generate, kinds, new_session, streamed_text
from slow_model import SlowModel

from netgpt.channels import open_channel
from netgpt.v1 import common_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc


@pytest.fixture
async def slow_cloud_cluster(models):
    """Cloud LLaMA at ~20 ms/token without EOS, so streams are long enough to interfere with."""
    gpt2, llama = models
    running = await start_cluster(gpt2, SlowModel(llama, 0.02), heartbeat_interval_s=0.3,
                                  cloud={"max_concurrency": 1, "max_queue": 0})
    yield running
    await running.stop()


def assert_complete_edge_fallback(events: list[up_pb2.GenerateResponse]) -> up_pb2.GenerationSummary:
    summary = events[-1].summary
    assert summary.fallback and summary.terminated_at == common_pb2.NODE_ROLE_EDGE
    assert summary.reason == up_pb2.ROUTE_REASON_CLOUD_FAILED
    assert summary.completion_tokens > 0 and summary.text == streamed_text(events)
    after = events[[i for i, e in enumerate(events) if e.HasField("fallback")][-1] + 1:]
    assert {e.tokens.source for e in after if e.HasField("tokens")} == {common_pb2.NODE_ROLE_EDGE}
    return summary


async def test_cloud_down_gives_a_complete_edge_answer_marked_fallback(slow_cloud_cluster):
    cluster = slow_cloud_cluster
    await cluster.cloud.server.stop(0)  # the core still lists it until heartbeats go stale
    session = await new_session(cluster.core.address)
    events = await generate(cluster.edge.address, concise(session, "Where can I eat?"), timeout=30)
    assert kinds(events) == ["comprehensive_prompt", "fallback", "tokens", "summary"]
    assert events[1].fallback.discarded_tokens == 0 and "UNAVAILABLE" in events[1].fallback.reason
    assert_complete_edge_fallback(events)


async def test_cloud_killed_mid_stream_falls_back_to_the_edge(slow_cloud_cluster):
    cluster = slow_cloud_cluster
    session = await new_session(cluster.core.address)
    events: list[up_pb2.GenerateResponse] = []
    async with open_channel(cluster.edge.address) as channel:
        call = up_grpc.UserPlaneServiceStub(channel).Generate(concise(session, "Plan my evening", max_new_tokens=200),
                                                             timeout=30)
        async for event in call:
            events.append(event)
            if sum(e.HasField("tokens") for e in events) == 3:
                await cluster.cloud.server.stop(0)  # kill the cloud while it streams
    fallback = next(e.fallback for e in events if e.HasField("fallback"))
    assert fallback.discarded_tokens >= 3
    assert kinds(events) == ["comprehensive_prompt", "tokens", "fallback", "tokens", "summary"]
    assert_complete_edge_fallback(events)


async def test_short_deadline_is_deadline_exceeded_and_servers_stop(slow_cloud_cluster):
    cluster = slow_cloud_cluster
    session = await new_session(cluster.core.address)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await generate(cluster.edge.address, concise(session, "Tell me a long story", max_new_tokens=250),
                       timeout=1.0)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    cloud_runner, edge_runner = cluster.cloud.runner, cluster.edge.runner
    await eventually(lambda: cloud_runner.active == 0 and edge_runner.active == 0, "workers to stop", timeout_s=5)
    assert cloud_runner.cancelled == 1  # the cloud's decode loop was stopped, not run to the end
    assert cloud_runner.completed == 0


async def test_overloaded_cloud_says_resource_exhausted(slow_cloud_cluster):
    cluster = slow_cloud_cluster
    session = await new_session(cluster.core.address)
    forward = concise(session, "Location: harbour. User request: first", max_new_tokens=200)
    forward.kind = up_pb2.PROMPT_KIND_COMPREHENSIVE
    async with open_channel(cluster.cloud.address) as channel:
        stub = up_grpc.UserPlaneServiceStub(channel)
        first = stub.Generate(forward, timeout=30)
        await first.read()  # the only slot is now busy
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await generate(cluster.cloud.address, forward)
        first.cancel()
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_queue=0" in err.value.details()
    # the edge does not surface the overload: it answers itself
    events = await generate(cluster.edge.address, concise(session, "hello"))
    assert events[-1].summary.terminated_at in (common_pb2.NODE_ROLE_CLOUD, common_pb2.NODE_ROLE_EDGE)


async def test_black_holed_cloud_times_out_to_the_edge(models):
    """A cloud that accepts the call but never streams must not hang the UE."""
    gpt2, llama = models
    running = await start_cluster(gpt2, SlowModel(llama, 5.0), heartbeat_interval_s=0.3,
                                  edge={"cloud_token_timeout_s": 0.5, "intent_tokens": 0})
    try:
        session = await new_session(running.core.address)
        events = await generate(running.edge.address, concise(session, "hello", max_new_tokens=8), timeout=30)
        fallback = next(e.fallback for e in events if e.HasField("fallback"))
        assert "no token within 0.5 s" in fallback.reason
        assert_complete_edge_fallback(events)
    finally:
        await running.stop()
