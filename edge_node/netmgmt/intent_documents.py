"""The standard documents a :class:`NetworkIntent` renders as, by name: ``3gpp`` (TS 28.312 ``Intent``,
:mod:`edge_node.netmgmt.intent_3gpp`) and ``tmf921`` (TMF921 ``Intent`` resource,
:mod:`edge_node.netmgmt.intent_tmf921`), and the JSON Schema each is checked against (shipped beside them
under ``schemas/``)."""

from __future__ import annotations

import json
from datetime import datetime
from importlib import resources
from typing import Any

from edge_node.netmgmt.intent_3gpp import render_3gpp
from edge_node.netmgmt.intent_tmf921 import render_tmf921
from netgpt.errors import InvalidArgument
from netgpt.v1 import network_management_pb2 as nm_pb2

FORMATS = ("3gpp", "tmf921")
PROTO_FORMATS: dict[nm_pb2.IntentDocumentFormat, str] = {
    nm_pb2.INTENT_DOCUMENT_FORMAT_3GPP_TS28312: "3gpp", nm_pb2.INTENT_DOCUMENT_FORMAT_TMF921: "tmf921"}
SCHEMAS = {"3gpp": "intent-3gpp-ts28312.schema.json", "tmf921": "intent-tmf921.schema.json"}


def render(intent: nm_pb2.NetworkIntent, fmt: str, *, now: datetime | None = None) -> dict[str, Any]:
    """The document of ``fmt`` (``3gpp`` | ``tmf921``); ``now`` stamps the TMF921 dates (default: now)."""
    if fmt == "3gpp":
        return render_3gpp(intent)
    if fmt == "tmf921":
        return render_tmf921(intent, now=now)
    raise InvalidArgument(f"unknown intent document format {fmt[:20]!r}; use one of {', '.join(FORMATS)}")


def format_of(document_format: nm_pb2.IntentDocumentFormat) -> str:
    """The name of an ``IntentDocumentFormat`` (``""`` for UNSPECIFIED); InvalidArgument for a value this edge
    does not know (a newer client's)."""
    if document_format == nm_pb2.INTENT_DOCUMENT_FORMAT_UNSPECIFIED:
        return ""
    if document_format not in PROTO_FORMATS:
        raise InvalidArgument(f"unknown document_format {document_format}; this edge writes 3GPP TS 28.312 (1) "
                              "and TMF921 (2)")
    return PROTO_FORMATS[document_format]


def render_json(intent: nm_pb2.NetworkIntent, fmt: str, *, now: datetime | None = None) -> str:
    """:func:`render` as indented JSON text (UTF-8, endpoint names as written)."""
    return json.dumps(render(intent, fmt, now=now), indent=2, ensure_ascii=False)


def schema(fmt: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) the ``fmt`` document is checked against."""
    if fmt not in SCHEMAS:
        raise InvalidArgument(f"unknown intent document format {fmt[:20]!r}; use one of {', '.join(FORMATS)}")
    text = resources.files("edge_node.netmgmt").joinpath("schemas", SCHEMAS[fmt]).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded
