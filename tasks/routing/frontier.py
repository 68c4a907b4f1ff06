"""The quality/cost frontier of routing (pure): for each way of choosing, per request, edge or cloud, the share of
requests ended at the edge, the answer quality (share of answers correct by the answer key) and what the
cloud was asked for (calls, bytes the edge sent it).

A request routed to the edge is scored by the edge's collected answer, one routed to the cloud by the
cloud's (the NetGPT edge+cloud route: the edge's comprehensive prompt answered by the cloud). Baselines:
always-edge; always-cloud (also today's default rules for a chat request); today's rules with the
log-probability threshold (swept); a random router at the learned router's edge share (its expected
quality: share x edge quality + the rest x cloud quality); the oracle (edge whenever its answer is right).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from edge_node.serving.learned_router import LearnedRouter
from tasks.routing.collect import Record

TARGET = 0.95  # of always-cloud quality: the goal, on held-out questions
# The threshold is chosen on the training split for *no* quality loss against always-cloud there, leaving the
# goal's 5 % for the shift to unseen phrasings: the training split's phrasings are closer to what the edge
# model was trained on, so the edge looks better there (edge/cloud 86.0/90.4 % vs 87.3/94.4 % on held-out with
# the pretrained cloud), and a 95 % target on it sends every request to the edge.
TRAIN_TARGET = 1.0
GOAL_EDGE_SHARE = 0.60
GRID = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)  # router thresholds the table shows (the JSON has every point)


@dataclass(frozen=True)
class Point:
    router: str
    threshold: float | None
    n: int
    edge_share: float
    quality: float
    cloud_calls: int
    cloud_bytes: int


def routed(records: Sequence[Record], at_edge: Sequence[bool], router: str, threshold: float | None = None) -> Point:
    """The figures of answering ``records`` at the edge where ``at_edge`` says so, else in the cloud."""
    n = len(records)
    if n == 0 or len(at_edge) != n:
        raise ValueError(f"{router}: {len(at_edge)} decisions for {n} records")
    right = sum(r.edge.ok if edge else r.cloud.ok for r, edge in zip(records, at_edge, strict=True))
    forwarded = [r for r, edge in zip(records, at_edge, strict=True) if not edge]
    return Point(router, threshold, n, sum(at_edge) / n, right / n, len(forwarded),
                 sum(r.cloud.bytes_edge_to_cloud for r in forwarded))


def sweep(records: Sequence[Record], scores: Sequence[float], router: str) -> list[Point]:
    """Edge when score >= threshold, for every threshold that changes the decisions (highest first), plus one
    above every score (always cloud)."""
    thresholds = [float("inf"), *sorted(set(scores), reverse=True)]
    return [routed(records, [s >= t for s in scores], router, t) for t in thresholds]


def best_at(points: Sequence[Point], quality: float) -> Point:
    """The point with the most requests at the edge among those at least ``quality`` (the last point, always
    cloud, when none is)."""
    eligible = [p for p in points if p.quality >= quality - 1e-12]
    return max(eligible, key=lambda p: (p.edge_share, p.quality)) if eligible else points[0]


def random_router(records: Sequence[Record], edge_share: float) -> Point:
    """A router sending ``edge_share`` of requests, picked at random, to the edge: its expected figures."""
    n = len(records)
    edge_q = sum(r.edge.ok for r in records) / n
    cloud_q = sum(r.cloud.ok for r in records) / n
    forwarded = round((1 - edge_share) * n)
    mean_bytes = sum(r.cloud.bytes_edge_to_cloud for r in records) / n
    return Point("random (same edge share)", None, n, edge_share, edge_share * edge_q + (1 - edge_share) * cloud_q,
                 forwarded, round(forwarded * mean_bytes))


def confidence(record: Record) -> float:
    """Today's rules' confidence: the probe's mean token log-probability."""
    return record.features["probe_mean_logprob"]


