"""Seeded dataset builders for the concise → comprehensive prompt → answer task.

Every line of a dataset is one JSON object ``{"prompt": str, "completion": str, "meta": {...}}``;
a trainer learns ``completion`` after ``prompt`` and appends the tokenizer's end-of-text token
itself (completions carry none). Prompts are built exactly as the edge builds them at run time
(:mod:`edge_node.serving.prompt_format`, facts retrieved by the edge's
:class:`~edge_node.serving.knowledge.KnowledgeBase` for the question):

- edge (a), two kinds of lines, half each:
  ``kind=intent``: ``"{block}\\nIntent: The user wants"`` → ``" to eat seafood.\\n"`` (the edge's
  reading of the need, ended by the newline the edge stops at);
  ``kind=answer``: ``"{block}\\nIntent: The user wants{intent}\\nAnswer:"`` → a short edge answer,
  ``" Harbour Fish Market, open 11:00-22:00."``.
- cloud (b), Alpaca-style instruction answering: the comprehensive prompt (ending ``"Answer:"``) →
  ``" Try Harbour Fish Market: seafood restaurant on the quay, ..., open 11:00-22:00."``; grounded
  only in the listed facts (the venue it names is always one of them). A share of the prompts
  (``distractor_share``: half for the starter LLaMA, all for the pretrained base's adapter) list
  their facts in a random order, most with distractors, venues of the cell that do not fit
  (:meth:`Case.with_distractors`): the edge's relevance cut leaves 86 % of the prompts with one fact,
  the fitting one, and a model trained on those alone copies the first line it is shown. A share
  (``misread_share``: a fifth for the adapter) carry another need's intent line
  (:func:`_misread_intent`): the edge's small model misreads new wordings, and a cloud trained on
  correct intents only answers the misreading.

``meta``: source (synthetic | real), cell_id, need, kind, question (find | hours), template,
request (the concise prompt), venue (the answer's venue), facts (the listed venues' names),
and, on a cloud line that lists any, distractors (the listed venues the edge did not retrieve) and
misread_intent (true where the intent line is another need's).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from edge_node.serving.knowledge import Venue
from edge_node.serving.prompt_format import MAX_FACTS, answer_prompt, context_block, intent_prompt
from netgpt.training.dataset import write_jsonl
from tasks.prompt_completion.synth import World, build_world, real_knowledge_text
from tasks.prompt_completion.templates import NEEDS, PREFERENCES, Need, Phrasing, needs_for, phrase

if TYPE_CHECKING:
    from tasks.prompt_completion.self_instruct import GeneratedPhrasings

REAL_SHARE = 0.2  # share of examples on the real knowledge base (training phrasings, or self-instruct ones)
PREFERENCE_SHARE = 0.3  # share of examples whose user has profile preferences
NO_INTENT_SHARE = 0.15  # share of answer prompts with an empty intent (an edge with intent_tokens=0)
CLOUD_DISTRACTOR_SHARE = 0.5  # share of cloud prompts listing their facts shuffled, with venues that do not fit
CORPUS_EXAMPLES = 3000  # examples of each dataset in the tokenizer corpus
PHRASINGS_SHARE = 0.3  # with self-instruct phrasings given: share of edge examples asked in their words
Progress = Callable[[int], None]
Swap = Callable[[Phrasing, Need, Venue], Phrasing]  # the phrasing a case is asked in instead (or the same)


@dataclass(frozen=True)
class Case:
    """One question in one cell, with the facts the edge retrieves and the venue that answers it."""

    cell_id: str
    source: str
    area: str
    preferences: list[str]
    need: Need
    phrasing: Phrasing
    facts: list[Venue]
    target: Venue
    intent: str  # what the edge should write after "The user wants"
    distractors: tuple[str, ...] = ()  # listed venues the edge did not retrieve (see with_distractors)

    @property
    def block(self) -> str:
        return context_block(self.phrasing.text, self.cell_id, self.area, [v.as_fact() for v in self.facts],
                             self.preferences)

    def with_distractors(self, rng: random.Random, venues: list[Venue]) -> Case:
        """The same question with up to ``MAX_FACTS`` facts: the retrieved ones plus venues of the cell
        that do not fit the need, in a random order (distractors as in RAFT: the answer has to be read
        from the list, not taken from its first line)."""
        spare = [v for v in venues if v not in self.facts and not self.need.fits(v)]
        extra = rng.sample(spare, min(len(spare), rng.randint(0, MAX_FACTS - len(self.facts))))
        facts = rng.sample(self.facts + extra, len(self.facts) + len(extra))
        target = _answering(facts, self.need, self.target if self.phrasing.named else None)
        return replace(self, facts=facts, target=target or self.target, distractors=tuple(v.name for v in extra))

    def prompt(self, intent: str) -> str:
        return answer_prompt(self.block, intent)

    def meta(self, kind: str) -> dict[str, object]:
        return {"source": self.source, "cell_id": self.cell_id, "need": self.need.name, "kind": kind,
                "question": self.phrasing.kind, "template": self.phrasing.template, "request": self.phrasing.text,
                "venue": self.target.name, "facts": [v.name for v in self.facts],
                **({"distractors": list(self.distractors)} if self.distractors else {}),
                **({"phrasing": self.phrasing.origin} if self.phrasing.origin != "template" else {})}


def sample_case(rng: random.Random, world: World, pools: dict[bool, list[str]], swap: Swap | None = None) \
        -> Case | None:
    """A random question about a random venue (``pools``: synthetic and real cell ids, by "is real");
    None when the edge would not retrieve a venue that fits. ``swap`` may ask it in other words (it must
    draw from a random stream of its own: ``rng`` makes the same cases with or without it)."""
    cell_id = rng.choice(pools[rng.random() < REAL_SHARE])
    area, venues = world.cells[cell_id]
    venue = rng.choice(venues)
    needs = needs_for(venue)
    if not needs:
        return None
    need = rng.choice(needs)
    phrasing = phrase(rng, need, venue)
    if swap is not None:
        phrasing = swap(phrasing, need, venue)
    facts = world.venues(cell_id, phrasing.text, MAX_FACTS)
    target = _answering(facts, need, venue if phrasing.named else None)
    if target is None:
        return None
    preferences = rng.sample(PREFERENCES, rng.randint(1, 2)) if rng.random() < PREFERENCE_SHARE else []
    source = "real" if cell_id in world.real else "synthetic"
    return Case(cell_id, source, area, preferences, need, phrasing, facts, target, f" {rng.choice(need.intents)}.")


def _answering(facts: list[Venue], need: Need, named: Venue | None) -> Venue | None:
    """The listed venue that answers: the named one, else the first that fits the need."""
    if named is not None:
        return named if named in facts else None
    return next((v for v in facts if need.fits(v)), None)


def edge_answer(case: Case) -> str:
    return venue_answer(case.target)


def venue_answer(venue: Venue) -> str:
    """The edge's answer form: the venue's name and its hours, nothing else (the cloud writes prose)."""
    hours = f", open {venue.hours}" if venue.hours else ", hours not listed"
    return f" {venue.name}{hours}."


def cloud_answer(case: Case) -> str:
    venue = case.target
    if case.phrasing.kind == "hours":
        return f" {venue.name} is open {venue.hours}." if venue.hours else \
            f" {venue.name} does not list its opening hours."
    hours = f", open {venue.hours}" if venue.hours else ""
    return f" Try {venue.name}: {venue.description}{hours}."


def _answer_intent(rng: random.Random, case: Case, no_intent_share: float = NO_INTENT_SHARE) -> str:
    return "" if rng.random() < no_intent_share else case.intent


def edge_example(rng: random.Random, case: Case) -> dict[str, object]:
    if rng.random() < 0.5:
        return {"prompt": intent_prompt(case.block), "completion": case.intent + "\n", "meta": case.meta("intent")}
    return {"prompt": case.prompt(_answer_intent(rng, case)), "completion": edge_answer(case),
            "meta": case.meta("answer")}


def _misread_intent(rng: random.Random, case: Case) -> str:
    """An intent line of another need: the edge's small model misreads requests it has not seen the like
    of, and the cloud must answer the request itself, from the listed facts, not the edge's guess."""
    other = rng.choice([need for need in NEEDS if need is not case.need])
    return f" {rng.choice(other.intents)}."


