"""What the intent reader answers: a :class:`Reading`, and, when a required field is missing or was
read with low confidence, one clarification question for the operator instead of a guess."""

from __future__ import annotations

from dataclasses import dataclass

from edge_node.netmgmt.intent_line import REQUIRED, Intent

_ASK = {"action": "whether to create, modify or delete the connection", "source": "the source endpoint",
        "destination": "the destination endpoint", "bandwidth_mbps": "the bandwidth (e.g. 10 Gbps)"}
_LABEL = {"action": "action", "source": "source", "destination": "destination", "bandwidth_mbps": "bandwidth",
          "latency_ms": "latency bound", "protection": "protection", "slice": "slice", "five_qi": "5QI",
          "time_window": "time window"}


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
