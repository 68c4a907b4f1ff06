"""Hostile inputs, each found from outside: undecodable bodies, unknown enum values, unbounded or
badly formed identifiers, out-of-range QoS, deeply nested workflow TOML, error messages that echo
the input, and compressed artifacts. Each must be a clear client error, never INTERNAL or UNKNOWN."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import grpc
import pytest
from helpers import captured_events, concise, new_session
from throwaway_ca import identity

from cmp.archive import unpack
from netgpt import interceptors
from netgpt.channels import open_channel
from netgpt.engine import ModelLoadError
from netgpt.errors import InvalidArgument, excerpt
from netgpt.interceptors import RateLimitedLog
from netgpt.v1 import common_pb2, workflow_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.validate import MAX_ID_CHARS, check_request

INVALID = grpc.StatusCode.INVALID_ARGUMENT
UNDECODABLE = b"\x0a\xff\xff\xff\xff\x0f"  # field 1, length-delimited, claiming 4 GiB: never parses
CP = "/netgpt.v1.ControlPlaneService/"
MAX_DETAILS = 512  # no status message quotes more than a short excerpt of the input


@pytest.fixture(scope="module")
async def hard_cluster(tiny_models):
    from harness import start_cluster

    running = await start_cluster(*tiny_models, heartbeat_interval_s=0.3)
    yield running
    await running.stop()


async def _requests(bodies: Iterable[bytes]) -> AsyncIterator[bytes]:
    for body in bodies:
        yield body


async def raw_call(address: str, method: str, body: bytes | list[bytes], client_streaming: bool = False,
                   server_streaming: bool = False, transport: object = None) -> grpc.aio.AioRpcError | list[bytes]:
    """One call with raw bytes as the request body (so undecodable bodies go out too): the error, or the replies."""
    async with open_channel(address, transport) as channel:  # type: ignore[arg-type]
        kind = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
                (True, False): channel.stream_unary, (True, True): channel.stream_stream}
        call = kind[client_streaming, server_streaming](method)
        request = _requests(body) if client_streaming else body  # type: ignore[arg-type]
        try:
            if server_streaming:
                return [reply async for reply in call(request, timeout=20)]
            return [await call(request, timeout=20)]
        except grpc.aio.AioRpcError as exc:
            return exc


async def rejected(address: str, method: str, body: bytes | list[bytes], **kwargs: object) -> grpc.aio.AioRpcError:
    result = await raw_call(address, method, body, **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, grpc.aio.AioRpcError), f"{method} accepted the request"
    assert len(result.details() or "") <= MAX_DETAILS, f"{result.code().name}: {len(result.details())} chars"
    return result


def assert_invalid(error: grpc.aio.AioRpcError, *words: str) -> None:
    assert error.code() == INVALID, f"{error.code().name}: {(error.details() or '')[:200]}"
    for word in words:
        assert word in error.details(), error.details()


# --- undecodable bodies ------------------------------------------------------------------------


async def test_undecodable_unary_body_is_invalid_argument(hard_cluster, monkeypatch):
    # a fresh window: earlier tests (the fuzz test) may have used up this process's 5 lines a minute
    monkeypatch.setattr(interceptors, "undecodable_log", interceptors.RateLimitedLog())
    with captured_events() as logs:
        error = await rejected(hard_cluster.core.address, CP + "GetSession", UNDECODABLE)
    assert_invalid(error, "GetSessionRequest", "not a valid")
    lines = [e for e in logs if e["event"] == "rpc.undecodable"]
    assert len(lines) == 1 and "exc_info" not in lines[0] and lines[0]["log_level"] == "warning"
    assert not [e for e in logs if e["log_level"] in ("error", "critical")]


async def test_undecodable_body_of_a_streamed_reply_is_invalid_argument(hard_cluster):
    error = await rejected(hard_cluster.edge.address, "/netgpt.v1.UserPlaneService/Generate", UNDECODABLE,
                           server_streaming=True)
    assert_invalid(error, "GenerateRequest")


async def test_undecodable_upload_chunk_is_invalid_argument_without_a_traceback(hard_cluster):
    with captured_events() as logs:
        error = await rejected(hard_cluster.core.address, "/netgpt.v1.ComputePlaneService/PublishModel",
                               [UNDECODABLE], client_streaming=True)
    assert_invalid(error, "PublishModelRequest")
    assert not [e for e in logs if e["log_level"] in ("error", "critical") or "exc_info" in e]


async def test_undecodable_heartbeat_is_invalid_argument(hard_cluster):
    node = identity("edge", "edge-fuzz")
    error = await rejected(hard_cluster.core.address, CP + "Heartbeat", [UNDECODABLE], client_streaming=True,
                           server_streaming=True, transport=node)
    assert_invalid(error, "HeartbeatRequest")


@pytest.mark.parametrize("method, streaming", [
    ("/grpc.health.v1.Health/Check", (False, False)),
    ("/grpc.health.v1.Health/Watch", (False, True)),
    ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", (True, True)),
    ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", (True, True)),
])
async def test_undecodable_body_to_grpcs_own_services_is_invalid_argument(hard_cluster, method, streaming):
    """grpcio's health and reflection servicers answered UNKNOWN ("Exception deserializing request!")."""
    client_streaming, server_streaming = streaming
    body = [UNDECODABLE] if client_streaming else UNDECODABLE
    error = await rejected(hard_cluster.core.address, method, body, client_streaming=client_streaming,
                           server_streaming=server_streaming)
    assert_invalid(error, "not a valid")


