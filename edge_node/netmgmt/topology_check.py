"""Whether the network can take an intent (:mod:`edge_node.netmgmt.topology`): its endpoints must be
sites of the network, and a connection needs a path between them that carries the bandwidth (the
*widest path*: the largest bottleneck capacity of any path, a max-min Dijkstra) and, when the links give
latencies, keeps within the latency bound (the fastest path among the links wide enough).

What fails is answered like a low-confidence reading: the field goes into ``ambiguous_fields`` (and out
of the intent) and the reading asks a question naming it, so no document is rendered for it.
"""

from __future__ import annotations

import difflib
import heapq
import math
from dataclasses import dataclass, replace

import structlog

from edge_node.netmgmt.intent_clarify import Reading
from edge_node.netmgmt.intent_line import Intent, format_bandwidth
from edge_node.netmgmt.topology import Topology, name_key

log = structlog.get_logger(__name__)

ENDPOINTS = ("source", "destination")
SUGGESTIONS = 3  # nearest known names offered for an unknown endpoint
CLOSE_ENOUGH = 0.6  # difflib ratio a known name needs to be offered


@dataclass(frozen=True)
class Route:
    """A path through the network and what it offers."""

    sites: tuple[str, ...]
    bottleneck_mbps: float  # the smallest capacity on it (inf for a path of one site)
    latency_ms: float  # the sum of its links' latencies; a link without one counts 0
    latency_known: bool  # every link on it gave a latency

    def describe(self) -> str:
        return " → ".join(self.sites)


@dataclass(frozen=True)
class Verdict:
    """What the topology says about one intent."""

    outcome: str  # ok | incomplete | unknown_endpoint | same_endpoint | no_path | over_capacity | over_latency
    questions: tuple[str, ...] = ()  # one per problem, for the operator
    fields: tuple[str, ...] = ()  # the intent fields the questions are about
    route: Route | None = None  # the path the check settled on, where one was needed


def widest_path(topology: Topology, source: str, destination: str) -> Route | None:
    """The path between two sites (canonical names) with the largest bottleneck capacity; among equally
    wide ones the lowest latency, then the fewest hops. None when they are not connected.

    A max-min Dijkstra: a path's width only shrinks and its latency only grows as it is extended, so
    the first time the destination is popped its path is the best."""
    return _best_path(topology, source, destination, widest=True)


def fastest_path(topology: Topology, source: str, destination: str, min_capacity_mbps: float = 0.0) -> Route | None:
    """The lowest-latency path using only links of at least ``min_capacity_mbps`` (a link without a latency
    counts 0 ms, so the figure is a lower bound); None when no such path exists."""
    return _best_path(topology, source, destination, widest=False, min_capacity_mbps=min_capacity_mbps)


def _best_path(topology: Topology, source: str, destination: str, *, widest: bool,
               min_capacity_mbps: float = 0.0) -> Route | None:
    # heap entries sort best first: (-width when widest, latency, hops, a counter), then what they carry
    heap: list[tuple[float, float, int, int, str, tuple[str, ...], float, bool]] = [
        (-math.inf if widest else 0.0, 0.0, 0, 0, source, (source,), math.inf, True)]
    done: set[str] = set()
    counter = 0
    while heap:
        _, latency, hops, _, site, path, width, known = heapq.heappop(heap)
        if site in done:
            continue
        done.add(site)
        if site == destination:
            return Route(path, width, latency, known)
        for neighbour, link in topology.neighbours(site):
            if neighbour in done or link.capacity_mbps < min_capacity_mbps:
                continue
            counter += 1
            narrowest = min(width, link.capacity_mbps)
            heapq.heappush(heap, (-narrowest if widest else 0.0, latency + (link.latency_ms or 0.0), hops + 1, counter,
                                  neighbour, (*path, neighbour), narrowest, known and link.latency_ms is not None))
    return None


