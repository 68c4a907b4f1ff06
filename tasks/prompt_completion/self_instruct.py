"""Self-instruct for the edge GPT-2: the pretrained base writes new phrasings of every need's questions.

    python -m tasks.prompt_completion.self_instruct --out phrasings.jsonl --n 400 --seed 0 --threads 1

Each candidate rewrites one TRAINING phrasing (``templates.py``: needs cycled in order, "find" or, a
quarter of the time, "hours", any template, a synthetic venue's name where the template names one)
with ``--shots`` pairs of training phrasings of OTHER needs as examples (a phrasing and another
template's phrasing of the same need). The shared filters (:mod:`tasks.self_instruct`) run with this
task's check, which keeps the label (the need, and the named venue) true:

- ``form``: it does not start as a question or a request does ("Where", "Is", "I need", "Show me", ...);
- ``dropped_slot``: a named question lost the venue's name; an unnamed one names its need no more (a
  source with a word only this need has, "seafood", must keep one such word, "oysters" will do; one
  with only shared words, "restaurant", keeps one of them; one with none, "Where can I stay?", keeps
  a content word), or an "hours" question no longer asks when;
- ``label_changed``: it names another need's keyword or noun the source did not ("a taxi or a bus?");

and ``heldout`` (a word 4-gram shared with, or equal to, a held-out or development question),
``known`` (an existing template's phrasing, venue name as ``{name}``), ``duplicate``.

Each kept line: ``{"text", "template" (the text with the venue's name as "{name}"), "need", "kind"
(find | hours), "named", "venue_name", "source_template", "source", "shots", "seed", "index", "model",
"model_sha256", "temperature", "top_p"}``. ``netgpt data build edge --phrasings FILE`` (or
``build_edge_dataset(..., phrasings=load_phrasings(FILE))``) then asks a share of the edge examples
in these words; the file is checked again when it is loaded (held-out overlap, known needs).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netgpt.errors import InvalidArgument, excerpt
from netgpt.training.dataset import jsonl_records
from tasks.prompt_completion.devset import DEV
from tasks.prompt_completion.heldout import HELD_OUT
from tasks.prompt_completion.synth import synthetic_cells
from tasks.prompt_completion.templates import NEEDS, NEEDS_BY_NAME, Need, Phrasing, all_phrasings, render, templates_for
from tasks.self_instruct import Filters, Job, Unseen, normalised, words

INSTRUCTION = ("Rewrite the question in other words. Keep what it asks for and any place name. "
               "Reply with the new question only.")
HOURS_SHARE = 0.25  # as in the datasets (templates.phrase)
MAX_NEW_TOKENS = 40
# words of the needs' nouns that do not say which need it is ("bus stop", "coffee shop", "sports hall")
GENERIC = frozenset({"place", "shop", "stand", "stop", "office", "room", "hall", "centre", "store", "rank", "terminal",
                     "pier", "bar", "station", "house", "left", "work", "out", "book", "to", "a", "the"})
STOP = frozenset({"a", "an", "the", "some", "to", "of", "for", "in", "on", "at", "my", "me", "i", "is", "are", "be",
                  "do", "does", "get", "find", "where", "what", "which", "how", "when", "any", "and", "or", "with",
                  "by", "from", "near", "here", "can", "you", "there", "it", "need", "want", "go", "around", "close",
                  "closest", "nearest", "show", "looking", "am", "recommend", "tonight", "now", "today", "this",
                  "evening", "lunch", "open", "opens", "late", "hours", "opening", "something", "somewhere",
                  "quick", "fresh", "nearby", "new", "good", "best", "please"})
# how a question or a request starts ("A place to eat is a whole different story, isn't it?" does not)
OPENERS = frozenset({"where", "which", "what", "whats", "wheres", "when", "how", "who", "is", "are", "can", "could",
                     "would", "will", "do", "does", "any", "anywhere", "anything", "i", "show", "find", "recommend",
                     "tell", "need", "looking", "got", "please", "help", "suggest", "locate", "point", "take", "give",
                     "have", "has", "hey", "hi", "excuse", "we", "my", "til", "until"})
HOURS_CUES = frozenset({"open", "opens", "opening", "close", "closes", "closing", "closed", "shut", "shuts", "hour",
                        "hours", "late", "until", "time", "times", "when"})


def stem(word: str) -> str:
    """Plural to singular, roughly ("noodles" → "noodle", "ferries" → "ferrie"; "bus" stays)."""
    return word[:-1] if word.endswith("s") and len(word) > 3 and not word.endswith("ss") else word


def _stems(text: str) -> set[str]:
    return {stem(w) for w in words(text)}


def markers(need: Need) -> frozenset[str]:
    """The words that name ``need``: its keywords and the words of its nouns and noun phrases."""
    found = set(need.keywords) | {w for t in (*need.nouns, *need.wants) for w in words(t)}
    return frozenset(stem(w) for w in found if w not in GENERIC and w not in STOP)


def _strict(need: Need) -> frozenset[str]:
    return frozenset(stem(w) for w in (*need.keywords, *(w for t in need.nouns for w in words(t)))
                     if w not in GENERIC and w not in STOP)


MARKERS: dict[str, frozenset[str]] = {need.name: markers(need) for need in NEEDS}


def _foreign(need: Need) -> frozenset[str]:
    """Other needs' keywords and nouns; not those of a broader need that covers this one ("eat" for "seafood")."""
    others = [other for other in NEEDS if other is not need
              and (other.keywords or not set(other.categories) & set(need.categories))]
    return frozenset().union(*(_strict(other) for other in others)) - MARKERS[need.name]


