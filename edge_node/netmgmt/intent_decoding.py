"""Copy-constrained decoding: the intent model must copy endpoint names and figures from the
request, not invent them. :class:`CopyConstraint` says which next tokens keep the value being
written inside what the request says; the reader picks the most probable token it allows."""

from __future__ import annotations

import re

from edge_node.netmgmt.intent_line import ACTIONS, BANDWIDTH_UNITS, KEYS, NOTHING, NUMBER, SLICES, UNCLEAR_VALUE

COPIED_KEYS = ("src", "dst")  # values copied from the request verbatim
FIGURE_KEYS = ("bw", "lat", "5qi")  # values whose figure the request states
_FIGURE_BYTES = re.compile(NUMBER.encode())
_HEAD = re.compile(rb"[\d.]*")
TIME_KEY = "time"
# a clock time as requests state it: 14:00, 14h, 14h30, 2 pm, 2:30pm (the grammar's time constraint)
_CLOCK = re.compile(rb"(?<![\w.:])(\d{1,2})(?:[:h](\d{2}))?\s?(am|pm|h)?(?![\w:])", re.IGNORECASE)
UNCLEAR = UNCLEAR_VALUE.encode()
# the value grammar: what may follow a key (a leading space, then the canonical spelling)
_WORDS = {"act": tuple(f" {a}".encode() for a in ACTIONS), "slice": tuple(f" {s}".encode() for s in SLICES),
          "prot": (b" yes",)}
