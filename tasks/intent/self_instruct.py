"""Self-instruct for the intent GPT-2: the pretrained base rewrites operator requests of the training split.

    python -m tasks.intent.self_instruct --out requests.jsonl --n 400 --seed 0 --threads 1

Each candidate rewrites one request of the recipe's training split (``generate(6000, 2024)``; no
"nothing" texts, only requests the regex baseline reads as their intent) with ``--shots`` pairs of
training requests of the same action as examples (a request and the same intent written again by
the generator). The shared filters (:mod:`tasks.self_instruct`) run with this task's check, which
keeps the keyword line true:

- ``dropped_slot``: an endpoint name or a bandwidth/latency/5QI figure the request stated is gone
  (:func:`~edge_node.netmgmt.intent_request.ungrounded_fields`), a clock time of its window is gone,
  or the regex baseline, which reads every training phrasing, no longer finds a stated field;
- ``label_changed``: a figure the source did not have, or the baseline reads a field with another
  value (the other action's verb, the endpoints swapped, Mbit/s for Gbit/s, another slice);
- ``heldout``: a word or phrase only the HELD-OUT split uses (``vocabulary.py``'s held-out words and
  template pieces that no training request contains: "deploy", "lightpath", "Gb/s", "originating
  at", ...), or the text of a request of either evaluation set; the held-out split measures
  generalisation to exactly those, so training must never see them;
- ``known``: a request of the training split itself.

Each kept line is a labelled request, ``{"text", "target" (the keyword line), "source", "shots",
"seed", "index", "model", "model_sha256", ...}``, so ``netgpt data build intent --labelled FILE``
turns it into trainer JSONL as it is (``read_labelled``), to add to the generated split.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import fields

from edge_node.netmgmt.intent_line import NUMBER, Intent, parse_line
from edge_node.netmgmt.intent_request import ungrounded_fields
from tasks.intent import vocabulary as v
from tasks.intent.baseline import CLOCK, extract
from tasks.intent.dataset import SEED as TRAIN_SEED
from tasks.intent.dataset import TRAIN_EXAMPLES
from tasks.intent.generator import Request, generate, rewrite
from tasks.self_instruct import Filters, Job, Unseen, normalised

INSTRUCTION = ("Rewrite the network request in other words. Keep every name, number and unit exactly as written. "
               "Reply with the new request only.")
MAX_NEW_TOKENS = 80
_CLOCK_TEXT = re.compile(rf"\b{CLOCK}\b", re.IGNORECASE)
_FIVE_QI_CUE = re.compile(r"5qi|qos", re.IGNORECASE)


def _figures(text: str) -> set[float]:
    return {float(x) for x in re.findall(NUMBER, text)}


def _clocks(text: str) -> set[str]:
    """Clock times as written, spacing dropped ("10 pm" → "10pm", "22:00")."""
    return {m[0].replace(" ", "").lower() for m in _CLOCK_TEXT.finditer(text) if ":" in m[0] or m[3]}


def check(intent: Intent, source: str, text: str) -> str | None:
    """Why ``text`` (a rewrite of ``source``, whose keyword line is ``intent``) would not be read as
    ``intent``; None when every stated field is still there and nothing else is."""
    if ungrounded_fields(intent, text) or (intent.time_window and not _clocks(source) <= _clocks(text)):
        return "dropped_slot"
    if intent.five_qi and not _FIVE_QI_CUE.search(text):
        return "dropped_slot"
    if _figures(text) - _figures(source):
        return "label_changed"
    reading = extract(text)
    for f in fields(Intent):
        label, read = getattr(intent, f.name), getattr(reading, f.name)
        if read == label or (f.name in ("five_qi", "time_window") and read == f.default):
            continue  # the baseline's 5QI and time patterns are narrow: the figures were checked above
        return "dropped_slot" if read == f.default else "label_changed"
    return None


def heldout_pieces() -> tuple[str, ...]:
    """Words and phrases of the held-out split that no training request contains (lower case)."""
    splits = [s for name, s in vars(v).items() if isinstance(s, v.Split) and name != "CLOCK_STYLES"]
    splits += list(v.SLICE_NAMES.values())
    pieces = set()
    for split in splits:
        for item in split.heldout:
            if item in split.train:
                continue
            for piece in re.split(r"\{[a-z]+\}", item):
                piece = piece.strip(" ,.:;!?-").lower()
                if piece and not re.fullmatch(r"[a-z]", piece):
                    pieces.add(piece)
    training = " ".join(r.text for r in generate(TRAIN_EXAMPLES, TRAIN_SEED)).lower()
    return tuple(sorted(p for p in pieces if not _contains(training, p)))


def _contains(lowered: str, piece: str) -> bool:
    return piece in lowered and re.search(rf"(?<![a-z0-9]){re.escape(piece)}(?![a-z0-9])", lowered) is not None


class HeldOutGuard(Unseen):
    """Unseen for the intent task: the evaluation sets' texts, and the held-out split's own words."""

    def __init__(self) -> None:
        from tasks.intent.evaluate import evaluation_sets

        super().__init__(r.text for requests in evaluation_sets().values() for r in requests)
        self.grams = set()  # requests share endpoint names and figures: whole texts and held-out words decide
        self.pieces = heldout_pieces()

    def overlaps(self, text: str) -> bool:
        lowered = text.lower()
        return super().overlaps(text) or any(_contains(lowered, p) for p in self.pieces)


def sources(seed: int = TRAIN_SEED, n: int = TRAIN_EXAMPLES) -> list[Request]:
    """The training split's requests that state something and that the baseline reads as their intent."""
    return [r for r in generate(n, seed) if r.intent != Intent() and extract(r.text) == r.intent]


def jobs(n: int, seed: int, shots: int = 3) -> list[Job]:
    """``n`` sources drawn from the training split, each with ``shots`` example pairs of the same action; seeded."""
    pool = sources()
    by_action: dict[str, list[Request]] = {}
    for request in pool:
        by_action.setdefault(request.intent.action, []).append(request)
    made = []
    for index in range(n):
        rng = random.Random(f"intent-self-instruct-{seed}-{index}")
        request = rng.choice(pool)
        examples = rng.sample([r for r in by_action[request.intent.action] if r is not request], shots)
        pairs = tuple((r.text, rewrite(r.intent, rng)) for r in examples)
        made.append(Job(index, request.text, pairs, {"target": request.target}))
    return made


def filters() -> Filters:
    def task_check(job: Job, text: str) -> str | None:
        return check(parse_line(job.fields["target"]).intent, job.source, text)

    known = frozenset(normalised(r.text) for r in generate(TRAIN_EXAMPLES, TRAIN_SEED))
    return Filters(task_check, HeldOutGuard(), known, min_words=4, max_words=60, max_chars=400)


def main(argv: Sequence[str] | None = None) -> int:
    from tasks.self_instruct import arguments, finish, load_rewriter, run

    args = arguments(__doc__, argv, n=200, max_new_tokens=MAX_NEW_TOKENS)
    rewriter = load_rewriter(args)
    records, tally = run(rewriter, INSTRUCTION, jobs(args.n, args.seed, args.shots), filters(), args.seed)
    finish(args, records, tally)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
