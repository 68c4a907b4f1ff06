"""The edge's OpenAI-compatible HTTP API against a real all-in-one cluster (mutual TLS on the suite's CA):
the official ``openai`` client, streaming and not; ``curl``; and plain HTTP requests for the errors,
each in the OpenAI error shape with the HTTP status of its gRPC code."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest
from harness import start_cluster
from helpers import concise, eventually, generate, new_session
from slow_model import SlowModel
from throwaway_ca import TEST_PKI

from edge_node.openai_api.convert import Reply
from edge_node.openai_api.protocol import InvalidField, parse_chat, parse_completion, parse_json
from edge_node.openai_api.stop import StopScan
from netgpt.errors import StartupError
from netgpt.http_server import start_http_server
from netgpt.v1 import common_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from up.events import FellBack, PromptBuilt, Summary, Tokens

CELL = "cell-harbour-1"
PROMPT = "Where can I eat fresh seafood tonight?"
UE_HEADERS = {"X-NetGPT-Cell": CELL}


def tls_context(role: str | None, name: str = "") -> ssl.SSLContext:
    """A client's TLS: trusts the suite's CA, presents ``role``/``name``'s certificate (none when role is None)."""
    context = ssl.create_default_context(cafile=str(TEST_PKI.folder / "ca.crt"))
    if role is not None:
        issued = TEST_PKI.files(role, name)
        context.load_cert_chain(str(issued.cert), str(issued.key))
    return context


@pytest.fixture(scope="module")
async def cluster(models):
    running = await start_cluster(*models, heartbeat_interval_s=0.3, edge={"openai_listen": "127.0.0.1:0"})
    yield running
    await running.stop()


@pytest.fixture(scope="module")
def base_url(cluster) -> str:
    assert cluster.edge.http is not None and cluster.edge.http.port > 0
    return f"https://127.0.0.1:{cluster.edge.http.port}/v1"


@pytest.fixture(scope="module")
def edge_model(cluster) -> str:
    return cluster.edge.slot.current.ref.name


async def http(base_url: str, role: str | None = "ue", name: str = "ue-http") -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, verify=tls_context(role, name), timeout=60)


