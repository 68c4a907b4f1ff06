"""Scores of the appear label: accuracy, precision, recall, F1 (positive class: appears), and
precision@k per interval.

precision@k: in each test interval, the ``k`` labelled titles a method ranks highest (its ranking
score, ties in the window's order) — the ones an edge would prefetch — and the share of them that
do appear in that interval; averaged over the test intervals.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from tasks.popularity.intervals import LabelledWindow

PRECISION_AT = (5, 10)


@dataclass(frozen=True)
class Metrics:
    accuracy: float
    precision: float
    recall: float
    f1: float
    precision_at: dict[int, float]

    def as_dict(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "precision": self.precision, "recall": self.recall, "f1": self.f1,
                **{f"p@{k}": v for k, v in self.precision_at.items()}}


def classification(labels: np.ndarray, predicted: np.ndarray) -> tuple[float, float, float, float]:
    labels, predicted = labels.astype(bool), predicted.astype(bool)
    tp = float((labels & predicted).sum())
    precision = tp / predicted.sum() if predicted.sum() else 0.0
    recall = tp / labels.sum() if labels.sum() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return float((labels == predicted).mean()), precision, recall, f1


def precision_at_k(items: Sequence[LabelledWindow], rank_score: np.ndarray, k: int,
                   keys: Sequence[Hashable] | None = None) -> float:
    """``keys``: the interval of each window (default its target; give (log, target) across logs)."""
    groups: dict[Hashable, list[int]] = {}
    for row, item in enumerate(items):
        groups.setdefault(keys[row] if keys is not None else item.target, []).append(row)
    shares = []
    for rows in groups.values():
        order = sorted(rows, key=lambda r: -rank_score[r])  # stable: the window's order breaks ties
        top = order[:k]
        shares.append(sum(items[r].label for r in top) / len(top))
    return float(np.mean(shares)) if shares else 0.0


def score(items: Sequence[LabelledWindow], probability: np.ndarray, rank_score: np.ndarray,
          ks: Sequence[int] = PRECISION_AT, keys: Sequence[Hashable] | None = None) -> Metrics:
    labels = np.asarray([item.label for item in items])
    accuracy, precision, recall, f1 = classification(labels, probability >= 0.5)
    return Metrics(accuracy, precision, recall, f1, {k: precision_at_k(items, rank_score, k, keys) for k in ks})
