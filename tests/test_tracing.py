"""Tracing: one request's trace crosses UE → edge → cloud in gRPC metadata (W3C traceparent), every
daemon's spans hang off the caller's, and the daemons' log events carry the trace id."""

from __future__ import annotations

import io
import json
import os

import pytest
import structlog
from harness import start_cluster
from helpers import concise, generate, new_session
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanKind

from netgpt.errors import StartupError
from netgpt.logs import configure_logging
from netgpt.tracing import add_span_processor, configure_tracing, tracer
from netgpt.v1 import user_plane_pb2 as up_pb2
from up.runner import GenerationRunner

GENERATE = "/netgpt.v1.UserPlaneService/Generate"


class Recorder(SpanProcessor):
    """Keeps finished spans while recording (the provider is the process's: it outlives this module)."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []
        self.recording = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.recording:
            self.spans.append(span)


@pytest.fixture(scope="module")
def recorder():
    processor = Recorder()
    add_span_processor(processor)
    return processor


@pytest.fixture(scope="module")
async def traced(models):
    cluster = await start_cluster(*models, heartbeat_interval_s=0.3)
    yield cluster
    await cluster.stop()


def by_id(spans: list[ReadableSpan]) -> dict[int, ReadableSpan]:
    return {span.context.span_id: span for span in spans}


def ancestors(span: ReadableSpan, index: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    chain = []
    while span.parent is not None and span.parent.span_id in index:
        span = index[span.parent.span_id]
        chain.append(span)
    return chain


async def test_a_request_is_one_trace_from_the_ue_through_edge_and_cloud(traced, recorder):
    logs = io.StringIO()
    configure_logging(json=True, level="info", stream=logs)
    recorder.spans.clear()
    recorder.recording = True
    try:
        with tracer("test.ue").start_as_current_span("ue.ask") as root:
            session = await new_session(traced.core.address)
            events = await generate(traced.edge.address, concise(
                session, "Where can I eat seafood tonight?", route=up_pb2.ROUTE_PREFERENCE_CLOUD))
    finally:
        recorder.recording = False
        configure_logging(json=True, level=os.environ.get("NETGPT_TEST_LOG", "warning"))
    assert events[-1].HasField("summary")
    trace_id = root.get_span_context().trace_id
    mine = [s for s in recorder.spans if s.context.trace_id == trace_id]
    servers = [s for s in mine if s.kind == SpanKind.SERVER and s.name == GENERATE]
    assert len(servers) == 2, [s.name for s in mine]  # the edge's Generate and the cloud's
    index = by_id(mine)
    edge_span, cloud_span = sorted(servers, key=lambda s: len(ancestors(s, index)))
    assert ancestors(edge_span, index)[-1].context.span_id == root.get_span_context().span_id
    assert edge_span in ancestors(cloud_span, index)  # the cloud's span hangs off the edge's
    outgoing = index[cloud_span.parent.span_id]
    assert outgoing.kind == SpanKind.CLIENT  # through the edge's outgoing call, ended with its status
    assert outgoing.attributes["rpc.grpc.status_code"] == 0
    establish = [s for s in mine if s.kind == SpanKind.SERVER and s.name.endswith("/EstablishSession")]
    assert establish, "the core's span is in the same trace"

    lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    traced_events = [line for line in lines if line.get("trace_id") == format(trace_id, "032x")]
    assert traced_events, "daemon log events carry the request's trace id"
    span_ids = {format(span.context.span_id, "016x") for span in mine}
    assert all(line["span_id"] in span_ids for line in traced_events)


async def test_work_on_a_decode_thread_logs_with_the_callers_trace_and_bound_ids():
    logs = io.StringIO()
    configure_logging(json=True, level="info", stream=logs)
    runner = GenerationRunner(max_concurrency=1, max_queue=1)
    try:
        with tracer("test.caller").start_as_current_span("caller") as span, \
                structlog.contextvars.bound_contextvars(session_id="sess-7", flow_id="flow-7"):
            await runner.call(lambda: structlog.get_logger("test.thread").info("work.on_thread"))
    finally:
        runner.shutdown()
        configure_logging(json=True, level=os.environ.get("NETGPT_TEST_LOG", "warning"))
    [line] = [json.loads(text) for text in logs.getvalue().splitlines() if "work.on_thread" in text]
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert (line["session_id"], line["flow_id"]) == ("sess-7", "flow-7")


def test_an_otlp_endpoint_without_the_exporter_is_a_startup_error():
    try:
        import opentelemetry.exporter.otlp.proto.grpc.trace_exporter  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the OTLP exporter is installed here: nothing to refuse")
    with pytest.raises(StartupError, match=r"netgpt\[otlp\]"):
        configure_tracing("netgpt-test", "127.0.0.1:4317")
