"""The intent model's output: one canonical *keyword line* (``tasks/intent/README.md``)::

    act: create; src: Access 1; dst: Cloud 2; bw: 10 Gbps; lat: 5 ms; prot: yes; slice: urllc; 5qi: 82;
    time: 22:00-06:00   (one line)

with only the stated fields, in this order, or ``none`` when the text holds no network request.
:func:`to_target` writes it, :func:`parse_line` reads it back into an :class:`Intent` (bandwidth in
Mbit/s), dropping what it cannot read. A bandwidth, latency or time window in another spelling than the
canonical one (``10 Mb/s``, ``5 msec``, ``22h30-06h``: the model copies the request's on wordings it never
saw) is read by a unit library (:mod:`edge_node.netmgmt.intent_units`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TypeVar

import structlog

from edge_node.netmgmt import intent_units
from netgpt.errors import excerpt

log = structlog.get_logger(__name__)
T = TypeVar("T")

NOTHING = "none"  # the keyword line of a text that states no network request
UNCLEAR_VALUE = "?"  # a field the request states but does not pin down ("bw: ?" for a figure without a unit)
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
NUMBER = r"\d+(?:\.\d+)?"  # a figure as the line (and a request) writes it
_TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)")


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
    unclear: list[str] = field(default_factory=list)  # Intent fields written as ``?``: stated, not pinned down


def required_fields(intent: Intent) -> tuple[str, ...]:
    return (*REQUIRED, "bandwidth_mbps") if intent.action == "create" else REQUIRED


# --- writing --------------------------------------------------------------------------------


def _number(value: float) -> str:
    return f"{value:g}" if value != int(value) else str(int(value))


def format_bandwidth(mbps: float) -> str:
    """Mbit/s → the canonical spelling: the largest unit that keeps the figure ≥ 1 (``10 Gbps``)."""
    for unit in ("Tbps", "Gbps", "Mbps"):
        scale = BANDWIDTH_UNITS[unit]
        if mbps >= scale and round(mbps / scale, 3) == mbps / scale:
            return f"{_number(round(mbps / scale, 3))} {unit}"
    return f"{_number(round(mbps * 1000, 3))} Kbps"


def value_text(intent: Intent, name: str) -> str:
    """How the keyword line spells the ``name`` field of ``intent`` ("" when the intent does not state it)."""
    value = getattr(intent, name)
    if not value:
        return ""
    if name == "bandwidth_mbps":
        return format_bandwidth(value)
    if name == "latency_ms":
        return f"{_number(value)} ms"
    if name == "protection":
        return "yes"
    return str(value)


def to_target(intent: Intent) -> str:
    """The canonical keyword line of ``intent`` (only its stated fields; ``none`` for none)."""
    pieces = [f"{FIELD_KEYS[name]}: {value}" for name in KEYS.values() if (value := value_text(intent, name))]
    return "; ".join(pieces) or NOTHING


# --- reading --------------------------------------------------------------------------------


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
        match = re.fullmatch(rf"({NUMBER}) ?({'|'.join(BANDWIDTH_UNITS)})", raw)
        if match and float(match[1]) > 0:
            return float(match[1]) * BANDWIDTH_UNITS[match[2]]
        return _read(intent_units.bandwidth_mbps, raw, "a positive figure and a data rate (Mbps, Gb/s, ...)")
    if name == "latency_ms":
        match = re.fullmatch(rf"({NUMBER}) ?ms", raw)
        if match and float(match[1]) > 0:
            return float(match[1])
        return _read(intent_units.latency_ms, raw, "a positive figure and a time unit (ms, msec, ...)")
    if name == "protection":
        if raw not in ("yes", "no"):
            raise ValueError("expected yes or no")
        return raw == "yes"
    if name == "five_qi":
        if not raw.isdigit() or not 1 <= int(raw) <= 255:
            raise ValueError("expected an integer 1-255")
        return int(raw)
    if _TIME.fullmatch(raw):  # time_window
        return raw
    return _read(intent_units.time_window, raw, "HH:MM-HH:MM or two clock times (5pm-8pm, 22h30-06h)")


def _read(reader: Callable[[str], T | None], raw: str, expected: str) -> T:
    """A value that is not in the canonical spelling, read by :mod:`~edge_node.netmgmt.intent_units`."""
    value = reader(raw)
    if value is None:
        raise ValueError(f"expected {expected}")
    return value


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
        if name in parsed.spans or name in parsed.dropped or name in parsed.unclear:
            parsed.problems.append(f"{name}: stated twice")
            parsed.dropped.append(name)
            continue
        if raw == UNCLEAR_VALUE:
            parsed.unclear.append(name)
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
