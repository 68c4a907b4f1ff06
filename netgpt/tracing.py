"""Distributed tracing: W3C trace context (``traceparent``) carried UE → edge → cloud in gRPC
metadata, OpenTelemetry spans for every RPC served and every RPC called, and the trace id in
every structlog event logged inside a span, so one request can be followed across hosts.

Every server (``start_server``) is instrumented with OpenTelemetry's own gRPC server interceptor
(``opentelemetry-instrumentation-grpc``); every channel (``open_channel``) with
:class:`TraceContext`, because the package's aio *client* interceptors await the end of a
call before handing it back (a client stream written with ``call.write`` then never starts) and
wrap server streams in a generator that cannot be cancelled. Spans are always
created, so logs always carry ``trace_id``; they leave the process only when a daemon is given an
``otlp_endpoint`` (the optional ``netgpt[otlp]`` extra) or a test adds an exporter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from netgpt.errors import StartupError

SERVICE = "netgpt"
_state: dict[str, Any] = {}  # the process's provider and interceptors, created once


def tracer_provider(service: str = SERVICE) -> TracerProvider:
    """The process's tracer provider (made global on first use; ``service`` names it then)."""
    provider = _state.get("provider")
    if provider is None:
        provider = _state["provider"] = TracerProvider(resource=Resource.create({"service.name": service}))
        trace.set_tracer_provider(provider)
    assert isinstance(provider, TracerProvider)
    return provider


def tracer(name: str) -> trace.Tracer:
    return tracer_provider().get_tracer(name)


def add_span_processor(processor: SpanProcessor) -> None:
    """Send finished spans somewhere: an OTLP exporter in daemons, an in-memory one in tests."""
    tracer_provider().add_span_processor(processor)


def configure_tracing(service: str, otlp_endpoint: str = "") -> None:
    """A daemon's tracing: its service name, and spans exported over OTLP/gRPC to ``otlp_endpoint``
    (``host:port`` of an OpenTelemetry collector, Jaeger or Tempo) when one is given."""
    tracer_provider(service)
    if not otlp_endpoint or otlp_endpoint in _state.setdefault("exporting", set()):
        return
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise StartupError("otlp_endpoint needs the OTLP exporter: pip install 'netgpt[otlp]' "
                           "(opentelemetry-exporter-otlp-proto-grpc)") from None
    add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint, insecure=True)))
    _state["exporting"].add(otlp_endpoint)


def server_interceptor() -> grpc.aio.ServerInterceptor:
    """Continues the caller's trace (or starts one) in a SERVER span around each handler. Not around
    the health service: its Watch writes with ``context.write``, which OpenTelemetry's aio server
    interceptor (expecting an async generator) breaks; probes are not worth a span each anyway."""
    if "server" not in _state:
        _state["server"] = aio_server_interceptor(  # type: ignore[no-untyped-call]
            tracer_provider=tracer_provider(), filter_=filters.negate(filters.health_check()))
    interceptor: grpc.aio.ServerInterceptor = _state["server"]
    return interceptor


def _method_name(method: str | bytes) -> str:
    return method.decode() if isinstance(method, bytes) else method


def _finished_code(call: grpc.aio.Call) -> grpc.StatusCode | None:
    """The status code of a call that is done, read without the event loop: ``call.code()`` of a
    finished call returns without suspending. None if it would suspend."""
    pending = call.code()
    try:
        pending.send(None)
    except StopIteration as stop:
        code: grpc.StatusCode = stop.value
        return code
    pending.close()
    return None


def _end_span(span: trace.Span, call: grpc.aio.Call) -> None:
    """Ends the CLIENT span in the call's done callback, so it is finished when the caller sees the end."""
    code = _finished_code(call)
    if code is not None:
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code != grpc.StatusCode.OK:
            span.set_status(trace.Status(trace.StatusCode.ERROR, code.name))
    span.end()


class TraceContext:
    """A CLIENT span per call, its context sent as ``traceparent`` metadata; the call object goes back
    to the caller untouched (writes, reads, cancel) and the span ends when the call does. grpc.aio
    files an interceptor under its first matching kind only, hence one subclass per kind."""

    async def _call(self, continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
                    details: grpc.aio.ClientCallDetails, request: Any) -> Any:
        method = _method_name(details.method)
        service, _, name = method.lstrip("/").partition("/")
        span = tracer(__name__).start_span(method.lstrip("/"), kind=trace.SpanKind.CLIENT, attributes={
            "rpc.system": "grpc", "rpc.service": service, "rpc.method": name})
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        for key, value in carrier.items():
            metadata.add(key, value)
        try:
            call = await continuation(details._replace(metadata=metadata), request)
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
            span.end()
            raise
        call.add_done_callback(lambda done: _end_span(span, done))
        return call


def _for_kind(kind: type, method: str) -> type:
    """A :class:`TraceContext` interceptor of one kind of call: ``method`` is that kind's hook."""

    async def intercept(self: TraceContext, continuation: Any, client_call_details: grpc.aio.ClientCallDetails,
                        request: Any) -> Any:
        return await self._call(continuation, client_call_details, request)

    return type(f"TraceContext{kind.__name__}", (TraceContext, kind), {method: intercept})


# each kind of client interceptor and its hook (grpc.aio files an interceptor under its first matching kind)
CLIENT_KINDS = ((grpc.aio.UnaryUnaryClientInterceptor, "intercept_unary_unary"),
                (grpc.aio.UnaryStreamClientInterceptor, "intercept_unary_stream"),
                (grpc.aio.StreamUnaryClientInterceptor, "intercept_stream_unary"),
                (grpc.aio.StreamStreamClientInterceptor, "intercept_stream_stream"))


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """:class:`TraceContext` for each kind of call (stateless, shared by every channel)."""
    if "client" not in _state:
        _state["client"] = [_for_kind(kind, method)() for kind, method in CLIENT_KINDS]
    interceptors: list[grpc.aio.ClientInterceptor] = _state["client"]
    return interceptors


def add_trace_ids(_logger: object, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: ``trace_id`` and ``span_id`` (hex, as W3C and every tracing UI write
    them) of the span current when the event is logged."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event