@pytest.fixture
async def ue_client(base_url) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official client as UE ``ue-http``: its certificate is its identity (a certificate wins over the API key)."""
    async with await http(base_url) as transport:
        yield openai.AsyncOpenAI(base_url=base_url, api_key="unused", http_client=transport, max_retries=0,
                                 default_headers=UE_HEADERS)


def chat_body(model: str, **fields) -> dict:
    return {"model": model, "messages": [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": PROMPT}], **fields}


# --- the official client -------------------------------------------------------------------------


async def test_chat_completion_answers_as_grpc_generate_does(cluster, ue_client, edge_model):
    raw = await ue_client.chat.completions.with_raw_response.create(
        model=edge_model, messages=[{"role": "user", "content": PROMPT}], max_tokens=12)
    completion = raw.parse()
    session_id = raw.headers["x-netgpt-session"]
    netgpt = completion.model_extra["netgpt"]
    summary = netgpt["summary"]
    assert completion.object == "chat.completion" and completion.model == edge_model
    assert summary["session_id"] == session_id and summary["terminated_at"] == "NODE_ROLE_EDGE"
    assert summary["reason"] == "ROUTE_REASON_CLIENT_PREFERENCE" and summary["edge_model"]["name"] == edge_model
    assert "text" not in summary  # it is the message content
    assert completion.usage.completion_tokens == summary["completion_tokens"] > 0
    assert completion.usage.prompt_tokens == summary["prompt_tokens"] > 0
    assert completion.choices[0].finish_reason == {"FINISH_REASON_EOS": "stop",
                                                   "FINISH_REASON_MAX_TOKENS": "length"}[summary["finish_reason"]]
    assert CELL in netgpt["comprehensive_prompt"]["text"]

    # the same request over gRPC, in the same session, answers the same text (one path, two protocols)
    session = common_pb2.RanContext(cell_id=CELL)
    request = up_pb2.GenerateRequest(session_id=session_id, kind=up_pb2.PROMPT_KIND_CONCISE, prompt=PROMPT, ran=session,
                                     params=up_pb2.GenerationParams(max_new_tokens=12),
                                     route=up_pb2.ROUTE_PREFERENCE_EDGE)
    events = await generate(cluster.edge.address, request)
    assert events[-1].summary.text == completion.choices[0].message.content != ""


async def test_streamed_chat_is_the_same_answer_in_chunks_then_usage_and_summary(ue_client, edge_model):
    whole = await ue_client.chat.completions.create(**chat_body(edge_model, max_tokens=12))
    stream = await ue_client.chat.completions.create(**chat_body(edge_model, max_tokens=12), stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "comprehensive_prompt" in chunks[0].model_extra["netgpt"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content != ""
    finish, final = chunks[-2], chunks[-1]
    assert finish.choices[0].finish_reason == whole.choices[0].finish_reason
    assert final.choices == [] and final.usage.completion_tokens == whole.usage.completion_tokens
    assert final.model_extra["netgpt"]["summary"]["terminated_at"] == "NODE_ROLE_EDGE"


async def test_text_completions_and_the_routing_model(ue_client, edge_model):
    completion = await ue_client.completions.create(model=edge_model, prompt=PROMPT, max_tokens=8)
    assert completion.object == "text_completion" and completion.choices[0].text
    auto = await ue_client.completions.create(model="netgpt", prompt=PROMPT, max_tokens=8, stream=True)
    chunks = [chunk async for chunk in auto]
    summary = chunks[-1].model_extra["netgpt"]["summary"]
    assert summary["reason"] != "ROUTE_REASON_CLIENT_PREFERENCE"  # the edge's policy chose the route
    assert "".join(c.choices[0].text for c in chunks if c.choices)


async def test_models_lists_the_edge_the_routing_model_and_the_clouds(cluster, ue_client, edge_model):
    listed = {m.id: m.model_extra["netgpt"]["route"] async for m in ue_client.models.list()}
    cloud_model = cluster.cloud.slot.current.ref.name
    assert listed["netgpt"] == "auto" and listed[edge_model] == "edge" and listed[cloud_model] == "cloud"


async def test_a_cloud_model_is_answered_by_the_cloud(cluster, ue_client):
    cloud_model = cluster.cloud.slot.current.ref.name
    completion = await ue_client.chat.completions.create(**chat_body(cloud_model, max_tokens=6))
    assert completion.model_extra["netgpt"]["summary"]["terminated_at"] == "NODE_ROLE_CLOUD"


async def test_sampling_parameters_map(ue_client, edge_model):
    longer = await ue_client.chat.completions.create(**chat_body(edge_model, max_completion_tokens=12))
    text = longer.choices[0].message.content
    assert len(text) > 4
    short = await ue_client.chat.completions.create(**chat_body(edge_model, max_tokens=2))
    assert short.usage.completion_tokens == 2 and short.choices[0].finish_reason == "length"
    stop = text[len(text) // 2:len(text) // 2 + 3]
    cut = await ue_client.chat.completions.create(**chat_body(edge_model, max_tokens=12, stop=[stop]))
    assert cut.choices[0].message.content == text[:text.index(stop)] and cut.choices[0].finish_reason == "stop"
    seeded = [await ue_client.chat.completions.create(**chat_body(edge_model, max_tokens=8, temperature=1.5,
                                                                   top_p=0.9, seed=-7)) for _ in range(2)]
    assert seeded[0].choices[0].message.content == seeded[1].choices[0].message.content


async def test_the_session_is_made_on_first_use_then_reused_or_named(base_url, edge_model):
    async with await http(base_url, "ue", "ue-sessions") as client:
        first = await client.post("/chat/completions", json=chat_body(edge_model, max_tokens=2), headers=UE_HEADERS)
        again = await client.post("/chat/completions", json=chat_body(edge_model, max_tokens=2), headers=UE_HEADERS)
        session_id = first.headers["x-netgpt-session"]
        named = await client.post("/chat/completions", json=chat_body(edge_model, max_tokens=2),
                                  headers={"X-NetGPT-Session": session_id})
    assert first.status_code == again.status_code == named.status_code == 200
    assert again.headers["x-netgpt-session"] == named.headers["x-netgpt-session"] == session_id
    assert named.json()["netgpt"]["summary"]["session_id"] == session_id


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_streams_server_sent_events(base_url, edge_model):
    issued = TEST_PKI.files("ue", "ue-curl")
    process = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-N", "--cacert", str(TEST_PKI.folder / "ca.crt"), "--cert", str(issued.cert),
        "--key", str(issued.key), "-H", "Content-Type: application/json", "-H", f"X-NetGPT-Cell: {CELL}",
        "-d", json.dumps(chat_body(edge_model, max_tokens=4, stream=True)), f"{base_url}/chat/completions",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    events = [line.removeprefix("data: ") for line in out.decode().splitlines() if line]
    assert all(line.startswith("data: ") for line in out.decode().splitlines() if line)
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["netgpt"]["summary"]["completion_tokens"] > 0


# --- errors, as plain HTTP requests --------------------------------------------------------------


def assert_error(response: httpx.Response, status: int, error_type: str, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == error_type and error["message"] and error["param"] == param
    return error


@pytest.mark.parametrize(("body", "param"), [
    ({"n": 2}, "n"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": "   "}]}, "messages"),
    ({"messages": [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": "Sure"}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages"),
    ({"temperature": 7}, "temperature"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"logprobs": True}, "logprobs"),
    ({"model": ""}, "model"),
])
async def test_input_that_cannot_be_mapped_is_a_400_naming_the_field(base_url, edge_model, body, param):
    async with await http(base_url) as client:
        response = await client.post("/chat/completions", json={**chat_body(edge_model), **body}, headers=UE_HEADERS)
    error = assert_error(response, 400, "invalid_request_error", param)
    assert error["code"] == "invalid_argument"


async def test_malformed_json_and_over_the_edge_limits_are_400_not_500(base_url, edge_model):
    async with await http(base_url) as client:
        broken = await client.post("/chat/completions", content=b'{"model": "netgpt", "messages": [',
                                   headers={**UE_HEADERS, "Content-Type": "application/json"})
        array = await client.post("/chat/completions", json=[1, 2], headers=UE_HEADERS)
        too_long = await client.post("/chat/completions", json=chat_body(edge_model, max_tokens=100_000),
                                     headers=UE_HEADERS)
        huge_prompt = await client.post("/completions", headers=UE_HEADERS,
                                        json={"model": edge_model, "prompt": "x" * 5000})
    assert_error(broken, 400, "invalid_request_error")
    assert_error(array, 400, "invalid_request_error")
    assert "max_new_tokens" in assert_error(too_long, 400, "invalid_request_error")["message"]
    assert "max_prompt_chars" in assert_error(huge_prompt, 400, "invalid_request_error")["message"]


async def test_unknown_model_session_and_path_are_404(base_url):
    async with await http(base_url) as client:
        model = await client.post("/chat/completions", json=chat_body("gpt-4o"), headers=UE_HEADERS)
        session = await client.post("/chat/completions", json=chat_body("netgpt"),
                                    headers={"X-NetGPT-Session": "no-such-session"})
        path = await client.get("/engines")
        malformed = await client.post("/chat/completions", json=chat_body("netgpt"),
                                      headers={"X-NetGPT-Session": "not a session id!"})
    assert assert_error(model, 404, "not_found_error", "model")["code"] == "not_found"
    assert_error(session, 404, "not_found_error")
    assert_error(path, 404, "not_found_error")
    assert "session_id" in assert_error(malformed, 400, "invalid_request_error")["message"]


async def test_without_a_client_certificate_it_is_401(base_url, edge_model):
    async with await http(base_url, role=None) as client:
        response = await client.post("/chat/completions", json=chat_body(edge_model), headers=UE_HEADERS)
        models = await client.get("/models")
    assert assert_error(response, 401, "authentication_error")["code"] == "unauthenticated"
    assert_error(models, 401, "authentication_error")


async def test_a_certificate_from_another_ca_fails_the_handshake(base_url, tmp_path: Path):
    from netgpt.tls import LocalPki

    rogue = LocalPki(tmp_path / "rogue").files("ue", "ue-http")
    context = tls_context(None)
    context.load_cert_chain(str(rogue.cert), str(rogue.key))
    async with httpx.AsyncClient(base_url=base_url, verify=context, timeout=10) as client:
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            await client.get("/models")


async def test_another_ues_session_or_identity_is_403(base_url, edge_model):
    async with await http(base_url, "ue", "ue-alice") as alice:
        owned = await alice.post("/chat/completions", json=chat_body(edge_model, max_tokens=2), headers=UE_HEADERS)
    session_id = owned.headers["x-netgpt-session"]
    async with await http(base_url, "ue", "ue-mallory") as mallory:
        theirs = await mallory.post("/chat/completions", json=chat_body(edge_model),
                                    headers={"X-NetGPT-Session": session_id})
        posing = await mallory.post("/chat/completions", json=chat_body(edge_model),
                                    headers={**UE_HEADERS, "X-NetGPT-UE": "ue-alice"})
    async with await http(base_url, "ran", "ric-1") as ran:
        wrong_role = await ran.post("/chat/completions", json=chat_body(edge_model),
                                    headers={**UE_HEADERS, "X-NetGPT-UE": "ue-alice"})
    assert owned.status_code == 200
    for response in (theirs, posing, wrong_role):
        assert assert_error(response, 403, "permission_error")["code"] == "permission_denied"


async def test_an_operator_names_the_ue_and_the_cell_is_required(base_url, edge_model):
    async with await http(base_url, "operator", "operator") as client:
        named = await client.post("/chat/completions", json=chat_body(edge_model, max_tokens=2),
                                  headers={**UE_HEADERS, "X-NetGPT-UE": "ue-from-operator"})
        no_ue = await client.post("/chat/completions", json=chat_body(edge_model), headers=UE_HEADERS)
        no_cell = await client.post("/chat/completions", json=chat_body(edge_model),
                                    headers={"X-NetGPT-UE": "ue-from-operator"})
        bad_cell = await client.post("/chat/completions", json=chat_body(edge_model),
                                     headers={"X-NetGPT-UE": "ue-from-operator", "X-NetGPT-Cell": "no-such-cell"})
    assert named.status_code == 200, named.text
    assert "X-NetGPT-UE" in assert_error(no_ue, 400, "invalid_request_error")["message"]
    assert "X-NetGPT-Cell" in assert_error(no_cell, 400, "invalid_request_error")["message"]
    assert "no-such-cell" in assert_error(bad_cell, 404, "not_found_error")["message"]  # the core's NOT_FOUND


async def test_a_draining_edge_answers_503_with_retry_after(cluster, base_url):
    gate = cluster.edge.server.gate
    gate.draining = True
    try:
        async with await http(base_url) as client:
            response = await client.get("/models")
    finally:
        gate.draining = False
    assert_error(response, 503, "unavailable_error")
    assert response.headers["retry-after"] == "1"


async def test_a_plaintext_edge_serves_http_on_loopback_only(models, edge_model):
    plain = {"insecure": True, "tls_ca": "", "tls_cert": "", "tls_key": ""}
    running = await start_cluster(*models, core=plain, cloud=plain, edge={**plain, "openai_listen": "127.0.0.1:0"})
    try:
        base = f"http://127.0.0.1:{running.edge.http.port}/v1"
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            answered = await client.post("/chat/completions", json=chat_body(edge_model, max_tokens=2),
                                         headers={**UE_HEADERS, "X-NetGPT-UE": "ue-dev"})
            anonymous = await client.post("/chat/completions", json=chat_body(edge_model), headers=UE_HEADERS)
    finally:
        await running.stop()
    assert answered.status_code == 200 and answered.json()["choices"][0]["message"]["content"]
    assert "X-NetGPT-UE" in assert_error(anonymous, 400, "invalid_request_error")["message"]
    with pytest.raises(StartupError, match="plaintext"):
        await start_http_server("0.0.0.0:0", None, None)


async def test_stopping_the_edge_refuses_new_requests_and_lets_a_stream_in_flight_finish(models):
    gpt2, llama = models
    slow = SlowModel(llama, 0.0)  # its gate holds the cloud's decode steps while closed
    running = await start_cluster(gpt2, slow, edge={"openai_listen": "127.0.0.1:0", "answer_cache_ttl_s": 0.0})
    base = f"https://127.0.0.1:{running.edge.http.port}/v1"
    body = chat_body(running.cloud.slot.current.ref.name, max_tokens=3, stream=True)
    stopping = None
    try:
        slow.gate.close()
        async with await http(base) as client:
            streaming = asyncio.create_task(client.post("/chat/completions", json=body, headers=UE_HEADERS))
            await eventually(lambda: slow.gate.waiting > 0, "the cloud to hold the request")
            stopping = asyncio.create_task(running.edge.stop(30.0))
            await eventually(lambda: running.edge.server.gate.draining, "the edge to drain")
            refused = await client.get("/models")
            slow.gate.open()
            answered = await streaming
        await stopping
    finally:
        slow.gate.open()
        if stopping is None:
            await running.edge.stop(1.0)
        await running.cloud.stop(1.0)
        await running.core.stop(1.0)
        for folder in running.scratch:
            shutil.rmtree(folder, ignore_errors=True)
    assert_error(refused, 503, "unavailable_error")
    events = [line.removeprefix("data: ") for line in answered.text.splitlines() if line]
    assert answered.status_code == 200 and events[-1] == "[DONE]"
    assert json.loads(events[-2])["netgpt"]["summary"]["terminated_at"] == "NODE_ROLE_CLOUD"


async def test_a_taken_port_is_a_startup_error(cluster):
    with pytest.raises(StartupError, match="cannot listen"):
        await start_http_server(f"127.0.0.1:{cluster.edge.http.port}", None, None)


async def test_grpc_generate_still_answers_through_the_same_call(cluster):
    session = await new_session(cluster.core.address)
    events = await generate(cluster.edge.address, concise(session, PROMPT, max_new_tokens=4))
    assert events[-1].HasField("summary") and events[-1].summary.session_id == session.session_id


# --- the pieces, without a cluster ---------------------------------------------------------------


def test_stop_sequences_hold_back_what_may_start_one():
    scan = StopScan(["END", "\n\n"])
    shown = [scan.feed(piece) for piece in ["Hello E", "N", "ough. Bye\n", "\nmore"]]
    assert shown == ["Hello ", "", "ENough. Bye", ""] and scan.stopped
    open_ended = StopScan(["END"])
    assert open_ended.feed("to the E") == "to the " and open_ended.flush() == "E"


def test_requests_map_onto_generation_parameters():
    ask = parse_chat({"model": "netgpt", "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
                      "max_tokens": 5, "max_completion_tokens": 9, "temperature": 0.5, "top_p": 0.0, "seed": -1,
                      "stop": "x", "netgpt": {"workflow": "wf", "task": "lookup"}})
    assert (ask.prompt, ask.params.max_new_tokens, ask.params.temperature, ask.params.seed) == ("Hi", 9, 0.0, 2**64 - 1)
    assert ask.stop == ("x",) and ask.workflow == "wf" and ask.task == up_pb2.TASK_CLASS_LOOKUP
    assert parse_completion({"model": "m", "prompt": ["one"]}).prompt == "one"
    with pytest.raises(InvalidField, match="not valid JSON"):
        parse_json(b"\xff{")
    with pytest.raises(InvalidField) as err:
        parse_completion({"model": "m", "prompt": [1, 2, 3]})
    assert err.value.param == "prompt"


def test_a_fallback_restarts_the_answer_and_the_summary_closes_it():
    ask = parse_chat({"model": "netgpt", "messages": [{"role": "user", "content": "Hi"}], "stop": "!"})
    reply = Reply(ask)
    for event in [PromptBuilt("prompt", (), 3, "edge-1"), Tokens("cloud text", (1,), common_pb2.NODE_ROLE_CLOUD),
                  FellBack("cloud failed", 1), Tokens("edge! text", (2, 3), common_pb2.NODE_ROLE_EDGE),
                  Summary(completion_tokens=2, prompt_tokens=3, finish_reason=up_pb2.FINISH_REASON_MAX_TOKENS)]:
        reply.take(event)
    body = reply.completion()
    assert body["choices"][0]["message"]["content"] == "edge" and body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert body["netgpt"]["summary"]["finish_reason"] == "FINISH_REASON_MAX_TOKENS"


async def test_an_error_after_the_stream_began_is_its_last_event_before_done():
    from edge_node.openai_api.app import server_sent_events
    from netgpt.errors import ResourceExhausted

    async def events():
        yield Tokens("more", (2,), common_pb2.NODE_ROLE_EDGE)
        raise ResourceExhausted("the cloud's queue is full")

    ask = parse_chat({"model": "netgpt", "messages": [{"role": "user", "content": "Hi"}]})
    sent = [line async for line in server_sent_events(Reply(ask), PromptBuilt("p", (), 1, "edge-1"), events())]
    payloads = [line.removeprefix("data: ").strip() for line in sent]
    assert payloads[-1] == "[DONE]" and json.loads(payloads[1])["choices"][0]["delta"] == {"content": "more"}
    assert json.loads(payloads[-2])["error"] == {"message": "the cloud's queue is full", "type": "rate_limit_error",
                                                 "param": None, "code": "resource_exhausted"}


async def test_a_revoked_certificate_is_401(cluster, base_url):
    from netgpt.crl import CRL_FILE, revoke
    from netgpt.pki import serial_of

    async with await http(base_url, name="ue-http-revoked") as client:
        assert (await client.get("/models")).status_code == 200  # the same client, before and after
        serial = serial_of(TEST_PKI.files("ue", "ue-http-revoked").cert.read_bytes())
        revoke(TEST_PKI.folder, [serial])
        assert cluster.edge.server.revoked.install((TEST_PKI.folder / CRL_FILE).read_bytes(), "test")
        body = assert_error(await client.get("/models"), 401, "authentication_error")
    assert "revoked" in body["message"]
