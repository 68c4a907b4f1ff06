"""Classical baselines for the appear label, written as a competent engineer would.

Each method scores a labelled window with P(appear) in [0, 1] (predicted appear: >= 0.5) and a
ranking score for precision@k (higher first):

- **last-interval persistence**: appears iff it appeared in the interval before; ranked by that
  interval's views;
- **same-time-of-day frequency**: the share of the last ``days`` days in which the title appeared
  in the same interval of the day (from the whole log before the target, not only the window);
  ranked by that share, then by mean views at that time of day;
- **logistic regression on lag features**: appear flag and log1p(views) of each of the window's
  intervals, the target's time of day one-hot, the window's mean log1p(views); L2-regularised,
  fitted by Newton's method (IRLS) on the training windows, features standardised;
- **always appear**: the majority class, for scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_node.netmgmt.popularity import ViewLog
from tasks.popularity.intervals import LabelledWindow

SAME_TIME_DAYS = 7


@dataclass(frozen=True)
class Scores:
    probability: np.ndarray  # P(appear) per window
    rank_score: np.ndarray  # higher = ranked first within a target interval


def persistence(items: Sequence[LabelledWindow]) -> Scores:
    last = np.asarray([item.views[-1] for item in items], dtype=np.float64)
    return Scores((last > 0).astype(np.float64), last)


def always_appear(items: Sequence[LabelledWindow]) -> Scores:
    ones = np.ones(len(items))
    return Scores(ones, np.asarray([sum(item.views) for item in items], dtype=np.float64))


def same_time_of_day(log: ViewLog, items: Sequence[LabelledWindow], days: int = SAME_TIME_DAYS) -> Scores:
    """Needs intervals that divide a day (``log.intervals_per_day``); else falls back to persistence."""
    per_day = log.intervals_per_day
    if per_day == 0:
        return persistence(items)
    probability, rank = np.zeros(len(items)), np.zeros(len(items))
    for row, item in enumerate(items):
        same = [item.target - per_day * d for d in range(1, days + 1) if item.target - per_day * d >= 0]
        views = log.views(item.title)[same] if same else np.zeros(1, dtype=np.int64)
        probability[row] = float((views > 0).mean())
        rank[row] = probability[row] + float(np.log1p(views).mean()) * 1e-3
    return Scores(probability, rank)


def lag_features(items: Sequence[LabelledWindow], intervals_per_day: int) -> np.ndarray:
    views = np.log1p(np.asarray([item.views for item in items], dtype=np.float64))
    appear = (views > 0).astype(np.float64)
    phase = np.zeros((len(items), max(intervals_per_day, 1)))
    if intervals_per_day:
        phase[np.arange(len(items)), [item.target % intervals_per_day for item in items]] = 1.0
    return np.hstack([appear, views, views.mean(axis=1, keepdims=True), phase])


class LogisticRegression:
    """Binary logistic regression with an L2 penalty (not on the bias), fitted by IRLS."""

    def __init__(self, l2: float = 1e-2, iterations: int = 25) -> None:
        self.l2 = l2
        self.iterations = iterations
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.weights: np.ndarray | None = None

    def _design(self, x: np.ndarray) -> np.ndarray:
        assert self.mean is not None and self.scale is not None
        return np.hstack([np.ones((x.shape[0], 1)), (x - self.mean) / self.scale])

    def fit(self, x: np.ndarray, y: np.ndarray) -> LogisticRegression:
        self.mean = x.mean(axis=0)
        self.scale = np.where(x.std(axis=0) > 1e-9, x.std(axis=0), 1.0)
        design = self._design(x)
        weights = np.zeros(design.shape[1])
        penalty = np.full(design.shape[1], self.l2 * len(y))
        penalty[0] = 0.0
        for _ in range(self.iterations):
            p = 1.0 / (1.0 + np.exp(-np.clip(design @ weights, -30, 30)))
            gradient = design.T @ (p - y) + penalty * weights
            hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty + 1e-9)
            step = np.linalg.solve(hessian, gradient)
            weights -= step
            if np.abs(step).max() < 1e-8:
                break
        self.weights = weights
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        assert self.weights is not None, "fit first"
        result: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(self._design(x) @ self.weights, -30, 30)))
        return result


def logistic_regression(train: Sequence[LabelledWindow], test: Sequence[LabelledWindow],
                        intervals_per_day: int) -> Scores:
    labels = np.asarray([item.label for item in train], dtype=np.float64)
    model = LogisticRegression().fit(lag_features(train, intervals_per_day), labels)
    probability = model.predict_proba(lag_features(test, intervals_per_day))
    return Scores(probability, probability)
