"""Knowledge worlds for the datasets: seeded SYNTHETIC cells (invented areas and venues, the real
knowledge base's categories) plus the real one bundled with the edge (``netgpt/assets/knowledge.toml``).

Training mostly on invented venues makes the models copy the venue that fits from the listed facts
instead of memorising the 17 real ones. Each world has a :class:`KnowledgeBase` of its own: the
real cells' is the bundled file loaded as an edge loads it, so BM25's corpus statistics, and with
them the ranking and the relative cut of weak facts, are exactly an edge's at run time.
"""

from __future__ import annotations

import random
import tomllib
from dataclasses import dataclass
from importlib import resources

from edge_node.serving.knowledge import KnowledgeBase, Venue, parse_cells

Cells = dict[str, tuple[str, list[Venue]]]  # cell id → (area, venues), as ``parse_cells`` returns them

SYNTHETIC_CELLS = 300
STEMS: tuple[str, ...] = (
    "Amber", "Willow", "Copper", "Juniper", "Lantern", "Saffron", "Birch", "Cobalt", "Maple", "Orchid", "Granite",
    "Falcon", "Meadow", "Harbourview", "Tidewater", "Silverline", "Oakridge", "Redbrick", "Sunrise", "Linden",
    "Marigold", "Northgate", "Elm Street", "Rosehill", "Kingsway", "Bluebell", "Cedar", "Foxglove", "Larkspur",
    "Westbank", "Ivy Lane", "Pinecrest", "Thistle", "Starling", "Hazel", "Riverside", "Beacon", "Clover",
)
AREA_SUFFIXES: tuple[str, ...] = ("district", "quarter", "old town", "business park", "waterfront", "village", "centre")
CELL_WORDS: tuple[str, ...] = ("old", "dock", "park", "hill", "mall", "river", "arena", "port", "lake", "north", "west")
# Per need: venue name patterns and descriptions (each naming a word that makes the venue fit the need).
VENUE_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "seafood": (("{stem} Fish House", "{stem} Oyster Bar", "The {stem} Seafood Grill"),
                ("seafood restaurant, fresh fish from the morning boats", "oysters and grilled fish, seafood platters",
                 "fish and chips and seafood soup, terrace seating")),
    "noodles": (("{stem} Noodle Bar", "{stem} Ramen", "{stem} Dumpling House"),
                ("hand-pulled noodles and dumplings", "ramen bowls, counter seats, no booking",
                 "noodle soups and dumplings to take away")),
    "vegetarian": (("{stem} Green Kitchen", "{stem} Vegan Deli", "Leaf and {stem}"),
                   ("vegetarian kitchen, salads and curries", "vegan bowls and vegetarian soups",
                    "vegetarian restaurant with a vegan menu")),
    "pizza": (("{stem} Pizzeria", "{stem} Trattoria"),
              ("wood-fired pizza and pasta", "pasta, pizza and a family menu")),
    "coffee": (("{stem} Coffee", "{stem} Espresso Bar", "Cafe {stem}"),
               ("coffee, cakes and sandwiches", "espresso bar with pastries", "cafe with wifi and soup at lunch")),
    "ferry": (("{stem} Ferry Pier", "{stem} Ferry Terminal"),
              ("ferries to the islands every {n} minutes", "boats to the islands, tickets on board")),
    "taxi": (("{stem} Taxi Rank", "{stem} Cab Stand"),
             ("taxis around the clock", "taxi rank, cabs can be called by phone")),
    "airport": (("{stem} Airport Shuttle", "{stem} Airport Express Stop"),
                ("shuttle to the airport every {n} minutes", "express coach to the airport, luggage racks")),
    "bus": (("{stem} Bus Stop", "{stem} Bus Station"),
            ("bus line {n} to the city centre", "buses to the city centre every {n} minutes")),
    "train": (("{stem} Railway Station", "{stem} Halt"),
              ("regional trains every {n} minutes", "intercity trains and ticket office")),
    "parking": (("{stem} Car Park", "{stem} Parking Garage"),
                ("{n}0 parking spaces, EV charging", "parking garage with {n}0 spaces")),
    "luggage": (("{stem} Luggage Lockers", "{stem} Left Luggage"),
                ("lockers for suitcases and bags", "left luggage desk, suitcases by the day")),
    "bike": (("{stem} Bike Hire", "{stem} Cycle Rental"),
             ("bike rental by the hour", "bicycle hire, helmets included")),
    "hotel": (("{stem} Hotel", "Hotel {stem}", "{stem} Inn"),
              ("{n}0 rooms, breakfast included", "small hotel with {n} rooms and a bar")),
    "museum": (("{stem} Museum", "{stem} Gallery"),
               ("museum of local history, free entry on Mondays", "art gallery with a changing exhibition")),
    "library": (("{stem} Library", "{stem} Reading Room"),
                ("public library with quiet study desks", "library with books, printers and study rooms")),
    "pharmacy": (("{stem} Pharmacy", "{stem} Chemist"),
                 ("pharmacy, medicine and advice", "chemist with a night window")),
    "doctor": (("{stem} Clinic", "{stem} Health Centre"),
               ("walk-in doctor, no appointment needed", "family doctor and clinic")),
    "sport": (("{stem} Sports Centre", "{stem} Gym"),
              ("gym and swimming pool", "badminton courts and a gym")),
    "groceries": (("{stem} Supermarket", "{stem} Grocers"),
                  ("supermarket with fresh bread", "groceries and a bakery corner")),
}
CATEGORY_OF: dict[str, str] = {
    "seafood": "restaurant", "noodles": "restaurant", "vegetarian": "restaurant", "pizza": "restaurant",
    "coffee": "cafe", "hotel": "hotel", "museum": "culture", "library": "culture", "pharmacy": "health",
    "doctor": "health", "sport": "sport", "groceries": "shop",
}  # every other kind: transport


