"""Network-management inputs desensitised like prompts (:mod:`edge_node.serving.desensitise`): an
operator's intent text and the content titles of a popularity window have personal identifiers
(e-mail addresses, phone and card numbers, IBANs, IP addresses, national ids) masked before the
model reads them and before anything is logged; only counts of what was masked are logged.

The reply still names the titles as the caller sent them (they are the caller's own, and a masked
title could not be told from another); the model and the logs see the masked ones. An intent whose
endpoint is an IP address is read as ``[ip]`` (flagged, never guessed): name endpoints by their name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from edge_node.serving.desensitise import Desensitised, desensitise


@dataclass(frozen=True)
class MaskedTitles:
    shown: dict[str, str]  # title as sent -> the text the model reads
    counts: dict[str, int]  # kind -> how many were masked, over all titles

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def masked_titles(titles: Iterable[str]) -> MaskedTitles:
    shown: dict[str, str] = {}
    counts: Counter[str] = Counter()
    for title in titles:
        found = desensitise(title)
        shown[title] = found.text
        counts.update(found.counts)
    return MaskedTitles(shown, dict(counts))


def masked_text(text: str) -> Desensitised:
    """The intent request with its identifiers masked."""
    return desensitise(text)
