"""Scores of predicted intents against the true ones: exact match and per-field F1.

A stated field is one (field, value) item. A predicted item that equals the true one is a true
positive; a predicted item that is wrong counts as a false positive and (if the field was stated)
a false negative; a stated field not predicted is a false negative. Micro-F1 pools every field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from edge_node.netmgmt.intent_line import Intent

FIELDS = tuple(f.name for f in fields(Intent))
SHORT = {"action": "act", "source": "src", "destination": "dst", "bandwidth_mbps": "bw", "latency_ms": "lat",
         "protection": "prot", "slice": "slice", "five_qi": "5qi", "time_window": "time"}


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def f1(self) -> float | None:
        """None when the field never occurs (neither stated nor predicted)."""
        total = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / total if total else None


@dataclass
class Score:
    n: int = 0
    exact: int = 0
    per_field: dict[str, Counts] = field(default_factory=lambda: {name: Counts() for name in FIELDS})

    def add(self, predicted: Intent, truth: Intent) -> None:
        self.n += 1
        self.exact += predicted == truth
        default = Intent()
        for name in FIELDS:
            said, true = getattr(predicted, name), getattr(truth, name)
            counts = self.per_field[name]
            stated, predicted_any = true != getattr(default, name), said != getattr(default, name)
            if predicted_any and said == true:
                counts.tp += 1
                continue
            counts.fp += predicted_any
            counts.fn += stated

    def exact_rate(self) -> float:
        return self.exact / self.n if self.n else 0.0

    def micro_f1(self) -> float:
        pooled = Counts(*(sum(getattr(c, k) for c in self.per_field.values()) for k in ("tp", "fp", "fn")))
        return pooled.f1() or 0.0

    def field_f1(self) -> dict[str, float | None]:
        return {name: counts.f1() for name, counts in self.per_field.items()}


def score(predicted: Sequence[Intent], truth: Sequence[Intent]) -> Score:
    result = Score()
    for p, t in zip(predicted, truth, strict=True):
        result.add(p, t)
    return result
