"""The held-out evaluation set, written by hand apart from ``templates.py``: paraphrased questions
with their own vocabulary and sentence shapes (a test checks they share no word 4-gram with any
training phrasing), each asked in a real cell of ``netgpt/assets/knowledge.toml`` and listing the
venue name(s) that fit it. Some use words the knowledge base does not (``chemist``, ``GP``,
``latte``): the edge's retrieval has to cope with those too.
"""

from __future__ import annotations

from dataclasses import dataclass

HARBOUR, CAMPUS, STATION = "cell-harbour-1", "cell-campus-2", "cell-station-3"
FISH, NOODLES, FERRY = "Harbour Fish Market", "Quayside Noodle Bar", "Pier 3 Ferry Terminal"
MUSEUM, CAR_PARK, PHARMACY = "Maritime Museum", "Harbour Car Park P2", "Quay Street Pharmacy"
LIBRARY, CAFE, SPORTS, BUS, CLINIC = ("Central Library", "Campus Cafe", "Sports Hall", "Main Gate Bus Stop",
                                      "Student Health Centre")
STATION_, HOTEL, LOCKERS, TAXI = "Central Station", "Station Hotel", "Left-Luggage Lockers", "North Exit Taxi Rank"
FOOD_COURT, PLATFORM_COFFEE = "Upper Level Food Court", "Platform Coffee"


@dataclass(frozen=True)
class HeldOut:
    question: str
    cell_id: str
    expected: tuple[str, ...]  # venue names any one of which answers the question


def _q(cell_id: str, expected: str | tuple[str, ...], *questions: str) -> list[HeldOut]:
    names = (expected,) if isinstance(expected, str) else expected
    return [HeldOut(text, cell_id, names) for text in questions]


HELD_OUT: tuple[HeldOut, ...] = tuple(
    _q(HARBOUR, FISH,
       "I'm craving oysters and grilled fish, what's good around the docks?",
       "Somewhere serving today's catch for supper?",
       "Best spot for a seafood lunch with a sea view?",
       "Where should I head for a fish supper?",
       "How late does the fish market serve food?")
    + _q(HARBOUR, NOODLES,
         "Fancy a plate of dumplings, any suggestions?",
         "Hungry for ramen or something with noodles.",
         "My friend doesn't eat meat; where could we grab a bite?",
         "Quick bite without a reservation near the quay?",
         "Can I still get noodles after ten in the evening?")
    + _q(HARBOUR, FERRY,
         "Where do the island ferries leave from?",
         "I'd like to sail over to the islands in the afternoon.",
         "Got a ferry timetable for this port?",
         "Until what hour do boats to the islands run?",
         "What sailings leave for the islands early in the morning?")
    + _q(HARBOUR, MUSEUM,
         "Are there any exhibits about ships I could see?",
         "Is the submarine museum free to get into on Sundays?",
         "What time do they stop letting people into the maritime museum?",
         "Where can the kids see an old submarine?")
    + _q(HARBOUR, CAR_PARK,
         "Where do I leave my car for a few hours by the water?",
         "Is there somewhere I can charge my electric vehicle?",
         "Does the harbour car park ever close?")
    + _q(HARBOUR, PHARMACY,
         "Need painkillers late at night, any pharmacy still serving?",
         "Where's a chemist that's open all night?",
         "I need to pick up a prescription.")
    + _q(CAMPUS, LIBRARY,
         "I have an exam tomorrow, where's a silent spot to revise?",
         "Where can I borrow books and print my essay?",
         "What time does the library shut tonight?",
         "Is the study floor still accessible at midnight?",
         "Where's a group room for our project meeting?",
         "I have to print something, where are the printers?")
    + _q(CAMPUS, CAFE,
         "Grab a latte between lectures, where?",
         "I'd love a cappuccino and a slice of cake.",
         "Any meat-free lunch options on campus?",
         "Where do students eat vegetarian around here?",
         "Is the cafe serving breakfast yet, and till when?",
         "Until when is a snack available at the campus cafe?",
         "Which spot on campus does a decent lunch?")
    + _q(CAMPUS, SPORTS,
         "Is a badminton court free to reserve this evening?",
         "Somewhere cheap to lift weights as a student?",
         "Fancy a game of shuttlecock, where are the courts?",
         "Which building has a gym for staff and students?")
    + _q(CAMPUS, BUS,
         "Which bus takes me downtown from the university?",
         "How often does line 12 run into town?",
         "What's the quickest way into the city centre from here?")
    + _q(CAMPUS, CLINIC,
         "I think I have a fever, who can examine me?",
         "Is there a walk-in GP for students?",
         "At what time does the campus doctor stop seeing patients?",
         "Is the student health centre staffed on Saturdays?")
    + _q(STATION, STATION_,
         "What's the quickest route to catch my flight?",
         "How do I reach the airport from here by rail?",
         "Which platform has the express to the airport?",
         "Until what time do intercity trains leave?",
         "What's the last departure from the central station tonight?")
    + _q(STATION, HOTEL,
         "Looking to spend the night somewhere near the trains.",
         "Can I book a bed for one night by the station?",
         "Does the hotel above the concourse have a restaurant?")
    + _q(STATION, LOCKERS,
         "Where can I drop my bags for the afternoon?",
         "Somewhere safe to store luggage for a few hours?",
         "Till what hour can I pick my suitcase up from the lockers?")
    + _q(STATION, TAXI,
         "Where do taxis line up at the station?",
         "Can I hail a taxi at 3 in the morning here?",
         "Are taxis available all night outside the north exit?",
         "Is there bike rental anywhere around the station?")
    + _q(STATION, FOOD_COURT,
         "Somewhere to get a quick bowl of noodles before boarding?",
         "I want fresh pastries from a bakery.",
         "Could I grab a burger before my train?")
    + _q(STATION, (FOOD_COURT, HOTEL),
         "Can I get dinner late at the station?")
    + _q(STATION, PLATFORM_COFFEE,
         "Where's the espresso bar by the platforms?",
         "How early can I buy a coffee at Platform Coffee?",
         "Could I find a cup of tea while waiting for my train?")
)