def cloud_example(rng: random.Random, case: Case, misread_share: float = 0.0,
                  no_intent_share: float = NO_INTENT_SHARE) -> dict[str, object]:
    misread = misread_share > 0 and rng.random() < misread_share  # no draw at 0: the same lines as without
    intent = _misread_intent(rng, case) if misread else _answer_intent(rng, case, no_intent_share)
    return {"prompt": case.prompt(intent), "completion": cloud_answer(case),
            "meta": {**case.meta("answer"), **({"misread_intent": True} if misread else {})}}


def examples(seed: int, n: int, make: Callable[[random.Random, Case], dict[str, object]], salt: str,
             progress: Progress | None = None, distractor_share: float = 0.0,
             phrasings: GeneratedPhrasings | None = None, phrasings_share: float = PHRASINGS_SHARE) \
        -> Iterator[dict[str, object]]:
    """``n`` examples, the same for the same seed. ``distractor_share``: share of cases listing distractors
    (drawn from a stream of its own, so the cases themselves do not change). ``phrasings``: self-instruct
    phrasings a ``phrasings_share`` of the cases is asked in, where the file has one for the case's need and
    question type (a stream of its own too); a case whose fitting venue the edge then does not retrieve
    is dropped like any other."""
    world, rng, order = build_world(seed), random.Random(f"{salt}-{seed}"), random.Random(f"{salt}-order-{seed}")
    pools = {real: world.cell_ids(real) for real in (False, True)}
    swap = _swapper(phrasings, phrasings_share, random.Random(f"{salt}-phrasings-{seed}")) \
        if phrasings is not None else None
    made = 0
    while made < n:
        case = sample_case(rng, world, pools, swap)
        if case is None:
            continue
        if order.random() < distractor_share:
            case = case.with_distractors(order, world.cells[case.cell_id][1])
        made += 1
        if progress:
            progress(1)
        yield make(rng, case)


