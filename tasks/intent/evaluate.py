"""``netgpt eval intent``: the intent model (through ONNX Runtime, as the edge serves it) against the
regex baseline, on requests the model never saw.

Two test sets, both generated with a seed other than training's:

- ``held-out``: held-out templates only, and each word slot a held-out word with probability ½
  (new verbs, nouns, unit spellings, endpoint kinds, cities, route and field phrasings);
- ``seen phrasings``: new requests from the training templates and words (rows whose text occurs in
  the training set are dropped).

and, for the pretrained reader (``evaluate_pretrained``, ``netgpt eval intent --model pretrained``):

- ``ambiguous``: truly ambiguous requests (:mod:`tasks.intent.ambiguous`, held-out phrasings): vague
  goals, a missing endpoint, a figure without a unit; each should get a clarification.

Rows: the model's keyword line with plain greedy decoding (the GPT-2 only); with copy-constrained
greedy decoding (endpoint names and figures must come from the request: what ``InferIntent`` runs);
the latter's reading with low-confidence fields dropped (what ``InferIntent`` returns as the intent);
the regex baseline. Metrics: exact match of the whole intent, micro-F1 over every stated field, F1
per field, how often the reading asks the operator for clarification (``asks``: all requests of the
split) and how often it asks about a request that states every required field (``asks-clear``:
the unambiguous ones; the issue's bound is 15 %). Greedy decoding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edge_node.netmgmt.intent_clarify import Reading
from edge_node.netmgmt.intent_line import Intent, parse_line, parse_target, required_fields
from edge_node.netmgmt.intent_line import to_target as line_of
from edge_node.netmgmt.intent_reader import (
    MAX_NEW_TOKENS,
    IntentReader,
    load_pretrained_reader,
    load_reader,
    packaged_adapter_dir,
    packaged_model_dir,
)
from edge_node.netmgmt.intent_request import prompt_text, validate_text
from tasks.intent.ambiguous import generate_ambiguous
from tasks.intent.baseline import extract
from tasks.intent.dataset import SEED as TRAIN_SEED
from tasks.intent.dataset import TRAIN_EXAMPLES
from tasks.intent.generator import Request, generate
from tasks.intent.scoring import FIELDS, SHORT, Score, score

EVAL_SEED = 7
HELDOUT_N, SEEN_N, AMBIGUOUS_N = 400, 200, 120
HELDOUT, SEEN, AMBIGUOUS = "held-out", "seen phrasings", "ambiguous"
PLAIN, MODEL, MODEL_CONFIDENT = "GPT-2, plain greedy", "GPT-2, copy-constrained", "GPT-2, confident only"
PT_MODEL, PT_CONFIDENT = "SmolLM2+LoRA, copy-constr.", "SmolLM2+LoRA, confident"
REGEX = "regex rules"
ORDER = [PLAIN, MODEL, MODEL_CONFIDENT, PT_MODEL, PT_CONFIDENT, REGEX]
SPLITS = [HELDOUT, SEEN, AMBIGUOUS]
DECODE_THREADS = 8  # requests decoded at once (ONNX Runtime batches their steps)
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
    asks_clear: float | None = None  # share of the requests stating every required field that got a question


@dataclass
class Report:
    model: str
    rows: list[Row] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    def table(self) -> str:
        header = ["method", "split", "n", "exact", "micro-F1", *(SHORT[name] for name in FIELDS), "asks", "asks-clear"]
        widths = [26, 15, 4, 6, 8, *([5] * len(FIELDS)), 5, 10]
        lines = [_cells(header, widths)]
        for row in self.rows:
            f1s = [("-" if v is None else f"{v:.2f}") for v in row.field_f1.values()]
            lines.append(_cells([row.method, row.split, str(row.n), f"{row.exact:.1%}", f"{row.micro_f1:.3f}",
                                 *f1s, "-" if row.asks is None else f"{row.asks:.0%}",
                                 "-" if row.asks_clear is None else f"{row.asks_clear:.0%}"], widths))
        return "\n".join(lines)

    def summary(self) -> dict[str, dict[str, float]]:
        """Exact match and micro-F1 per method and split (what recipe.json records)."""
        return {f"{row.method} / {row.split}": {"exact": round(row.exact, 4), "micro_f1": round(row.micro_f1, 4),
                                                  **({"asks": round(row.asks, 4)} if row.asks is not None else {}),
                                                  **({"asks_clear": round(row.asks_clear, 4)}
                                                     if row.asks_clear is not None else {})}
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


def ambiguous_set(seed: int = EVAL_SEED, n: int = AMBIGUOUS_N) -> list[Request]:
    """The labelled ambiguous requests (held-out phrasings) as requests; their truth drops the ``?`` values."""
    return [Request(a.text, parse_line(a.target).intent) for a in generate_ambiguous(n, seed, heldout=True)]


def baseline_asks(intent: Intent) -> bool:
    return any(not getattr(intent, name) for name in (required_fields(intent) if intent.action else ("action",)))


def complete(intent: Intent) -> bool:
    """The request states every required field (no clarification is due)."""
    return bool(intent.action) and all(getattr(intent, name) for name in required_fields(intent))


def _row(method: str, split: str, result: Score, asks: Sequence[bool], clear: Sequence[bool] = ()) -> Row:
    asked_clear = [a for a, c in zip(asks, clear, strict=True) if c] if asks and clear else []
    return Row(method, split, result.n, result.exact_rate(), result.micro_f1(), result.field_f1(),
               sum(asks) / len(asks) if asks else None,
               sum(asked_clear) / len(asked_clear) if asked_clear and split != AMBIGUOUS else None)


@dataclass(frozen=True)
class Decoded:
    """One request's constrained greedy line with its per-token probabilities: re-read at any threshold."""

    text: str
    normalised: str
    line: str
    probs: list[tuple[int, int, float]]
    reading: Reading | None  # set when the text could not be decoded at all (too long)


