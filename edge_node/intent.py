"""Intent inference at the edge: an operator's free-text request → a structured network intent.

The intent GPT-2 (fine-tuned from the starter GPT-2 by ``python -m tasks.intent.recipe``) reads

    <|request|>{normalised request}<|intent|>

and greedy-decodes one canonical *keyword line* (``tasks/intent/README.md``)::

    act: create; src: Access 1; dst: Cloud 2; bw: 10 Gbps; lat: 5 ms; prot: yes; slice: urllc; 5qi: 82;
    time: 22:00-06:00   (one line)

with only the stated fields, in this order, or ``none`` when the text holds no network request.
:func:`parse_target` turns the line into an :class:`Intent` (bandwidth in Mbit/s); the reader adds
a per-field confidence (the lowest probability among the tokens the model chose for that field)
and asks the operator for clarification instead of guessing when a required field is missing or
was read with low confidence.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sized
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

import numpy as np
import structlog

from edge_node.ort_engine import OrtGpt2Model
from netgpt.engine import LanguageModel, ModelLoadError
from netgpt.errors import InvalidArgument, excerpt
from netgpt.generation import log_softmax

log = structlog.get_logger(__name__)

REQUEST_TOKEN, INTENT_TOKEN = "<|request|>", "<|intent|>"
SPECIAL_TOKENS = (REQUEST_TOKEN, INTENT_TOKEN)
MAX_TEXT_CHARS = 1000
MAX_NEW_TOKENS = 64  # the longest keyword line (every field stated) is ~45 tokens
DEFAULT_MIN_CONFIDENCE = 0.5
CONSTRAINT_SCAN = 256  # most probable tokens tried against the copy constraint before giving up on it
NOTHING = "none"  # the keyword line of a text that states no network request

ACTIONS = ("create", "modify", "delete")
SLICES = ("embb", "urllc", "miot")
# keyword-line key → Intent field, in the canonical order of the line
KEYS = {"act": "action", "src": "source", "dst": "destination", "bw": "bandwidth_mbps", "lat": "latency_ms",
        "prot": "protection", "slice": "slice", "5qi": "five_qi", "time": "time_window"}
FIELD_KEYS = {name: key for key, name in KEYS.items()}
# added to the tokenizer: one token per key, at the start of the line and after a separator; the
# value keeps its leading space, so it is tokenised as the same words in the request are
KEY_TOKENS = tuple(f"{key}:" for key in KEYS) + tuple(f"; {key}:" for key in KEYS)
REQUIRED = ("action", "source", "destination")
BANDWIDTH_UNITS = {"Kbps": 0.001, "Mbps": 1.0, "Gbps": 1000.0, "Tbps": 1_000_000.0}
_NUMBER = r"\d+(?:\.\d+)?"
_TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass
class Intent:
    """A structured network intent; field names are NetworkIntent's, "" / 0 / False = not stated."""

    action: str = ""
    source: str = ""
    destination: str = ""
    bandwidth_mbps: float = 0.0
    latency_ms: float = 0.0
    protection: bool = False
    slice: str = ""
    five_qi: int = 0
    time_window: str = ""

    def stated(self) -> list[str]:
        """The names of the fields this intent states, in the keyword line's order."""
        return [f.name for f in fields(self) if getattr(self, f.name) != f.default]


@dataclass
class ParsedLine:
    """A keyword line read field by field: ``spans`` locate each kept field (key included) in the line."""

    intent: Intent
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # "field: why", one per dropped piece
    dropped: list[str] = field(default_factory=list)  # Intent fields named by a dropped piece


@dataclass
class Reading:
    """What the reader made of one request."""

    intent: Intent
    confidence: dict[str, float]
    needs_clarification: bool
    missing_fields: list[str]
    ambiguous_fields: list[str]
    clarification: str
    keyword_line: str = ""  # what the model generated, for logs and evaluation


# --- the keyword line -----------------------------------------------------------------------


def _number(value: float) -> str:
    return f"{value:g}" if value != int(value) else str(int(value))


