"""``bench.edge_prefix_reuse`` on the starter GPT-2, one round: the answer prompt of an undecided request
starts with its intent prompt, so the cache saves most of its prefill; the report has every figure. No
timing assertions."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_bench

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(300)
def test_edge_prefix_reuse_bench_reports_the_prefill_saved(tmp_path: Path) -> None:
    report = run_bench("edge_prefix_reuse", tmp_path / "report.json", "--edge-model", "starter", "--rounds", "1",
                       "--intent-tokens", "4")
    (first,) = report["rounds"]
    assert first["questions"] == 71 and 0.3 < first["reused_share_of_prefilled_prompts"] < 1
    for key in ("intent_first_token_ms_off_p50", "answer_first_token_ms_on_p50", "answer_first_token_p50_on_over_off"):
        assert first[key] > 0
    assert report["quantization"] == "fp32" and report["block"] == 16
