"""Intents checked against the network the edge is given (``intent_topology``, issue 25): the topology
file and its errors, the widest-path check, and InferIntent answering an unknown endpoint or a bandwidth
no path carries with a clarification instead of a document."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest
from harness import start_cluster
from helpers import captured_events
from throwaway_ca import identity

from edge_node.daemon import start_edge
from edge_node.netmgmt.intent_clarify import Reading
from edge_node.netmgmt.intent_documents import schema
from edge_node.netmgmt.intent_line import Intent
from edge_node.netmgmt.servicer import reading_to_proto
from edge_node.netmgmt.topology import Topology, TopologyError, intent_topology, load_topology
from edge_node.netmgmt.topology_check import check_intent, check_reading, fastest_path, widest_path
from netgpt.channels import open_channel
from netgpt.config import EdgeConfig
from netgpt.errors import StartupError
from netgpt.v1 import network_management_pb2 as nm_pb2
from netgpt.v1 import network_management_pb2_grpc as nm_grpc

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "topology.toml"


def topology(text: str, tmp_path: Path, name: str = "topo.toml") -> Topology:
    path = tmp_path / name
    path.write_text(text)
    return load_topology(path)


def sites(*names: str) -> str:
    return "".join(f'[[site]]\nname = "{name}"\n\n' for name in names)


def link(a: str, b: str, capacity: float, latency: float | None = None) -> str:
    lat = f"latency_ms = {latency}\n" if latency is not None else ""
    return f'[[link]]\nbetween = ["{a}", "{b}"]\ncapacity_mbps = {capacity}\n{lat}\n'


# --- the file --------------------------------------------------------------------------------


def test_the_example_topology_loads_with_names_the_intent_generator_writes():
    topo = load_topology(EXAMPLE)
    assert len(topo.sites) == 12 and len(topo.links) == 12
    for name in ("Access 1", "Cloud 2", "Metro-7", "DC Frankfurt", "Core Router 1"):
        assert topo.site(name) is not None, name
    assert topo.site("  access   1 ") == topo.site("A1") == topo.site("Access 1")  # case, spacing, alias
    assert topo.site("data center frankfurt").name == "DC Frankfurt"  # type: ignore[union-attr]
    assert topo.site("DC Berlin") is None
    assert topo.source == str(EXAMPLE)


def test_a_site_keeps_its_kind_and_aliases_and_a_link_its_latency(tmp_path):
    topo = topology('[[site]]\nname = "Access  1"\nkind = "access"\naliases = ["A1", "acc-1"]\n\n'
                    + sites("Metro-1") + link("access 1", "METRO-1", 2500, 0.5), tmp_path)
    site = topo.sites[0]
    assert (site.name, site.kind, site.aliases) == ("Access 1", "access", ("A1", "acc-1"))
    (only,) = topo.links
    assert (only.a, only.b, only.capacity_mbps, only.latency_ms) == ("Access 1", "Metro-1", 2500.0, 0.5)
    assert topo.neighbours("Metro-1")[0][0] == "Access 1"  # a link goes both ways


BAD_FILES = [
    ("[[site]\nname = 1", "not valid TOML", None),
    ("[[sites]]\nname = 'A'\n", "unknown key(s) sites", None),
    ("", "no [[site]] entries", None),
    ("site = 'A'\n", "site must be a list of tables", None),
    (sites("A") + "[[site]]\nkind = 'metro'\n", "site 2: name must be a non-empty string", 4),
    (sites("A") + "[[site]]\nname = '   '\n", "site 2: name must be a non-empty string", 4),
    (sites("A") + "[[site]]\nname = 'B'\ncolour = 'red'\n", "unknown key(s) colour", 4),
    (sites("Access 1", "Metro-1", "access  1"), "site 3 ('access  1'): the name 'access 1' is already used by "
                                                "site 'Access 1'", 7),
    (sites("Access 1") + "[[site]]\nname = 'B'\naliases = ['ACCESS 1']\n", "the name 'ACCESS 1' is already used",
     4),
    ("[[site]]\nname = 'B'\naliases = ['b']\n", "an alias repeats the name or another alias", 1),
    ("[[site]]\nname = 'B'\naliases = 'b2'\n", "aliases must be a list of non-empty strings", 1),
    (sites("A", "B") + link("A", "Metro-9", 100), "link 1 (A - Metro-9): unknown site 'Metro-9'", 7),
    (sites("A", "B") + link("A", "B", 100) + link("A", "B", -5), "link 2 (A - B): capacity_mbps must be > 0, "
                                                                 "got -5", 11),
    (sites("A", "B") + link("A", "B", 0), "capacity_mbps must be > 0, got 0", 7),
    (sites("A", "B") + "[[link]]\nbetween = ['A', 'B']\n", "capacity_mbps is required", 7),
    (sites("A", "B") + "[[link]]\nbetween = ['A', 'B']\ncapacity_mbps = '10G'\n", "capacity_mbps must be a number",
     7),
    (sites("A", "B") + "[[link]]\nbetween = ['A', 'B']\ncapacity_mbps = true\n", "capacity_mbps must be a number",
     7),
    (sites("A", "B") + "[[link]]\nbetween = ['A', 'B']\ncapacity_mbps = inf\n", "capacity_mbps must be a number",
     7),
    (sites("A", "B") + link("A", "B", 100, -1), "latency_ms must be >= 0, got -1", 7),
    (sites("A", "B") + link("A", "a", 100), "a link must join two different sites", 7),
    (sites("A", "B") + link("A", "B", 100) + link("b", "a", 200), "link 2 (b - a): a second link between 'B' and "
                                                                  "'A' (link 1 is the first)", 11),
    (sites("A", "B") + "[[link]]\nbetween = ['A']\ncapacity_mbps = 1\n", "between must name two sites", 7),
    (sites("A", "B") + "[[link]]\nbetween = ['A', 'B']\ncapacity_mbps = 1\nspeed = 2\n", "unknown key(s) speed", 7),
]


@pytest.mark.parametrize("text, needle, line", BAD_FILES, ids=[needle[:40] for _, needle, _ in BAD_FILES])
def test_a_bad_topology_file_is_an_error_naming_the_file_the_line_and_the_entry(tmp_path, text, needle, line):
    path = tmp_path / "net.toml"
    path.write_text(text)
    with pytest.raises(TopologyError) as err:
        load_topology(path)
    message = str(err.value)
    assert message.startswith(str(path)) or message.startswith(f"topology file {path}"), message
    assert needle in message, message
    if line is not None:
        assert f"{path}, line {line}: " in message, message
    assert "\n" not in message


def test_an_entry_written_as_an_inline_table_is_named_without_a_line(tmp_path):
    path = tmp_path / "inline.toml"
    path.write_text('site = [{name = "A"}, {name = "B"}]\nlink = [{between = ["A", "C"], capacity_mbps = 1}]\n')
    with pytest.raises(TopologyError, match=rf"^{path}: link 1 \(A - C\): unknown site 'C'"):
        load_topology(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(TopologyError, match="topology file .*nowhere.toml: No such file"):
        load_topology(tmp_path / "nowhere.toml")


def test_the_edge_setting_is_off_by_default_and_a_bad_file_stops_the_edge(tmp_path):
    assert EdgeConfig().intent_topology == "" and intent_topology(EdgeConfig()) is None
    assert intent_topology(EdgeConfig(intent_topology=str(EXAMPLE))) is not None
    bad = tmp_path / "bad.toml"
    bad.write_text(sites("A") + link("A", "Nowhere", 10))
    with pytest.raises(StartupError, match=rf"^intent_topology: {bad}, line 4: link 1 .*unknown site 'Nowhere'"):
        intent_topology(EdgeConfig(intent_topology=str(bad)))


async def test_the_edge_daemon_does_not_start_on_a_bad_topology(tmp_path):
    """Refused before the edge opens anything (model and knowledge base are not even looked at)."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[[site]]\nname = 'A'\n\n[[site]]\nname = 'a'\n")
    config = EdgeConfig(cells=["cell-1"], listen="127.0.0.1:0", intent_topology=str(bad))
    with pytest.raises(StartupError, match=rf"intent_topology: {bad}, line 4: site 2"):
        await start_edge(config, None, None)  # type: ignore[arg-type]


