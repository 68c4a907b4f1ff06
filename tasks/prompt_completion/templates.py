"""The TRAINING phrasings of the concise-prompt task: what a user needs, and many ways to ask for it.

A :class:`Need` names the knowledge-base category (and the words in a venue's name or
description) that make a venue fit it, the noun phrases users ask for it with, and what the
edge writes after "Intent: The user wants". Questions are either "find" (where is one?) or
"hours" (when is it open?). The held-out evaluation set (``heldout.py``) is written apart
from these, and a test checks that the two share no phrasing.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from edge_node.serving.knowledge import Venue

_WORD = re.compile(r"[a-z0-9]+")

# Generic "find" shapes. {want}: a noun phrase with its article ("a taxi"); {noun}: bare ("taxi rank").
FIND_TEMPLATES: tuple[str, ...] = (
    "Where can I find {want}?",
    "Is there {want} near here?",
    "I am looking for {want}.",
    "Where is the nearest {noun}?",
    "Can you recommend {want}?",
    "Any {noun} around?",
    "Show me {want} close by.",
    "I need {want}, where do I go?",
    "Where do I get {want}{when}?",
    "Which {noun} is closest to me?",
)
# "When is it open?" shapes. {noun}: a kind of place; {name}: a venue's own name.
HOURS_TEMPLATES: tuple[str, ...] = (
    "When does the {noun} open?",
    "When does the {noun} close?",
    "What are the opening hours of the {noun}?",
    "Is the {noun} open late?",
    "How late is the {noun} open{when}?",
    "When does {name} close?",
    "What are the opening hours of {name}?",
    "Is {name} open{when}?",
)
WHEN: tuple[str, ...] = ("", " tonight", " now", " today", " this evening", " for lunch")
# Profile preferences an edge may hold; none of them changes which venue fits the question.
PREFERENCES: tuple[str, ...] = (
    "quiet places", "short walks", "pays by card", "travels with a pram", "step-free access", "low prices",
    "speaks English", "likes places with wifi",
)


@dataclass(frozen=True)
class Need:
    name: str
    categories: tuple[str, ...]  # a fitting venue has one of these knowledge-base categories
    keywords: tuple[str, ...]  # ... and one of these words in its name or description; empty: any of the category
    wants: tuple[str, ...]  # noun phrases with an article
    nouns: tuple[str, ...]  # bare nouns
    intents: tuple[str, ...]  # what the edge writes after "The user wants"
    own: tuple[str, ...] = ()  # phrasings only this need has ({when} allowed)

    def fits(self, venue: Venue) -> bool:
        if venue.category not in self.categories:
            return False
        words = set(_WORD.findall(f"{venue.name} {venue.description}".lower()))
        return not self.keywords or bool(words & set(self.keywords))


NEEDS: tuple[Need, ...] = (
    Need("seafood", ("restaurant",), ("seafood", "fish", "oysters"),
         ("fresh seafood", "a seafood restaurant", "a fish restaurant"), ("seafood restaurant", "fish restaurant"),
         ("to eat seafood", "a seafood dinner", "fresh fish to eat"),
         ("Where can I eat seafood{when}?", "I want fish for dinner{when}.", "Where do they serve fresh fish?")),
    Need("noodles", ("restaurant",), ("noodles", "noodle", "ramen", "dumplings"),
         ("a bowl of noodles", "a noodle bar", "some dumplings"), ("noodle bar", "ramen place"),
         ("a bowl of noodles", "to eat noodles"), ("Where can I eat noodles{when}?", "I feel like ramen{when}.")),
    Need("vegetarian", ("restaurant", "cafe"), ("vegetarian", "vegan"),
         ("vegetarian food", "a vegetarian lunch", "vegan dishes"), ("vegetarian restaurant", "vegan place"),
         ("a vegetarian meal", "food without meat"), ("Where can I eat vegetarian{when}?",)),
    Need("eat", ("restaurant",), (),
         ("something to eat", "a restaurant", "a quick meal"), ("restaurant", "place to eat"),
         ("something to eat", "a meal nearby"), ("I am hungry, where can I eat{when}?", "Where can I have dinner?")),
    Need("coffee", ("cafe",), ("coffee", "espresso", "cafe"),
         ("a coffee", "a cafe", "an espresso"), ("cafe", "coffee shop"),
         ("a coffee", "a cafe to sit in"), ("Where can I get a coffee{when}?",)),
    Need("ferry", ("transport",), ("ferry", "ferries", "boats", "islands"),
         ("a ferry", "a boat to the islands"), ("ferry terminal", "ferry pier"),
         ("to take a ferry", "a boat to the islands"), ("How do I get to the islands?", "When is the next ferry?")),
    Need("taxi", ("transport",), ("taxi", "taxis", "cab"),
         ("a taxi", "a cab"), ("taxi rank", "taxi stand"),
         ("a taxi", "a ride by taxi"), ("I need a taxi{when}.", "Where do I catch a cab?")),
    Need("airport", ("transport",), ("airport",),
         ("a ride to the airport", "a train to the airport"), ("airport train", "airport bus"),
         ("to reach the airport", "a fast way to the airport"),
         ("How do I get to the airport{when}?", "What is the fastest way to the airport?")),
    Need("bus", ("transport",), ("bus",),
         ("a bus", "a bus to the city centre"), ("bus stop",),
         ("to catch a bus", "a bus into town"), ("Which bus goes to the city centre?",)),
    Need("train", ("transport",), ("train", "trains", "intercity", "railway"),
         ("a train", "the railway station"), ("train station", "railway station"),
         ("to take a train", "the station"), ("Where do I catch a train{when}?",)),
    Need("parking", ("transport",), ("parking", "charging"),
         ("a parking space", "somewhere to park the car"), ("car park", "parking garage"),
         ("to park the car", "a parking space"), ("Where can I park my car{when}?",)),
    Need("luggage", ("transport",), ("luggage", "lockers", "suitcases"),
         ("a locker for my suitcase", "left luggage"), ("luggage lockers", "left-luggage office"),
         ("to store a suitcase", "a luggage locker"), ("Where can I leave my suitcase{when}?",)),
    Need("bike", ("transport",), ("bike", "bikes", "bicycle"),
         ("a bike to rent", "a rental bike"), ("bike rental", "bicycle hire"),
         ("to rent a bike", "a bicycle"), ("Where can I rent a bike{when}?",)),
    Need("hotel", ("hotel",), (),
         ("a hotel", "a room for the night", "somewhere to sleep"), ("hotel",),
         ("a room for the night", "a hotel nearby"), ("Where can I stay{when}?",)),
    Need("museum", ("culture",), ("museum", "gallery", "exhibition"),
         ("a museum", "an exhibition"), ("museum", "gallery"),
         ("to visit a museum", "an exhibition to see"), ("What museum can I visit{when}?",)),
    Need("library", ("culture",), ("library", "study", "books"),
         ("a quiet place to study", "a library"), ("library", "reading room"),
         ("a place to study", "the library"), ("Where can I study{when}?",)),
    Need("pharmacy", ("health",), ("pharmacy", "medicine", "chemist"),
         ("a pharmacy", "some medicine"), ("pharmacy", "chemist"),
         ("a pharmacy", "to buy medicine"), ("Where can I buy medicine{when}?",)),
    Need("doctor", ("health",), ("doctor", "clinic", "health"),
         ("a doctor", "a clinic"), ("doctor", "health centre"),
         ("to see a doctor", "a clinic"), ("I feel sick, where is a doctor?",)),
    Need("sport", ("sport",), ("gym", "badminton", "sports", "swimming", "pool"),
         ("a gym", "a badminton court", "somewhere to work out"), ("gym", "sports hall"),
         ("to do some sport", "a gym"), ("Where can I work out{when}?",)),
    Need("groceries", ("shop",), ("groceries", "supermarket", "grocery"),
         ("groceries", "a supermarket"), ("supermarket", "grocery store"),
         ("to buy groceries", "a supermarket"), ("Where can I buy groceries{when}?",)),
)
NEEDS_BY_NAME: dict[str, Need] = {need.name: need for need in NEEDS}


@dataclass(frozen=True)
class Phrasing:
    text: str
    template: str  # the template it came from, as written above
    kind: str  # "find" or "hours"
    named: bool  # it names the venue, so only that venue answers it
    origin: str = "template"  # or "self-instruct": a pretrained model's rewrite (self_instruct.py)


def needs_for(venue: Venue) -> list[Need]:
    return [need for need in NEEDS if need.fits(venue)]


def templates_for(need: Need) -> list[tuple[str, str]]:
    """(template, kind) pairs that can ask for ``need``."""
    return [(t, "find") for t in (*FIND_TEMPLATES, *need.own)] + [(t, "hours") for t in HOURS_TEMPLATES]


def render(template: str, need: Need, rng: random.Random, venue_name: str = "") -> str:
    return template.format(want=rng.choice(need.wants), noun=rng.choice(need.nouns), when=rng.choice(WHEN),
                           name=venue_name)


def phrase(rng: random.Random, need: Need, venue: Venue, hours_share: float = 0.25) -> Phrasing:
    """One question about ``need``; an "hours" question with probability ``hours_share``."""
    kind = "hours" if rng.random() < hours_share else "find"
    template = rng.choice([t for t, k in templates_for(need) if k == kind])
    return Phrasing(render(template, need, rng, venue.name), template, kind, "{name}" in template)


def all_phrasings(names: Iterable[str] = ()) -> Iterator[str]:
    """Every question the templates can produce (``names``: the venue names to fill ``{name}`` with)."""
    names = list(names) or ["{name}"]
    for need in NEEDS:
        for template, _ in templates_for(need):
            yield from _expand(template, need, names)


def _expand(template: str, need: Need, names: list[str]) -> Iterator[str]:
    slots = {"want": need.wants, "noun": need.nouns, "when": WHEN, "name": names}
    used = [slot for slot in slots if "{" + slot + "}" in template]
    combos: list[dict[str, str]] = [{}]
    for slot in used:
        combos = [combo | {slot: value} for combo in combos for value in slots[slot]]
    for combo in combos:
        yield template.format(**combo)