def format_bandwidth(mbps: float) -> str:
    """Mbit/s → the canonical spelling: the largest unit that keeps the figure ≥ 1 (``10 Gbps``)."""
    for unit in ("Tbps", "Gbps", "Mbps"):
        scale = BANDWIDTH_UNITS[unit]
        if mbps >= scale and round(mbps / scale, 3) == mbps / scale:
            return f"{_number(round(mbps / scale, 3))} {unit}"
    return f"{_number(round(mbps * 1000, 3))} Kbps"


def to_target(intent: Intent) -> str:
    """The canonical keyword line of ``intent`` (only its stated fields; ``none`` for none)."""
    values = {
        "action": intent.action, "source": intent.source, "destination": intent.destination,
        "bandwidth_mbps": format_bandwidth(intent.bandwidth_mbps) if intent.bandwidth_mbps else "",
        "latency_ms": f"{_number(intent.latency_ms)} ms" if intent.latency_ms else "",
        "protection": "yes" if intent.protection else "",
        "slice": intent.slice, "five_qi": str(intent.five_qi) if intent.five_qi else "",
        "time_window": intent.time_window,
    }
    pieces = [f"{FIELD_KEYS[name]}: {value}" for name, value in values.items() if value]
    return "; ".join(pieces) or NOTHING


def _value(name: str, raw: str) -> str | float | int | bool:
    """One field's value from its keyword-line spelling; ValueError saying why not."""
    if name in ("source", "destination"):
        if not raw or len(raw) > 64:
            raise ValueError("empty or longer than 64 characters")
        return raw
    if name == "action":
        if raw not in ACTIONS:
            raise ValueError(f"not one of {', '.join(ACTIONS)}")
        return raw
    if name == "slice":
        if raw not in SLICES:
            raise ValueError(f"not one of {', '.join(SLICES)}")
        return raw
    if name == "bandwidth_mbps":
        match = re.fullmatch(rf"({_NUMBER}) ?({'|'.join(BANDWIDTH_UNITS)})", raw)
        if not match or float(match[1]) <= 0:
            raise ValueError("expected a positive figure and Kbps, Mbps, Gbps or Tbps")
        return float(match[1]) * BANDWIDTH_UNITS[match[2]]
    if name == "latency_ms":
        match = re.fullmatch(rf"({_NUMBER}) ?ms", raw)
        if not match or float(match[1]) <= 0:
            raise ValueError("expected a positive figure in ms")
        return float(match[1])
    if name == "protection":
        if raw not in ("yes", "no"):
            raise ValueError("expected yes or no")
        return raw == "yes"
    if name == "five_qi":
        if not raw.isdigit() or not 1 <= int(raw) <= 255:
            raise ValueError("expected an integer 1-255")
        return int(raw)
    if not _TIME.fullmatch(raw):  # time_window
        raise ValueError("expected HH:MM-HH:MM")
    return raw


def parse_line(text: str) -> ParsedLine:
    """A keyword line → the intent it states, with each field's span; never raises.

    Tolerant: unknown keys, malformed values and repeated fields are dropped and listed in
    ``problems``; text after a stray newline is ignored.
    """
    line = text.split("\n", 1)[0]
    parsed = ParsedLine(Intent())
    if line.strip() == NOTHING:
        return parsed
    offset = 0
    for piece in line.split(";"):
        start, offset = offset, offset + len(piece) + 1
        key, sep, raw = piece.partition(":")
        key, raw = key.strip(), raw.strip()
        if not piece.strip():
            continue
        name = KEYS.get(key)
        if not sep or name is None:
            parsed.problems.append(f"unknown piece {excerpt(piece, 24)}")
            continue
        if name in parsed.spans or name in parsed.dropped:
            parsed.problems.append(f"{name}: stated twice")
            parsed.dropped.append(name)
            continue
        try:
            value = _value(name, raw)
        except ValueError as exc:
            parsed.problems.append(f"{name}: {excerpt(raw, 24)} {exc}")
            parsed.dropped.append(name)
            continue
        setattr(parsed.intent, name, value)
        parsed.spans[name] = (start, start + len(piece))
    for name in parsed.dropped:  # a field both kept and then repeated is not trusted either
        if name in parsed.spans:
            setattr(parsed.intent, name, getattr(Intent(), name))
            del parsed.spans[name]
    return parsed


