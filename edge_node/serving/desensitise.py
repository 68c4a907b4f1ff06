"""Desensitise text at the edge: mask personal identifiers before anything is stored, logged or forwarded.

Hand-written detectors with validators, no PII library: Presidio needs spaCy models (a
download), ``phonenumbers`` only finds numbers written for a region it is told, and the
checks ``python-stdnum`` would add (Luhn, IBAN mod-97) are a few lines each. Detectors run
in order, each on the text the previous ones left (labels hold no digits or ``@``):

- ``email``: ``name@domain``, a domain without a dot too (``root@localhost``);
- ``iban``: country code, check digits, 11-30 more characters, valid under ISO 13616 mod-97;
- ``ip``: IPv4 and IPv6 addresses that :mod:`ipaddress` accepts;
- ``national_id``: US SSN (``123-45-6789``), UK NINO, Spanish DNI/NIE (checked), PRC resident id;
- runs of digits with spaces, dots, dashes or brackets between them, by shape: ``card``
  (13-19 digits passing Luhn), ``phone`` (7-15 digits, with a ``+``, a leading 0 or
  separators), ``number`` (any other run of 7 or more digits: account, customer, id numbers);
- ``name`` and ``address``: people's names and street addresses, by rules over the census gazetteer
  (:mod:`.names_addresses`; no NER model, see there why).

Dates, year ranges and decimals are left alone. It errs towards masking: a long number
that is not personal gets masked too.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from edge_node.serving.names_addresses import mask_names_and_addresses

KINDS = ("email", "iban", "ip", "national_id", "card", "phone", "number", "name", "address")


@dataclass(frozen=True)
class Desensitised:
    text: str
    counts: dict[str, int] = field(default_factory=dict)  # kind -> how many were masked (never the values)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def describe(self) -> str:
        """``email:1,phone:2`` (kinds in :data:`KINDS` order), or "" when nothing was masked."""
        return ",".join(f"{kind}:{self.counts[kind]}" for kind in KINDS if self.counts.get(kind))


def desensitise(text: str) -> Desensitised:
    """``text`` with personal identifiers replaced by ``[kind]`` labels, and how many of each."""
    counts: Counter[str] = Counter()
    for detector in _DETECTORS:
        text = detector(text, counts)
    return Desensitised(text, dict(counts))


Detector = Callable[[str, Counter[str]], str]


def _masking(pattern: re.Pattern[str], kind_of: Callable[[re.Match[str]], str | None]) -> Detector:
    """A detector that replaces each match ``kind_of`` names a kind for (None: leave it)."""

    def detect(text: str, counts: Counter[str]) -> str:
        def replace(match: re.Match[str]) -> str:
            kind = kind_of(match)
            if kind is None:
                return match.group(0)
            counts[kind] += 1
            return f"[{kind}]"

        return pattern.sub(replace, text)

    return detect


# -- validators ------------------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char) * (2 if i % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34 or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_ipv6(text: str) -> bool:
    return any(char.isalnum() for char in text) and _is_ip(text)


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def _dni_valid(match: re.Match[str]) -> bool:
    compact = match.group(0).replace("-", "").upper()
    number = compact[:-1].replace("X", "0").replace("Y", "1").replace("Z", "2")
    return _DNI_LETTERS[int(number) % 23] == compact[-1]


# -- detectors -------------------------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}")
_IBAN = re.compile(r"[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}")
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_SSN = re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])")
_NINO = re.compile(r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
_DNI = re.compile(r"\b(?:\d{8}|[XYZ]-?\d{7})-?[A-Z]\b", re.IGNORECASE)  # Spanish DNI / NIE
_PRC_ID = re.compile(r"(?<!\w)\d{17}[\dXx](?!\w)")  # PRC resident identity card
# A run of digits, with up to two of space . - ( ) between them, optionally after a "+".
_DIGIT_RUN = re.compile(r"(?<![\w+(.])(?:\+ ?)?\(?\d(?:[ ().-]{0,2}\d)*")
_DATE = re.compile(r"\d{4}[./-]\d{1,2}[./-]\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")
_YEAR_RANGE = re.compile(r"(?:1[89]|20)\d\d ?- ?(?:1[89]|20)\d\d")
_DECIMAL = re.compile(r"\d+\.\d+")
_SEPARATED = re.compile(r"\d[ ().-]+\d")


def _iban(text: str, counts: Counter[str]) -> str:
    """Mask the longest valid IBAN starting at each candidate start (a candidate may run into the next word)."""
    out: list[str] = []
    done = 0
    for start in _IBAN_START.finditer(text):
        if start.start() < done:
            continue
        candidate = _IBAN.match(text, start.start())
        if candidate is None:
            continue
        found = candidate.group(0)
        end = next((end for end in range(len(found), 14, -1)
                    if found[end - 1] != " " and iban_valid(found[:end])), 0)
        if end:
            out.append(text[done:start.start()] + "[iban]")
            done = start.start() + end
            counts["iban"] += 1
    return "".join(out) + text[done:]


def digit_run_kind(run: str) -> str | None:
    """What a run of digits is, by its shape; None for what is not personal (short, a date, a decimal)."""
    digits = re.sub(r"\D", "", run)
    if len(digits) < 7 or _DATE.fullmatch(run) or _YEAR_RANGE.fullmatch(run) or _DECIMAL.fullmatch(run):
        return None
    if run.startswith("+"):
        return "phone" if len(digits) <= 15 else "number"
    if 13 <= len(digits) <= 19 and luhn_valid(digits):
        return "card"
    if len(digits) <= 15 and (digits.startswith("0") or run.startswith("(") or _SEPARATED.search(run)):
        return "phone"
    return "number"


_DETECTORS: list[Detector] = [
    _masking(_EMAIL, lambda m: "email"),
    _iban,
    _masking(_IPV6, lambda m: "ip" if _is_ipv6(m.group(0)) else None),
    _masking(_IPV4, lambda m: "ip" if _is_ip(m.group(0)) else None),
    _masking(_SSN, lambda m: "national_id" if m.group(0)[:3] not in ("000", "666") else None),
    _masking(_NINO, lambda m: "national_id"),
    _masking(_DNI, lambda m: "national_id" if _dni_valid(m) else None),
    _masking(_PRC_ID, lambda m: "national_id"),
    _masking(_DIGIT_RUN, lambda m: digit_run_kind(m.group(0))),
    mask_names_and_addresses,  # last: the labels above hold no capitalised words
]
