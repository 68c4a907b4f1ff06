"""Edge requests against a live cluster: the load the edge routes on is fresh, a busy cloud is not a
failed one, the session decides the cell, post-processing shapes what streams, and the cloud
receives the edge's resolved parameters."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from harness import start_cluster
from helpers import concise, eventually, generate, new_session, streamed_text
from slow_model import SlowModel

from edge_node.serving.post_process import post_process, post_processed
from netgpt.v1 import common_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from up.events import Event, FellBack, Summary, Tokens

CHAT = up_pb2.TASK_CLASS_CHAT
EDGE, CLOUD = common_pb2.NODE_ROLE_EDGE, common_pb2.NODE_ROLE_CLOUD


@pytest.fixture
async def gated_cloud(models):
    """A cloud with one decode slot whose model waits at a gate while the test holds it closed."""
    gpt2, llama = models
    slow = SlowModel(llama, 0.0)
    running = await start_cluster(gpt2, slow, heartbeat_interval_s=0.2,
                                  cloud={"max_concurrency": 1, "max_queue": 8},
                                  edge={"max_cloud_queue": 3, "answer_cache_ttl_s": 0.0, "coalesce": False,
                                        "intent_tokens": 0})
    yield running, slow.gate
    slow.gate.open()
    await running.stop()


def cloud_queue_seen_by_edge(cluster) -> int:
    peer = cluster.edge.peers.pick()
    return peer.status.load.queue_depth if peer is not None else -1


async def test_edge_routes_on_the_clouds_current_load_not_a_stale_copy(gated_cloud):
    cluster, gate = gated_cloud
    session = await new_session(cluster.core.address)
    gate.close()
    burst = [asyncio.create_task(generate(cluster.edge.address, concise(session, f"Plan evening {i}",
                                                                          max_new_tokens=3)))
             for i in range(5)]
    await eventually(lambda: cloud_queue_seen_by_edge(cluster) >= 3, "the edge to see the cloud's queue")
    busy = (await generate(cluster.edge.address, concise(session, "Plan my night", max_new_tokens=3)))[-1].summary
    assert busy.reason == up_pb2.ROUTE_REASON_CLOUD_BUSY and busy.terminated_at == EDGE

    gate.open()
    assert all(events[-1].summary.terminated_at == CLOUD for events in await asyncio.gather(*burst))
    await eventually(lambda: cloud_queue_seen_by_edge(cluster) == 0, "the edge to see the idle cloud")
    idle = (await generate(cluster.edge.address, concise(session, "Plan my day", max_new_tokens=3)))[-1].summary
    assert idle.reason == up_pb2.ROUTE_REASON_CLOUD_FORWARDED and idle.terminated_at == CLOUD
    assert idle.routing_inputs["cloud_queue"] == "0"


async def test_a_cloud_at_capacity_is_busy_not_unhealthy(models):
    gpt2, llama = models
    slow = SlowModel(llama, 0.0)
    cluster = await start_cluster(gpt2, slow, heartbeat_interval_s=0.2, cloud={"max_concurrency": 1, "max_queue": 0},
                                  edge={"answer_cache_ttl_s": 0.0, "coalesce": False, "intent_tokens": 0})
    try:
        session = await new_session(cluster.core.address)
        slow.gate.close()
        holding = asyncio.create_task(generate(cluster.edge.address, concise(session, "first", max_new_tokens=3)))
        await eventually(lambda: slow.gate.waiting == 1, "the cloud's only slot to be taken")
        refused = await generate(cluster.edge.address, concise(session, "second", max_new_tokens=3))
        summary = refused[-1].summary
        assert summary.fallback and summary.terminated_at == EDGE
        assert summary.reason == up_pb2.ROUTE_REASON_CLOUD_BUSY and "RESOURCE_EXHAUSTED" in summary.reason_detail
        slow.gate.open()
        assert (await holding)[-1].summary.terminated_at == CLOUD

        after = (await generate(cluster.edge.address, concise(session, "third", max_new_tokens=3)))[-1].summary
        assert after.terminated_at == CLOUD, after.reason_detail  # still in rotation: it was busy, not failed
    finally:
        slow.gate.open()
        await cluster.stop()


async def test_the_session_decides_the_cell(cluster):
    session = await new_session(cluster.core.address, "cell-harbour-1")
    moved = concise(session, "Where can I eat?")
    moved.ran.cell_id = "cell-station-3"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await generate(cluster.edge.address, moved)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cell-station-3" in err.value.details() and "cell-harbour-1" in err.value.details()

    unset = concise(session, "Where can I eat seafood?")
    unset.ran.cell_id = ""
    events = await generate(cluster.edge.address, unset)
    assert "Harbour" in events[0].comprehensive_prompt.text  # the session's cell, not an empty one


async def test_post_processing_shapes_the_stream_not_just_the_summary():
    async def raw() -> asyncio.AsyncIterator[Event]:
        for text in ["Hello  there.", " How", " are\n you?", " I am", "  fine and"]:
            yield Tokens(text=text, token_ids=(len(text),), source=CLOUD)
        yield Summary(text="Hello  there. How are\n you? I am  fine and")

    events = [event async for event in post_processed(raw())]
    streamed = "".join(e.text for e in events if isinstance(e, Tokens))
    assert streamed == "Hello there. How are you?" == post_process("Hello  there. How are\n you? I am  fine and")
    assert events[-1] == Summary(text=streamed)
    assert sum(len(e.token_ids) for e in events if isinstance(e, Tokens)) == 5  # every token id reaches the UE


async def test_post_processing_restarts_after_a_fallback():
    async def raw() -> asyncio.AsyncIterator[Event]:
        yield Tokens(text="Lost. half", token_ids=(1, 2), source=CLOUD)
        yield FellBack(reason="cloud gone", discarded_tokens=2)
        yield Tokens(text="Edge answer. tail", token_ids=(3, 4), source=EDGE)
        yield Summary(text="Edge answer. tail")

    events = [event async for event in post_processed(raw())]
    after = events[[i for i, e in enumerate(events) if isinstance(e, FellBack)][0] + 1:]
    assert "".join(e.text for e in after if isinstance(e, Tokens)) == "Edge answer." == events[-1].text


async def test_post_processed_workflow_streams_what_the_summary_says(cluster):
    from test_workflow_requests import apply, spec

    from netgpt.v1 import workflow_pb2

    await apply(cluster, workflow_pb2.ApplyWorkflowRequest(spec=spec("tidy", "personalise", "route", "generate_edge",
                                                                     "generate_cloud", "post_process")))
    session = await new_session(cluster.core.address)
    events = await generate(cluster.edge.address, concise(session, "Plan my evening", workflow="tidy",
                                                          max_new_tokens=24))
    assert streamed_text(events) == events[-1].summary.text


async def test_the_cloud_gets_the_edges_resolved_parameters(models):
    """max_new_tokens has one default (the edge's): the cloud never applies its own."""
    gpt2, llama = models
    received: list[up_pb2.GenerateRequest] = []

    class Record(grpc.aio.ServerInterceptor):
        async def intercept_service(self, continuation, details):
            handler = await continuation(details)
            if details.method.endswith("/Generate"):
                inner = handler.unary_stream

                async def recording(request, context):
                    received.append(request)
                    async for event in inner(request, context):
                        yield event

                return grpc.unary_stream_rpc_method_handler(recording, handler.request_deserializer,
                                                            handler.response_serializer)
            return handler

    cluster = await start_cluster(gpt2, llama, heartbeat_interval_s=0.3, cloud={"default_new_tokens": 40},
                                  edge={"default_new_tokens": 5, "intent_tokens": 0}, cloud_interceptors=[Record()])
    try:
        session = await new_session(cluster.core.address)
        request = concise(session, "Plan my evening")
        request.params.max_new_tokens = 0  # the edge's default applies
        summary = (await generate(cluster.edge.address, request))[-1].summary
    finally:
        await cluster.stop()
    assert summary.terminated_at == CLOUD
    assert [r.params.max_new_tokens for r in received] == [5] and summary.completion_tokens <= 5
    assert received[0].params.top_p == 1.0
