"""Content popularity prediction at the edge: will a title be watched in the next interval?

The research's format (NetGPT, after "In interval 1, movie 'Iron Man 2' appear :1"): a viewer
log is cut into numbered intervals (6 hours by default), one title's recent history is written
as one line per interval with special tokens, and the fine-tuned GPT-2 continues the question
line with the appear label. One title's prompt::

    <|movie|>Iron Man 2<|interval|>9<|morning|><|appear|>1<|views|>3 ... <|interval|>21<|morning|><|appear|>

and the completion is ``LABELS[True]`` ("1") or ``LABELS[False]`` ("0"). Per interval line:

- ``<|interval|>N`` the interval number; intervals are numbered from midnight UTC of the log's
  first day (:class:`ViewLog`), so with 6-hour intervals ``N % 4`` is the part of the day;
- a day-part token (``<|night|>`` 00-06, ``<|morning|>`` 06-12, ``<|afternoon|>`` 12-18,
  ``<|evening|>`` 18-24 UTC) for 6-hour intervals numbered that way;
- ``<|appear|>0|1`` the research's label: did the title get at least one view;
- ``<|views|>B`` the count as a log2 bucket digit, ``B = min(9, bit_length(views))``
  (0 → 0, 1 → 1, 2-3 → 2, 4-7 → 3, ..., ≥ 256 → 9).

P(appear) is the softmax over the two label tokens at the answer position: one prefill per
title, no generation loop. :class:`ViewLog` reads an edge's own log (``timestamp,title`` CSV).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from netgpt.engine import LanguageModel, ModelLoadError
from netgpt.errors import FailedPrecondition, InvalidArgument, excerpt

MOVIE, INTERVAL, APPEAR, VIEWS = "<|movie|>", "<|interval|>", "<|appear|>", "<|views|>"
DAY_PARTS = ("<|night|>", "<|morning|>", "<|afternoon|>", "<|evening|>")  # 00-06, 06-12, 12-18, 18-24 UTC
SPECIAL_TOKENS: tuple[str, ...] = (MOVIE, INTERVAL, APPEAR, VIEWS, *DAY_PARTS)
LABELS: dict[bool, str] = {True: "1", False: "0"}

DEFAULT_INTERVAL_S = 6 * 3600
DEFAULT_LAGS = 12  # intervals of history per prompt (3 days of 6-hour intervals): what the model was trained on
DEFAULT_TOP_K = 20  # titles labelled per interval, as in the research
MAX_TITLES = 256
MAX_TITLE_CHARS = 200
MAX_VIEWS = 2**31 - 1
MAX_INTERVAL = 2**32 - 1  # an interval index travels as a uint32 (PredictPopularityResponse.interval)
MAX_BUCKET = 9
DAY_S = 86400


def views_bucket(views: int) -> int:
    """The log2 bucket a count is written as: ``min(9, bit_length(views))``."""
    return min(MAX_BUCKET, int(views).bit_length())


def day_part(interval: int) -> str:
    """The day-part token of a 6-hour interval numbered from midnight UTC."""
    return DAY_PARTS[interval % len(DAY_PARTS)]


def render_header(title: str) -> str:
    return f"{MOVIE}{title}"


def render_interval(interval: int, views: int) -> str:
    """One history line: the interval, its day part, the appear label and the count bucket."""
    return f"{INTERVAL}{interval}{day_part(interval)}{APPEAR}{LABELS[views > 0]}{VIEWS}{views_bucket(views)}"


def render_question(interval: int) -> str:
    """The line the model completes with the appear label of ``interval``."""
    return f"{INTERVAL}{interval}{day_part(interval)}{APPEAR}"


def render_history(views: Sequence[int], first_interval: int) -> str:
    return "".join(render_interval(first_interval + i, int(v)) for i, v in enumerate(views))


def render_prompt(title: str, views: Sequence[int], first_interval: int) -> str:
    """One title's history (intervals ``first_interval ..``) ending with the question for the next interval."""
    return render_header(title) + render_history(views, first_interval) + render_question(first_interval + len(views))


