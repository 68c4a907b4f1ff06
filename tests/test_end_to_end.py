"""Personalised generation through real core, cloud and edge servers on loopback."""

from __future__ import annotations

import grpc
import pytest
from helpers import concise, generate, kinds, new_session, streamed_text

from netgpt.generation import SamplingParams, generate_tokens
from netgpt.v1 import common_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2

HARBOUR_FACT = "Harbour Fish Market"


def reference_answer(model, prompt: str, max_new_tokens: int) -> str:
    """What the model generates greedily for ``prompt`` when called directly, without any server."""
    ids = model.tokenizer.encode(prompt, add_special_tokens=False)
    return "".join(p.text for p in generate_tokens(model.new_session(), model.tokenizer, ids,
                                                   SamplingParams(max_new_tokens=max_new_tokens)))


async def test_chat_is_personalised_then_answered_by_the_cloud(cluster, models):
    gpt2, llama = models
    session = await new_session(cluster.core.address, "cell-harbour-1")
    events = await generate(cluster.edge.address, concise(session, "Where can I eat seafood tonight?"))

    assert kinds(events) == ["comprehensive_prompt", "tokens", "summary"]
    prompt = events[0].comprehensive_prompt
    assert any(HARBOUR_FACT in fact for fact in prompt.knowledge_used)
    assert HARBOUR_FACT in prompt.text and "Where can I eat seafood tonight?" in prompt.text
    assert "Central Library" not in prompt.text  # another cell's knowledge stays out
    assert prompt.edge_node_id == "edge-1"
    assert {e.tokens.source for e in events if e.HasField("tokens")} == {common_pb2.NODE_ROLE_CLOUD}

    summary = events[-1].summary
    assert summary.terminated_at == common_pb2.NODE_ROLE_CLOUD
    assert summary.reason == up_pb2.ROUTE_REASON_CLOUD_FORWARDED and not summary.fallback
    assert summary.session_id == session.session_id and summary.ai_flow_id == session.ai_flow_id
    assert summary.text == streamed_text(events) == reference_answer(llama, prompt.text, 16)
    assert summary.completion_tokens == sum(len(e.tokens.token_ids) for e in events if e.HasField("tokens")) > 0
    assert summary.prompt_tokens == prompt.prompt_tokens > 0
    assert summary.bytes_edge_to_cloud > len(prompt.text.encode())
    assert summary.edge_model.sha256 == gpt2.identity.sha256
    assert summary.cloud_model.sha256 == llama.identity.sha256
    lat = summary.latency
    assert 0 < lat.personalise_ms < lat.total_ms and 0 < lat.cloud_ms <= lat.total_ms
    assert 0 < lat.time_to_first_token_ms <= lat.total_ms and lat.edge_generate_ms == 0


async def test_lookup_is_answered_at_the_edge(cluster, models):
    gpt2, _ = models
    session = await new_session(cluster.core.address, "cell-campus-2")
    request = concise(session, "When does the library close?", task=up_pb2.TASK_CLASS_LOOKUP)
    events = await generate(cluster.edge.address, request)

    assert kinds(events) == ["comprehensive_prompt", "tokens", "summary"]
    assert "Central Library" in events[0].comprehensive_prompt.text
    assert {e.tokens.source for e in events if e.HasField("tokens")} == {common_pb2.NODE_ROLE_EDGE}
    summary = events[-1].summary
    assert summary.terminated_at == common_pb2.NODE_ROLE_EDGE
    assert summary.reason == up_pb2.ROUTE_REASON_EDGE_CAPABLE
    assert summary.bytes_edge_to_cloud == 0 and not summary.cloud_model.name
    assert summary.text == streamed_text(events) == reference_answer(gpt2, events[0].comprehensive_prompt.text, 16)
    assert summary.latency.edge_generate_ms > 0 and summary.latency.cloud_ms == 0


@pytest.mark.parametrize("fields, budget_ms, reason", [
    ({"route": up_pb2.ROUTE_PREFERENCE_EDGE}, 0, up_pb2.ROUTE_REASON_CLIENT_PREFERENCE),
    ({"route": up_pb2.ROUTE_PREFERENCE_CLOUD, "task": up_pb2.TASK_CLASS_LOOKUP}, 0,
     up_pb2.ROUTE_REASON_CLIENT_PREFERENCE),
    ({}, 1, up_pb2.ROUTE_REASON_LATENCY_BUDGET),
])
async def test_route_reasons(cluster, fields, budget_ms, reason):
    session = await new_session(cluster.core.address, "cell-station-3", budget_ms=budget_ms)
    events = await generate(cluster.edge.address, concise(session, "Is there a hotel here?", **fields))
    summary = events[-1].summary
    assert summary.reason == reason, summary.reason_detail
    to_cloud = fields.get("route") == up_pb2.ROUTE_PREFERENCE_CLOUD
    assert summary.terminated_at == (common_pb2.NODE_ROLE_CLOUD if to_cloud else common_pb2.NODE_ROLE_EDGE)


@pytest.mark.parametrize("prompt, fields, needle", [
    ("", {}, "prompt is empty"),
    ("   \n\t", {}, "prompt is empty"),
    ("x" * 2001, {}, "max_prompt_chars=2000"),
    ("hello", {"max_new_tokens": 100_000}, "max_new_tokens=256"),
    ("hello", {"kind": up_pb2.PROMPT_KIND_COMPREHENSIVE}, "concise"),
])
async def test_bad_input_is_invalid_argument(cluster, prompt, fields, needle):
    session = await new_session(cluster.core.address)
    request = concise(session, prompt, **{k: v for k, v in fields.items() if k == "max_new_tokens"})
    if "kind" in fields:
        request.kind = fields["kind"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await generate(cluster.edge.address, request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.value.details()


async def test_prompt_that_overflows_the_context_names_the_limit(cluster):
    session = await new_session(cluster.core.address)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        # ~1,980 characters (under max_prompt_chars) of ~440 tokens, + 256 new tokens > 512
        await generate(cluster.edge.address, concise(session, "seafood, " * 220, max_new_tokens=256))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "model context of 512 tokens" in err.value.details()


async def test_unknown_or_missing_session(cluster):
    session = await new_session(cluster.core.address)
    request = concise(session, "hello")
    request.session_id = "sess-does-not-exist"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await generate(cluster.edge.address, request)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "sess-does-not-exist" in err.value.details()
    request.session_id = ""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await generate(cluster.edge.address, request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "session_id" in err.value.details()


async def test_cloud_rejects_concise_prompts(cluster):
    session = await new_session(cluster.core.address)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await generate(cluster.cloud.address, concise(session, "hello"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "comprehensive" in err.value.details()