# --- the widest path ---------------------------------------------------------------------------

# A ─1G─ B ─1G─ Z       (short and narrow)
# A ─10G─ C ─10G─ D ─5G─ Z   (long and wide: 5G)
# A ─10G─ E ─5G─ Z (5G too, faster: 1 + 1 ms against 1 + 1 + 1 ms)
# Y: no links
DIAMOND = (sites("A", "B", "C", "D", "E", "Z", "Y") + link("A", "B", 1000, 1) + link("B", "Z", 1000, 1)
           + link("A", "C", 10000, 1) + link("C", "D", 10000, 1) + link("D", "Z", 5000, 1)
           + link("A", "E", 10000, 1) + link("E", "Z", 5000, 1))


def test_the_widest_path_is_the_largest_bottleneck_not_the_fewest_hops(tmp_path):
    topo = topology(DIAMOND, tmp_path)
    route = widest_path(topo, "A", "Z")
    assert route is not None
    assert route.bottleneck_mbps == 5000
    assert route.sites == ("A", "E", "Z")  # as wide as A-C-D-Z, and faster
    assert route.latency_ms == 2 and route.latency_known
    assert widest_path(topo, "Z", "A").bottleneck_mbps == 5000  # type: ignore[union-attr]  # links go both ways
    assert widest_path(topo, "A", "Y") is None
    assert widest_path(topo, "A", "A").bottleneck_mbps == math.inf  # type: ignore[union-attr]


