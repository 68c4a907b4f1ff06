"""Figures as operators write them: a data rate, a latency or a clock time in any spelling that a unit
library reads, for the keyword line's reader (:mod:`edge_node.netmgmt.intent_line`).

The intent model is trained to write canonical values (``bw: 10 Gbps``, ``time: 22:00-06:00``), but on a
spelling it never saw it often copies the request's (``bw: 10 Mb/s``, ``lat: 5 msec``,
``time: 22h30–06h``). Rather than drop such a field and ask, the reader converts it:

- quantities with Pint, in a registry set for data networks: ``b`` is a bit (not a barn) and ``Gb`` a
  gigabit (not a gilbert); a bandwidth must come out in bits per second, a latency in seconds;
- clock times with python-dateutil (``5pm``, ``10:30 am``, ``22h30``); a side that states no hour or
  states a date is refused, so a bare ``22`` (a day of the month to dateutil) is not a time.

Neither library was tuned to our data: what they cannot read (``10 gig``) stays unreadable and the reader asks.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from functools import cache
from typing import Any

_PER = re.compile(r"\s+per\s+", re.IGNORECASE)
_WINDOW_SEPARATOR = re.compile(r"\s*(?:-|\u2013|\u2014|\bto\b|\buntil\b)\s*", re.IGNORECASE)
_EARLY = datetime(2000, 1, 1)  # two defaults for what a clock time leaves out: the hour differs between them
_LATE = _EARLY.replace(hour=1)


@cache
def _units() -> Any:  # pint.UnitRegistry; imported on first use (it parses its definitions, ~1 s)
    import pint

    registry: Any = pint.UnitRegistry(on_redefinition="ignore")
    registry.define("@alias bit = b")  # Mb/s, kb/s
    registry.define("Gb = gigabit")  # Gb/s: the registry's own Gb is the gilbert
    return registry


def _quantity(text: str, root: str, unit: str) -> float | None:
    """``text`` as a positive figure in ``unit``, when its root units are ``root``; else None."""
    try:
        quantity = _units().Quantity(_PER.sub("/", text.strip()))
        if str(quantity.to_root_units().units) != root:
            return None
        value = float(quantity.to(unit).magnitude)
    except Exception:  # Pint raises many kinds on free text; each one means "not a quantity"
        return None
    return round(value, 6) if math.isfinite(value) and value > 0 else None


def bandwidth_mbps(text: str) -> float | None:
    """A data rate in Mbit/s (``10 Mb/s``, ``2.5 gigabit/s``, ``500 kbit/s``), or None."""
    return _quantity(text, "bit / second", "Mbit/s")


def latency_ms(text: str) -> float | None:
    """A duration in milliseconds (``5 msec``, ``5 millis``, ``0.01 s``), or None."""
    return _quantity(text, "second", "ms")


def clock(text: str) -> str | None:
    """A clock time as ``HH:MM`` (``5pm`` → ``17:00``, ``22h30`` → ``22:30``), or None when ``text`` states no
    hour, states a date, or is not a time."""
    from dateutil import parser

    try:
        early, late = parser.parse(text, default=_EARLY), parser.parse(text, default=_LATE)
    except (ValueError, OverflowError):
        return None
    if early != late or early.date() != _EARLY.date():  # the hour came from the default, or a date was stated
        return None
    return f"{early.hour:02d}:{early.minute:02d}"


def time_window(text: str) -> str | None:
    """A window ``start - end`` (any dash, ``to`` or ``until`` between) as ``HH:MM-HH:MM``, or None."""
    sides = _WINDOW_SEPARATOR.split(text.strip())
    if len(sides) != 2:
        return None
    start, end = clock(sides[0]), clock(sides[1])
    return f"{start}-{end}" if start and end else None
