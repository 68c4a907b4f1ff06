"""The development set: paraphrased questions to choose between recipe variants on, written apart from
both the training templates and the held-out set (a test checks they share no word 4-gram with
either), so the held-out figure is measured once, on the variant the development set chose
(``netgpt eval prompt --questions dev``). Smaller than the held-out set: it ranks variants, it does
not report quality."""

from __future__ import annotations

from tasks.prompt_completion import heldout as h
from tasks.prompt_completion.heldout import HeldOut

_BY_VENUE: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (h.HARBOUR, h.FISH, ("Who sells freshly landed fish by the water?", "Table for two, something from the sea?")),
    (h.HARBOUR, h.NOODLES, ("Dumplings to go, anyone?", "A cheap hot meal, no need to reserve?")),
    (h.HARBOUR, h.FERRY, ("How can I cross over to an island this afternoon?",
                          "Where is the boat pier for island trips?")),
    (h.HARBOUR, h.MUSEUM, ("Somewhere to learn about old ships?", "Can my son climb into a submarine somewhere?")),
    (h.HARBOUR, h.CAR_PARK, ("Any spot to leave the car by the quay?", "My EV battery is low, where can I plug in?")),
    (h.HARBOUR, h.PHARMACY, ("My kid has a cough, who sells syrup at night?",
                             "Where can I fill a prescription late?")),
    (h.CAMPUS, h.LIBRARY, ("Somewhere silent to read on campus?", "I must print my thesis, where?")),
    (h.CAMPUS, h.CAFE, ("Hot chocolate and a muffin on campus?", "Where can students grab a cheap coffee?")),
    (h.CAMPUS, h.SPORTS, ("Can I play badminton tonight?", "Student gym membership, where?")),
    (h.CAMPUS, h.BUS, ("How do I ride into the centre from the gate?", "Line 12 stop, where is it?")),
    (h.CAMPUS, h.CLINIC, ("Sore throat, can a doctor on campus see me?", "Walk-in medical help for students?")),
    (h.STATION, h.STATION_, ("Fastest rail link to my flight?", "Intercity departures, which building?")),
    (h.STATION, h.HOTEL, ("Need a room right above the station tonight.", "Any beds to book near platform one?")),
    (h.STATION, h.LOCKERS, ("Can I stash my suitcase somewhere for the day?", "Lockers for a big bag?")),
    (h.STATION, h.TAXI, ("Need a cab at 2 am from the station.", "Bicycles to hire near the trains?")),
    (h.STATION, h.FOOD_COURT, ("Fancy a croissant from a bakery near the trains.", "Fast food before departure?")),
    (h.STATION, h.PLATFORM_COFFEE, ("Espresso near platform two?", "An americano before my train leaves?")),
)
DEV: tuple[HeldOut, ...] = tuple(HeldOut(text, cell_id, (venue,)) for cell_id, venue, texts in _BY_VENUE
                                 for text in texts)