def test_the_widest_path_is_a_max_min_over_every_path(tmp_path):
    """Against brute force on a denser graph: the best bottleneck of all simple paths."""
    names = [f"S{i}" for i in range(7)]
    caps = {(0, 1): 3, (0, 2): 9, (1, 3): 8, (2, 3): 2, (2, 4): 7, (4, 3): 6, (3, 5): 5, (4, 6): 1, (5, 6): 4,
            (1, 5): 2}
    text = sites(*names) + "".join(link(names[a], names[b], c) for (a, b), c in caps.items())
    topo = topology(text, tmp_path)

    def brute(here: str, goal: str, seen: frozenset[str], width: float) -> float:
        if here == goal:
            return width
        return max((brute(n, goal, seen | {n}, min(width, lk.capacity_mbps)) for n, lk in topo.neighbours(here)
                    if n not in seen), default=-1.0)

    for a in names:
        for b in names:
            if a != b:
                assert widest_path(topo, a, b).bottleneck_mbps == brute(a, b, frozenset({a}), math.inf), (a, b)  # type: ignore[union-attr]


def test_the_fastest_path_uses_only_links_wide_enough(tmp_path):
    topo = topology(DIAMOND, tmp_path)
    assert fastest_path(topo, "A", "Z").sites == ("A", "B", "Z")  # type: ignore[union-attr]
    assert fastest_path(topo, "A", "Z", 2000).sites == ("A", "E", "Z")  # type: ignore[union-attr]
    assert fastest_path(topo, "A", "Z", 6000) is None


# --- the check -------------------------------------------------------------------------------


@pytest.fixture
def example() -> Topology:
    return load_topology(EXAMPLE)


@pytest.mark.parametrize("intent", [
    Intent("create", "Access 1", "DC Frankfurt", 10_000),  # exactly the bottleneck
    Intent("create", "a1", "data center  frankfurt", 1000, latency_ms=4),  # aliases; 4 ms is the path's
    Intent("modify", "Access 3", "Cloud 1", 500),
    Intent("delete", "Access 4", "Cloud 2"),
    Intent("create", "Access 1", "Cloud 2"),  # no bandwidth stated: the reader asks for it, a path exists
])
def test_an_intent_the_network_can_take_passes(example, intent):
    verdict = check_intent(intent, example)
    assert verdict.outcome == "ok" and not verdict.questions and not verdict.fields


def test_an_unknown_endpoint_is_named_with_the_nearest_sites(example):
    verdict = check_intent(Intent("create", "Acess 1", "DC Berlin", 1000), example)
    assert verdict.outcome == "unknown_endpoint" and verdict.fields == ("source", "destination")
    source, destination = verdict.questions
    assert source.startswith('The source "Acess 1" is not a site of this network. Did you mean Access 1')
    assert 'The destination "DC Berlin"' in destination and "DC Frankfurt or DC Paris" in destination
    assert "Did you mean" not in check_intent(Intent("create", "Mars", "Cloud 1", 1), example).questions[0]


