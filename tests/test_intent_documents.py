"""A NetworkIntent rendered as the standard documents operators' systems take (3GPP TS 28.312 Intent,
TMF921 Intent resource): each validates against the JSON Schema written from its specification, a
document the specification forbids does not, and every field of NetworkIntent can be read back from
both (a field added to the proto fails here until the renderings carry it)."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest

from edge_node.netmgmt.intent_clarify import Reading
from edge_node.netmgmt.intent_documents import FORMATS, PROTO_FORMATS, format_of, render, render_json, schema
from edge_node.netmgmt.intent_line import Intent
from edge_node.netmgmt.intent_terms import SST, decimal_text, intent_id
from edge_node.netmgmt.servicer import reading_to_proto
from netgpt.errors import InvalidArgument
from netgpt.v1 import network_management_pb2 as nm_pb2

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ACTION_WORDS = {"create": nm_pb2.INTENT_ACTION_CREATE, "modify": nm_pb2.INTENT_ACTION_MODIFY,
                "delete": nm_pb2.INTENT_ACTION_DELETE}
SLICE_OF_SST = {sst: value for value, sst in SST.items()}


def full_intent() -> nm_pb2.NetworkIntent:
    return nm_pb2.NetworkIntent(
        action=nm_pb2.INTENT_ACTION_CREATE, source="Access 1", destination="Cloud 2", bandwidth_mbps=10_000,
        latency_ms=5, protection=True, slice=nm_pb2.NETWORK_SLICE_URLLC, five_qi=82, time_window="22:00-06:00")


def random_intents(n: int, seed: int = 7) -> list[nm_pb2.NetworkIntent]:
    rng = random.Random(seed)
    sites = ["Access 1", "Access 12", "Cloud 2", "Edge Zürich", "core-dc/3", "Metro \"North\""]
    out = []
    for _ in range(n):
        source, destination = rng.sample(sites, 2)
        out.append(nm_pb2.NetworkIntent(
            action=rng.choice(list(ACTION_WORDS.values())), source=source, destination=destination,
            bandwidth_mbps=rng.choice([0.0, 1e-05, 0.5, 100.0, 2500.25, 10_000.0]),
            latency_ms=rng.choice([0.0, 0.25, 5.0, 120.0]), protection=rng.random() < 0.5,
            slice=rng.choice([0, *SST]), five_qi=rng.choice([0, 1, 9, 82, 255]),
            time_window=rng.choice(["", "08:00-18:00", "22:00-06:00", "00:00-23:59"])))
    return out


CASES = [
    full_intent(),
    nm_pb2.NetworkIntent(action=nm_pb2.INTENT_ACTION_DELETE, source="Access 1", destination="Cloud 2"),
    nm_pb2.NetworkIntent(action=nm_pb2.INTENT_ACTION_MODIFY, source="Access 3", destination="Cloud 1", latency_ms=2.5),
    *random_intents(40),
]


# --- reading the documents back: what an operator's system would take from them ----------------------


def read_3gpp(doc: dict[str, Any]) -> nm_pb2.NetworkIntent:
    (expectation,) = doc["intentExpectations"]
    assert expectation["expectationVerb"] == "DELIVER"
    out = nm_pb2.NetworkIntent()
    word = doc["userLabel"].split()[0]
    assert (doc["intentAdminState"] == "DEACTIVATED") == (word == "delete"), doc["userLabel"]
    out.action = ACTION_WORDS[word]
    for context in expectation["expectationObject"]["objectContexts"]:
        attribute, value = context["contextAttribute"], context["contextValueRange"]
        if attribute == "sourceEndpoint":
            out.source = value
        elif attribute == "destinationEndpoint":
            out.destination = value
        elif attribute == "UEGroup":
            (group,) = value
            out.five_qi = group.get("fiveQI", 0)
            if "sNssai" in group:
                out.slice = SLICE_OF_SST[group["sNssai"]["sst"]]
        else:
            raise AssertionError(f"unexpected object context {attribute}")
    for target in expectation["expectationTargets"]:
        name, value = target["targetName"], target["targetValueRange"]
        if name == "throughputMbps":
            out.bandwidth_mbps = value
        elif name == "latencyMs":
            out.latency_ms = value
        elif name == "trafficProtection":
            out.protection = value
        else:
            assert (name, value) == ("connectivity", True)
    for context in expectation.get("expectationContexts", []):
        assert context["contextAttribute"] == "schedulingTime"
        (interval,) = context["contextValueRange"]["timeIntervals"]
        out.time_window = f"{interval['intervalStart'][:5]}-{interval['intervalEnd'][:5]}"
    return out


def read_tmf921(doc: dict[str, Any]) -> nm_pb2.NetworkIntent:
    tio = doc["expression"]["expressionValue"]
    out = nm_pb2.NetworkIntent(action=ACTION_WORDS[tio["ng:action"]])
    assert doc["lifecycleStatus"] == ("Terminated" if tio["ng:action"] == "delete" else "Created")
    assert doc["name"].startswith(tio["ng:action"])
    (delivery,) = [node for node in tio["log:allOf"]["@list"] if node["@type"] == "icm:DeliveryExpectation"]
    for node in delivery["log:allOf"]["@list"]:
        if node["@type"] == "icm:Condition":
            variable, prop, operator, comparison = node["set:forAll"]["@list"]
            same, quantity = comparison["@list"]
            assert variable == same
            (prop,) = prop["icm:valuesOfTargetProperty"]["@list"]
            value, unit = float(quantity["rdf:value"]["@value"]), quantity["quan:unit"]
            if prop["@id"] == "ng:bandwidth":
                assert (operator["@id"], unit) == ("quan:atLeast", "Mbit/s")
                out.bandwidth_mbps = value
            else:
                assert (prop["@id"], operator["@id"], unit) == ("ng:latency", "quan:atMost", "ms")
                out.latency_ms = value
        else:
            assert node["@type"] == "icm:Context"
            out.source, out.destination = node["ng:source"], node["ng:destination"]
            out.protection = node.get("ng:trafficProtection", False)
            out.five_qi = node.get("ng:fiveQI", 0)
            if "ng:sliceServiceType" in node:
                out.slice = SLICE_OF_SST[node["ng:sliceServiceType"]]
            if "ng:dailyTimeWindow" in node:
                window = node["ng:dailyTimeWindow"]
                out.time_window = f"{window['ng:startTime']['@value'][:5]}-{window['ng:endTime']['@value'][:5]}"
    return out


READERS: dict[str, Callable[[dict[str, Any]], nm_pb2.NetworkIntent]] = {"3gpp": read_3gpp, "tmf921": read_tmf921}


def validator(fmt: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema(fmt), format_checker=jsonschema.FormatChecker())


def errors(fmt: str, doc: object) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(fmt).iter_errors(doc)]


# --- the tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_schemas_are_valid_draft_2020_12(fmt):
    jsonschema.Draft202012Validator.check_schema(schema(fmt))
    assert schema(fmt)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("intent", CASES, ids=lambda i: f"{i.action}-{i.source}-{i.bandwidth_mbps:g}")
def test_every_rendering_validates_against_its_schema(fmt, intent):
    doc = render(intent, fmt, now=NOW)
    assert errors(fmt, doc) == []
    assert json.loads(render_json(intent, fmt, now=NOW)) == doc  # plain JSON, nothing Python-only


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("intent", CASES, ids=lambda i: f"{i.action}-{i.source}-{i.bandwidth_mbps:g}")
def test_every_networkintent_field_reads_back_from_both_documents(fmt, intent):
    """Round trip over the proto's own field list: a NetworkIntent field no document carries fails here."""
    back = READERS[fmt](render(intent, fmt, now=NOW))
    for field in nm_pb2.NetworkIntent.DESCRIPTOR.fields:
        assert getattr(back, field.name) == getattr(intent, field.name), (fmt, field.name)
    assert back == intent