async def test_health_and_reflection_still_answer_after_the_wrap(hard_cluster):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    replies = await raw_call(hard_cluster.core.address, "/grpc.health.v1.Health/Check",
                             health_pb2.HealthCheckRequest(service="").SerializeToString())
    assert isinstance(replies, list)
    assert health_pb2.HealthCheckResponse.FromString(replies[0]).status == health_pb2.HealthCheckResponse.SERVING
    unknown = await rejected(hard_cluster.core.address, "/grpc.health.v1.Health/Check",
                             health_pb2.HealthCheckRequest(service="no.such.Service").SerializeToString())
    assert unknown.code() == grpc.StatusCode.NOT_FOUND
    async with open_channel(hard_cluster.core.address) as channel:  # Watch writes with context.write: a coroutine
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        first = await watch.read()
        watch.cancel()
    assert first.status == health_pb2.HealthCheckResponse.SERVING


def test_undecodable_logging_is_rate_limited():
    now = [0.0]
    limiter = RateLimitedLog(per_window=3, window_s=10.0, clock=lambda: now[0])
    with captured_events() as logs:
        for _ in range(50):
            limiter.warning("rpc.undecodable", method="/m")
        now[0] = 11.0
        limiter.warning("rpc.undecodable", method="/m")
    assert len(logs) == 4
    assert logs[-1]["suppressed"] == 47


# --- enum values ---------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["task", "route", "kind"])
async def test_unknown_enum_value_is_rejected_before_any_event(hard_cluster, field):
    session = await new_session(hard_cluster.core.address)
    request = concise(session, "Where can I eat?", max_new_tokens=2)
    setattr(request, field, 99)
    result = await raw_call(hard_cluster.edge.address, "/netgpt.v1.UserPlaneService/Generate",
                            request.SerializeToString(), server_streaming=True)
    assert isinstance(result, grpc.aio.AioRpcError), "accepted"
    assert_invalid(result, field, "99")


async def test_a_ue_sending_an_unknown_enum_value_is_told_the_field(hard_cluster):
    session = await new_session(hard_cluster.core.address)
    request = concise(session, "Where can I eat?", max_new_tokens=2, task=99)
    error = await rejected(hard_cluster.edge.address, "/netgpt.v1.UserPlaneService/Generate",
                           request.SerializeToString(), server_streaming=True,
                           transport=identity("ue", session.ue_id))  # bound to its session: access checks first
    assert_invalid(error, "task", "99")


async def test_unknown_enum_value_anywhere_in_a_request_is_rejected(hard_cluster):
    error = await rejected(hard_cluster.core.address, CP + "ListNodes",
                           cp_pb2.ListNodesRequest(role=42).SerializeToString())  # type: ignore[arg-type]
    assert_invalid(error, "role", "42")
    policy = cp_pb2.RoutingPolicy(edge_tasks=[up_pb2.TASK_CLASS_LOOKUP, 77])  # type: ignore[list-item]
    error = await rejected(hard_cluster.core.address, CP + "SetRoutingPolicy",
                           cp_pb2.SetRoutingPolicyRequest(policy=policy).SerializeToString())
    assert_invalid(error, "policy.edge_tasks", "77")


# --- identifiers, QoS ----------------------------------------------------------------------------


async def test_megabyte_ue_id_is_rejected_with_a_short_message(hard_cluster):
    request = cp_pb2.EstablishSessionRequest(ue_id="u" * 1_000_000, cell_id="cell-harbour-1")
    error = await rejected(hard_cluster.core.address, CP + "EstablishSession", request.SerializeToString())
    assert_invalid(error, "ue_id", str(MAX_ID_CHARS))


@pytest.mark.parametrize("ue_id", ["ue 1", "ue\n1", "../ue", "ue;drop", "ü"])
async def test_identifiers_have_a_charset(hard_cluster, ue_id):
    request = cp_pb2.EstablishSessionRequest(ue_id=ue_id, cell_id="cell-harbour-1")
    error = await rejected(hard_cluster.core.address, CP + "EstablishSession", request.SerializeToString())
    assert_invalid(error, "ue_id")


async def test_qos_priority_out_of_range_is_rejected(hard_cluster):
    request = cp_pb2.EstablishSessionRequest(ue_id="ue-1", cell_id="cell-harbour-1",
                                             qos=common_pb2.QoS(priority=99))
    error = await rejected(hard_cluster.core.address, CP + "EstablishSession", request.SerializeToString())
    assert_invalid(error, "qos.priority", "15")
    session = await new_session(hard_cluster.core.address)
    generate = concise(session, "Where can I eat?", max_new_tokens=2)
    generate.ran.qos.priority = 99
    error = await rejected(hard_cluster.edge.address, "/netgpt.v1.UserPlaneService/Generate",
                           generate.SerializeToString(), server_streaming=True)
    assert_invalid(error, "ran.qos.priority")