@pytest.mark.parametrize("action", ["delete", "modify"])
def test_a_delete_or_modify_of_an_unknown_endpoint_also_asks(example, action):
    verdict = check_intent(Intent(action, "Access 1", "DC Parris"), example)
    assert verdict.outcome == "unknown_endpoint" and "Did you mean DC Paris?" in verdict.questions[0]


def test_a_bandwidth_above_the_widest_path_names_the_figure_and_the_most_it_carries(example):
    verdict = check_intent(Intent("create", "Access 1", "DC Frankfurt", 40_000), example)
    assert verdict.outcome == "over_capacity" and verdict.fields == ("bandwidth_mbps",)
    (question,) = verdict.questions
    assert question.startswith("40 Gbps is more than any path from Access 1 to DC Frankfurt carries: the most is "
                               "10 Gbps (Access 1 → Metro-1 → Core Router 1 → DC Frankfurt)")
    assert check_intent(Intent("modify", "Access 4", "Cloud 1", 1500), example).outcome == "over_capacity"


def test_no_path_and_the_same_endpoint_twice_ask(tmp_path):
    topo = topology(DIAMOND, tmp_path)
    verdict = check_intent(Intent("create", "A", "Y", 10), topo)
    assert verdict.outcome == "no_path" and "no path between A and Y" in verdict.questions[0]
    assert check_intent(Intent("delete", "A", "Y"), topo).outcome == "ok"  # nothing to carry
    same = check_intent(Intent("create", "Access 1", "a1", 10), load_topology(EXAMPLE))
    assert same.outcome == "same_endpoint" and "both Access 1" in same.questions[0]


def test_a_latency_bound_is_checked_against_the_fastest_wide_enough_path(example, tmp_path):
    verdict = check_intent(Intent("create", "Access 1", "Cloud 2", 1000, latency_ms=5), example)
    assert verdict.outcome == "over_latency" and verdict.fields == ("latency_ms",)
    assert "keeps within 5 ms: the fastest takes 10 ms" in verdict.questions[0]
    assert check_intent(Intent("create", "Access 1", "Cloud 2", 1000, latency_ms=10), example).outcome == "ok"
    # links without latencies: nothing to check against
    bare = topology(sites("A", "B") + link("A", "B", 100), tmp_path, "bare.toml")
    assert check_intent(Intent("create", "A", "B", 10, latency_ms=0.1), bare).outcome == "ok"
    # some links without one: they count 0 ms, so the figure is a lower bound
    mixed = topology(sites("A", "B", "C") + link("A", "B", 100, 3) + link("B", "C", 100), tmp_path, "mixed.toml")
    lower = check_intent(Intent("create", "A", "C", 10, latency_ms=1), mixed)
    assert lower.outcome == "over_latency" and "takes at least 3 ms" in lower.questions[0]


def reading(intent: Intent, ambiguous: tuple[str, ...] = (), question: str = "") -> Reading:
    return Reading(intent, {name: 0.9 for name in intent.stated()}, bool(question), [], list(ambiguous), question)


def test_a_passing_reading_is_unchanged(example):
    before = reading(Intent("create", "Access 1", "DC Frankfurt", 1000))
    with captured_events() as events:
        assert check_reading(before, example) is before
    (event,) = [e for e in events if e["event"] == "intent.topology_check"]
    assert event["outcome"] == "ok" and event["bottleneck_mbps"] == 10_000 and event["hops"] == 3


def test_a_reading_the_network_cannot_take_asks_and_is_no_document(example):
    before = reading(Intent("create", "Access 1", "DC Berlin", 1000, protection=True))
    with captured_events() as events:
        after = check_reading(before, example)
    assert after.needs_clarification and after.ambiguous_fields == ["destination"]
    assert after.intent == replace(before.intent, destination="")  # out of the intent, like any unsure field
    assert '"DC Berlin" is not a site' in after.clarification
    assert [e["outcome"] for e in events if e["event"] == "intent.topology_check"] == ["unknown_endpoint"]
    reply = reading_to_proto(after, "v1", "3gpp")
    assert reply.needs_clarification and reply.document == "" and "DC Berlin" in reply.clarification