def check_title(title: object) -> str:
    """The title if it is usable in a prompt, else InvalidArgument naming what is wrong."""
    if not isinstance(title, str):
        raise InvalidArgument(f"a title must be a string, not {type(title).__name__}")
    if not title.strip():
        raise InvalidArgument("a title is empty")
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidArgument(f"title {excerpt(title)} is longer than {MAX_TITLE_CHARS} characters")
    if any(not ch.isprintable() for ch in title):
        raise InvalidArgument(f"title {excerpt(title)} contains control characters")
    if "<|" in title or "|>" in title:
        raise InvalidArgument(f"title {excerpt(title)} contains '<|' or '|>', reserved for the prompt's tokens")
    return title


def check_history(history: Mapping[str, Sequence[int]], first_interval: int) -> int:
    """Validate a window of views per title; returns its length in intervals."""
    if first_interval < 0:
        raise InvalidArgument(f"first_interval must not be negative, not {first_interval}")
    if not history:
        raise InvalidArgument("the history names no titles")
    if len(history) > MAX_TITLES:
        raise InvalidArgument(f"the history names {len(history)} titles; at most {MAX_TITLES} per request")
    length = -1
    for title, views in history.items():
        check_title(title)
        if length < 0:
            length = len(views)
        elif len(views) != length:
            raise InvalidArgument(f"title {excerpt(title)} has {len(views)} intervals of views; the first title "
                                  f"has {length} (every title needs the same window)")
        for value in views:
            if not 0 <= int(value) <= MAX_VIEWS:
                raise InvalidArgument(f"title {excerpt(title)} has a view count of {value}; counts are "
                                      f"0..{MAX_VIEWS}")
    if length == 0:
        raise InvalidArgument("the history window is empty: send at least one interval of views per title")
    if first_interval + length > MAX_INTERVAL:
        raise InvalidArgument(f"first_interval {first_interval} + {length} intervals of views puts the predicted "
                              f"interval past {MAX_INTERVAL}, the last interval index")
    return length


def _softmax2(a: float, b: float) -> float:
    """P(first) of a two-way softmax, stable for large logits."""
    return 1.0 / (1.0 + math.exp(max(-60.0, min(60.0, b - a))))


class PopularityPredictor:
    """P(appear in the next interval) per title from a fine-tuned GPT-2 (any ``LanguageModel``)."""

    def __init__(self, model: LanguageModel) -> None:
        self.model = model
        self._yes = self._single_token(LABELS[True])
        self._no = self._single_token(LABELS[False])

    def _single_token(self, text: str) -> int:
        ids = self.model.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) != 1:
            raise ModelLoadError(f"model {self.model.identity.name}: the label {text!r} is not one token "
                                 "of its tokenizer; it is not a popularity model")
        return int(ids[0])

    @property
    def version(self) -> str:
        return self.model.identity.version

    def encode(self, title: str, views: Sequence[int], first_interval: int) -> list[int]:
        ids = self.model.tokenizer.encode(render_prompt(title, views, first_interval), add_special_tokens=False)
        if len(ids) > self.model.max_context:
            raise InvalidArgument(f"the prompt of title {excerpt(title)} is {len(ids)} tokens, more than the "
                                  f"model's context of {self.model.max_context}; send fewer intervals "
                                  f"(the model was trained on {DEFAULT_LAGS})")
        return list(ids)

    def probabilities(self, history: Mapping[str, Sequence[int]], first_interval: int,
                      shown: Mapping[str, str] | None = None) -> dict[str, float]:
        """P(appear) of each title in interval ``first_interval + window length``; ``shown``: the text the
        model reads for a title (its desensitised form), the title itself where it names none."""
        check_history(history, first_interval)
        seen = shown or {}
        prompts = {title: self.encode(seen.get(title, title), views, first_interval)
                   for title, views in history.items()}
        out: dict[str, float] = {}
        for title, ids in prompts.items():
            logits = np.asarray(self.model.new_session().prefill(ids), dtype=np.float64)
            out[title] = _softmax2(float(logits[self._yes]), float(logits[self._no]))
        return out

    def rank(self, history: Mapping[str, Sequence[int]], first_interval: int,
             top_k: int = 0, shown: Mapping[str, str] | None = None) -> list[tuple[str, float]]:
        """(title, P(appear)) best first (ties by title); ``top_k`` > 0 keeps that many."""
        if top_k < 0:
            raise InvalidArgument(f"top_k must not be negative, not {top_k}")
        ranked = sorted(self.probabilities(history, first_interval, shown).items(),
                        key=lambda item: (-item[1], item[0]))
        return ranked[:top_k] if top_k else ranked


