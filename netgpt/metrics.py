"""Prometheus metrics of one daemon: per-RPC counts and latencies, plus what the daemon already reports.

Each daemon has its own :class:`DaemonMetrics` (its own ``CollectorRegistry``: the all-in-one
cluster and the tests run core, cloud and edge in one process). Two sources:

- :class:`RpcMetrics`, a server interceptor: calls by method and status code, total latency,
  and for server streams (``Generate``) the time to the first message, i.e. first token.
- scrape-time collectors over state the daemon keeps anyway: a node's load report (queue depth,
  active requests, tokens/s, first-token p50, route/cache/coalescing/fallback counters, models
  and deployments) and the core's registry (heartbeat age per node). Nothing is counted twice and
  the hot paths are untouched.

Served over HTTP on ``metrics_listen`` (off by default); ``examples/grafana-dashboard.json`` uses them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from netgpt.errors import StartupError
from netgpt.interceptors import Behaviour, WrappingInterceptor
from netgpt.v1 import common_pb2

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _code(context: grpc.aio.ServicerContext, failed: bool) -> str:
    code = context.code() if hasattr(context, "code") else None
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return "UNKNOWN" if failed else "OK"


class RpcMetrics(WrappingInterceptor):
    """Calls by method and status, latency, and time to the first streamed message."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter("netgpt_rpc_calls", "RPCs served, by method and status code",
                             ["method", "code"], registry=registry)
        self.seconds = Histogram("netgpt_rpc_seconds", "RPC duration until the last message",
                                 ["method"], buckets=LATENCY_BUCKETS, registry=registry)
        self.first = Histogram("netgpt_rpc_first_message_seconds",
                               "time to the first streamed reply (for Generate: the first token or prompt event)",
                               ["method"], buckets=LATENCY_BUCKETS, registry=registry)

    def covers(self, method: str) -> bool:
        return method.startswith("/netgpt.")

    def _done(self, method: str, context: grpc.aio.ServicerContext, started: float, failed: bool) -> None:
        self.calls.labels(method, _code(context, failed)).inc()
        self.seconds.labels(method).observe(time.perf_counter() - started)

    def wrap_unary(self, fn: Behaviour, method: str) -> Behaviour:
        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started, failed = time.perf_counter(), True
            try:
                reply = await fn(request, context)
                failed = False
                return reply
            finally:
                self._done(method, context, started, failed)

        return unary

    def wrap_stream(self, fn: Behaviour, method: str) -> Behaviour:
        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started, failed, first = time.perf_counter(), True, True
            try:
                async for item in fn(request, context):
                    if first:
                        self.first.labels(method).observe(time.perf_counter() - started)
                        first = False
                    yield item
                failed = False
            finally:
                self._done(method, context, started, failed)

        return stream


class _Scraped(Collector):
    """Metric families computed at scrape time by ``build``."""

    def __init__(self, build: Callable[[], Iterable[Metric]]) -> None:
        self._build = build

    def collect(self) -> Iterator[Metric]:
        yield from self._build()


def node_load_metrics(load: Callable[[], common_pb2.NodeLoad], node_id: str) -> Iterable[Metric]:
    """A node's load report as gauges (the same figures the core sees in heartbeats)."""
    report = load()
    gauges = [("netgpt_queue_depth", "requests waiting for a slot", report.queue_depth),
              ("netgpt_active_requests", "requests generating now", report.active_requests),
              ("netgpt_tokens_per_second", "generated tokens per second, recent", report.tokens_per_second),
              ("netgpt_first_token_p50_ms", "median time to first token, recent", report.p50_first_token_ms)]
    for name, text, value in gauges:
        family = GaugeMetricFamily(name, text, labels=["node_id"])
        family.add_metric([node_id], float(value))
        yield family
    counters = GaugeMetricFamily("netgpt_node_events", "the node's running counters: routes, answer-cache hits "
                                 "and misses, coalesced calls, fallbacks, ...", labels=["node_id", "name"])
    for name, value in sorted(report.counters.items()):
        counters.add_metric([node_id, name], float(value))
    yield counters
    served = GaugeMetricFamily("netgpt_model_served", "1 for each model version the node serves",
                               labels=["node_id", "name", "version"])
    for ref in report.models_served:
        served.add_metric([node_id, ref.name, ref.version], 1.0)
    yield served
    deployments = GaugeMetricFamily("netgpt_deployments", "the node's recent deployments by phase",
                                    labels=["node_id", "phase"])
    phases: dict[str, int] = {}
    for state in getattr(report, "deployments", []):
        phase = common_pb2.DeploymentPhase.Name(state.phase)
        phases[phase] = phases.get(phase, 0) + 1
    for phase, count in sorted(phases.items()):
        deployments.add_metric([node_id, phase], float(count))
    yield deployments


def core_metrics(statuses: Callable[[], list[common_pb2.NodeStatus]], sessions: Callable[[], int],
                 bytes_served: Callable[[], int], wall: Callable[[], float] = time.time) -> Iterable[Metric]:
    """The core's view: heartbeat age and health per node, live sessions, blob bytes served."""
    now = wall()
    age = GaugeMetricFamily("netgpt_heartbeat_age_seconds", "seconds since each node's last heartbeat",
                            labels=["node_id", "role", "health"])
    for status in statuses():
        seen = status.last_heartbeat.seconds + status.last_heartbeat.nanos / 1e9
        age.add_metric([status.info.node_id, common_pb2.NodeRole.Name(status.info.role),
                        common_pb2.NodeHealth.Name(status.health)], max(0.0, now - seen))
    yield age
    yield GaugeMetricFamily("netgpt_sessions", "AI sessions the core holds", value=float(sessions()))
    yield GaugeMetricFamily("netgpt_blob_bytes_served", "artifact bytes the core's store has served",
                            value=float(bytes_served()))


class DaemonMetrics:
    """One daemon's registry, its RPC interceptor, and (once served) its HTTP endpoint."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rpc = RpcMetrics(self.registry)
        self._http: Any = None

    def add(self, build: Callable[[], Iterable[Metric]]) -> None:
        self.registry.register(_Scraped(build))

    def serve(self, address: str) -> int:
        """Serve ``/metrics`` on ``host:port`` (port 0: ephemeral); returns the bound port."""
        host, _, port = address.rpartition(":")
        try:
            self._http, _thread = start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0",
                                                    registry=self.registry)
        except (OSError, ValueError) as exc:
            raise StartupError(f"metrics_listen {address}: {exc}") from exc
        return int(self._http.server_port)

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