# --- error messages never echo more than an excerpt ----------------------------------------------


async def test_unknown_long_session_id_is_not_echoed_back(hard_cluster):
    at_limit = "s" * MAX_ID_CHARS  # a well-formed id nobody issued: NOT_FOUND, quoting a short excerpt
    error = await rejected(hard_cluster.core.address, CP + "GetSession",
                           cp_pb2.GetSessionRequest(session_id=at_limit).SerializeToString())
    assert error.code() == grpc.StatusCode.NOT_FOUND and at_limit not in error.details()
    huge = cp_pb2.GetSessionRequest(session_id="s" * 20_000).SerializeToString()
    assert_invalid(await rejected(hard_cluster.core.address, CP + "GetSession", huge), "session_id")


async def test_long_session_id_through_the_edge_is_the_clients_mistake(hard_cluster):
    request = up_pb2.GenerateRequest(session_id="s" * 20_000, prompt="hello")
    error = await rejected(hard_cluster.edge.address, "/netgpt.v1.UserPlaneService/Generate",
                           request.SerializeToString(), server_streaming=True)
    assert_invalid(error, "session_id")  # not UNAVAILABLE "cannot reach the core controller"


async def test_workflow_errors_quote_an_excerpt(hard_cluster):
    toml = "[workflow]\nname = '" + "n" * 20_000 + "'\nlatency_budget_ms = 10\npriority = 1\n"
    error = await rejected(hard_cluster.core.address, "/netgpt.v1.WorkflowService/ApplyWorkflow",
                           workflow_pb2.ApplyWorkflowRequest(spec_toml=toml).SerializeToString())
    assert_invalid(error, "workflow.name")


def test_excerpt_is_short_and_escaped():
    text = excerpt("a\x00\n" + "b" * 1000)
    assert len(text) < 100 and "\\x00" in text and "\\n" in text and "1003 characters" in text
    assert excerpt("ue-1") == "'ue-1'"


def test_check_request_names_the_path_of_the_bad_field():
    request = cp_pb2.HeartbeatRequest(node_id="edge-1")
    request.load.deployments.add(command_id="c" * 500)
    with pytest.raises(Exception, match=r"load\.deployments\[0\]\.command_id"):
        check_request(request)


# --- workflow TOML depth -------------------------------------------------------------------------


@pytest.mark.parametrize("nesting", ["[" * 5000 + "]" * 5000, "{a=" * 5000 + "1" + "}" * 5000])
async def test_deeply_nested_workflow_toml_is_invalid_argument(hard_cluster, nesting):
    toml = f"[workflow]\nname = 'deep'\nx = {nesting}\n"
    error = await rejected(hard_cluster.core.address, "/netgpt.v1.WorkflowService/ApplyWorkflow",
                           workflow_pb2.ApplyWorkflowRequest(spec_toml=toml).SerializeToString())
    assert_invalid(error, "nest")


# --- compressed artifacts ------------------------------------------------------------------------


def _tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_compressed_artifact_is_refused(tmp_path: Path):
    bomb = tmp_path / "bomb.tar"  # 8 MiB of zeros packed to a few KiB; the real one unpacked to 1 GiB
    bomb.write_bytes(gzip.compress(_tar({"model.onnx": bytes(8 << 20)})))
    assert bomb.stat().st_size < 64 << 10
    with pytest.raises(ModelLoadError, match="compressed"):
        unpack(bomb, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_plain_artifact_still_unpacks(tmp_path: Path):
    archive = tmp_path / "a.tar"
    archive.write_bytes(_tar({"config.json": b"{}", "model.onnx": b"x" * 1000}))
    folder = unpack(archive, tmp_path / "out")
    assert (folder / "model.onnx").read_bytes() == b"x" * 1000


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
async def test_non_finite_floats_are_refused_naming_the_field(hard_cluster, value):
    from netgpt.v1 import control_plane_pb2_grpc as cp_grpc

    policy = cp_pb2.RoutingPolicy(confidence_threshold=value)
    async with open_channel(hard_cluster.core.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await cp_grpc.ControlPlaneServiceStub(channel).SetRoutingPolicy(
                cp_pb2.SetRoutingPolicyRequest(policy=policy), timeout=5)
    assert_invalid(err.value, "policy.confidence_threshold", "not a finite number")


def test_check_request_refuses_non_finite_floats_in_maps_and_lists():
    from netgpt.v1 import network_management_pb2 as nm_pb2

    reply_shaped = nm_pb2.InferIntentResponse(confidence={"source": float("nan")})
    with pytest.raises(InvalidArgument, match=r"confidence\['source'\] = .* is not a finite number"):
        check_request(reply_shaped)
    check_request(nm_pb2.InferIntentResponse(confidence={"source": 3e38}))  # a float32: large but finite
