"""The operator's request as the intent model reads it::

    <|request|>{normalised request}<|intent|>

(the intent GPT-2, whose tokenizer has the two special tokens), or, for a model with its base's
tokenizer (the pretrained SmolLM2 fine-tune, no added tokens), the plain frame
``Request: {normalised request}\nIntent:\n``.

:func:`validate_text` refuses what cannot be read (empty, over-long) and normalises the rest the
way training did; :func:`ungrounded_fields` finds values a reading states that the request does not.
"""

from __future__ import annotations

import re
import unicodedata

from edge_node.netmgmt.intent_line import NUMBER, Intent
from netgpt.errors import InvalidArgument, excerpt

REQUEST_TOKEN, INTENT_TOKEN = "<|request|>", "<|intent|>"
SPECIAL_TOKENS = (REQUEST_TOKEN, INTENT_TOKEN)
MAX_TEXT_CHARS = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def normalise(text: str) -> str:
    """The request as the model reads it (training did the same): NFKC, control characters as
    spaces, whitespace collapsed, trimmed."""
    text = unicodedata.normalize("NFKC", text)
    return " ".join(_CONTROL.sub(" ", text).split())


PLAIN_FRAME = "Request: {request}\nIntent:\n"  # the prompt of a model without the special tokens


def prompt_text(normalised: str, plain: bool = False) -> str:
    """The prompt of a normalised request: with the special tokens, or the plain frame (``plain``)."""
    return PLAIN_FRAME.format(request=normalised) if plain else f"{REQUEST_TOKEN}{normalised}{INTENT_TOKEN}"


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


def _figures(text: str) -> set[float]:
    return {float(x) for x in re.findall(NUMBER, text)}


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