@dataclass
class Frontier:
    """The held-out frontier of a router whose threshold was chosen on the training split."""

    router: LearnedRouter
    label: str
    chosen_threshold: float
    baselines: list[Point]
    learned: list[Point]  # every threshold, on held-out
    rules_confidence: list[Point]  # today's log-probability threshold, every threshold, on held-out
    chosen: Point  # the learned router at the threshold chosen on the training split
    rules_chosen: Point  # the log-probability threshold chosen on the training split the same way
    best_held_out: Point  # the most edge share at >= TARGET quality on held-out (threshold chosen on held-out)
    goal: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        cloud = self.baselines[1]
        header = ("router", "threshold", "n", "ended at edge", "quality", "vs always-cloud", "cloud calls",
                  "cloud KB")
        rules_best = replace(best_at(self.rules_confidence, TARGET * cloud.quality),
                             router="rules: log-prob (best on held-out)")
        rows = [*self.baselines[:2], self.rules_chosen, rules_best, *[self._at(t) for t in GRID],
                self.chosen, self.baselines[2], self.best_held_out, self.baselines[3]]
        lines = [_cells(header)]
        for p in rows:
            threshold = "" if p.threshold is None else ("inf" if p.threshold == float("inf") else f"{p.threshold:.3f}")
            lines.append(_cells((p.router, threshold, str(p.n), f"{p.edge_share:.1%}", f"{p.quality:.1%}",
                                 f"{p.quality / cloud.quality:.1%}" if cloud.quality else "n/a", str(p.cloud_calls),
                                 f"{p.cloud_bytes / 1000:.1f}")))
        met = "MET" if self.goal["met"] else "NOT MET"
        lines.append(f"goal: >= {GOAL_EDGE_SHARE:.0%} of requests at the edge at >= {TARGET:.0%} of always-cloud "
                     f"quality ({TARGET * cloud.quality:.1%}), threshold chosen on the training split: {met} "
                     f"({self.chosen.edge_share:.1%} at the edge, {self.chosen.quality:.1%}); with the threshold "
                     f"chosen on held-out itself: {self.best_held_out.edge_share:.1%} at the edge")
        return "\n".join(lines)

    def _at(self, threshold: float) -> Point:
        """The learned router at the lowest swept threshold >= ``threshold`` (its decisions at ``threshold``)."""
        at = min((p for p in self.learned if p.threshold is not None and p.threshold >= threshold),
                 key=lambda p: p.threshold if p.threshold is not None else 0.0, default=self.learned[0])
        return replace(at, threshold=threshold)

    def to_json(self) -> dict[str, Any]:
        def points(items: Sequence[Point]) -> list[dict[str, Any]]:
            return [asdict(p) | {"threshold": _finite(p.threshold)} for p in items]

        return {"label": self.label, "router": self.router.to_json(), "chosen_threshold": self.chosen_threshold,
                "target": TARGET, "goal": self.goal, "baselines": points(self.baselines),
                "chosen": points([self.chosen])[0], "rules_chosen": points([self.rules_chosen])[0],
                "best_held_out": points([self.best_held_out])[0], "learned": points(self.learned),
                "rules_confidence": points(self.rules_confidence)}


def _finite(value: float | None) -> float | str | None:
    return "inf" if value == float("inf") else value


def _cells(values: Sequence[str]) -> str:
    widths = (34, 9, 4, 13, 8, 15, 11, 8)
    return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True)))


def chosen_threshold(records: Sequence[Record], scores: Sequence[float], router: str) -> tuple[float, Point]:
    """The threshold putting the most of ``records`` at the edge at >= TRAIN_TARGET of their always-cloud
    quality."""
    points = sweep(records, scores, router)
    point = best_at(points, TRAIN_TARGET * points[0].quality)
    return point.threshold if point.threshold is not None else float("inf"), point


def frontier(train: Sequence[Record], held_out: Sequence[Record], router: LearnedRouter, label: str) -> Frontier:
    """The router's and the baselines' figures on ``held_out``, thresholds chosen on ``train``."""
    def p_good(records: Sequence[Record]) -> list[float]:
        return [router.p_good(r.features) for r in records]

    threshold, _ = chosen_threshold(train, p_good(train), "learned router")
    rules_threshold, _ = chosen_threshold(train, [confidence(r) for r in train], "rules: log-prob threshold")
    scores = p_good(held_out)
    learned = sweep(held_out, scores, "learned router")
    rules = sweep(held_out, [confidence(r) for r in held_out], "rules: log-prob threshold")
    always_cloud = routed(held_out, [False] * len(held_out), "always cloud (= today's rules, chat)")
    chosen = routed(held_out, [s >= threshold for s in scores], "learned router (chosen on train)", threshold)
    rules_chosen = routed(held_out, [confidence(r) >= rules_threshold for r in held_out],
                          "rules: log-prob threshold (on train)", rules_threshold)
    best = best_at(learned, TARGET * always_cloud.quality)
    baselines = [routed(held_out, [True] * len(held_out), "always edge"), always_cloud,
                 random_router(held_out, chosen.edge_share),
                 routed(held_out, [r.edge.ok for r in held_out], "oracle (edge when it is right)")]
    goal = {"edge_share": chosen.edge_share, "quality": chosen.quality,
            "quality_vs_always_cloud": chosen.quality / always_cloud.quality if always_cloud.quality else None,
            "met": chosen.edge_share >= GOAL_EDGE_SHARE and chosen.quality >= TARGET * always_cloud.quality,
            "met_with_threshold_chosen_on_held_out": best.edge_share >= GOAL_EDGE_SHARE
            and best.quality >= TARGET * always_cloud.quality}
    return Frontier(router, label, threshold, baselines, learned, rules, chosen, rules_chosen,
                    replace(best, router="learned router (best on held-out)"), goal)