def _drop(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path
        for key in parents:
            doc = doc[key]
        del doc[last]
    return edit


def _set(path: tuple[Any, ...], value: object) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path
        for key in parents:
            doc = doc[key]
        doc[last] = value
    return edit


EXPECTATION = ("intentExpectations", 0)
TIO = ("expression", "expressionValue")
BROKEN = [  # (format, what the spec forbids, the edit that does it)
    ("3gpp", "no userLabel (M in Intent)", _drop(("userLabel",))),
    ("3gpp", "no intentExpectations", _drop(("intentExpectations",))),
    ("3gpp", "no expectationTargets", _drop((*EXPECTATION, "expectationTargets"))),
    ("3gpp", "no targetValueRange", _drop((*EXPECTATION, "expectationTargets", 1, "targetValueRange"))),
    ("3gpp", "no intentReportControl.observationPeriod", _drop(("intentReportControl", 0, "observationPeriod"))),
    ("3gpp", "verb CREATE (DELIVER | ENSURE | MAINTAIN)", _set((*EXPECTATION, "expectationVerb"), "CREATE")),
    ("3gpp", "condition IS_BIGGER_THAN", _set((*EXPECTATION, "expectationTargets", 1, "targetCondition"),
                                              "IS_BIGGER_THAN")),
    ("3gpp", "objectType TRANSPORT_NETWORK", _set((*EXPECTATION, "expectationObject", "objectType"),
                                                  "TRANSPORT_NETWORK")),
    ("3gpp", "intentAdminState LOCKED", _set(("intentAdminState",), "LOCKED")),
    ("3gpp", "intentMgmtPurpose FULFIL", _set(("intentMgmtPurpose",), "FULFIL")),
    ("3gpp", "misspelt attribute intentExpectation", _set(("intentExpectation",), [])),
    ("3gpp", "SST 300", _set((*EXPECTATION, "expectationObject", "objectContexts", 2, "contextValueRange", 0,
                              "sNssai", "sst"), 300)),
    ("3gpp", "interval without offset", _set((*EXPECTATION, "expectationContexts", 0, "contextValueRange",
                                              "timeIntervals", 0, "intervalStart"), "22:00")),
    ("3gpp", "throughput as text", _set((*EXPECTATION, "expectationTargets", 1, "targetValueRange"), "10 Gbps")),
    ("tmf921", "no expression", _drop(("expression",))),
    ("tmf921", "no name (required in Intent_FVO)", _drop(("name",))),
    ("tmf921", "no lifecycleStatus", _drop(("lifecycleStatus",))),
    ("tmf921", "@type Intnt", _set(("@type",), "Intnt")),
    ("tmf921", "expression @type TurtleExpression", _set(("expression", "@type"), "TurtleExpression")),
    ("tmf921", "creationDate not a date-time", _set(("creationDate",), "yesterday")),
    ("tmf921", "TIO @type icm:Goal", _set((*TIO, "@type"), "icm:Goal")),
    ("tmf921", "TIO action upgrade", _set((*TIO, "ng:action"), "upgrade")),
    ("tmf921", "TIO context IRI of another ontology", _set((*TIO, "@context", "icm"), "http://example.org/icm/")),
    ("tmf921", "no delivery expectation", _set((*TIO, "log:allOf", "@list"), [])),
    ("tmf921", "quantity as a float", _set((*TIO, "log:allOf", "@list", 0, "log:allOf", "@list", 0, "set:forAll",
                                            "@list", 3, "@list", 1, "rdf:value", "@value"), 10000.0)),
    ("tmf921", "context without destination", _drop((*TIO, "log:allOf", "@list", 0, "log:allOf", "@list", 2,
                                                     "ng:destination"))),
]


@pytest.mark.parametrize(("fmt", "why", "edit"), BROKEN, ids=[f"{f}: {w}" for f, w, _ in BROKEN])
def test_a_document_the_specification_forbids_fails_validation(fmt, why, edit):
    doc = render(full_intent(), fmt, now=NOW)
    assert errors(fmt, doc) == []
    broken = copy.deepcopy(doc)
    edit(broken)
    assert broken != doc
    assert errors(fmt, broken), why


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("intent", [
    nm_pb2.NetworkIntent(source="Access 1", destination="Cloud 2", bandwidth_mbps=10),  # no action
    nm_pb2.NetworkIntent(action=nm_pb2.INTENT_ACTION_CREATE, destination="Cloud 2"),
    nm_pb2.NetworkIntent(action=nm_pb2.INTENT_ACTION_DELETE, source="Access 1", destination="  "),
    nm_pb2.NetworkIntent(action=nm_pb2.INTENT_ACTION_CREATE, source="A", destination="B", time_window="8-18"),
])
def test_an_intent_that_needs_a_clarification_is_no_document(fmt, intent):
    with pytest.raises(InvalidArgument):
        render(intent, fmt, now=NOW)


def test_one_connection_keeps_one_id_across_create_modify_delete():
    create = full_intent()
    modify = nm_pb2.NetworkIntent(action=nm_pb2.INTENT_ACTION_MODIFY, source="access  1", destination="CLOUD 2",
                                  latency_ms=3)
    delete = nm_pb2.NetworkIntent(action=nm_pb2.INTENT_ACTION_DELETE, source="Access 1", destination="Cloud 2")
    assert len({intent_id(i) for i in (create, modify, delete)}) == 1
    for fmt in FORMATS:
        assert len({render(i, fmt, now=NOW)["id"] for i in (create, modify, delete)}) == 1
    reverse = nm_pb2.NetworkIntent(action=nm_pb2.INTENT_ACTION_CREATE, source="Cloud 2", destination="Access 1")
    assert intent_id(reverse) != intent_id(create)


def test_a_delete_is_deactivated_and_terminated():
    delete = nm_pb2.NetworkIntent(action=nm_pb2.INTENT_ACTION_DELETE, source="Access 1", destination="Cloud 2")
    assert render(delete, "3gpp")["intentAdminState"] == "DEACTIVATED"
    assert render(full_intent(), "3gpp")["intentAdminState"] == "ACTIVATED"
    assert render(delete, "tmf921", now=NOW)["lifecycleStatus"] == "Terminated"


def test_tmf921_dates_and_href():
    doc = render(full_intent(), "tmf921", now=NOW)
    assert doc["creationDate"] == doc["lastUpdate"] == doc["validFor"]["startDateTime"] == "2026-01-02T03:04:05Z"
    assert doc["href"] == f"/tmf-api/intentManagement/v5/intent/{doc['id']}"
    assert render(full_intent(), "tmf921")["creationDate"].endswith("Z")  # default: the current UTC time


@pytest.mark.parametrize(("value", "text"), [(10_000.0, "10000"), (0.5, "0.5"), (1e-05, "0.00001"),
                                             (2500.25, "2500.25")])
def test_decimals_have_no_exponent(value, text):
    assert decimal_text(value) == text


def test_every_proto_document_format_has_a_renderer():
    assert set(PROTO_FORMATS) == set(nm_pb2.IntentDocumentFormat.values()) - {0}
    assert sorted(PROTO_FORMATS.values()) == sorted(FORMATS)


def test_unknown_formats_are_invalid_arguments():
    assert format_of(nm_pb2.INTENT_DOCUMENT_FORMAT_UNSPECIFIED) == ""
    assert format_of(nm_pb2.INTENT_DOCUMENT_FORMAT_TMF921) == "tmf921"
    with pytest.raises(InvalidArgument):
        format_of(7)
    with pytest.raises(InvalidArgument):
        render(full_intent(), "yang")
    with pytest.raises(InvalidArgument):
        schema("yang")


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_reply_carries_the_document_unless_it_asks_a_question(fmt):
    """What InferIntent answers for document_format (the edge's servicer builds its reply with this)."""
    intent = Intent(action="create", source="Access 1", destination="Cloud 2", bandwidth_mbps=500, slice="embb")
    read = Reading(intent, {"action": 0.9}, False, [], [], "")
    reply = reading_to_proto(read, "v1", fmt)
    doc = json.loads(reply.document)
    assert errors(fmt, doc) == []
    assert READERS[fmt](doc) == reply.intent
    assert reading_to_proto(read, "v1").document == ""  # none asked for
    unsure = Reading(Intent(action="create", source="Access 1"), {}, True, ["destination"], [], "Please state ...")
    assert reading_to_proto(unsure, "v1", fmt).document == ""


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("edge_renders", [True, False], ids=["edge-document", "older-edge"])
async def test_cli_prints_the_document_on_stdout_or_the_question_on_stderr(monkeypatch, capsys, fmt, edge_renders):
    """``netgpt intent --format``: the edge's document, or the same rendered here when an edge from before
    documents leaves it empty; a reading that asks prints the question on stderr, no JSON, exit 3."""
    from cli import netmgmt

    intent = full_intent()
    replies = [nm_pb2.InferIntentResponse(intent=intent, model_version="v1"),
               nm_pb2.InferIntentResponse(intent=nm_pb2.NetworkIntent(source="Access 1"), needs_clarification=True,
                                          missing_fields=["destination"],
                                          clarification="Please state the destination.")]
    requests = []

    async def fake_call(address, method, request):
        requests.append(request)
        reply = replies.pop(0)
        if edge_renders and not reply.needs_clarification:
            reply.document = render_json(reply.intent, format_of(request.document_format))
        return reply

    async def fake_address(args, model_name):
        return "edge:1"

    monkeypatch.setattr(netmgmt, "_call", fake_call)
    monkeypatch.setattr(netmgmt, "edge_address", fake_address)
    args = netmgmt.argparse.Namespace(text="...", format=fmt, json=False)
    assert await netmgmt._intent(args) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert errors(fmt, doc) == [] and READERS[fmt](doc) == intent and err == ""
    assert PROTO_FORMATS[requests[0].document_format] == fmt
    assert await netmgmt._intent(args) == 3
    out, err = capsys.readouterr()
    assert out == "" and "needs clarification: Please state the destination." in err
