"""Prometheus metrics: every daemon serves its own, and they move with the traffic."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from pathlib import Path

import grpc
import pytest
from harness import start_cluster
from helpers import concise, generate, new_session

from netgpt.errors import StartupError
from netgpt.metrics import DaemonMetrics

METRICS = {"metrics_listen": "127.0.0.1:0"}


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return reply.read().decode()


def _value(text: str, name: str, **labels: str) -> float:
    """The sample of ``name`` whose labels include ``labels`` (0 when absent)."""
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:{{(.*)}})? (\S+)$", line)
        if match and all(f'{key}="{value}"' in (match.group(1) or "") for key, value in labels.items()):
            return float(match.group(2))
    return 0.0


@pytest.fixture(scope="module")
async def observed(models):
    cluster = await start_cluster(*models, heartbeat_interval_s=0.3, core=METRICS, cloud=METRICS, edge=METRICS)
    yield cluster
    await cluster.stop()


async def test_each_daemon_serves_its_own_metrics_and_they_follow_a_request(observed):
    ports = {name: getattr(observed, name).server.metrics_port for name in ("core", "cloud", "edge")}
    assert all(ports.values()) and len(set(ports.values())) == 3
    generate_method = "/netgpt.v1.UserPlaneService/Generate"
    before = await asyncio.to_thread(_scrape, ports["edge"])
    session = await new_session(observed.core.address)
    events = await generate(observed.edge.address, concise(session, "Where can I eat seafood tonight?",
                                                           route=2))  # ROUTE_PREFERENCE_CLOUD
    assert events[-1].HasField("summary")
    edge, cloud, core = [await asyncio.to_thread(_scrape, ports[name]) for name in ("edge", "cloud", "core")]
    assert _value(edge, "netgpt_rpc_calls_total", method=generate_method, code="OK") == \
        _value(before, "netgpt_rpc_calls_total", method=generate_method, code="OK") + 1
    assert _value(edge, "netgpt_rpc_first_message_seconds_count", method=generate_method) >= 1
    assert _value(cloud, "netgpt_rpc_calls_total", method=generate_method, code="OK") >= 1  # the edge's forward
    assert _value(core, "netgpt_rpc_calls_total", method="/netgpt.v1.ControlPlaneService/EstablishSession",
                  code="OK") >= 1
    assert _value(edge, "netgpt_model_served", node_id="edge-1") == 1
    assert _value(edge, "netgpt_queue_depth", node_id="edge-1") == 0
    assert _value(core, "netgpt_heartbeat_age_seconds", node_id="cloud-1", health="NODE_HEALTH_SERVING") < 5
    assert _value(core, "netgpt_sessions") >= 1


async def test_a_refused_call_is_counted_with_its_status(observed):
    port = observed.edge.server.metrics_port
    session = await new_session(observed.core.address)
    with pytest.raises(grpc.aio.AioRpcError):
        await generate(observed.edge.address, concise(session, "x" * 100_000))  # past max_prompt_chars
    text = await asyncio.to_thread(_scrape, port)
    assert _value(text, "netgpt_rpc_calls_total", method="/netgpt.v1.UserPlaneService/Generate",
                  code="INVALID_ARGUMENT") >= 1


def test_a_taken_metrics_port_is_a_startup_error():
    first = DaemonMetrics()
    port = first.serve("127.0.0.1:0")
    try:
        with pytest.raises(StartupError, match="metrics_listen"):
            DaemonMetrics().serve(f"127.0.0.1:{port}")
    finally:
        first.stop()


DASHBOARD = Path(__file__).resolve().parents[1] / "examples" / "grafana" / "netgpt-dashboard.json"
SERIES_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def _exported_names(text: str) -> set[str]:
    """Every metric family and series name in a /metrics page."""
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    names |= {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line and line[0] != "#"}
    return names


async def test_the_grafana_dashboard_queries_only_metrics_the_daemons_export(observed):
    session = await new_session(observed.core.address)
    await generate(observed.edge.address, concise(session, "When does the library close?"))  # fills histograms
    exported: set[str] = set()
    for name in ("core", "cloud", "edge"):
        exported |= _exported_names(await asyncio.to_thread(_scrape, getattr(observed, name).server.metrics_port))
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(queries) >= 10
    referenced = {name for query in queries for name in re.findall(r"\bnetgpt_[a-z0-9_]+", query)}
    missing = sorted(name for name in referenced if name not in exported)
    assert not missing, f"the dashboard queries metrics no daemon exports: {missing}"
    families = {name for name in referenced if not name.endswith(SERIES_SUFFIXES)}
    assert {"netgpt_queue_depth", "netgpt_heartbeat_age_seconds", "netgpt_deployments"} <= families