def parse_target(text: str) -> Intent:
    """The intent a keyword line states; malformed pieces are dropped and logged, never raised."""
    parsed = parse_line(text)
    if parsed.problems:
        log.info("intent.line_problems", problems=parsed.problems)
    return parsed.intent


# --- the request ----------------------------------------------------------------------------


def normalise(text: str) -> str:
    """The request as the model reads it (training did the same): NFKC, control characters as
    spaces, whitespace collapsed, trimmed."""
    text = unicodedata.normalize("NFKC", text)
    return " ".join(_CONTROL.sub(" ", text).split())


def prompt_text(normalised: str) -> str:
    return f"{REQUEST_TOKEN}{normalised}{INTENT_TOKEN}"


def validate_text(text: str) -> str:
    """The normalised request, or InvalidArgument for empty or over-long text."""
    if not isinstance(text, str):
        raise InvalidArgument("the request text must be a string")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidArgument(f"the request is {len(text)} characters; at most {MAX_TEXT_CHARS} are read: "
                              f"{excerpt(text)}")
    normalised = normalise(text)
    if not normalised:
        raise InvalidArgument("the request text is empty; say what to build, change or remove, e.g. "
                              "'build a 10 Gbps connection from Access 1 to Cloud 2'")
    return normalised


# --- clarification --------------------------------------------------------------------------

_ASK = {"action": "whether to create, modify or delete the connection", "source": "the source endpoint",
        "destination": "the destination endpoint", "bandwidth_mbps": "the bandwidth (e.g. 10 Gbps)"}
_LABEL = {"action": "action", "source": "source", "destination": "destination", "bandwidth_mbps": "bandwidth",
          "latency_ms": "latency bound", "protection": "protection", "slice": "slice", "five_qi": "5QI",
          "time_window": "time window"}


def required_fields(intent: Intent) -> tuple[str, ...]:
    return (*REQUIRED, "bandwidth_mbps") if intent.action == "create" else REQUIRED


def clarification_text(missing: list[str], ambiguous: list[str], guesses: dict[str, str]) -> str:
    """One question for the operator naming what is missing and what was unclear."""
    parts = []
    if missing:
        parts.append("Please state " + _join([_ASK.get(name, _LABEL[name]) for name in missing]) + ".")
    if ambiguous:
        unsure = [f"the {_LABEL[name]}" + (f" ({guesses[name]}?)" if guesses.get(name) else "") for name in ambiguous]
        parts.append("Please confirm " + _join(unsure) + ".")
    return " ".join(parts)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def unreadable(reason: str) -> Reading:
    """The reading of a text the model cannot work with: ask for everything."""
    missing = list(REQUIRED)
    return Reading(Intent(), {}, True, missing, [], f"{reason} {clarification_text(missing, [], {})}")


# --- copy-constrained decoding -------------------------------------------------------------

COPIED_KEYS = ("src", "dst")  # values copied from the request verbatim
FIGURE_KEYS = ("bw", "lat", "5qi")  # values whose figure the request states
_FIGURE_BYTES = re.compile(rb"\d+(?:\.\d+)?")
_HEAD = re.compile(rb"[\d.]*")


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: the character a BPE token uses for each byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
                 *range(ord("\u00ae"), ord("\u00ff") + 1)]
    codes, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(printable, codes, strict=True)}


def token_bytes(tokenizer: object, size: int) -> list[bytes] | None:
    """The bytes each token id stands for (None when the tokenizer cannot say)."""
    convert = getattr(tokenizer, "convert_ids_to_tokens", None)
    if convert is None:
        return None
    decoder = _byte_decoder()
    pieces = convert(list(range(size)))
    return [b"" if piece is None else bytes(decoder[c] for c in piece) if all(c in decoder for c in piece)
            else str(piece).encode() for piece in pieces]


