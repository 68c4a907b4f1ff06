"""A :class:`NetworkIntent` as a 3GPP TS 28.312 ``Intent``: the JSON an intent-driven MnS producer takes
(``netgpt intent --format 3gpp``), valid against ``schemas/intent-3gpp-ts28312.schema.json``.

Where each attribute comes from (TS 28.312 clause numbers as in Rel-17, clause 6.2.1 "Generic information
model definition", 6.2.1.3 holding the data types; attribute names and enumerations as in the stage-3 OpenAPI definition
``TS28312_IntentNrm.yaml`` of Rel-19, 19.5.0, and ``TS28312_IntentExpectations.yaml``, 19.3.0):

- ``Intent`` <<IOC>> (6.2.1.2.1; ``Intent-Single``): ``id`` (from ``Top``, TS 28.622), ``userLabel`` (M),
  ``intentExpectations`` (M, 1..N), ``intentMgmtPurpose`` (``FULFILMENT_WITHOUT_NEGOTIATION``),
  ``intentAdminState`` (``ACTIVATED`` | ``DEACTIVATED``), ``intentReportControl``
  (``IntentReportControl``: ``observationPeriod`` in s, ``expectedReportTypes``). Not written:
  ``intentReportReference`` (read-only, the producer sets it), ``intentPriority`` (the NetworkIntent
  states no priority), ``intentContexts`` (every context here belongs to the one expectation).
- ``IntentExpectation`` <<dataType>> (6.2.1.3.1): ``expectationId``, ``expectationVerb`` (``DELIVER``),
  ``expectationObject``, ``expectationTargets`` (1..N), ``expectationContexts``.
- ``ExpectationObject`` (6.2.1.3): ``objectType`` ``SUBNETWORK`` (the unspecialised object type: a
  connection between two sites is neither a RAN-only nor a 5GC-only object), ``objectContexts``: the two
  endpoints (``sourceEndpoint``, ``destinationEndpoint``, ``IS_EQUAL_TO``) and ``UEGroup`` (the
  scenario-specific ``UEGroupContext``: ``fiveQI`` and ``sNssai.sst``, ``IS_ALL_OF``). ``objectInstance``
  (a DN) is not written: the edge does not know the operator's DNs.
- ``ExpectationTarget`` (6.2.1.3): ``targetName``, ``targetCondition`` (``Condition``), ``targetValueRange``.
  No scenario-specific target fits a point-to-point connection (``DlThptPerUE``/``DlLatency`` are per UE of
  a radio service), so the targets are the unspecialised ``ExpectationTarget`` with these names:
  ``connectivity`` (``IS_EQUAL_TO`` true, always: the expectation needs one target), ``throughputMbps``
  (``IS_EQUAL_TO_OR_GREATER_THAN``, Mbit/s), ``latencyMs`` (``IS_EQUAL_TO_OR_LESS_THAN``, ms),
  ``trafficProtection`` (``IS_EQUAL_TO`` true).
- ``Context`` (6.2.1.3): ``contextAttribute``, ``contextCondition``, ``contextValueRange``; the time window is
  the scenario-specific ``SchedulingTimeContext`` (``schedulingTime``, ``IS_ALL_OF``), whose value is a
  TS 28.623 ``SchedulingTime`` with daily ``timeIntervals`` (``intervalStart``/``intervalEnd``, RFC 3339
  full-time, UTC).

The action is not an attribute of the document: TS 28.532 carries it as the operation on ``Intent=<id>``
(createMOI, modifyMOIAttributes, deleteMOI). The document says it twice: the ``userLabel`` starts with it,
and a delete is ``intentAdminState: DEACTIVATED`` (a producer that takes the document stops fulfilling
it). ``id`` names the connection, so create, modify and delete of one connection share it.
"""

from __future__ import annotations

from typing import Any

from edge_node.netmgmt.intent_terms import SST, action_word, intent_id, time_window
from netgpt.v1 import network_management_pb2 as nm_pb2

OBSERVATION_PERIOD_S = 60  # IntentReportControl.observationPeriod: how often fulfilment is re-evaluated


def _context(attribute: str, condition: str, value: Any) -> dict[str, Any]:
    return {"contextAttribute": attribute, "contextCondition": condition, "contextValueRange": value}


def _target(name: str, condition: str, value: Any) -> dict[str, Any]:
    return {"targetName": name, "targetCondition": condition, "targetValueRange": value}


def _object(intent: nm_pb2.NetworkIntent) -> dict[str, Any]:
    contexts = [_context("sourceEndpoint", "IS_EQUAL_TO", intent.source),
                _context("destinationEndpoint", "IS_EQUAL_TO", intent.destination)]
    group: dict[str, Any] = {}
    if intent.five_qi:
        group["fiveQI"] = intent.five_qi
    if intent.slice in SST:
        group["sNssai"] = {"sst": SST[intent.slice]}
    if group:
        contexts.append(_context("UEGroup", "IS_ALL_OF", [group]))
    return {"objectType": "SUBNETWORK", "objectContexts": contexts}


def _targets(intent: nm_pb2.NetworkIntent) -> list[dict[str, Any]]:
    targets = [_target("connectivity", "IS_EQUAL_TO", True)]
    if intent.bandwidth_mbps > 0:
        targets.append(_target("throughputMbps", "IS_EQUAL_TO_OR_GREATER_THAN", intent.bandwidth_mbps))
    if intent.latency_ms > 0:
        targets.append(_target("latencyMs", "IS_EQUAL_TO_OR_LESS_THAN", intent.latency_ms))
    if intent.protection:
        targets.append(_target("trafficProtection", "IS_EQUAL_TO", True))
    return targets


def render_3gpp(intent: nm_pb2.NetworkIntent) -> dict[str, Any]:
    """The TS 28.312 ``Intent`` of a NetworkIntent; InvalidArgument when it states no action or endpoint."""
    action = action_word(intent)
    expectation: dict[str, Any] = {"expectationId": "1", "expectationVerb": "DELIVER",
                                   "expectationObject": _object(intent), "expectationTargets": _targets(intent)}
    window = time_window(intent)
    if window is not None:
        expectation["expectationContexts"] = [_context(
            "schedulingTime", "IS_ALL_OF", {"timeIntervals": [{"intervalStart": window.start,
                                                                "intervalEnd": window.end}]})]
    return {
        "id": intent_id(intent),
        "userLabel": f"{action} connection {intent.source} -> {intent.destination}",
        "intentExpectations": [expectation],
        "intentMgmtPurpose": "FULFILMENT_WITHOUT_NEGOTIATION",
        "intentAdminState": "DEACTIVATED" if action == "delete" else "ACTIVATED",
        "intentReportControl": [{"observationPeriod": OBSERVATION_PERIOD_S,
                                 "expectedReportTypes": ["INTENT_FULFILMENT_REPORT"]}],
    }
