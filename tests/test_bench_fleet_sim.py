"""``bench.fleet_sim`` at tiny size (5 simulated nodes, a few heartbeats, a handful of sessions): a real core
process, nodes with their own certificates in a worker process, and every figure of the report present for
both variants (the "before" core started from a given tree: here the same one). No timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_fleet_sim_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "fleet_sim.json"
    argv = ["--nodes", "5", "--clouds", "1", "--interval-s", "0.5", "--window-s", "2", "--sessions", "10",
            "--storm-concurrency", "2", "--per-worker", "3", "--profile-s", "1", "--profile-min", "5",
            "--registry-sizes", "20", "--before", str(ROOT), "--dir", str(tmp_path), "--out", str(out)]
    run = subprocess.run([sys.executable, "-m", "bench.fleet_sim", *argv], cwd=ROOT, capture_output=True, text=True,
                         timeout=280)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    report = json.loads(out.read_text())
    assert [(s["variant"], s["n"]) for s in report["steps"]] == [("before", 5), ("after", 5)]
    for step in report["steps"]:
        assert "failed" not in step, step
        assert (step["clouds"], step["edges"]) == (1, 4)
        steady = step["steady"]
        assert steady["beats"] > 0 and isinstance(steady["registrations"], int)
        for figure in ("p50", "p99"):
            assert steady["rtt_ms"][figure] is not None and steady["client_loop_lag_ms"][figure] is not None
            assert step["storm"]["setup_ms"][figure] is not None
        for figure in ("missed_share", "core_cpu_share", "core_cpu_share_per_1000_nodes", "core_rss_mib",
                       "core_rss_per_node_kib", "peers_updates_per_edge_beat", "reply_bytes_per_beat"):
            assert isinstance(steady[figure], int | float), figure
        assert step["register"]["all_s"] >= 0
        assert step["deploy"]["nodes"] == step["deploy"]["arrived"] == 4
        assert step["deploy"]["to_last_command_s"] is not None
        assert step["storm"]["sessions"] == 10 and not step["storm"]["errors"]
        for sampled in ("profile", "profile_storm"):
            assert "samples" in step[sampled] or "error" in step[sampled]
    assert set(report["limits"]) == set(report["registry_alone"]) == {"before", "after"}
    for rows in report["registry_alone"].values():
        assert [r["n"] for r in rows] == [20] and rows[0]["edge_beat_us"] > 0
    assert all(set(limit) == {"largest_n_on_time", "first_n_missing"} for limit in report["limits"].values())
    table = out.with_suffix(".md").read_text()
    assert "| before | 5 |" in table and "| after | 5 |" in table
    for header in ("heartbeat RTT p50 / p99 (ms)", "deploy → last command (s)", "session set-up p50 / p99 (ms)",
                   "CPU per 1,000 nodes", "RSS per node (KiB)", "missed"):
        assert header in table, header