def check_intent(intent: Intent, topology: Topology) -> Verdict:
    """Whether ``topology`` can take ``intent``: known endpoints for any action; for a create or modify
    also a path wide enough for the bandwidth and fast enough for the latency bound (when stated)."""
    unknown = [(name, getattr(intent, name)) for name in ENDPOINTS
               if getattr(intent, name) and topology.site(getattr(intent, name)) is None]
    if unknown:
        return Verdict("unknown_endpoint", tuple(_unknown_question(topology, name, value) for name, value in unknown),
                       tuple(name for name, _ in unknown))
    if not (intent.source and intent.destination):
        return Verdict("incomplete")  # the reading asks for the missing endpoint itself
    source, destination = (_site_name(topology, intent.source), _site_name(topology, intent.destination))
    if source == destination:
        return Verdict("same_endpoint", (f"The source and destination are both {source}; please state two "
                                         "different endpoints.",), ENDPOINTS)
    if intent.action == "delete":
        return Verdict("ok")
    route = widest_path(topology, source, destination)
    if route is None:
        return Verdict("no_path", (f"There is no path between {source} and {destination} in the network; please "
                                   "check the endpoints.",), ENDPOINTS)
    bandwidth = intent.bandwidth_mbps
    if bandwidth > route.bottleneck_mbps:
        most = format_bandwidth(route.bottleneck_mbps)
        return Verdict("over_capacity", (
            f"{format_bandwidth(bandwidth)} is more than any path from {source} to {destination} carries: the most "
            f"is {most} ({route.describe()}). Please state a bandwidth of at most {most}.",), ("bandwidth_mbps",),
            route)
    if intent.latency_ms and any(link.latency_ms is not None for link in topology.links):
        fastest = fastest_path(topology, source, destination, bandwidth)
        if fastest is not None and fastest.latency_ms > intent.latency_ms:
            at_least = "" if fastest.latency_known else "at least "
            carrying = f" that carries {format_bandwidth(bandwidth)}" if bandwidth else ""
            return Verdict("over_latency", (
                f"No path from {source} to {destination}{carrying} keeps within {intent.latency_ms:g} ms: the "
                f"fastest takes {at_least}{fastest.latency_ms:g} ms ({fastest.describe()}). Please state a latency "
                f"bound of at least {fastest.latency_ms:g} ms.",), ("latency_ms",), fastest)
    return Verdict("ok", route=route)


def _site_name(topology: Topology, name: str) -> str:
    site = topology.site(name)
    assert site is not None  # checked by the caller
    return site.name


def _unknown_question(topology: Topology, field_name: str, value: str) -> str:
    """'The destination "DC Berlin" is not a site of this network; did you mean DC Frankfurt? ...'"""
    keys = {name_key(n): n for n in topology.names()}
    wanted = name_key(value)
    close = difflib.get_close_matches(wanted, keys, n=SUGGESTIONS, cutoff=CLOSE_ENOUGH)
    if not close:  # nothing spelt alike: sites of the same kind of name ("DC Berlin" → the other "DC …")
        close = [key for key in keys if key.split()[:1] == wanted.split()[:1]][:SUGGESTIONS]
    site_names = list(dict.fromkeys(_site_name(topology, keys[key]) for key in close))
    hint = f" Did you mean {_either(site_names)}?" if site_names else ""
    return f'The {field_name} "{value}" is not a site of this network.{hint} Please state a known {field_name}.'


def _either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def check_reading(reading: Reading, topology: Topology) -> Reading:
    """``reading`` checked against ``topology``: unchanged when the network can take it; otherwise the
    fields in question leave the intent for ``ambiguous_fields`` and the reading asks about them."""
    verdict = check_intent(reading.intent, topology)
    route = verdict.route
    log.info("intent.topology_check", outcome=verdict.outcome, fields=list(verdict.fields),
             action=reading.intent.action, bandwidth_mbps=reading.intent.bandwidth_mbps,
             bottleneck_mbps=route.bottleneck_mbps if route else None, hops=len(route.sites) - 1 if route else None,
             topology=topology.source)
    if not verdict.questions:
        return reading
    intent = replace(reading.intent, **{name: getattr(Intent(), name) for name in verdict.fields})
    ambiguous = [*reading.ambiguous_fields, *(name for name in verdict.fields if name not in reading.ambiguous_fields)]
    missing = [name for name in reading.missing_fields if name not in verdict.fields]
    question = " ".join(part for part in (reading.clarification, *verdict.questions) if part)
    return replace(reading, intent=intent, needs_clarification=True, missing_fields=missing,
                   ambiguous_fields=ambiguous, clarification=question)