def _swapper(phrasings: GeneratedPhrasings, share: float, rng: random.Random) -> Swap:
    def swap(phrasing: Phrasing, need: Need, venue: Venue) -> Phrasing:
        if rng.random() >= share:
            return phrasing
        return phrasings.draw(rng, need, phrasing.kind, venue.name) or phrasing

    return swap


def build_edge_dataset(out: Path, seed: int, n: int, progress: Progress | None = None,
                       phrasings: GeneratedPhrasings | None = None, phrasings_share: float = PHRASINGS_SHARE) -> Path:
    """Dataset (a): intent continuations and short edge answers, as JSONL at ``out``; with ``phrasings``
    (:func:`tasks.prompt_completion.self_instruct.load_phrasings`) a share of the questions in the
    pretrained model's words. Without them the file is the same, byte for byte."""
    return write_jsonl(out, examples(seed, n, edge_example, "edge", progress, phrasings=phrasings,
                                     phrasings_share=phrasings_share))


def build_cloud_dataset(out: Path, seed: int, n: int, progress: Progress | None = None,
                        distractor_share: float = CLOUD_DISTRACTOR_SHARE, misread_share: float = 0.0,
                        no_intent_share: float = NO_INTENT_SHARE) -> Path:
    """Dataset (b): comprehensive prompt → grounded answer, as JSONL at ``out``; ``distractor_share`` of the
    prompts list their facts shuffled, most with distractors, ``misread_share`` carry a misread intent line,
    ``no_intent_share`` of the others an empty one."""
    make = partial(cloud_example, misread_share=misread_share, no_intent_share=no_intent_share)
    return write_jsonl(out, examples(seed, n, make, "cloud", progress, distractor_share))


def corpus_texts(seed: int) -> list[str]:
    """Text to train the starter tokenizer on: prompts and completions of both datasets, and the real
    knowledge base."""
    texts = [real_knowledge_text()]
    for make, salt in ((edge_example, "edge"), (cloud_example, "cloud")):
        for row in examples(seed, CORPUS_EXAMPLES, make, salt):
            texts.append(f"{row['prompt']}{row['completion']}")
    return texts
