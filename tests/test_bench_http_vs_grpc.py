"""``bench.http_vs_grpc`` at tiny size: one cluster whose edge serves gRPC and HTTPS, both routes asked
through both APIs by a UE with its own certificate; the report has every figure. No timing assertions."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_bench

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(300)
def test_http_vs_grpc_bench_reports_both_apis_on_both_routes(tiny: object, tmp_path: Path) -> None:
    routes = run_bench("http_vs_grpc", tmp_path / "report.json", "--requests", "1", "--max-new-tokens", "4",
                       "--models", "tiny")["routes"]
    assert routes.keys() == {"edge", "cloud"}
    for figures in routes.values():
        for api in ("grpc", "http"):
            assert 0 < figures[api]["first_token_ms_p50"] <= figures[api]["total_ms_p50"]
        assert figures["http_over_grpc"].keys() == figures["grpc"].keys()
