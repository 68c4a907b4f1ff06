"""``netgpt eval intent``: the intent model (through ONNX Runtime, as the edge serves it) against the
regex baseline, on requests the model never saw.

Two test sets, both generated with a seed other than training's:

- ``held-out``: held-out templates only, and each word slot a held-out word with probability ½
  (new verbs, nouns, unit spellings, endpoint kinds, cities, route and field phrasings);
- ``seen phrasings``: new requests from the training templates and words (rows whose text occurs in
  the training set are dropped).

Rows: the model's keyword line with plain greedy decoding; with copy-constrained greedy decoding
(endpoint names and figures must come from the request: what ``InferIntent`` runs); the latter's
reading with low-confidence fields dropped (what ``InferIntent`` returns as the intent); the regex
baseline. Metrics: exact match of the whole
intent, micro-F1 over every stated field, F1 per field, and how often the reading asks the operator
for clarification. Greedy decoding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edge_node.netmgmt.intent_line import Intent, parse_target, required_fields
from edge_node.netmgmt.intent_line import to_target as line_of
from edge_node.netmgmt.intent_reader import IntentReader, load_reader, packaged_model_dir
from tasks.intent.baseline import extract
from tasks.intent.dataset import SEED as TRAIN_SEED
from tasks.intent.dataset import TRAIN_EXAMPLES
from tasks.intent.generator import Request, generate
from tasks.intent.scoring import FIELDS, SHORT, Score, score

EVAL_SEED = 7
HELDOUT_N, SEEN_N = 400, 200
HELDOUT, SEEN = "held-out", "seen phrasings"
PLAIN, MODEL, MODEL_CONFIDENT = "GPT-2, plain greedy", "GPT-2, copy-constrained", "GPT-2, confident only"
REGEX = "regex rules"
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Outcome:
    split: str
    text: str
    truth: str
    plain_line: str
    model_line: str
    model_reading: str
    regex: str
    asked: bool  # the reading asked for clarification


@dataclass(frozen=True)
class Row:
    method: str
    split: str
    n: int
    exact: float
    micro_f1: float
    field_f1: dict[str, float | None]
    asks: float | None  # None: not measured for this row


@dataclass
class Report:
    model: str
    rows: list[Row] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    def table(self) -> str:
        header = ["method", "split", "n", "exact", "micro-F1", *(SHORT[name] for name in FIELDS), "asks"]
        widths = [24, 15, 4, 6, 8, *([5] * len(FIELDS)), 5]
        lines = [_cells(header, widths)]
        for row in self.rows:
            f1s = [("-" if v is None else f"{v:.2f}") for v in row.field_f1.values()]
            lines.append(_cells([row.method, row.split, str(row.n), f"{row.exact:.1%}", f"{row.micro_f1:.3f}",
                                 *f1s, "-" if row.asks is None else f"{row.asks:.0%}"], widths))
        return "\n".join(lines)

    def summary(self) -> dict[str, dict[str, float]]:
        """Exact match and micro-F1 per method and split (what recipe.json records)."""
        return {f"{row.method} / {row.split}": {"exact": round(row.exact, 4), "micro_f1": round(row.micro_f1, 4)}
                for row in self.rows}

    def to_json(self) -> dict[str, object]:
        return {"model": self.model, "decoding": "greedy", "rows": [asdict(r) for r in self.rows],
                "outcomes": [asdict(o) for o in self.outcomes]}


def _cells(values: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True)))


def evaluation_sets(seed: int = EVAL_SEED, limit: int = 0) -> dict[str, list[Request]]:
    """The two test sets (``limit`` > 0: at most that many requests each)."""
    trained = {r.text for r in generate(TRAIN_EXAMPLES, TRAIN_SEED)}
    seen = [r for r in generate(SEEN_N * 2, seed) if r.text not in trained][:SEEN_N]
    sets = {HELDOUT: generate(HELDOUT_N, seed, heldout=True), SEEN: seen}
    return {name: requests[:limit] if limit else requests for name, requests in sets.items()}


def baseline_asks(intent: Intent) -> bool:
    return any(not getattr(intent, name) for name in (required_fields(intent) if intent.action else ("action",)))


def _row(method: str, split: str, result: Score, asks: Sequence[bool]) -> Row:
    return Row(method, split, result.n, result.exact_rate(), result.micro_f1(), result.field_f1(),
               sum(asks) / len(asks) if asks else None)


def evaluate_reader(reader: IntentReader, sets: dict[str, list[Request]], progress: Progress | None = None,
                    model_name: str = "") -> Report:
    report = Report(model_name or reader.version)
    plain_reader = IntentReader(reader.model, reader.min_confidence, copy_constraint=False)
    for split, requests in sets.items():
        truth = [r.intent for r in requests]
        plain, raw, confident, regex, asked = [], [], [], [], []
        for request in requests:
            plain_line = plain_reader.read(request.text).keyword_line
            plain.append(parse_target(plain_line))
            reading = reader.read(request.text)
            raw.append(parse_target(reading.keyword_line))
            confident.append(reading.intent)
            asked.append(reading.needs_clarification)
            regex.append(extract(request.text))
            report.outcomes.append(Outcome(split, request.text, request.target, plain_line, reading.keyword_line,
                                           line_of(reading.intent), line_of(regex[-1]), asked[-1]))
            if progress:
                progress(1)
        report.rows += [_row(PLAIN, split, score(plain, truth), []),
                        _row(MODEL, split, score(raw, truth), asked),
                        _row(MODEL_CONFIDENT, split, score(confident, truth), asked),
                        _row(REGEX, split, score(regex, truth), [baseline_asks(i) for i in regex])]
    order = [PLAIN, MODEL, MODEL_CONFIDENT, REGEX]
    report.rows.sort(key=lambda row: (row.split != HELDOUT, order.index(row.method)))
    return report


def evaluate(model_dir: Path | None = None, seed: int = EVAL_SEED, limit: int = 0,
             progress: Progress | None = None) -> Report:
    """The committed model (or ``model_dir``) and the regex baseline on both test sets."""
    folder = model_dir or packaged_model_dir()
    reader = load_reader(folder)
    return evaluate_reader(reader, evaluation_sets(seed, limit), progress, f"{folder.name} {reader.version}")
