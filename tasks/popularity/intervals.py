"""Labelled windows of a view log and the chronological train/test split.

A labelled window is the research's unit: one of the ``top_k`` titles of the ``lags`` intervals
before a target interval, its views in those intervals, and whether it appears (≥ 1 view) in the
target. The split is by target interval, oldest first: the first ``train_fraction`` of the log's
intervals give training targets, the rest test targets (the research: 95 % / 5 %). A test
window's history may reach back into the training period, as it would when serving.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from edge_node.netmgmt.popularity import DEFAULT_LAGS, DEFAULT_TOP_K, ViewLog
from netgpt.errors import InvalidArgument

DEFAULT_TRAIN_FRACTION = 0.95
TRAIN_TOP_K = 20  # titles per training target: as served, so the appear rate (and the 0.5 threshold) match


@dataclass(frozen=True)
class LabelledWindow:
    title: str
    first_interval: int
    views: tuple[int, ...]  # the ``lags`` intervals before ``target``, oldest first
    target: int
    target_views: int

    @property
    def label(self) -> bool:
        return self.target_views > 0


@dataclass(frozen=True)
class Split:
    """Target intervals ``[first_train, split_at)`` train, ``[split_at, end)`` test."""

    first_train: int
    split_at: int
    end: int

    @property
    def train_targets(self) -> range:
        return range(self.first_train, self.split_at)

    @property
    def test_targets(self) -> range:
        return range(self.split_at, self.end)


def chronological_split(num_intervals: int, lags: int = DEFAULT_LAGS,
                        train_fraction: float = DEFAULT_TRAIN_FRACTION) -> Split:
    """Full windows only (targets from ``lags``); at least one train and one test interval."""
    if not 0 < train_fraction < 1:
        raise InvalidArgument(f"train_fraction must be in (0, 1), not {train_fraction}")
    if num_intervals < lags + 2:
        raise InvalidArgument(f"the log has {num_intervals} intervals; a split needs at least {lags + 2} "
                              f"({lags} of history, one to train on, one to test)")
    split_at = min(num_intervals - 1, max(lags + 1, math.ceil(num_intervals * train_fraction)))
    return Split(lags, split_at, num_intervals)


def windows(log: ViewLog, targets: range, lags: int = DEFAULT_LAGS,
            top_k: int = DEFAULT_TOP_K) -> Iterator[LabelledWindow]:
    """The labelled windows of each target interval (its ``top_k`` titles, in the window's order)."""
    for target in targets:
        first, history = log.window(target, lags, top_k)
        for title, views in history.items():
            yield LabelledWindow(title, first, tuple(views), target, int(log.views(title)[target]))


def training_windows(log: ViewLog, targets: range, lags: int = DEFAULT_LAGS,
                     top_k: int = TRAIN_TOP_K) -> Iterator[LabelledWindow]:
    """Windows for teacher-forced training: the ``top_k`` titles of the ``lags`` intervals BEFORE the
    window (targets from ``2 * lags``), not of the window itself.

    With the history in the completion every interval of the window is a training target; choosing
    titles by their views inside the window would make the earlier intervals look likelier to have
    views than they are (selected on what follows them), and the model would learn to over-predict
    "appear". Choosing by what precedes the window keeps every position's label unbiased.
    """
    for target in targets:
        first = target - lags
        if first < lags:
            continue
        _, before = log.window(first, lags, top_k)
        for title in before:
            views = tuple(int(v) for v in log.views(title)[first:target])
            yield LabelledWindow(title, first, views, target, int(log.views(title)[target]))


def by_target(items: list[LabelledWindow]) -> dict[int, list[LabelledWindow]]:
    groups: dict[int, list[LabelledWindow]] = {}
    for item in items:
        groups.setdefault(item.target, []).append(item)
    return groups
