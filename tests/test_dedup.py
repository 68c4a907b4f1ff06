"""De-duplication at the edge: coalesced in-flight cloud calls and the answer cache."""

from __future__ import annotations

import asyncio

import pytest
from harness import start_cluster
from helpers import concise, eventually, generate, new_session, streamed_text
from slow_model import SlowModel

from edge_node.serving.answer_cache import AnswerCache, request_key
from netgpt.channels import open_channel
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc

PROMPT = "Where can I eat seafood tonight?"


async def slow_cluster(models, **edge):
    gpt2, llama = models
    return await start_cluster(gpt2, SlowModel(llama, 0.02), heartbeat_interval_s=0.3,
                               cloud={"max_concurrency": 4}, edge=edge)


async def ask_many(cluster, n: int, max_new_tokens: int = 30) -> list[list[up_pb2.GenerateResponse]]:
    sessions = [await new_session(cluster.core.address) for _ in range(n)]
    return await asyncio.gather(*(generate(cluster.edge.address, concise(s, PROMPT, max_new_tokens=max_new_tokens))
                                  for s in sessions))


async def test_identical_concurrent_requests_share_one_cloud_call(models):
    cluster = await slow_cluster(models, answer_cache_size=0)
    try:
        answers = await ask_many(cluster, 4)
    finally:
        await cluster.stop()
    summaries = [events[-1].summary for events in answers]
    assert cluster.edge.gateway.cloud_calls == 1 and cluster.cloud.runner.completed == 1
    assert all(s.terminated_at == common_pb2.NODE_ROLE_CLOUD and not s.fallback for s in summaries)
    assert len({s.text for s in summaries}) == 1 and all(s.text == streamed_text(e)
                                                    for s, e in zip(summaries, answers, strict=True))
    assert sorted(s.coalesced for s in summaries) == [False, True, True, True]
    assert [s.bytes_edge_to_cloud > 0 for s in summaries if not s.coalesced] == [True]
    assert all(s.bytes_edge_to_cloud == 0 for s in summaries if s.coalesced)


async def test_without_dedup_every_request_calls_the_cloud(models):
    cluster = await slow_cluster(models, answer_cache_size=0, coalesce=False)
    try:
        answers = await ask_many(cluster, 3)
    finally:
        await cluster.stop()
    assert cluster.edge.gateway.cloud_calls == 3 and cluster.cloud.runner.completed == 3
    assert not any(events[-1].summary.coalesced for events in answers)


async def test_finished_answers_are_cached_and_counters_exported(models):
    cluster = await slow_cluster(models)
    try:
        first, second = await ask_many(cluster, 1), await ask_many(cluster, 1)
        assert not first[0][-1].summary.answer_cached
        cached = second[0][-1].summary
        assert cached.answer_cached and cached.bytes_edge_to_cloud == 0
        assert cached.text == first[0][-1].summary.text == streamed_text(second[0])
        assert cluster.cloud.runner.completed == 1

        async with open_channel(cluster.core.address) as channel:
            stub = cp_grpc.ControlPlaneServiceStub(channel)

            async def counted_hit() -> dict | None:
                """The counters of the edge's last load report, once they count the cache hit."""
                reply = await stub.ListNodes(cp_pb2.ListNodesRequest(role=common_pb2.NODE_ROLE_EDGE), timeout=5)
                counters = dict(reply.nodes[0].load.counters)
                return counters if counters.get("answer_cache_hits") == 1 else None

            counters = await eventually(counted_hit, "the cache hit in the edge's load report", timeout_s=5, poll_s=0.1)
        assert counters["answer_cache_hits"] == 1 and counters["cloud_calls"] == 1
    finally:
        await cluster.stop()


async def test_a_leaving_leader_does_not_cancel_its_followers(models):
    cluster = await slow_cluster(models, answer_cache_size=0)
    try:
        leader_session, follower_session = [await new_session(cluster.core.address) for _ in range(2)]
        async with open_channel(cluster.edge.address) as channel:
            stub = up_grpc.UserPlaneServiceStub(channel)
            leader = stub.Generate(concise(leader_session, PROMPT, max_new_tokens=30), timeout=30)
            while not (await leader.read()).HasField("tokens"):
                pass  # the cloud call is streaming now
            follower = asyncio.create_task(generate(cluster.edge.address,
                                                    concise(follower_session, PROMPT, max_new_tokens=30)))
            await eventually(lambda: cluster.edge.gateway.coalesced == 1, "the follower to join", timeout_s=10)
            leader.cancel()
            events = await follower
        summary = events[-1].summary
        assert summary.coalesced and not summary.fallback and summary.completion_tokens == 30
        assert cluster.edge.gateway.cloud_calls == 1
    finally:
        await cluster.stop()


def test_answer_cache_ttl_size_bound_and_lru():
    now = [0.0]
    cache = AnswerCache(ttl_s=10, max_entries=2, clock=lambda: now[0])
    event = [up_pb2.GenerateResponse()]
    cache.put("a", event)
    cache.put("b", event)
    assert cache.get("a") is event  # a is now most recently used
    cache.put("c", event)  # evicts b
    assert cache.get("b") is None and cache.get("c") is event
    now[0] = 10.5
    assert cache.get("a") is None and len(cache) == 1  # expired entries go
    assert (cache.hits, cache.misses) == (2, 2)
    assert not AnswerCache(ttl_s=0).enabled and not AnswerCache(max_entries=0).enabled


@pytest.mark.parametrize("params, cacheable", [
    (up_pb2.GenerationParams(), True),
    (up_pb2.GenerationParams(temperature=0.8, seed=3), True),
    (up_pb2.GenerationParams(temperature=0.8, top_k=1), True),
    (up_pb2.GenerationParams(temperature=0.8), False),
])
def test_only_reproducible_answers_have_a_key(params, cacheable):
    request = up_pb2.GenerateRequest(prompt="p", params=params, session_id="s1")
    assert (request_key(request) is not None) == cacheable
    other_session = up_pb2.GenerateRequest(prompt="p", params=params, session_id="s2")
    assert request_key(request) == request_key(other_session)  # sessions do not split identical prompts


def test_a_different_cloud_model_is_a_different_answer():
    request = up_pb2.GenerateRequest(prompt="p")
    assert request_key(request, "lora@v1:aa") != request_key(request, "lora@v2:bb")
