"""Edge cache hit rate: popularity-driven prefetch (the fine-tuned GPT-2's predictions) vs plain LRU,
on the same held-out requests in one run.

    python -m bench.popularity_cache [--model DIR] [--sizes 5,10,20] [--seed 2024]

Requests: every view of the held-out last 5 % of intervals of the seeded synthetic log (the tail
the model was not trained on), in time order; the day before warms every cache (as LRU, not
counted). At each interval boundary the popularity policies pin the top ``size // 2`` titles of a
ranking of the window's top-20 titles and keep the other slots LRU:

- ``model``: the popularity model's P(appear) (through ONNX Runtime, as the edge serves it);
- ``recent counts``: views in the 12 intervals before (no model: the obvious heuristic);
- ``ceiling``: the generator's true expected views of the interval (``tasks/popularity/ceiling.py``):
  what a perfect predictor would rank by, short of seeing the interval's random draws;
- ``oracle``: the interval's true view counts (an upper bound, not achievable).

Reports hit rate per cache size and policy, the ratio to LRU, and the prefetches each policy
spent. Writes bench/reports/popularity_cache.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.content_cache import ContentCache
from edge_node.netmgmt.popularity import DEFAULT_LAGS, DEFAULT_TOP_K, ViewLog, load_predictor, packaged_model_dir
from tasks.popularity.ceiling import truth
from tasks.popularity.intervals import chronological_split
from tasks.popularity.synth import DEFAULT_SEED, generate

REPORT = Path(__file__).parent / "reports" / "popularity_cache.json"
Ranker = Callable[[int], list[str]]


def replay(log: ViewLog, requests: dict[int, list[str]], warmup: list[str], targets: Sequence[int],
           capacity: int, ranker: Ranker | None) -> dict[str, float]:
    cache = ContentCache(capacity, "popularity" if ranker else "lru", max(1, capacity // 2) if ranker else 0)
    for title in warmup:
        cache.request(title)
    cache.stats.hits = cache.stats.misses = 0
    for target in targets:
        if ranker is not None:
            cache.start_interval(ranker(target))
        for title in requests.get(target, []):
            cache.request(title)
    stats = cache.stats
    return {"hit_rate": round(stats.hit_rate, 4), "hits": stats.hits, "requests": stats.requests,
            "prefetched": stats.prefetched}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cache hit rate: popularity-driven prefetch vs LRU.")
    parser.add_argument("--model", type=Path, help="popularity model folder (default: the packaged one)")
    parser.add_argument("--sizes", default="5,10,20", help="cache sizes in titles, comma-separated")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    synthetic = generate(args.seed)
    log = synthetic.view_log()
    split = chronological_split(log.num_intervals, DEFAULT_LAGS)
    targets = list(split.test_targets)
    interval = (synthetic.timestamps - log.origin) // log.interval_s
    requests: dict[int, list[str]] = {}
    for slot, title in zip(interval.tolist(), synthetic.title_ids.tolist(), strict=True):
        requests.setdefault(slot, []).append(synthetic.titles[title])
    day = log.intervals_per_day or 1
    warmup = [t for slot in range(split.split_at - day, split.split_at) for t in requests.get(slot, [])]

    predictor = load_predictor(args.model or packaged_model_dir())
    model_seconds = 0.0
    model_ranking: dict[int, list[str]] = {}
    for target in targets:
        first, history = log.window(target, DEFAULT_LAGS, DEFAULT_TOP_K)
        t0 = time.perf_counter()
        model_ranking[target] = [title for title, _ in predictor.rank(history, first)]
        model_seconds += time.perf_counter() - t0

    def recent(target: int) -> list[str]:
        return list(log.window(target, DEFAULT_LAGS, DEFAULT_TOP_K)[1])

    def oracle(target: int) -> list[str]:
        counts = log.counts[target]
        return [log.titles[i] for i in np.argsort(-counts, kind="stable")[:DEFAULT_TOP_K] if counts[i] > 0]

    assert log.origin == synthetic.config.start, "the generator's hours must line up with the log's intervals"
    known = truth(args.seed, synthetic.config, log.interval_s)
    rankers: dict[str, Ranker | None] = {"lru": None, "model": model_ranking.__getitem__, "recent counts": recent,
                                         "ceiling": known.ranking, "oracle": oracle}
    results: dict[str, Any] = {}
    for size in (int(text) for text in args.sizes.split(",")):
        row = {name: replay(log, requests, warmup, targets, size, ranker) for name, ranker in rankers.items()}
        lru = row["lru"]["hit_rate"] or 1e-9
        for name in row:
            row[name]["vs_lru"] = round(row[name]["hit_rate"] / lru, 3)
        results[str(size)] = row
    report = {
        "what": "edge cache hit rate on the held-out requests: popularity-driven pinning (top size//2 of a "
                "ranking, refreshed each interval, the rest LRU) vs plain LRU",
        "seed": args.seed, "held_out_intervals": [targets[0], targets[-1]], "interval_s": log.interval_s,
        "requests": sum(len(requests.get(t, [])) for t in targets), "catalogue": len(log.titles),
        "model_version": predictor.version, "model_ms_per_interval": round(model_seconds / len(targets) * 1000, 1),
        "sizes": results, "machine": f"{platform.machine()} CPU, shared with other jobs",
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'size':>5} " + "".join(f"{name:>15}" for name in rankers))
    for label, row in results.items():
        print(f"{label:>5} " + "".join(f"{row[n]['hit_rate']:>9.3f} x{row[n]['vs_lru']:<4}" for n in rankers))
    print(f"{report['requests']} requests, {len(targets)} intervals; model {report['model_ms_per_interval']} ms "
          f"per interval; report {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