class CopyConstraint:
    """Keeps a decoded value inside what the request says: an endpoint name must be a span of the
    request ending at a word boundary, a bandwidth/latency/5QI figure one of the request's figures.
    Other fields are not constrained (the parser validates them)."""

    def __init__(self, vocab: list[bytes], key_of: dict[int, str], end_ids: set[int], request: str) -> None:
        self._vocab, self._key_of, self._end_ids = vocab, key_of, end_ids
        self._hay = b" " + request.encode() + b" "
        self._figures = set(_FIGURE_BYTES.findall(request.encode()))
        self._field, self._value = "", b""

    def push(self, token: int) -> None:
        if token in self._key_of:
            self._field, self._value = self._key_of[token], b""
        else:
            self._value += self._vocab[token]

    def allows(self, token: int) -> bool:
        ends = token in self._end_ids or token in self._key_of
        if self._field in COPIED_KEYS:
            return self._ends_at_word(self._value) if ends else self._is_span(self._value + self._vocab[token])
        if self._field in FIGURE_KEYS and not ends:
            return self._is_figure(self._value + self._vocab[token])
        return True

    def _is_span(self, value: bytes) -> bool:
        return value.startswith(b" ") and value in self._hay

    def _ends_at_word(self, value: bytes) -> bool:
        if not value.strip():
            return False
        at = self._hay.find(value)
        while at >= 0:
            if not self._hay[at + len(value): at + len(value) + 1].isalnum():
                return True
            at = self._hay.find(value, at + 1)
        return False

    def _is_figure(self, value: bytes) -> bool:
        if not value.startswith(b" "):
            return False
        head = _HEAD.match(value[1:])
        figure = head[0] if head else b""
        if len(figure) == len(value) - 1:  # still writing the figure
            return any(f.startswith(figure) for f in self._figures)
        return figure in self._figures


# --- the reader -----------------------------------------------------------------------------


class IntentReader:
    """Reads requests with an intent GPT-2 (any :class:`~netgpt.engine.LanguageModel`)."""

    def __init__(self, model: LanguageModel, min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                 copy_constraint: bool = True) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise InvalidArgument(f"min_confidence must be in [0, 1], not {min_confidence}")
        self.model = model
        self.min_confidence = min_confidence
        tokenizer = model.tokenizer
        self._special = {tokenizer.encode(token, add_special_tokens=False)[0] for token in SPECIAL_TOKENS}
        self._end_ids = self._special | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())
        self._key_of = {ids[0]: token.removeprefix("; ").removesuffix(":") for token in KEY_TOKENS
                        if len(ids := tokenizer.encode(token, add_special_tokens=False)) == 1}
        size = len(tokenizer) if isinstance(tokenizer, Sized) else 0
        self._vocab = token_bytes(tokenizer, size) if copy_constraint and size else None

    @property
    def version(self) -> str:
        return self.model.identity.version

    def read(self, text: str) -> Reading:
        """The intent of ``text``; InvalidArgument for empty or over-long text, a clarification
        (never an exception) for text the model cannot read."""
        normalised = validate_text(text)
        prompt = self.model.tokenizer.encode(prompt_text(normalised), add_special_tokens=False)
        budget = min(MAX_NEW_TOKENS, self.model.max_context - len(prompt))
        if budget < MAX_NEW_TOKENS:
            return unreadable("The request is too long for the intent model to read (it may not be in English); "
                              "shorten it.")
        line, probs = self.decode(prompt, budget, normalised)
        return self.interpret(line, probs, normalised)

    def decode(self, prompt: list[int], budget: int, request: str = "") -> tuple[str, list[tuple[int, int, float]]]:
        """Greedy keyword line and, per generated token, (start, end) in the line and its probability
        (the model's own, before any constraint). With the copy constraint on (and ``request``), the
        most probable token that :class:`CopyConstraint` allows is chosen instead of the argmax."""
        tokenizer = self.model.tokenizer
        constraint = (CopyConstraint(self._vocab, self._key_of, self._end_ids, request)
                      if self._vocab is not None and request else None)
        session = self.model.new_session()
        logits = session.prefill(prompt)
        ids: list[int] = []
        spans: list[tuple[int, int, float]] = []
        text = ""
        for _ in range(budget):
            logp = log_softmax(np.asarray(logits, dtype=np.float64))
            token = int(np.argmax(logp))
            if constraint is not None and not constraint.allows(token):
                token = next((int(t) for t in np.argsort(-logp)[:CONSTRAINT_SCAN] if constraint.allows(int(t))), token)
            if token in self._end_ids:
                break
            if constraint is not None:
                constraint.push(token)
            ids.append(token)
            decoded = tokenizer.decode(ids, skip_special_tokens=True)
            if "\n" in decoded:
                break
            spans.append((len(text), len(decoded), math.exp(float(logp[token]))))
            text = decoded
            logits = session.advance(token)
        return text, spans

    def interpret(self, line: str, probs: list[tuple[int, int, float]], request: str = "") -> Reading:
        """A generated keyword line (with per-token probabilities) → the reading. With the
        ``request`` text, a field whose value the text does not contain (an endpoint name, a
        figure) is ambiguous whatever the model's confidence: the model must copy, not invent."""
        parsed = parse_line(line)
        intent, confidence = parsed.intent, {}
        for name, (start, end) in parsed.spans.items():
            inside = [p for a, b, p in probs if a < end and b > start]
            confidence[name] = min(inside) if inside else 0.0
        ungrounded = set(ungrounded_fields(intent, request)) if request else set()
        ambiguous = [name for name in intent.stated()
                     if confidence.get(name, 0.0) < self.min_confidence or name in ungrounded]
        guesses = {name: _shown(intent, name) for name in ambiguous}
        for name in ambiguous:
            setattr(intent, name, getattr(Intent(), name))
        ambiguous += [name for name in parsed.dropped if name not in ambiguous]
        required = required_fields(intent) if intent.action else REQUIRED
        missing = [name for name in required if not getattr(intent, name) and name not in ambiguous]
        unclear = [name for name in ambiguous if name in required]
        needs = bool(missing or unclear)
        if parsed.problems:
            log.info("intent.line_problems", line=excerpt(line, 120), problems=parsed.problems)
        question = clarification_text(missing, unclear, guesses) if needs else ""
        if needs and line.strip() == NOTHING:
            question = "This does not read as a network request. " + question
        return Reading(intent, confidence, needs, missing, ambiguous, question, line)


