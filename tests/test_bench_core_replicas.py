"""``bench.core_replicas`` at tiny size: two real core processes on the suite's PostgreSQL server, a few
simulated nodes given both addresses, kill -9 of the first replica; every figure of the report present,
and every node beating to the surviving replica afterwards. No timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_core_replicas_reports_failover_and_every_figure(tmp_path: Path, pg_url: str) -> None:
    out = tmp_path / "core_replicas.json"
    argv = ["--variants", "sqlite:1,postgresql:2", "--nodes", "6", "--clouds", "1", "--interval-s", "0.5",
            "--window-s", "2", "--sessions", "20", "--storm-concurrency", "2", "--pg-url", pg_url, "--out", str(out)]
    run = subprocess.run([sys.executable, "-m", "bench.core_replicas", *argv], cwd=ROOT, capture_output=True,
                         text=True, timeout=280)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    report = json.loads(out.read_text())
    assert [(v["backend"], v["replicas"]) for v in report["variants"]] == [("sqlite", 1), ("postgresql", 2)]
    for variant in report["variants"]:
        assert variant["registered"] == 6
        assert variant["steady"]["heartbeat_rtt_ms"]["p99"] is not None
        assert variant["storm"]["sessions"] == 20 and not variant["storm"]["errors"]
    replicas = report["variants"][1]
    moved = replicas["failover"]
    assert moved["nodes"] > 0 and moved["back"] == moved["nodes"] and moved["all_s"] is not None
    assert replicas["storm_after"]["sessions"] == 20, replicas["storm_after"]  # the survivor serves them all
    assert out.with_suffix(".md").read_text().count("\n| ") == 2
