"""Copy-constrained decoding: the intent model must copy endpoint names and figures from the
request, not invent them. :class:`CopyConstraint` says which next tokens keep the value being
written inside what the request says; the reader picks the most probable token it allows."""

from __future__ import annotations

import re

from edge_node.netmgmt.intent_line import NUMBER

COPIED_KEYS = ("src", "dst")  # values copied from the request verbatim
FIGURE_KEYS = ("bw", "lat", "5qi")  # values whose figure the request states
_FIGURE_BYTES = re.compile(NUMBER.encode())
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
