"""Seeded operator requests with their intents, in a training split and a held-out split.

``generate(n, seed, heldout=False)`` draws an intent (action, endpoints, the optional fields) and
writes it as a request from :mod:`tasks.intent.vocabulary`: a template, a route phrase, unit
spellings, the optional fields' clauses in random order (one sometimes moved to the front),
polite filler and distractors (ticket numbers, customer numbers, floors). The held-out split uses
only held-out templates, and each word slot takes a held-out word with probability
``HELDOUT_WORD_RATE`` — new verbs, nouns, unit spellings, endpoint kinds, cities and phrasings.

A share of requests is incomplete (no source, no destination, no bandwidth for a create) and a
share states no request at all (off-topic or foreign text, gibberish: keyword line ``none``), so
the model learns to leave fields out rather than invent them. Same ``(n, seed, heldout)``, same
requests.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

from edge_node.netmgmt.intent_line import Intent, to_target
from tasks.intent import vocabulary as v

HELDOUT_WORD_RATE = 0.5
ACTION_WEIGHTS = {"create": 0.55, "modify": 0.27, "delete": 0.18}
OPTIONAL_RATES = {"latency_ms": 0.35, "protection": 0.3, "slice": 0.25, "five_qi": 0.15, "time_window": 0.2}
NOTHING_RATE = 0.05  # off-topic, foreign or gibberish text
INCOMPLETE_RATE = 0.08  # a required field left out
FRONT_RATE = 0.2  # one optional clause moved before the request


@dataclass(frozen=True)
class Request:
    text: str
    intent: Intent

    @property
    def target(self) -> str:
        return to_target(self.intent)


class _Writer:
    """One request's random choices; ``heldout`` switches to held-out templates and, per slot, words."""

    def __init__(self, rng: random.Random, heldout: bool) -> None:
        self.rng = rng
        self.heldout = heldout

    def word(self, split: v.Split) -> str:
        use_heldout = self.heldout and self.rng.random() < HELDOUT_WORD_RATE
        return self.rng.choice(split.pick(use_heldout))

    def template(self, split: v.Split) -> str:
        return self.rng.choice(split.pick(self.heldout))

    def number(self) -> str:
        return str(self.rng.choice((self.rng.randint(1, 9), self.rng.randint(10, 99), self.rng.randint(100, 9999))))

    def endpoint(self) -> str:
        kind = self.word(v.ENDPOINT_KINDS)
        return kind.format(n=self.rng.randint(1, 99 if self.rng.random() < 0.3 else 12), city=self.word(v.CITIES))

    def clock(self, hour: int, minute: int, style: str) -> str:
        if style == "ampm":
            suffix = "am" if hour < 12 else "pm"
            shown = f"{hour % 12 or 12}" + (f":{minute:02d}" if minute else "")
            return shown + (" " if self.rng.random() < 0.5 else "") + suffix
        if style == "h":
            return f"{hour:02d}h" + (f"{minute:02d}" if minute else "")
        return f"{hour:02d}:{minute:02d}"

    def filler(self, split: v.Split) -> str:
        return self.word(split).format(n=self.number())


def _intent(rng: random.Random, w: _Writer) -> tuple[Intent, str]:
    """A random intent and the part left out of its text (``""``: complete)."""
    action = rng.choices(list(ACTION_WEIGHTS), weights=list(ACTION_WEIGHTS.values()))[0]
    source = w.endpoint()
    destination = w.endpoint()
    while destination == source:
        destination = w.endpoint()
    intent = Intent(action=action, source=source, destination=destination)
    if action != "delete":
        for name, rate in OPTIONAL_RATES.items():
            if rng.random() < rate:
                _set_optional(intent, name, rng)
    elif rng.random() < 0.15:
        _set_optional(intent, "time_window", rng)
    if action == "create" or (action == "modify" and (rng.random() < 0.7 or not intent.stated()[3:])):
        unit_gbps = rng.random() < 0.5
        figure = float(rng.choice(v.GBPS_VALUES if unit_gbps else v.MBPS_VALUES))
        intent.bandwidth_mbps = figure * 1000 if unit_gbps else figure
    left_out = ""
    if rng.random() < INCOMPLETE_RATE:
        left_out = rng.choice(("source", "destination", "bandwidth_mbps") if action == "create"
                              else ("source", "destination"))
        setattr(intent, left_out, getattr(Intent(), left_out))
    return intent, left_out


def _set_optional(intent: Intent, name: str, rng: random.Random) -> None:
    if name == "latency_ms":
        intent.latency_ms = float(rng.choice(v.LATENCY_VALUES))
    elif name == "protection":
        intent.protection = True
    elif name == "slice":
        intent.slice = rng.choice(sorted(v.SLICE_NAMES))
    elif name == "five_qi":
        intent.five_qi = rng.choice(v.FIVE_QI_VALUES)
    else:
        start, end = rng.sample(range(24), 2)
        minutes = (rng.choice((0, 0, 0, 30)), rng.choice((0, 0, 0, 30)))
        intent.time_window = f"{start:02d}:{minutes[0]:02d}-{end:02d}:{minutes[1]:02d}"