FOREIGN: dict[str, frozenset[str]] = {need.name: _foreign(need) for need in NEEDS}
# the words that name only this need ("oysters" but not "restaurant" for seafood)
STRONG: dict[str, frozenset[str]] = {
    need.name: MARKERS[need.name] - frozenset().union(*(MARKERS[o.name] for o in NEEDS if o is not need))
    for need in NEEDS}


def template_form(text: str, name: str) -> str:
    """``text`` with the venue's ``name`` as ``{name}`` (case-insensitive); unchanged when it has none."""
    if not name:
        return text
    at = text.lower().find(name.lower())
    return text if at < 0 else text[:at] + "{name}" + text[at + len(name):]


def check(need: Need, kind: str, source: str, text: str, name: str = "") -> str | None:
    """Why ``text`` (a rewrite of ``source``, a ``kind`` question about ``need`` naming venue ``name``
    or none) would make the example's label untrue; None when it keeps it."""
    if words(text)[0] not in OPENERS:
        return "form"
    if name and name.lower() not in text.lower():
        return "dropped_slot"
    bare, bare_source = template_form(text, name), template_form(source, name)
    have, had = _stems(bare), _stems(bare_source)
    if not name:
        required = STRONG[need.name] if had & STRONG[need.name] else \
            (had & MARKERS[need.name]) or {w for w in had if w not in STOP}
        if required and not have & required:
            return "dropped_slot"
    if kind == "hours" and not set(words(bare)) & HOURS_CUES:
        return "dropped_slot"
    if (have - had) & FOREIGN[need.name]:
        return "label_changed"
    return None


def unseen() -> Unseen:
    """The held-out and development questions."""
    return Unseen(q.question for q in (*HELD_OUT, *DEV))


def known() -> frozenset[str]:
    """Every training phrasing, normalised, venue names as ``{name}``."""
    return frozenset(normalised(p) for p in all_phrasings())


