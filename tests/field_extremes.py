"""Field extremes of every request message, as raw bytes: for every numeric field at any depth (through
nested messages, repeated messages and maps, at most three levels), 0, the type's maximum and minimum,
and max+1 where the wire type can carry it (a varint past the type's range: the parser truncates it),
and NaN, +inf, -inf and the largest finite value of every float field.

Each body is a valid request (or an empty one) with the extreme appended as one more occurrence of the
field: protobuf merges concatenated messages (the last value of a scalar wins, a repeated field gets
one more element, a nested message is merged), so the extreme reaches the field wherever it sits.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from google.protobuf.descriptor import Descriptor, FieldDescriptor

F = FieldDescriptor
VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
MAX_DEPTH = 3


@dataclass(frozen=True)
class Extreme:
    path: str  # "history.first_interval"
    field: FieldDescriptor
    label: str  # "max", "max+1", "nan", ...
    raw: bytes  # the field's occurrence, wrapped in its parents' tags
    non_finite: bool = False


def varint(value: int) -> bytes:
    value &= (1 << 70) - 1 if value >= 0 else (1 << 64) - 1  # negatives: 64-bit two's complement, 10 bytes
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def zigzag(value: int) -> int:
    return value << 1 if value >= 0 else (-value << 1) - 1


def _values(field: FieldDescriptor) -> list[tuple[str, bytes, bool]]:
    """(label, tag + payload, non-finite) of each extreme of ``field``'s type."""
    n, t = field.number, field.type
    signed = {F.TYPE_INT32: 32, F.TYPE_INT64: 64, F.TYPE_ENUM: 32}
    unsigned = {F.TYPE_UINT32: 32, F.TYPE_UINT64: 64}
    if t in signed:
        bits = signed[t]
        top, bottom = (1 << (bits - 1)) - 1, -(1 << (bits - 1))
        return [(label, tag(n, VARINT) + varint(v), False)
                for label, v in (("0", 0), ("max", top), ("min", bottom), ("-1", -1), ("max+1", top + 1))]
    if t in unsigned:
        top = (1 << unsigned[t]) - 1
        return [(label, tag(n, VARINT) + varint(v), False) for label, v in (("0", 0), ("max", top), ("max+1", top + 1))]
    if t in (F.TYPE_SINT32, F.TYPE_SINT64):
        bits = 32 if t == F.TYPE_SINT32 else 64
        top, bottom = (1 << (bits - 1)) - 1, -(1 << (bits - 1))
        return [(label, tag(n, VARINT) + varint(zigzag(v)), False)
                for label, v in (("0", 0), ("max", top), ("min", bottom), ("max+1", top + 1))]
    fixed = {F.TYPE_FIXED32: ("<I", FIXED32, 0, (1 << 32) - 1), F.TYPE_FIXED64: ("<Q", FIXED64, 0, (1 << 64) - 1),
             F.TYPE_SFIXED32: ("<i", FIXED32, -(1 << 31), (1 << 31) - 1),
             F.TYPE_SFIXED64: ("<q", FIXED64, -(1 << 63), (1 << 63) - 1)}
    if t in fixed:  # max+1 does not fit the fixed width: not encodable
        fmt, wire, bottom, top = fixed[t]
        return [(label, tag(n, wire) + struct.pack(fmt, v), False) for label, v in (("0", 0), ("max", top),
                                                                                  ("min", bottom))]
    if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        fmt, wire, biggest = ("<d", FIXED64, 1.7976931348623157e308) if t == F.TYPE_DOUBLE else \
            ("<f", FIXED32, 3.4028234663852886e38)
        return [(label, tag(n, wire) + struct.pack(fmt, v), not math.isfinite(v))
                for label, v in (("nan", math.nan), ("inf", math.inf), ("-inf", -math.inf), ("max", biggest))]
    return []


def extremes(descriptor: Descriptor, path: str = "", depth: int = 0,
             seen: tuple[str, ...] = ()) -> Iterator[Extreme]:
    """Every extreme of every numeric field of ``descriptor`` and of the messages inside it."""
    for field in descriptor.fields:
        where = f"{path}.{field.name}" if path else field.name
        if field.type == F.TYPE_MESSAGE:
            inner = field.message_type
            if depth + 1 >= MAX_DEPTH or inner.full_name in seen:
                continue
            for found in extremes(inner, where, depth + 1, (*seen, inner.full_name)):
                wrapped = tag(field.number, LENGTH) + varint(len(found.raw)) + found.raw
                yield Extreme(found.path, found.field, found.label, wrapped, found.non_finite)
            continue
        for label, raw, non_finite in _values(field):
            yield Extreme(where, field, label, raw, non_finite)
