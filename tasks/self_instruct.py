"""Self-instruct with the pretrained base, as the research built the edge GPT-2's data with a large model.

What the two tasks share (:mod:`tasks.prompt_completion.self_instruct`: the needs' questions;
:mod:`tasks.intent.self_instruct`: operator requests): a few-shot chat prompt ("rewrite this in other
words", a few pairs of TRAINING phrasings as shots), seeded decoding of many prompts at once on the
packed LLaMA engine (:class:`cloud_node.packed_forward.PackedLlama`: one forward pass per step for
every sequence still running, no padding), and the generic filters every candidate goes through in
this order, each rejection counted under its reason:

``empty`` → ``length`` (word and character bounds) → ``copy`` (the source or a shot, normalised) →
``heldout`` (equal to, or sharing a word n-gram with, a held-out or development question: those must
stay unseen) → the task's own check (``form``, ``dropped_slot``, ``label_changed``: the slot content the
label depends on is kept, the label cannot have changed) → ``known`` (an existing training phrasing:
nothing new) → ``duplicate``.

Normalisation is the held-out tests' (``tests/test_prompt_task.py``): lower-cased ``[a-z0-9]+`` words
(accents folded first), word 4-grams. Kept candidates are written as JSONL with their provenance
(source phrasing, shots, seed, index, model name and sha256, sampling settings); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netgpt.generation import SamplingParams, choose_token
from netgpt.training.dataset import write_jsonl

if TYPE_CHECKING:  # the engine (torch) is imported where a model is loaded: the filters stay light
    from cloud_node.llama_engine import LlamaModel

WORD = re.compile(r"[a-z0-9]+")
GRAM = 4  # the held-out tests' n-gram length
REASONS = ("empty", "length", "copy", "heldout", "form", "dropped_slot", "label_changed", "known", "duplicate")
_LABEL = re.compile(r"^(?:(?:re)?written|rewrite|paraphrase|new|other|question|request|answer)"
                    r"(?: (?:question|request|version))?\s*:\s*", re.IGNORECASE)


def words(text: str) -> list[str]:
    """Lower-cased ``[a-z0-9]+`` words, accents folded first ("café" → "cafe"; ASCII text as the tests split it)."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))
    return WORD.findall(folded)


def normalised(text: str) -> str:
    return " ".join(words(text))


def word_grams(text: str, n: int = GRAM) -> set[tuple[str, ...]]:
    found = words(text)
    return {tuple(found[i:i + n]) for i in range(len(found) - n + 1)}


class Unseen:
    """Texts that must stay unseen by training (held-out and development questions): a candidate equal to
    one of them, or sharing a word ``n``-gram with any, is rejected."""

    def __init__(self, texts: Iterable[str], n: int = GRAM) -> None:
        texts = list(texts)
        self.n = n
        self.exact = {normalised(t) for t in texts}
        self.grams: set[tuple[str, ...]] = set().union(*(word_grams(t, n) for t in texts)) if texts else set()

    def overlaps(self, text: str) -> bool:
        return normalised(text) in self.exact or bool(word_grams(text, self.n) & self.grams)


@dataclass(frozen=True)
class Job:
    """One candidate to generate: the source phrasing, the shots, and the task's fields for its record."""

    index: int
    source: str
    shots: tuple[tuple[str, str], ...]  # (training phrasing, another training phrasing of the same thing)
    fields: dict[str, Any]


@dataclass(frozen=True)
class Filters:
    """What a candidate must pass (see the module docstring for the order)."""

    check: Callable[[Job, str], str | None]  # the task's check: a reason, or None when the label stays true
    unseen: Unseen
    known: frozenset[str]  # normalised training phrasings
    min_words: int = 3
    max_words: int = 24
    max_chars: int = 160
    key: Callable[[Job, str], str] = lambda _job, text: normalised(text)  # what "the same phrasing" means