def jobs(n: int, seed: int, shots: int = 3) -> list[Job]:
    """``n`` sources (needs in turn), each with ``shots`` example pairs of other needs; seeded."""
    names: dict[str, list[str]] = {}
    for _area, venues in synthetic_cells(seed).values():
        for venue in venues:
            for need in NEEDS:
                if need.fits(venue):
                    names.setdefault(need.name, []).append(venue.name)
    made = []
    for index in range(n):
        rng = random.Random(f"self-instruct-{seed}-{index}")
        need = NEEDS[index % len(NEEDS)]
        kind = "hours" if rng.random() < HOURS_SHARE else "find"
        template = rng.choice([t for t, k in templates_for(need) if k == kind])
        name = rng.choice(sorted(set(names.get(need.name, ())))) if "{name}" in template else ""
        if "{name}" in template and not name:
            template = rng.choice([t for t, k in templates_for(need) if k == kind and "{name}" not in t])
        source = render(template, need, rng, name)
        made.append(Job(index, source, _shots(rng, need, kind, shots),
                        {"need": need.name, "kind": kind, "named": bool(name), "venue_name": name,
                         "source_template": template}))
    return made


def _shots(rng: random.Random, need: Need, kind: str, count: int) -> tuple[tuple[str, str], ...]:
    pairs = []
    for other in rng.sample([n for n in NEEDS if n is not need], count):
        choices = [t for t, k in templates_for(other) if k == kind and "{name}" not in t]
        first, second = rng.sample(choices, 2)
        pairs.append((render(first, other, rng), render(second, other, rng)))
    return tuple(pairs)


def filters() -> Filters:
    def task_check(job: Job, text: str) -> str | None:
        fields = job.fields
        return check(NEEDS_BY_NAME[fields["need"]], fields["kind"], job.source, text, fields["venue_name"])

    def key(job: Job, text: str) -> str:
        return normalised(template_form(text, job.fields["venue_name"]))

    return Filters(task_check, unseen(), known(), min_words=3, max_words=24, max_chars=160, key=key)


def finish_record(record: dict[str, Any]) -> dict[str, Any]:
    """A kept record with its ``template`` (the venue's name as ``{name}``) after its text."""
    return {"text": record["text"], "template": template_form(record["text"], record["venue_name"]),
            **{k: v for k, v in record.items() if k != "text"}}


@dataclass
class GeneratedPhrasings:
    """Kept self-instruct phrasings, by (need, kind): what the edge dataset builder draws from."""

    pools: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # templates ("{name}" for the venue)

    def __len__(self) -> int:
        return sum(len(p) for p in self.pools.values())

    def draw(self, rng: random.Random, need: Need, kind: str, venue_name: str) -> Phrasing | None:
        pool = self.pools.get((need.name, kind))
        if not pool:
            return None
        template = rng.choice(pool)
        return Phrasing(template.replace("{name}", venue_name), template, kind, "{name}" in template,
                        origin="self-instruct")


def load_phrasings(path: Path) -> GeneratedPhrasings:
    """The phrasings of a self-instruct file, checked again (need, kind, held-out overlap); InvalidArgument."""
    guard, loaded = unseen(), GeneratedPhrasings()
    for where, _number, line, record in jsonl_records(Path(path), "self-instruct phrasings"):
        if not isinstance(record, dict) or not isinstance(record.get("template"), str) or not record["template"]:
            raise InvalidArgument(f"{where}: expected an object with a 'template' string: {excerpt(line)}")
        need, kind, template = record.get("need"), record.get("kind"), record["template"]
        if need not in NEEDS_BY_NAME or kind not in ("find", "hours"):
            raise InvalidArgument(f"{where}: unknown need {need!r} or kind {kind!r}")
        if guard.overlaps(template.replace("{name}", " ")):
            raise InvalidArgument(f"{where}: shares phrasing with a held-out or development question: "
                                  f"{excerpt(template)}")
        loaded.pools.setdefault((need, kind), []).append(template)
    if not loaded:
        raise InvalidArgument(f"{path} holds no phrasings")
    return loaded


def main(argv: Sequence[str] | None = None) -> int:
    from tasks.self_instruct import arguments, finish, load_rewriter, run

    args = arguments(__doc__, argv, n=200, max_new_tokens=MAX_NEW_TOKENS)
    rewriter = load_rewriter(args)
    records, tally = run(rewriter, INSTRUCTION, jobs(args.n, args.seed, args.shots), filters(), args.seed)
    finish(args, [finish_record(r) for r in records], tally)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