def decode_all(reader: IntentReader, texts: Sequence[str], threads: int = DECODE_THREADS,
               progress: Progress | None = None) -> list[Decoded]:
    """Every text decoded once (concurrently: ONNX Runtime batches the steps of a ``max_batch`` model)."""
    def one(text: str) -> Decoded:
        normalised = validate_text(text)
        prompt = reader.model.tokenizer.encode(prompt_text(normalised, reader.plain), add_special_tokens=False)
        budget = min(MAX_NEW_TOKENS, reader.model.max_context - len(prompt))
        if budget < MAX_NEW_TOKENS:
            return Decoded(text, normalised, "", [], reader.read(text))
        line, probs = reader.decode(prompt, budget, normalised)
        if progress:
            progress(1)
        return Decoded(text, normalised, line, probs, None)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        return list(pool.map(one, texts))


def reread(reader: IntentReader, decoded: Decoded) -> Reading:
    return decoded.reading or reader.interpret(decoded.line, decoded.probs, decoded.normalised)


def evaluate_decoded(reader: IntentReader, sets: dict[str, list[Request]], decoded: dict[str, list[Decoded]],
                     report: Report) -> Report:
    """The pretrained reader's rows (copy-constrained, confident only) and the regex's, from decoded lines."""
    for split, requests in sets.items():
        truth = [r.intent for r in requests]
        clear = [complete(t) for t in truth]
        raw, confident, regex, asked = [], [], [], []
        for request, one in zip(requests, decoded[split], strict=True):
            reading = reread(reader, one)
            raw.append(parse_target(reading.keyword_line))
            confident.append(reading.intent)
            asked.append(reading.needs_clarification)
            regex.append(extract(request.text))
            report.outcomes.append(Outcome(split, request.text, request.target, "", reading.keyword_line,
                                           line_of(reading.intent), line_of(regex[-1]), asked[-1]))
        regex_asks = [baseline_asks(i) for i in regex]
        report.rows += [_row(PT_MODEL, split, score(raw, truth), asked, clear),
                        _row(PT_CONFIDENT, split, score(confident, truth), asked, clear),
                        _row(REGEX, split, score(regex, truth), regex_asks, clear)]
    report.rows.sort(key=lambda row: (SPLITS.index(row.split), ORDER.index(row.method)))
    return report


def evaluate_reader(reader: IntentReader, sets: dict[str, list[Request]], progress: Progress | None = None,
                    model_name: str = "") -> Report:
    report = Report(model_name or reader.version)
    plain_reader = IntentReader(reader.model, reader.min_confidence, copy_constraint=False)
    for split, requests in sets.items():
        truth = [r.intent for r in requests]
        clear = [complete(t) for t in truth]
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
                        _row(MODEL, split, score(raw, truth), asked, clear),
                        _row(MODEL_CONFIDENT, split, score(confident, truth), asked, clear),
                        _row(REGEX, split, score(regex, truth), [baseline_asks(i) for i in regex], clear)]
    report.rows.sort(key=lambda row: (SPLITS.index(row.split), ORDER.index(row.method)))
    return report


def evaluate(model_dir: Path | None = None, seed: int = EVAL_SEED, limit: int = 0,
             progress: Progress | None = None) -> Report:
    """The committed GPT-2 (or ``model_dir``) and the regex baseline on the three test sets."""
    folder = model_dir or packaged_model_dir()
    reader = load_reader(folder)
    ambiguous = ambiguous_set(seed)
    sets = {**evaluation_sets(seed, limit), AMBIGUOUS: ambiguous[:limit] if limit else ambiguous}
    return evaluate_reader(reader, sets, progress, f"{folder.name} {reader.version}")


def evaluate_pretrained(adapter: Path | None = None, seed: int = EVAL_SEED, limit: int = 0,
                        progress: Progress | None = None, min_confidence: float | None = None,
                        splits: Sequence[str] = (HELDOUT, SEEN, AMBIGUOUS)) -> Report:
    """The pretrained reader (the shipped adapter, or ``adapter``, merged into SmolLM2 and served by
    ONNX Runtime as the edge serves it) and the regex baseline on the held-out, seen-phrasing and
    ambiguous sets (``limit`` > 0: at most that many requests each). No plain-greedy row: each request
    is decoded once, copy-constrained (what the edge runs)."""
    folder = adapter or packaged_adapter_dir()
    reader = load_pretrained_reader(folder, max_batch=DECODE_THREADS)
    if min_confidence is not None:
        reader.min_confidence = min_confidence
    sets = {**evaluation_sets(seed, limit), AMBIGUOUS: ambiguous_set(seed)[:limit] if limit else ambiguous_set(seed)}
    sets = {name: sets[name] for name in splits}
    decoded = {name: decode_all(reader, [r.text for r in requests], progress=progress)
               for name, requests in sets.items()}
    return evaluate_decoded(reader, sets, decoded, Report(f"SmolLM2-135M-Instruct + {folder.name} {reader.version}"))
