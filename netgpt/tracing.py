"""Distributed tracing: W3C trace context (``traceparent``) carried UE → edge → cloud in gRPC
metadata, OpenTelemetry spans for every RPC served and every RPC called, and the trace id in
every structlog event logged inside a span, so one request can be followed across hosts.

Every server (``start_server``) and every channel (``open_channel``) is instrumented with
OpenTelemetry's own gRPC interceptors (``opentelemetry-instrumentation-grpc``). Spans are always
created, so logs always carry ``trace_id``; they leave the process only when a daemon is given an
``otlp_endpoint`` (the optional ``netgpt[otlp]`` extra) or a test adds an exporter.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
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
    """Continues the caller's trace (or starts one) in a SERVER span around each handler."""
    if "server" not in _state:
        _state["server"] = aio_server_interceptor(tracer_provider=tracer_provider())  # type: ignore[no-untyped-call]
    interceptor: grpc.aio.ServerInterceptor = _state["server"]
    return interceptor


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """A CLIENT span per call, its context injected as ``traceparent`` metadata."""
    if "client" not in _state:
        _state["client"] = list(aio_client_interceptors(tracer_provider=tracer_provider()))  # type: ignore[no-untyped-call]
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