@dataclass
class World:
    """Cells (real and synthetic) and a knowledge base per world."""

    cells: Cells
    real: frozenset[str]  # the real cells' ids
    real_knowledge: KnowledgeBase  # the bundled file, as an edge loads it
    synthetic_knowledge: KnowledgeBase

    def venues(self, cell_id: str, prompt: str, limit: int) -> list[Venue]:
        """What an edge holding this cell's world retrieves for the prompt."""
        knowledge = self.real_knowledge if cell_id in self.real else self.synthetic_knowledge
        return knowledge.venues(cell_id, prompt, limit)

    def cell_ids(self, real: bool) -> list[str]:
        """The real or the synthetic cells' ids, sorted."""
        return sorted(c for c in self.cells if (c in self.real) == real)


def real_cells() -> Cells:
    """The bundled knowledge base, parsed."""
    text = (resources.files("netgpt.assets") / "knowledge.toml").read_text(encoding="utf-8")
    return parse_cells(tomllib.loads(text), "netgpt/assets/knowledge.toml")


def real_knowledge_text() -> str:
    """The bundled knowledge base as the models see it: without the venues' keywords (retrieval only)."""
    text = (resources.files("netgpt.assets") / "knowledge.toml").read_text(encoding="utf-8")
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("keywords = "))


def synthetic_cells(seed: int, count: int = SYNTHETIC_CELLS) -> Cells:
    """``count`` invented cells of 5 to 8 venues each, all different kinds, seeded."""
    rng = random.Random(f"synth-{seed}")
    cells: Cells = {}
    for index in range(count):
        cell_id = f"cell-{rng.choice(CELL_WORDS)}-{100 + index}"
        area = f"{rng.choice(STEMS)} {rng.choice(AREA_SUFFIXES)}".capitalize()
        kinds = rng.sample(sorted(VENUE_KINDS), rng.randint(5, 8))
        stems = rng.sample(STEMS, len(kinds))
        cells[cell_id] = (area, [_venue(rng, cell_id, kind, stem) for kind, stem in zip(kinds, stems, strict=True)])
    return cells


def _venue(rng: random.Random, cell_id: str, kind: str, stem: str) -> Venue:
    names, descriptions = VENUE_KINDS[kind]
    description = rng.choice(descriptions).format(n=rng.randint(2, 30))
    return Venue(cell_id, rng.choice(names).format(stem=stem), CATEGORY_OF.get(kind, "transport"), description,
                 _hours(rng))


def _hours(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.1:
        return ""
    if roll < 0.2:
        return "24 hours"
    opens, closes = rng.randint(5, 11), rng.randint(16, 24)
    return f"{opens:02d}:{rng.choice(('00', '30'))}-{closes:02d}:00"


def build_world(seed: int, synthetic: int = SYNTHETIC_CELLS) -> World:
    """The real cells and ``synthetic`` invented ones, each world in an in-memory knowledge base of its own."""
    real, invented = real_cells(), synthetic_cells(seed, synthetic)
    with resources.as_file(resources.files("netgpt.assets") / "knowledge.toml") as bundled:
        real_knowledge, synthetic_knowledge = KnowledgeBase.load(bundled), KnowledgeBase.load(bundled)
    synthetic_knowledge.replace(invented)
    return World(invented | real, frozenset(real), real_knowledge, synthetic_knowledge)
