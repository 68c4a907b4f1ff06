"""``netgpt eval popularity``: the model (served through ONNX Runtime, as the edge serves it) and
the classical baselines on held-out intervals of synthetic view logs, one table.

The held-out data: the last 5 % of the intervals (chronological split) of ``EVAL_LOGS`` seeded
logs — ``seed`` (by default the recipe's: the tail the model was not trained on) and the next
seeds (logs the model never saw at all, same generator parameters). Every method scores the same
labelled windows (the top-20 titles of the 12 intervals before each target); the logistic
regression is fitted on each log's training 95 %.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_node.netmgmt.popularity import (
    DEFAULT_LAGS,
    DEFAULT_TOP_K,
    PopularityPredictor,
    ViewLog,
    load_predictor,
    packaged_model_dir,
)
from tasks.popularity import baselines
from tasks.popularity.intervals import LabelledWindow, by_target, chronological_split, windows
from tasks.popularity.metrics import PRECISION_AT, Metrics, score
from tasks.popularity.synth import DEFAULT_SEED, SynthConfig, generate

EVAL_LOGS = 3
MODEL = "NetGPT GPT-2 (fine-tuned, ONNX Runtime)"
PERSISTENCE, SAME_TIME, LOGISTIC, ALWAYS = ("last-interval persistence", "same-time-of-day frequency",
                                            "logistic regression (lags)", "always appear")
Progress = Callable[[int], None]


@dataclass
class Report:
    rows: dict[str, Metrics]
    meta: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        columns = ["accuracy", "precision", "recall", "F1", *(f"P@{k}" for k in PRECISION_AT)]
        width = max(len(name) for name in self.rows) + 2
        lines = [f"{'method':<{width}}" + "".join(f"{c:>10}" for c in columns)]
        for name, m in self.rows.items():
            values = [m.accuracy, m.precision, m.recall, m.f1, *(m.precision_at[k] for k in PRECISION_AT)]
            lines.append(f"{name:<{width}}" + "".join(f"{v:>10.3f}" for v in values))
        meta = self.meta
        lines.append(f"{meta.get('examples', 0)} labelled windows ({meta.get('intervals', 0)} held-out intervals x "
                     f"top-{meta.get('top_k', DEFAULT_TOP_K)} titles, {meta.get('logs', 0)} log(s), seeds "
                     f"{meta.get('seeds')}), {meta.get('positive_rate', 0):.1%} appear; model "
                     f"{meta.get('model_version', '?')}; {meta.get('seconds', 0):.0f} s")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"methods": {name: {k: round(v, 4) for k, v in m.as_dict().items()} for name, m in self.rows.items()},
                **self.meta, "table": self.table()}


def model_scores(predictor: PopularityPredictor, items: Sequence[LabelledWindow],
                 progress: Progress | None = None, done: int = 0) -> np.ndarray:
    """P(appear) of every window, one request per target interval (as an edge would ask)."""
    probability = np.zeros(len(items))
    rows = {id(item): row for row, item in enumerate(items)}
    for group in by_target(list(items)).values():
        history = {item.title: list(item.views) for item in group}
        answer = predictor.probabilities(history, group[0].first_interval)
        for item in group:
            probability[rows[id(item)]] = answer[item.title]
        done += len(group)
        if progress is not None:
            progress(done)
    return probability


@dataclass(frozen=True)
class HeldOutLog:
    """One seeded log's held-out tail: its test windows, and the windows before them a baseline fits on."""

    offset: int  # the log's seed is ``seed + offset``
    view_log: ViewLog
    intervals: int  # held-out intervals
    test: list[LabelledWindow]
    train: list[LabelledWindow]


def held_out_logs(seed: int = DEFAULT_SEED, logs: int = EVAL_LOGS, limit: int = 0) -> Iterator[HeldOutLog]:
    """The held-out tails of ``logs`` logs (seeds ``seed``, ``seed + 1``, ...); ``limit`` > 0 keeps the first
    ``limit`` held-out intervals of each log."""
    for offset in range(logs):
        view_log = generate(seed + offset, SynthConfig()).view_log()
        split = chronological_split(view_log.num_intervals, DEFAULT_LAGS)
        targets = split.test_targets if limit <= 0 else split.test_targets[:limit]
        yield HeldOutLog(offset, view_log, len(targets), list(windows(view_log, targets, DEFAULT_LAGS, DEFAULT_TOP_K)),
                         list(windows(view_log, split.train_targets, DEFAULT_LAGS, DEFAULT_TOP_K)))


def baseline_scores(log: HeldOutLog) -> dict[str, baselines.Scores]:
    """The classical methods' scores of ``log``'s test windows."""
    return {LOGISTIC: baselines.logistic_regression(log.train, log.test, log.view_log.intervals_per_day),
            SAME_TIME: baselines.same_time_of_day(log.view_log, log.test),
            PERSISTENCE: baselines.persistence(log.test),
            ALWAYS: baselines.always_appear(log.test)}


def evaluate(model_dir: Path | None = None, seed: int = DEFAULT_SEED, limit: int = 0,
             progress: Progress | None = None, logs: int = EVAL_LOGS) -> Report:
    """Model + baselines on the held-out tails of ``logs`` logs (seeds ``seed``, ``seed + 1``, ...);
    ``limit`` > 0 keeps the first ``limit`` held-out intervals of each log."""
    started = time.perf_counter()
    predictor = load_predictor(Path(model_dir) if model_dir is not None else packaged_model_dir())
    probabilities: dict[str, list[np.ndarray]] = {name: [] for name in (MODEL, LOGISTIC, SAME_TIME, PERSISTENCE,
                                                                         ALWAYS)}
    ranks: dict[str, list[np.ndarray]] = {name: [] for name in probabilities}
    everything: list[LabelledWindow] = []
    keys: list[tuple[int, int]] = []
    intervals = 0
    for log in held_out_logs(seed, logs, limit):
        model = model_scores(predictor, log.test, progress, len(everything))
        scored = {MODEL: baselines.Scores(model, model), **baseline_scores(log)}
        for name, s in scored.items():
            probabilities[name].append(s.probability)
            ranks[name].append(s.rank_score)
        everything.extend(log.test)
        keys.extend((log.offset, w.target) for w in log.test)  # precision@k is per interval of each log
        intervals += log.intervals
    rows = {name: score(everything, np.concatenate(probabilities[name]), np.concatenate(ranks[name]), keys=keys)
            for name in probabilities}
    meta = {"examples": len(everything), "intervals": intervals, "logs": logs,
            "seeds": [seed + i for i in range(logs)], "lags": DEFAULT_LAGS, "top_k": DEFAULT_TOP_K,
            "positive_rate": float(np.mean([w.label for w in everything])), "model_version": predictor.version,
            "model_dir": str(model_dir) if model_dir is not None else "packaged",
            "precision_at_k": "share of the k titles ranked highest in an interval that appear in it, "
                              "averaged over intervals",
            "seconds": round(time.perf_counter() - started, 1)}
    return Report(rows, meta)