def packaged_model_dir() -> Path:
    """The trained popularity model shipped in the package (``netgpt/assets/netmgmt/popularity``)."""
    root = Path(str(resources.files("netgpt.assets").joinpath("netmgmt", "popularity")))
    if not (root / "config.json").is_file():
        raise ModelLoadError(f"the popularity model is missing from {root}: run `make netmgmt-models`")
    return root


def load_predictor(folder: Path, cache_root: Path | None = None, providers: str = "cpu",
                   name: str = "popularity") -> PopularityPredictor:
    """A GPT-2 popularity model folder served by ONNX Runtime (exported once, cached)."""
    from edge_node.model.ort_engine import OrtGpt2Model  # onnxruntime + the exporter: only when a model is loaded

    return PopularityPredictor(OrtGpt2Model.load(Path(folder), cache_root=cache_root, providers=providers,
                                                 name=name, max_batch=1))


class ViewLog:
    """An edge's view log as a count matrix: ``counts[interval, title]``.

    Interval ``n`` covers ``[origin + n * interval_s, origin + (n + 1) * interval_s)`` where
    ``origin`` is midnight UTC of the day of the first view, so 6-hour intervals line up with the
    prompt's day parts.
    """

    def __init__(self, titles: Sequence[str], counts: np.ndarray, origin: int, interval_s: int) -> None:
        if interval_s <= 0:
            raise InvalidArgument(f"interval_s must be positive, not {interval_s}")
        self.titles = list(titles)
        self.counts = np.asarray(counts, dtype=np.int64)
        self.origin = int(origin)
        self.interval_s = int(interval_s)
        self._index = {title: i for i, title in enumerate(self.titles)}

    @property
    def num_intervals(self) -> int:
        return int(self.counts.shape[0])

    @property
    def intervals_per_day(self) -> int:
        """Intervals in a day when the length divides a day, else 0."""
        return DAY_S // self.interval_s if DAY_S % self.interval_s == 0 else 0

    @classmethod
    def from_events(cls, timestamps: Iterable[int], titles: Iterable[str],
                    interval_s: int = DEFAULT_INTERVAL_S) -> ViewLog:
        """From parallel sequences of unix seconds and titles (any order)."""
        if interval_s <= 0:
            raise InvalidArgument(f"interval_s must be positive, not {interval_s}")
        ts = np.asarray(list(timestamps) if not isinstance(timestamps, np.ndarray) else timestamps, dtype=np.int64)
        names = list(titles)
        if len(names) != ts.size:
            raise InvalidArgument(f"{ts.size} timestamps but {len(names)} titles")
        if ts.size == 0:
            raise InvalidArgument("the view log has no views")
        catalogue = sorted(set(names))
        index = {title: i for i, title in enumerate(catalogue)}
        origin = int(ts.min()) // DAY_S * DAY_S
        slots = (ts - origin) // interval_s
        columns = np.fromiter((index[t] for t in names), dtype=np.int64, count=len(names))
        counts = np.zeros((int(slots.max()) + 1, len(catalogue)), dtype=np.int64)
        np.add.at(counts, (slots, columns), 1)
        return cls(catalogue, counts, origin, interval_s)

    @classmethod
    def from_csv(cls, path: Path, interval_s: int = DEFAULT_INTERVAL_S) -> ViewLog:
        """The canonical ``timestamp,title`` CSV (header required; extra columns ignored)."""
        timestamps, titles = read_views_csv(Path(path))
        return cls.from_events(timestamps, titles, interval_s)

    def views(self, title: str) -> np.ndarray:
        return self.counts[:, self._index[title]]

    def window(self, target_interval: int, lags: int, top_k: int = DEFAULT_TOP_K) -> tuple[int, dict[str, list[int]]]:
        """(first_interval, views per title) of the ``lags`` intervals before ``target_interval`` (fewer
        at the start of the log) for the ``top_k`` titles with the most views in them (ties: more views
        before the window, then by title). ``target_interval`` may be ``num_intervals``: the next one."""
        if lags <= 0:
            raise InvalidArgument(f"lags must be positive, not {lags}")
        if top_k <= 0:
            raise InvalidArgument(f"top_k must be positive, not {top_k}")
        if target_interval <= 0:
            raise InvalidArgument(f"interval {target_interval} has no earlier interval to predict it from; "
                                  "the log starts at interval 0")
        if target_interval > self.num_intervals:
            raise InvalidArgument(f"interval {target_interval} is beyond the view log, which ends at interval "
                                  f"{self.num_intervals - 1} (interval {self.num_intervals} is the next one)")
        first = max(0, target_interval - lags)
        block = self.counts[first:target_interval]
        totals = block.sum(axis=0)
        if not totals.any():
            raise FailedPrecondition(f"the view log has no views in intervals {first}..{target_interval - 1} "
                                     f"to predict interval {target_interval} from")
        before = self.counts[:first].sum(axis=0)
        order = sorted((i for i in np.flatnonzero(totals)), key=lambda i: (-totals[i], -before[i], self.titles[i]))
        chosen = order[:top_k]
        return first, {self.titles[i]: [int(v) for v in block[:, i]] for i in chosen}


