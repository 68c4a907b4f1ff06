"""A :class:`NetworkIntent` as a TM Forum TMF921 Intent Management API ``Intent`` resource
(``netgpt intent --format tmf921``), valid against ``schemas/intent-tmf921.schema.json``.

Where each field comes from:

- TMF921 Intent Management API v5.0.0, resource ``Intent`` (the ``Intent_FVO`` a ``POST /intent`` takes):
  ``id``, ``href`` (``/tmf-api/intentManagement/v5/intent/{id}``), ``name``, ``description``, ``version``,
  ``validFor`` (TMF630 ``TimePeriod``: ``startDateTime`` = now; the daily window is not a validity period, it
  goes in the expression), ``isBundle`` (false), ``lifecycleStatus``, ``creationDate``, ``lastUpdate``,
  ``expression``, ``@type`` (``Intent``), ``@baseType``, ``@schemaLocation`` (the ``$id`` of our schema). Not
  written: ``priority`` (the NetworkIntent states none), ``relatedParty`` (the edge does not know the owner's
  party id), ``intentSpecification``, ``intentRelationship``, ``characteristic``, ``attachment``,
  ``statusChangeDate`` (the handler sets it).
- ``expression``: a ``JsonLdExpression`` (``@type``, ``@baseType`` ``Expression``, ``iri``,
  ``expressionValue``) whose value is the intent in the TM Forum Intent Ontology (TIO) v3.6.0, Intent Common
  Model (TR290A): an ``icm:Intent`` that is ``log:allOf`` one ``icm:DeliveryExpectation`` (its ``icm:target``
  is the connection) and one ``icm:ReportingExpectation``; the delivery expectation is ``log:allOf`` its
  ``icm:Condition`` s (``set:forAll`` over ``icm:valuesOfTargetProperty`` with ``quan:atLeast`` for the
  bandwidth, ``quan:atMost`` for the latency; values ``rdf:value`` ``xsd:decimal`` with ``quan:unit``) and an
  ``icm:Context`` holding the endpoints, protection, slice (SST), 5QI and daily window in this project's own
  vocabulary (``ng:``, ``urn:netgpt:tio:``), as TIO expects a handler and an owner to agree on.

The action: TMF921 carries it as the HTTP method (``POST /intent``, ``PATCH`` or ``DELETE /intent/{id}``). The
document says it as ``ng:action`` on the ``icm:Intent``, in ``name`` and ``description``, and in
``lifecycleStatus`` (a free string in TMF921): ``Created`` for create and modify, ``Terminated`` for delete.
``id`` names the connection, so create, modify and delete of one connection share it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from edge_node.netmgmt.intent_terms import (
    SLICE_NAMES,
    SST,
    action_word,
    decimal_text,
    intent_id,
    summary,
    time_window,
)
from netgpt.v1 import network_management_pb2 as nm_pb2

API_PATH = "/tmf-api/intentManagement/v5/intent"
SCHEMA_LOCATION = "urn:netgpt:schema:intent-tmf921"  # the $id of schemas/intent-tmf921.schema.json
TIO = "http://tio.models.tmforum.org/tio/v3.6.0/"
CONTEXT = {  # the JSON-LD @context: TIO's Intent Common Model and vocabularies, and ours
    "icm": TIO + "IntentCommonModel/", "log": TIO + "LogicalOperators/", "set": TIO + "SetOperators/",
    "quan": TIO + "QuantityOntology/", "dct": "http://purl.org/dc/terms/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#", "xsd": "http://www.w3.org/2001/XMLSchema#",
    "ng": "urn:netgpt:tio:",
}
LIFECYCLE = {"create": "Created", "modify": "Created", "delete": "Terminated"}


def _timestamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _condition(node: str, prop: str, operator: str, value: float, unit: str) -> dict[str, Any]:
    """``node a icm:Condition; set:forAll ( _:x [icm:valuesOfTargetProperty (prop)] operator ( _:x value ) )``,
    with a blank node of its own per condition."""
    quantity = {"rdf:value": {"@value": decimal_text(value), "@type": "xsd:decimal"}, "quan:unit": unit}
    variable = {"@id": "_:" + node.rsplit("/", 1)[-1].lower()}
    return {"@id": node, "@type": "icm:Condition", "set:forAll": {"@list": [
        variable, {"icm:valuesOfTargetProperty": {"@list": [{"@id": prop}]}}, {"@id": operator},
        {"@list": [variable, quantity]}]}}


def _context(intent: nm_pb2.NetworkIntent, node: str) -> dict[str, Any]:
    context: dict[str, Any] = {"@id": node, "@type": "icm:Context", "ng:source": intent.source,
                               "ng:destination": intent.destination}
    if intent.protection:
        context["ng:trafficProtection"] = True
    if intent.slice in SST:
        context["ng:sliceServiceType"] = SST[intent.slice]
        context["ng:sliceName"] = SLICE_NAMES[intent.slice]
    if intent.five_qi:
        context["ng:fiveQI"] = intent.five_qi
    window = time_window(intent)
    if window is not None:
        context["ng:dailyTimeWindow"] = {"ng:startTime": {"@value": window.start, "@type": "xsd:time"},
                                         "ng:endTime": {"@value": window.end, "@type": "xsd:time"}}
    return context


def tio_expression(intent: nm_pb2.NetworkIntent) -> dict[str, Any]:
    """The intent as a TIO JSON-LD graph (the ``expressionValue`` of the JsonLdExpression)."""
    action, node = action_word(intent), f"ng:{intent_id(intent)}"
    conditions = []
    if intent.bandwidth_mbps > 0:
        conditions.append(_condition(f"{node}/C1", "ng:bandwidth", "quan:atLeast", intent.bandwidth_mbps, "Mbit/s"))
    if intent.latency_ms > 0:
        conditions.append(_condition(f"{node}/C2", "ng:latency", "quan:atMost", intent.latency_ms, "ms"))
    delivery = {"@id": f"{node}/DE1", "@type": "icm:DeliveryExpectation",
                "icm:target": {"@id": f"{node}/connection"}, "dct:description": summary(intent),
                "log:allOf": {"@list": [*conditions, _context(intent, f"{node}/CX1")]}}
    reporting = {"@id": f"{node}/RE1", "@type": "icm:ReportingExpectation", "icm:target": {"@id": node},
                 "dct:description": "Report whether the delivery expectation is met."}
    return {"@context": CONTEXT, "@id": node, "@type": "icm:Intent", "ng:action": action,
            "dct:description": summary(intent), "log:allOf": {"@list": [delivery, reporting]}}


def render_tmf921(intent: nm_pb2.NetworkIntent, *, now: datetime | None = None) -> dict[str, Any]:
    """The TMF921 ``Intent`` resource of a NetworkIntent; ``now`` stamps creationDate, lastUpdate and
    validFor (default: the current UTC time); InvalidArgument when it states no action or endpoint."""
    action, ident = action_word(intent), intent_id(intent)
    stamp = _timestamp(now or datetime.now(UTC))
    return {
        "id": ident,
        "href": f"{API_PATH}/{ident}",
        "name": f"{action} connection {intent.source} -> {intent.destination}",
        "description": summary(intent),
        "version": "1",
        "validFor": {"startDateTime": stamp},
        "isBundle": False,
        "lifecycleStatus": LIFECYCLE[action],
        "creationDate": stamp,
        "lastUpdate": stamp,
        "expression": {"@type": "JsonLdExpression", "@baseType": "Expression",
                       "iri": TIO + "IntentCommonModel/", "expressionValue": tio_expression(intent)},
        "@type": "Intent",
        "@baseType": "Intent",
        "@schemaLocation": SCHEMA_LOCATION,
    }
