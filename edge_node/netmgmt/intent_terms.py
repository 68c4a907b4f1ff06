"""What the standard intent documents (:mod:`edge_node.netmgmt.intent_3gpp`,
:mod:`edge_node.netmgmt.intent_tmf921`) both read off a :class:`NetworkIntent`: the action as a word,
the intent's id, the slice's SST, the daily time window and a one-line summary.

Pure functions of the proto message; nothing here knows either document format.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from decimal import Decimal

from netgpt.errors import InvalidArgument
from netgpt.v1 import network_management_pb2 as nm_pb2

ACTIONS = {nm_pb2.INTENT_ACTION_CREATE: "create", nm_pb2.INTENT_ACTION_MODIFY: "modify",
           nm_pb2.INTENT_ACTION_DELETE: "delete"}
# Standardised Slice/Service Types, TS 23.501 clause 5.15.2.2 (table 5.15.2.2-1): eMBB 1, URLLC 2, MIoT 3
SST = {nm_pb2.NETWORK_SLICE_EMBB: 1, nm_pb2.NETWORK_SLICE_URLLC: 2, nm_pb2.NETWORK_SLICE_MIOT: 3}
SLICE_NAMES = {nm_pb2.NETWORK_SLICE_EMBB: "eMBB", nm_pb2.NETWORK_SLICE_URLLC: "URLLC",
               nm_pb2.NETWORK_SLICE_MIOT: "MIoT"}
# One namespace for the intents' ids: the same endpoints give the same id, so a modify or a delete names
# the intent that the create made.
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:netgpt:network-intent")
_TIME_WINDOW = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)")


@dataclass(frozen=True)
class TimeWindow:
    """A daily window as RFC 3339 ``full-time`` strings (``08:00:00Z``): the proto carries no time zone,
    so the window is read as UTC."""

    start: str
    end: str


def action_word(intent: nm_pb2.NetworkIntent) -> str:
    """``create`` | ``modify`` | ``delete``; InvalidArgument for an intent that states none, or no endpoints
    (a reading that needs a clarification is not a document)."""
    action = ACTIONS.get(intent.action)
    if action is None:
        raise InvalidArgument("the intent states no action (create, modify or delete): ask the operator first")
    missing = [name for name in ("source", "destination") if not getattr(intent, name).strip()]
    if missing:
        raise InvalidArgument(f"the intent names no {' and no '.join(missing)}: ask the operator first")
    return action


def intent_id(intent: nm_pb2.NetworkIntent) -> str:
    """A UUID of the connection (its two endpoints, case and spacing folded), not of the request."""
    key = "->".join(" ".join(getattr(intent, name).split()).casefold() for name in ("source", "destination"))
    return str(uuid.uuid5(ID_NAMESPACE, key))


def time_window(intent: nm_pb2.NetworkIntent) -> TimeWindow | None:
    """The daily window ``HH:MM-HH:MM`` (it may wrap past midnight), or None when the intent states none."""
    if not intent.time_window:
        return None
    match = _TIME_WINDOW.fullmatch(intent.time_window)
    if match is None:
        raise InvalidArgument(f"time_window {intent.time_window[:40]!r} is not HH:MM-HH:MM")
    h1, m1, h2, m2 = match.groups()
    return TimeWindow(f"{h1}:{m1}:00Z", f"{h2}:{m2}:00Z")


def decimal_text(value: float) -> str:
    """A float as an ``xsd:decimal`` literal: no exponent, no trailing zeros (``1e-05`` → ``0.00001``,
    ``10000.0`` → ``10000``)."""
    text = format(Decimal(repr(float(value))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def summary(intent: nm_pb2.NetworkIntent) -> str:
    """One sentence an operator reads: ``Create a connection from Access 1 to Cloud 2: at least ...``."""
    parts = []
    if intent.bandwidth_mbps > 0:
        parts.append(f"at least {intent.bandwidth_mbps:g} Mbit/s")
    if intent.latency_ms > 0:
        parts.append(f"latency at most {intent.latency_ms:g} ms")
    if intent.protection:
        parts.append("with traffic protection")
    if intent.slice in SST:
        parts.append(f"slice {SLICE_NAMES[intent.slice]} (SST {SST[intent.slice]})")
    if intent.five_qi:
        parts.append(f"5QI {intent.five_qi}")
    if intent.time_window:
        parts.append(f"daily {intent.time_window} UTC")
    head = f"{action_word(intent).capitalize()} a connection from {intent.source} to {intent.destination}"
    return head + (": " + ", ".join(parts) if parts else "") + "."