def csv_rows(path: Path, what: str = "view log", encoding: str = "utf-8") -> Iterator[tuple[int, list[str]]]:
    """(line number, row) of a CSV file (a view log, or a log an importer converts); InvalidArgument
    naming the file, or the line, that cannot be read."""
    try:
        stream = path.open(newline="", encoding=encoding)
    except FileNotFoundError:
        raise InvalidArgument(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise InvalidArgument(f"{what} {path} cannot be read: {exc.strerror}") from None
    with stream:
        reader = csv.reader(stream)
        try:
            for row in reader:
                yield reader.line_num, row
        except UnicodeDecodeError as exc:  # raised reading the line after the last one counted
            raise InvalidArgument(f"{path}:{reader.line_num + 1}: not {encoding} text (byte {exc.start})") from None
        except csv.Error as exc:
            raise InvalidArgument(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None


def read_views_csv(path: Path) -> tuple[list[int], list[str]]:
    """(timestamps, titles) of a ``timestamp,title`` CSV; InvalidArgument naming the bad line."""
    timestamps: list[int] = []
    titles: list[str] = []
    rows = csv_rows(path)
    header = [cell.strip().lower() for cell in next(rows, (1, []))[1]]
    if "timestamp" not in header or "title" not in header:
        raise InvalidArgument(f"{path}:1: the header must name the columns timestamp and title, got "
                              f"{excerpt(','.join(header))}")
    ts_col, title_col = header.index("timestamp"), header.index("title")
    for number, row in rows:
        if not row or not any(cell.strip() for cell in row):
            continue
        where = f"{path}:{number}"
        if len(row) <= max(ts_col, title_col):
            raise InvalidArgument(f"{where}: expected at least {max(ts_col, title_col) + 1} columns, got "
                                  f"{len(row)}: {excerpt(','.join(row))}")
        try:
            stamp = int(row[ts_col].strip())
        except ValueError:
            raise InvalidArgument(f"{where}: timestamp {excerpt(row[ts_col])} is not whole unix seconds") from None
        if stamp < 0:
            raise InvalidArgument(f"{where}: timestamp {stamp} is negative")
        title = row[title_col].strip()
        try:
            check_title(title)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}: {exc}") from None
        timestamps.append(stamp)
        titles.append(title)
    if not timestamps:
        raise InvalidArgument(f"view log {path} has no views (only a header)")
    return timestamps, titles


def write_views_csv(path: Path, rows: Iterable[tuple[int, str]]) -> int:
    """Write the canonical CSV (header ``timestamp,title``); returns the number of views written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["timestamp", "title"])
        for stamp, title in rows:
            writer.writerow([int(stamp), title])
            count += 1
    return count
