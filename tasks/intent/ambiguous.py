"""Truly ambiguous operator requests, labelled: what the reader must ask about instead of guessing.

``generate_ambiguous(n, seed, heldout=False)`` writes, in equal shares:

- ``vague``: a goal without endpoints or figures ("make the network faster"): keyword line
  ``act: modify`` (the source and destination are missing, so the reader asks for them);
- ``missing endpoint``: a create/modify/delete that names only one endpoint (the generator's own
  phrasing, :func:`tasks.intent.generator.write`, with the source or the destination left out);
- ``bare number``: a bandwidth figure without a unit ("a 10 link from Access 1 to Cloud 2": 10 Mbit/s or
  10 Gbit/s?): keyword line ``bw: ?`` (:data:`~edge_node.netmgmt.intent_line.UNCLEAR_VALUE`), which the
  reader always asks about.

Like the generator, the training split (``heldout=False``) uses training words and templates only and
the held-out split (``heldout=True``: what ``netgpt eval intent`` scores, seed 7) its own templates
and, per word slot, held-out words with probability ½. Every request should be answered with a
clarification: the evaluation reports the share that is.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from edge_node.netmgmt.intent_line import UNCLEAR_VALUE, Intent, to_target
from tasks.intent import vocabulary as v
from tasks.intent.generator import _Writer, write

KINDS = ("vague", "missing endpoint", "bare number")

VAGUE = v.Split((
    "make the network faster", "please improve the latency for our users", "the network is too slow, fix it",
    "we need more capacity", "speed up the backbone please", "reduce the lag for the gamers",
    "can you optimise the network", "more speed would be good", "our users say the connection is slow",
    "get the packet loss down", "please make the links more reliable", "we need a better connection",
), (
    "everything is sluggish today, do something", "customers complain about slow video, sort it out",
    "crank up the network speed", "give us better performance", "the internet feels slow, help",
    "latency is terrible lately, can you look into it", "we want a snappier network for the event",
    "stop the buffering on the streams",
))
# {n}: a figure without a unit; act: the action the template states
BARE_NUMBER_TRAIN: tuple[tuple[str, str], ...] = (
    ("create", "{verb} a {n} {conn} {route}"), ("create", "{verb} a {conn} {route} with {n}"),
    ("modify", "set the {conn} {route} to {n}"), ("modify", "{verb} the bandwidth of the {conn} {route} to {n}"),
    ("create", "we need {n} {route}"),
)
BARE_NUMBER_HELDOUT: tuple[tuple[str, str], ...] = (
    ("create", "can we get {n} {route}?"), ("modify", "the {conn} {route} should run at {n}"),
    ("modify", "take the {conn} {route} up to {n}"), ("create", "{verb} {route}, capacity {n}"),
)
BARE_FIGURES = ("1", "2", "5", "10", "20", "40", "50", "100", "200", "400", "500")


@dataclass(frozen=True)
class Ambiguous:
    text: str
    target: str  # the keyword line the model should write (a clarification follows from it)
    kind: str  # vague | missing endpoint | bare number


def _vague(w: _Writer) -> Ambiguous:
    text = w.template(VAGUE)  # the held-out split: only held-out goals
    return Ambiguous(text[0].upper() + text[1:], "act: modify", "vague")


def _missing_endpoint(rng: random.Random, w: _Writer) -> Ambiguous:
    action = rng.choice(("create", "create", "modify", "delete"))
    intent = Intent(action=action, source=w.endpoint(), destination=w.endpoint())
    if action == "create" or (action == "modify" and rng.random() < 0.5):
        figure = rng.choice(v.GBPS_VALUES)
        intent.bandwidth_mbps = float(figure) * 1000
    setattr(intent, rng.choice(("source", "destination")), "")
    return Ambiguous(write(intent, w), to_target(intent), "missing endpoint")


def _bare_number(rng: random.Random, w: _Writer) -> Ambiguous:
    action, template = rng.choice(BARE_NUMBER_HELDOUT if w.heldout else BARE_NUMBER_TRAIN)
    source = w.endpoint()
    destination = w.endpoint()
    while destination == source:
        destination = w.endpoint()
    verbs = v.CREATE_VERBS if action == "create" else v.MODIFY_VERBS
    text = template.format(verb=w.word(verbs), conn=w.word(v.CONNECTIONS), n=rng.choice(BARE_FIGURES),
                           route=w.word(v.ROUTES).format(s=source, d=destination))
    target = f"{to_target(Intent(action=action, source=source, destination=destination))}; bw: {UNCLEAR_VALUE}"
    return Ambiguous(text[0].upper() + text[1:], target, "bare number")


def generate_ambiguous(n: int, seed: int, heldout: bool = False) -> list[Ambiguous]:
    """``n`` labelled ambiguous requests, the three kinds in turn; deterministic in ``(n, seed, heldout)``."""
    rng = random.Random(f"intent-ambiguous-{seed}-{'heldout' if heldout else 'train'}")
    w = _Writer(rng, heldout)
    made = []
    for index in range(n):
        kind = KINDS[index % len(KINDS)]
        made.append(_vague(w) if kind == "vague" else _missing_endpoint(rng, w) if kind == "missing endpoint"
                    else _bare_number(rng, w))
    return made