def _figures(text: str) -> set[float]:
    return {float(x) for x in re.findall(_NUMBER, text)}


def ungrounded_fields(intent: Intent, request: str) -> list[str]:
    """Fields whose value the request does not contain: endpoint names (case-insensitive) and the
    figures of bandwidth, latency and 5QI (a bandwidth may be written in another unit)."""
    lowered, figures = request.lower(), _figures(request)
    missing = [name for name in ("source", "destination")
               if getattr(intent, name) and getattr(intent, name).lower() not in lowered]
    if intent.bandwidth_mbps and not figures & {round(intent.bandwidth_mbps * s, 6) for s in (1, 0.001, 1000)}:
        missing.append("bandwidth_mbps")
    if intent.latency_ms and intent.latency_ms not in figures:
        missing.append("latency_ms")
    if intent.five_qi and float(intent.five_qi) not in figures:
        missing.append("five_qi")
    return missing


def _shown(intent: Intent, name: str) -> str:
    value = getattr(intent, name)
    if name == "bandwidth_mbps":
        return format_bandwidth(float(value))
    if name == "latency_ms":
        return f"{_number(float(value))} ms"
    return str(value) if not isinstance(value, bool) else ("yes" if value else "")


# --- loading --------------------------------------------------------------------------------


def packaged_model_dir() -> Path:
    """The trained intent model shipped in the package (``netgpt/assets/netmgmt/intent``)."""
    root = Path(str(resources.files("netgpt.assets").joinpath("netmgmt", "intent")))
    if not (root / "config.json").is_file():
        raise ModelLoadError(f"the intent model is missing from {root}: run `make netmgmt-models`")
    return root


def load_reader(folder: Path, cache_root: Path | None = None, providers: str = "cpu", name: str = "intent",
                min_confidence: float = DEFAULT_MIN_CONFIDENCE, copy_constraint: bool = True) -> IntentReader:
    """An :class:`IntentReader` over ``folder`` served by ONNX Runtime (exported once, cached)."""
    model = OrtGpt2Model.load(folder, cache_root=cache_root, providers=providers, name=name, max_batch=1)
    return IntentReader(model, min_confidence, copy_constraint)
