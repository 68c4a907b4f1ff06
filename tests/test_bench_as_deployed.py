"""``bench.as_deployed`` at tiny size (tiny models, a few requests): the daemons start as separate
processes, every request's parts are joined from the UE, the edge's summary and the daemons' logs,
and the report has every step column and both routes. No timing assertions: machines are shared."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
STEP_COLUMNS = ("personalise", "queue", "edge generate", "edge→cloud", "cloud prefill", "cloud decode", "stream back",
                "UE→edge", "route", "other")


@pytest.mark.timeout(420)
def test_as_deployed_bench_reports_every_step_for_both_routes(tiny: object, tmp_path: Path) -> None:
    out = tmp_path / "as_deployed.json"
    argv = ["--requests", "4", "--toll-requests", "2", "--concurrency", "2", "--max-new-tokens", "4",
            "--edge-model", "tiny", "--cloud-model", "tiny", "--out", str(out)]
    run = subprocess.run([sys.executable, "-m", "bench.as_deployed", *argv], cwd=ROOT, capture_output=True, text=True,
                         timeout=400)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    report, table = json.loads(out.read_text()), out.with_suffix(".md").read_text()

    headers = [line for line in table.splitlines() if line.startswith("| system / route")]
    assert len(headers) == 2  # one table per workload
    for step in STEP_COLUMNS:
        assert all(f"| {step} |" in header for header in headers), step

    rows = {workload: part["rows"] for workload, part in report["workloads"].items()}
    assert set(rows) == {"zipf", "long_tail"}
    for workload, mine in rows.items():
        assert mine["netgpt"]["requests"] == 4 and mine["cloud_only"]["requests"] == 4, workload
        for system in ("netgpt", "cloud_only"):  # answers of the tiny models, at most --max-new-tokens long
            assert 1 <= mine[system]["answer_tokens"]["p50"] <= 4 and mine[system]["prompt_tokens"]["p50"] > 0
    assert report["failures"] == {}
    routes = {name for mine in rows.values() for name in mine}
    assert {"netgpt / edge", "netgpt / cloud"} <= routes
    assert "| netgpt / edge |" in table and "| netgpt / cloud |" in table

    # the cloud route's parts come from three processes, joined by the request's trace id
    cloud_steps = next(mine["netgpt / cloud"]["steps_ms"] for mine in rows.values() if "netgpt / cloud" in mine)
    assert {"ue_to_edge", "personalise", "route", "queue", "edge_to_cloud", "cloud_prefill", "cloud_decode",
            "stream_back"} <= set(cloud_steps)
    edge_steps = next(mine["netgpt / edge"]["steps_ms"] for mine in rows.values() if "netgpt / edge" in mine)
    assert {"ue_to_edge", "personalise", "edge_generate", "stream_back"} <= set(edge_steps)
    straight = rows["long_tail"]["cloud_only"]["steps_ms"]
    assert {"edge_to_cloud", "cloud_prefill", "cloud_decode", "stream_back"} <= set(straight)

    toll = report["edge_toll_on_a_forwarded_request"]
    assert toll["pairs"] + toll["dropped_not_forwarded"] == 2
    assert "The edge's toll on a forwarded request" in table
