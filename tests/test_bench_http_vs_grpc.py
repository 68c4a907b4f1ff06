"""``bench.http_vs_grpc`` at tiny size: one cluster whose edge serves gRPC and HTTPS, both routes asked
through both APIs by a UE with its own certificate; the report has every figure. No timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_http_vs_grpc_bench_reports_both_apis_on_both_routes(tiny: object, tmp_path: Path) -> None:
    out = tmp_path / "http_vs_grpc.json"
    argv = ["--requests", "1", "--max-new-tokens", "4", "--models", "tiny", "--out", str(out)]
    run = subprocess.run([sys.executable, "-m", "bench.http_vs_grpc", *argv], cwd=ROOT, capture_output=True,
                         text=True, timeout=280)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    routes = json.loads(out.read_text())["routes"]
    assert routes.keys() == {"edge", "cloud"}
    for figures in routes.values():
        for api in ("grpc", "http"):
            assert 0 < figures[api]["first_token_ms_p50"] <= figures[api]["total_ms_p50"]
        assert figures["http_over_grpc"].keys() == figures["grpc"].keys()