def test_the_topology_question_joins_the_readers_own(example):
    before = reading(Intent("create", "Access 1", "DC Berlin"), ("bandwidth_mbps",),
                     "Please confirm the bandwidth (10 Gbps?).")
    after = check_reading(before, example)
    assert after.clarification.startswith("Please confirm the bandwidth (10 Gbps?). The destination \"DC Berlin\"")
    assert after.ambiguous_fields == ["bandwidth_mbps", "destination"]


# --- through InferIntent -----------------------------------------------------------------------

# what the shipped intent model reads cleanly (checked below, so a retrained model that misreads them
# fails with a clear message rather than a puzzling one)
FITS = "build a 1 Gbps connection from Access 1 to DC Frankfurt"
TOO_WIDE = "build a 40 Gbps connection from Access 1 to DC Frankfurt"
UNKNOWN = "set up a 1 Gbps link from Access 2 to DC Berlin"
DELETE_UNKNOWN = "delete the link from Access 1 to DC Berlin"


def test_the_shipped_model_reads_the_requests_below_cleanly():
    from edge_node.netmgmt.intent_reader import load_reader, packaged_model_dir

    reader = load_reader(packaged_model_dir())
    expected = {FITS: ("create", "Access 1", "DC Frankfurt", 1000),
                TOO_WIDE: ("create", "Access 1", "DC Frankfurt", 40_000),
                UNKNOWN: ("create", "Access 2", "DC Berlin", 1000),
                DELETE_UNKNOWN: ("delete", "Access 1", "DC Berlin", 0)}
    for text, want in expected.items():
        read = reader.read(text)
        got = (read.intent.action, read.intent.source, read.intent.destination, read.intent.bandwidth_mbps)
        assert not read.needs_clarification and got == want, (text, read)


@pytest.fixture(scope="module")
async def edge_with_topology(models):
    cluster = await start_cluster(*models, edge={"intent_model": "packaged", "intent_topology": str(EXAMPLE)})
    channel = open_channel(cluster.edge.address, identity("operator", "operator"))
    yield nm_grpc.NetworkManagementServiceStub(channel)
    await channel.close()
    await cluster.stop()


async def infer(stub: nm_grpc.NetworkManagementServiceStub, text: str) -> nm_pb2.InferIntentResponse:
    reply = await stub.InferIntent(nm_pb2.InferIntentRequest(
        text=text, document_format=nm_pb2.INTENT_DOCUMENT_FORMAT_3GPP_TS28312), timeout=30)
    assert isinstance(reply, nm_pb2.InferIntentResponse)
    return reply


@pytest.mark.e2e
async def test_an_intent_that_fits_the_network_comes_back_as_its_document(edge_with_topology):
    reply = await infer(edge_with_topology, FITS)
    assert not reply.needs_clarification and reply.clarification == ""
    assert (reply.intent.source, reply.intent.destination) == ("Access 1", "DC Frankfurt")
    jsonschema.Draft202012Validator(schema("3gpp")).validate(json.loads(reply.document))


@pytest.mark.e2e
@pytest.mark.parametrize("text, field, named", [
    (UNKNOWN, "destination", ['"DC Berlin" is not a site', "DC Frankfurt or DC Paris"]),
    (DELETE_UNKNOWN, "destination", ['"DC Berlin" is not a site']),
    (TOO_WIDE, "bandwidth_mbps", ["40 Gbps is more than any path", "the most is 10 Gbps"]),
])
async def test_an_intent_the_network_cannot_take_is_a_clarification_not_a_document(edge_with_topology, text,
                                                                                    field, named):
    reply = await infer(edge_with_topology, text)
    assert reply.needs_clarification and reply.document == ""
    assert field in reply.ambiguous_fields
    for words in named:
        assert words in reply.clarification, reply.clarification


@pytest.mark.e2e
async def test_without_a_topology_the_same_request_is_a_document(models):
    cluster = await start_cluster(*models, edge={"intent_model": "packaged"})
    channel = open_channel(cluster.edge.address, identity("operator", "operator"))
    try:
        reply = await infer(nm_grpc.NetworkManagementServiceStub(channel), UNKNOWN)
        assert not reply.needs_clarification and reply.document and reply.intent.destination == "DC Berlin"
    finally:
        await channel.close()
        await cluster.stop()