_UNIT_TAILS = {"bw": tuple(f" {u}".encode() for u in BANDWIDTH_UNITS), "lat": (b" ms",), "5qi": (b"",)}
_KEY_NAMES = tuple(k.encode() for k in (*KEYS, NOTHING))
_FIGURE_HEAD = re.compile(rb" (\d+(?:\.\d*)?)")
_TIME_SHAPE = b"00:00-00:00"


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
    Other fields are not constrained (the parser validates them).

    The field being written is read from the line's text (the key before the last ``:`` of the
    current ``;``-piece), so it works with any byte-level BPE: the intent GPT-2's added key tokens
    (``; src:`` as one token) and a pretrained tokenizer that spells ``; src:`` in several tokens."""

    def __init__(self, vocab: list[bytes], end_ids: set[int], request: str, grammar: bool = False) -> None:
        """``grammar``: also keep every key one of the line's keys and every value in its canonical
        spelling (``bw`` a figure + Kbps/Mbps/Gbps/Tbps, ``lat`` a figure + ms, ``time`` HH:MM-HH:MM, ...)."""
        self._vocab, self._end_ids, self._grammar = vocab, end_ids, grammar
        self._hay = b" " + request.encode() + b" "
        self._figures = set(_FIGURE_BYTES.findall(request.encode()))
        clocks = clock_times(request) if grammar else set()
        self._windows = {b" %s-%s" % (a, b) for a in clocks for b in clocks}
        self._line = b""

    def push(self, token: int) -> None:
        self._line += self._vocab[token]

    def allows(self, token: int) -> bool:
        if token in self._end_ids:
            return self._complete(self._last_piece(self._line))
        candidate = self._line + self._vocab[token]
        head, newline, _ = candidate.partition(b"\n")
        pieces = head.split(b";")
        done = pieces[:-1] if not newline else pieces
        for piece in done[self._line.count(b";"):]:  # pieces this token completes
            if not self._complete(piece):
                return False
        return True if newline else self._partial(pieces[-1])

    @staticmethod
    def _last_piece(line: bytes) -> bytes:
        return line.split(b"\n", 1)[0].rsplit(b";", 1)[-1]

    @staticmethod
    def _field(piece: bytes) -> tuple[str, bytes | None]:
        key, sep, value = piece.partition(b":")
        return (key.strip().decode("utf-8", "replace"), value) if sep else ("", None)

    def _partial(self, piece: bytes) -> bool:
        """A piece still being written: its value so far may still become an allowed value."""
        key, value = self._field(piece)
        if value is None:
            return not self._grammar or any(k.startswith(piece.strip()) for k in _KEY_NAMES)
        if not value or UNCLEAR.startswith(value.strip()):
            return True
        if self._grammar and not _shape(key, value, whole=False):
            return False
        if key in COPIED_KEYS:
            return self._is_span(value)
        if key in FIGURE_KEYS:
            return self._is_figure(value)
        if key == TIME_KEY and self._windows:
            return any(w.startswith(value) for w in self._windows)
        return True

    def _complete(self, piece: bytes) -> bool:
        """A finished piece: an endpoint must end at a word boundary, a figure be a whole figure."""
        key, value = self._field(piece)
        if value is None or value.strip() == UNCLEAR:
            return True
        if self._grammar and not _shape(key, value, whole=True):
            return False
        if key in COPIED_KEYS:
            return self._ends_at_word(value)
        if key in FIGURE_KEYS:
            return self._is_figure(value, whole=True)
        if key == TIME_KEY and self._windows:
            return value.rstrip(b" ") in self._windows
        return True

    def _is_span(self, value: bytes) -> bool:
        return value.startswith(b" ") and value in self._hay

    def _ends_at_word(self, value: bytes) -> bool:
        value = value.rstrip(b" ")
        if not value.strip():
            return False
        at = self._hay.find(value)
        while at >= 0:
            if not self._hay[at + len(value): at + len(value) + 1].isalnum():
                return True
            at = self._hay.find(value, at + 1)
        return False

    def _is_figure(self, value: bytes, whole: bool = False) -> bool:
        if not value.startswith(b" "):
            return False
        head = _HEAD.match(value[1:])
        figure = head[0] if head else b""
        if len(figure) == len(value) - 1 and not whole:  # still writing the figure
            return any(f.startswith(figure) for f in self._figures)
        return figure in self._figures


def clock_times(request: str) -> set[bytes]:
    """Every clock time ``request`` states, as ``HH:MM`` (a superset: any figure that can be an hour counts).
    With the grammar, a time window's two sides must be two of them (the figure copy rule, for clocks)."""
    times = set()
    for hour_text, minute_text, suffix in _CLOCK.findall(request.encode()):
        hour, minute = int(hour_text), int(minute_text or 0)
        if suffix.lower() in (b"am", b"pm"):
            if not 1 <= hour <= 12:
                continue
            hour = hour % 12 + (12 if suffix.lower() == b"pm" else 0)
        if hour <= 23 and minute <= 59:
            times.add(b"%02d:%02d" % (hour, minute))
    return times


def _shape(key: str, value: bytes, whole: bool) -> bool:
    """Whether ``value`` is (``whole``) or may still become (a prefix of) the canonical spelling of ``key``'s value."""
    def fits(options: tuple[bytes, ...], text: bytes) -> bool:
        return any(text == o if whole else o.startswith(text) for o in options)

    if key in _WORDS:
        return fits(_WORDS[key], value)
    if key in _UNIT_TAILS:
        if value == b" ":
            return not whole
        head = _FIGURE_HEAD.match(value)
        if head is None:
            return False
        figure, tail = head[1], value[head.end():]
        if figure.endswith(b".") and (whole or tail):
            return False
        if not tail:
            return not whole or _UNIT_TAILS[key] == (b"",)  # a 5QI is complete without a unit
        return fits(_UNIT_TAILS[key], tail)
    if key == "time":
        body = value[1:]
        if not value.startswith(b" ") or len(body) > len(_TIME_SHAPE) or (whole and len(body) != len(_TIME_SHAPE)):
            return False
        shape = _TIME_SHAPE[:len(body)]
        return all(chr(c).isdigit() if s == ord("0") else c == s for c, s in zip(body, shape, strict=True))
    return True  # src, dst: the copy constraint
