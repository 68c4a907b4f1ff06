"""``bench.prefix_reuse`` on the tiny LLaMA, one round: the held-out questions' comprehensive prompts share
their beginning, so the cache saves prefill; the report has every figure. No timing assertions."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_bench

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(300)
def test_prefix_reuse_bench_reports_the_prefill_saved(tiny: object, tmp_path: Path) -> None:
    (first,) = run_bench("prefix_reuse", tmp_path / "report.json", "--cloud-model", "tiny", "--rounds", "1",
                         "--max-new-tokens", "2")["rounds"]
    assert first["prompts"] == 71 and 0 < first["reused_share"] < 1
    for key in ("first_token_ms_off_p50", "first_token_ms_on_p50", "first_token_p50_on_over_off"):
        assert first[key] > 0