def _bandwidth(intent: Intent, w: _Writer) -> str:
    mbps = intent.bandwidth_mbps
    if mbps >= 1000:
        figure = mbps / 1000
        spelling = w.word(v.GBPS)
    else:
        figure, spelling = mbps, w.word(v.MBPS)
    return spelling.format(v=f"{figure:g}")


def _clauses(intent: Intent, w: _Writer) -> list[str]:
    """The optional fields' clauses, shuffled."""
    clauses = []
    if intent.latency_ms:
        lat = w.word(v.LATENCY_UNITS).format(v=f"{intent.latency_ms:g}")
        clauses.append(w.word(v.LATENCY_PHRASES).format(lat=lat))
    if intent.protection:
        clauses.append(w.word(v.PROTECTION_PHRASES))
    if intent.slice:
        clauses.append(w.word(v.SLICE_PHRASES).format(name=w.word(v.SLICE_NAMES[intent.slice])))
    if intent.five_qi:
        clauses.append(w.word(v.FIVE_QI_PHRASES).format(q=intent.five_qi))
    if intent.time_window:
        style = w.word(v.CLOCK_STYLES)
        (sh, sm), (eh, em) = (tuple(int(x) for x in t.split(":")) for t in intent.time_window.split("-"))
        clauses.append(w.word(v.TIME_PHRASES).format(s=w.clock(sh, sm, style), e=w.clock(eh, em, style)))
    w.rng.shuffle(clauses)
    return clauses


def _route(intent: Intent, w: _Writer) -> str:
    if not intent.source:
        return w.word(v.ROUTES_DESTINATION_ONLY).format(d=intent.destination)
    if not intent.destination:
        return w.word(v.ROUTES_SOURCE_ONLY).format(s=intent.source)
    return w.word(v.ROUTES).format(s=intent.source, d=intent.destination)


def _template(intent: Intent, w: _Writer) -> str:
    if intent.action == "create":
        return w.template(v.CREATE_TEMPLATES)
    if intent.action == "delete":
        return w.template(v.DELETE_TEMPLATES)
    if intent.bandwidth_mbps:
        return w.template(v.MODIFY_TEMPLATES)
    return w.template(v.MODIFY_NO_BANDWIDTH)


def _create_without_bandwidth(template: str) -> str:
    return template.replace(", {bwp}", "").replace(" {bwp}", "").replace("{bw} ", "")


def write(intent: Intent, w: _Writer) -> str:
    """The request text of ``intent``."""
    clauses = _clauses(intent, w)
    front = clauses.pop(0) if clauses and w.rng.random() < FRONT_RATE and clauses[0].startswith("with") else ""
    template = _template(intent, w)
    if intent.action == "create" and not intent.bandwidth_mbps:
        template = _create_without_bandwidth(template)
    joiner = w.rng.choice((", ", " ", " and ", ", "))
    extras = (joiner if clauses else "") + joiner.join(clauses) if clauses else ""
    verbs = {"create": v.CREATE_VERBS, "modify": v.MODIFY_VERBS, "delete": v.DELETE_VERBS}[intent.action]
    bw = _bandwidth(intent, w) if intent.bandwidth_mbps else ""
    bwp = w.word(v.BANDWIDTH_PHRASES).format(bw=bw) if bw else ""
    core = template.format(verb=w.word(verbs), conn=w.word(v.CONNECTIONS), route=_route(intent, w), bw=bw,
                           bwp=bwp, extras=extras)
    starts_with_verb = template.startswith("{verb}") and not front
    prefix = w.filler(v.VERB_PREFIXES if starts_with_verb and w.rng.random() < 0.3 else v.PREFIXES)
    if front:
        core = f"{front}, {core}"
    capitalise = not (prefix and not prefix.endswith(": ")) and not core.startswith("gNB")
    text = prefix + (core[0].upper() + core[1:] if capitalise else core)
    return text + w.filler(v.SUFFIXES)


def rewrite(intent: Intent, rng: random.Random) -> str:
    """Another training-split text of ``intent`` (the few-shot examples of ``self_instruct``)."""
    return write(intent, _Writer(rng, False))


def _nothing(w: _Writer) -> str:
    if w.rng.random() < 0.3:
        letters = string.ascii_lowercase + "    "
        return " ".join("".join(w.rng.choice(letters) for _ in range(w.rng.randint(5, 40))).split()) or "xyz"
    return w.template(v.OFF_TOPIC)


def generate(n: int, seed: int, heldout: bool = False) -> list[Request]:
    """``n`` requests of the training (or held-out) split; deterministic in ``(n, seed, heldout)``."""
    rng = random.Random(f"intent-{seed}-{'heldout' if heldout else 'train'}")
    w = _Writer(rng, heldout)
    requests = []
    for _ in range(n):
        if rng.random() < NOTHING_RATE:
            requests.append(Request(_nothing(w), Intent()))
            continue
        intent, _left_out = _intent(rng, w)
        requests.append(Request(write(intent, w), intent))
    return requests