@dataclass
class Tally:
    generated: int = 0
    kept: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    new_tokens: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)  # a few rejected candidates per reason

    def reject(self, reason: str, text: str) -> None:
        self.rejected[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < 3:
            shown.append(text)

    def as_dict(self) -> dict[str, Any]:
        return {"generated": self.generated, "kept": self.kept,
                "rejected": {reason: self.rejected[reason] for reason in REASONS if self.rejected[reason]},
                "seconds": round(self.seconds, 1), "new_tokens": self.new_tokens,
                "tokens_per_s": round(self.new_tokens / self.seconds, 1) if self.seconds else 0.0,
                "rejected_examples": self.examples}


def clean(text: str) -> str:
    """The candidate in the model's reply: its first non-empty line, without a label or quotes."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = _LABEL.sub("", line).strip()
    line = line.strip("\"'`*“”‘’ ").strip()
    return " ".join(line.split())


def chat_prompt(tokenizer: Any, instruction: str, source: str, shots: Sequence[tuple[str, str]]) -> str:
    """The few-shot prompt: each shot a user turn (instruction + phrasing) answered by its rewrite, then the
    source; a tokenizer without a chat template gets the same as plain ``Input:``/``Rewrite:`` lines."""
    def turn(text: str) -> str:
        return f"{instruction}\nInput: {text}"

    if getattr(tokenizer, "chat_template", None):
        messages = []
        for shot, rewrite in shots:
            messages += [{"role": "user", "content": turn(shot)}, {"role": "assistant", "content": rewrite}]
        messages.append({"role": "user", "content": turn(source)})
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    lines = [instruction, ""] + [f"Input: {shot}\nRewrite: {rewrite}\n" for shot, rewrite in shots]
    return "\n".join(lines) + f"\nInput: {source}\nRewrite:"


def stable_seed(*parts: object) -> int:
    """A seed from ``parts`` that does not depend on Python's hash randomisation."""
    return int(hashlib.sha256("-".join(map(str, parts)).encode()).hexdigest()[:15], 16)


class Rewriter:
    """Seeded decoding of many prompts at once on the model's packed engine, each stopped at its first
    newline, an end token or ``max_new_tokens``. The same prompts, seeds and batch size give the same
    text on the same machine (every sequence has its own sampling generator)."""

    def __init__(self, model: LlamaModel, max_new_tokens: int = 40, temperature: float = 0.7, top_p: float = 0.95,
                 batch: int = 8) -> None:
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
        self.batch = max(1, batch)
        tokenizer: Any = model.tokenizer
        stops = {model.tokenizer.eos_token_id}
        for name in ("<|im_end|>", "<|endoftext|>", "</s>"):
            token = tokenizer.convert_tokens_to_ids(name) if hasattr(tokenizer, "convert_tokens_to_ids") else None
            if isinstance(token, int) and token != getattr(tokenizer, "unk_token_id", None):
                stops.add(token)
        self.stops = {t for t in stops if t is not None}
        self.new_tokens = 0

    def generate(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[str]:
        replies: list[str] = []
        for start in range(0, len(prompts), self.batch):
            replies += self._batch(prompts[start:start + self.batch], seeds[start:start + self.batch])
        return replies

    def _batch(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[str]:
        import numpy as np
        import torch

        from cloud_node.packed_forward import Segment

        tokenizer, packed = self.model.tokenizer, self.model.packed
        prompt_ids = [tokenizer.encode(p, add_special_tokens=False)[-(self.model.max_context - self.max_new_tokens):]
                      for p in prompts]
        caches = [packed.new_cache(len(ids) + self.max_new_tokens) for ids in prompt_ids]
        rngs = [np.random.default_rng(seed) for seed in seeds]
        out: list[list[int]] = [[] for _ in prompts]
        running = list(range(len(prompts)))
        with self.model.lock, torch.inference_mode():
            logits = packed.forward([Segment(caches[i], prompt_ids[i], None) for i in running]).cpu().numpy()
            for _step in range(self.max_new_tokens):
                still = []
                for row, i in enumerate(running):
                    token = choose_token(logits[row], self.params, rngs[i])
                    if token in self.stops:
                        continue
                    out[i].append(token)
                    self.new_tokens += 1
                    ended = "\n" in tokenizer.decode(out[i], skip_special_tokens=True).lstrip()
                    if not ended and len(out[i]) < self.max_new_tokens:
                        still.append(i)
                running = still
                if not running:
                    break
                logits = packed.forward([Segment(caches[i], [out[i][-1]], None) for i in running]).cpu().numpy()
        return [tokenizer.decode(ids, skip_special_tokens=True) for ids in out]


class Sieve:
    """The filters, applied to candidates one at a time: what is kept so far (for ``duplicate``) and the tally."""

    def __init__(self, filters: Filters) -> None:
        self.filters = filters
        self.tally = Tally()
        self._seen: set[str] = set()

    def offer(self, job: Job, text: str) -> str | None:
        """Count ``text`` (a cleaned candidate for ``job``) as generated; the reason it is rejected, or None
        when it is kept."""
        self.tally.generated += 1
        reason = self._reason(job, text)
        if reason:
            self.tally.reject(reason, text)
            return reason
        self._seen.add(self.filters.key(job, text))
        self.tally.kept += 1
        return None

    def _reason(self, job: Job, text: str) -> str | None:
        filters, found = self.filters, words(text)
        if not found:
            return "empty"
        if not filters.min_words <= len(found) <= filters.max_words or len(text) > filters.max_chars:
            return "length"
        if normalised(text) in {normalised(t) for t in (job.source, *(s for pair in job.shots for s in pair))}:
            return "copy"
        if filters.unseen.overlaps(text):
            return "heldout"
        own = filters.check(job, text)
        if own:
            return own
        key = filters.key(job, text)
        if key in filters.known:
            return "known"
        if key in self._seen:
            return "duplicate"
        return None


def run(rewriter: Rewriter, instruction: str, jobs: Sequence[Job], filters: Filters, seed: int,
        progress: Callable[[int], None] | None = None) -> tuple[list[dict[str, Any]], Tally]:
    """Generate one candidate per job, filter them, and return the kept records and the tally."""
    sieve, kept = Sieve(filters), []
    started = time.perf_counter()
    tokenizer = rewriter.model.tokenizer
    identity = rewriter.model.identity
    for start in range(0, len(jobs), rewriter.batch):
        chunk = jobs[start:start + rewriter.batch]
        prompts = [chat_prompt(tokenizer, instruction, job.source, job.shots) for job in chunk]
        replies = rewriter.generate(prompts, [stable_seed("self-instruct", seed, job.index) for job in chunk])
        for job, reply in zip(chunk, replies, strict=True):
            text = clean(reply)
            if sieve.offer(job, text) is None:
                kept.append({"text": text, **job.fields, "source": job.source, "shots": [list(s) for s in job.shots],
                             "seed": seed, "index": job.index, "model": identity.name,
                             "model_sha256": identity.sha256, "temperature": rewriter.params.temperature,
                             "top_p": rewriter.params.top_p})
        if progress:
            progress(len(chunk))
    tally = sieve.tally
    tally.seconds = time.perf_counter() - started
    tally.new_tokens = rewriter.new_tokens
    return kept, tally


def arguments(doc: str | None, argv: Sequence[str] | None, n: int, max_new_tokens: int) -> argparse.Namespace:
    """The command line both tasks' self-instruct commands share."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--out", type=Path, required=True, help="JSONL of the kept phrasings")
    parser.add_argument("--n", type=int, default=n, help=f"candidates to generate (default: {n})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--batch", type=int, default=8, help="sequences decoded together (default: 8)")
    parser.add_argument("--shots", type=int, default=3, help="few-shot examples per prompt (default: 3)")
    parser.add_argument("--temperature", type=float, default=0.7, help="0 = greedy (default: 0.7)")
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    parser.add_argument("--model", type=Path, help="a LLaMA folder (default: the pretrained base, "
                                                   "SmolLM2-135M-Instruct from the pinned package)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--report", type=Path, help="also write the tally as JSON here")
    args = parser.parse_args(argv)
    if args.n <= 0:
        parser.error(f"--n must be positive, got {args.n}")
    return args


def load_rewriter(args: argparse.Namespace) -> Rewriter:
    """The model of ``--model`` (default: the pretrained base) on ``--device`` in float32, as a Rewriter."""
    import torch

    from cloud_node.llama_engine import LlamaModel

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    folder = args.model
    if folder is None:
        from netgpt.checkpoint.pretrained import PRETRAINED_NAME, pretrained_base

        model = LlamaModel.load(pretrained_base().folder, device=args.device, dtype="float32", name=PRETRAINED_NAME)
    else:
        model = LlamaModel.load(folder, device=args.device, dtype="float32")
    return Rewriter(model, args.max_new_tokens, args.temperature, args.top_p, args.batch)


def finish(args: argparse.Namespace, records: list[dict[str, Any]], tally: Tally) -> dict[str, Any]:
    """Write the records (and ``--report``); print the tally as JSON."""
    write_jsonl(args.out, records)
    report = {"out": str(args.out), "seed": args.seed, **tally.as_dict()}
    if args.report:
        write_jsonl(args.report, [report])
    print(json.dumps(report, ensure_ascii=False, indent=1))
    return report
