"""Venue keywords written by the pretrained base: document expansion for the edge's retrieval.

The edge ranks a cell's venues by BM25 over their name, category and description, so a question in
words the knowledge base does not use ("latte", "prescription", "drop my bags") finds nothing that
fits. Document expansion (as doc2query does for passages) adds the words people use for a venue to
what the index matches, once, offline: here the pretrained base (SmolLM2-135M-Instruct) reads each
venue's line and continues generic cues ("... People come here to buy"); its next-word distribution
is contrasted with the same cue after every other venue of the knowledge base (pointwise mutual
information: "coffee" is likely after a café's line, "find" after any), and the words that are both
likely and specific become the venue's ``keywords``. A word piece ("lat") is completed greedily to
the word it starts ("latte"). The model sees venue lines only, never a question; the thresholds are
chosen on the development set.

``python -m tasks.prompt_completion.venue_terms [KNOWLEDGE.toml] [--out FILE]`` (``make venue-keywords``
rewrites the bundled ``netgpt/assets/knowledge.toml``): every venue's ``keywords`` line is written or
replaced in place; the rest of the file, comments included, is kept byte for byte.
"""

from __future__ import annotations

import argparse
import math
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from edge_node.serving.knowledge import Venue, parse_cells
from netgpt.checkpoint.pretrained import pretrained_base

BUNDLED = Path(__file__).resolve().parents[2] / "netgpt" / "assets" / "knowledge.toml"
CUES = ("People come here to buy", "People come here to get", "People come here to eat", "People come here to drink",
        "People come here to see", "People come here to leave their", "People come here to use the",
        "People come here when they feel", "People come here when they have a", "People come here when they need a",
        "People come here to catch a", "People come here to", "Here you can ask for a")
MIN_PROB = 1e-3  # the word must be likely after the venue's line ...
MIN_PMI = 0.7  # ... and e^0.7 = 2x likelier there than after the average venue's
PER_VENUE = 20
MAX_PIECES = 3  # a word completed from at most this many tokens
_WORD_START = re.compile(r"^Ġ([a-z]+)$")  # a byte-level BPE token that starts a lower-case word
COMMON = frozenset("""about after again also always another anything around away back because been before being best
better both come could different does done down each even every everything first from give going good great have
here into just keep know less like little lot make many more most much must never next nothing now off once only
other others over own place places really right same should since some something somewhere still such take than
that their them then there these they thing things think this those through time today together too under until
very want well were what when where which while will with without would year years your yours you the and for are
can all any get got has had his her its not our out see use new old way day days""".split())


@dataclass(frozen=True)
class Candidate:
    venue: int
    cue: int
    token: int
    score: float  # log p + PMI, the larger the better


def _venue_line(venue: Venue) -> str:
    return f"{venue.name} ({venue.category}): {venue.description}."


def _next_logprobs(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str],
                   batch: int = 32) -> torch.Tensor:
    """Log-probabilities of the token after each text (left-padded batches, last position's logits only)."""
    out = []
    for start in range(0, len(texts), batch):
        encoded = tokenizer(texts[start:start + batch], return_tensors="pt", padding=True)
        with torch.no_grad():
            out.append(model(**encoded, logits_to_keep=1).logits[:, -1].float().log_softmax(-1))
    return torch.cat(out)


def _complete(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prefixes: list[str]) -> list[str]:
    """Each prefix (ending in a word's first piece) continued greedily while the next piece goes on the
    word; the word, or "" where it does not end within ``MAX_PIECES`` pieces or is not plain letters."""
    words = ["" for _ in prefixes]
    texts, open_ = list(prefixes), list(range(len(prefixes)))
    for _ in range(MAX_PIECES):
        if not open_:
            break
        best = _next_logprobs(model, tokenizer, [texts[i] for i in open_]).argmax(-1).tolist()
        still = []
        for i, token in zip(open_, best, strict=True):
            piece = str(tokenizer.convert_ids_to_tokens(token))
            if not piece.startswith("Ġ") and piece.isalpha() and piece.islower():  # Ġ: a new word
                texts[i] += piece
                still.append(i)
            else:
                words[i] = texts[i].rsplit(" ", 1)[-1]
        open_ = still
    return words


def venue_keywords(venues: Sequence[Venue], model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                   per_venue: int = PER_VENUE) -> list[list[str]]:
    """Keywords for each venue, contrasted against the others given (the whole knowledge base)."""
    tokenizer.padding_side, tokenizer.pad_token = "left", tokenizer.pad_token or tokenizer.eos_token
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    starts = {i: m.group(1) for i, token in enumerate(vocab) if (m := _WORD_START.match(token))}
    mask = torch.zeros(len(vocab), dtype=torch.bool)
    mask[list(starts)] = True
    logp = torch.stack([_next_logprobs(model, tokenizer, [f"{_venue_line(v)} {cue}" for cue in CUES])
                        for v in venues])  # venues x cues x vocabulary
    background = torch.logsumexp(logp, dim=0) - math.log(len(venues))
    pmi = logp - background
    keep = (logp > math.log(MIN_PROB)) & (pmi > MIN_PMI) & mask
    candidates: dict[tuple[int, int], Candidate] = {}
    for v, c, t in keep.nonzero().tolist():
        score = float(logp[v, c, t] + pmi[v, c, t])
        if (v, t) not in candidates or candidates[v, t].score < score:
            candidates[v, t] = Candidate(v, c, t, score)
    chosen: list[dict[str, float]] = [{} for _ in venues]
    pieces = [(cand, f"{_venue_line(venues[cand.venue])} {CUES[cand.cue]} {starts[cand.token]}")
              for cand in candidates.values()]
    completed = _complete(model, tokenizer, [text for _, text in pieces])
    for (cand, _), word in zip(pieces, completed, strict=True):
        own = set(re.findall(r"[a-z]+", f"{venues[cand.venue].name} {venues[cand.venue].description}".lower()))
        if len(word) >= 3 and word not in COMMON and word not in own:
            chosen[cand.venue][word] = max(chosen[cand.venue].get(word, -1e9), cand.score)
    return [[w for w, _ in sorted(found.items(), key=lambda kv: -kv[1])[:per_venue]] for found in chosen]


def load_model() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    folder = pretrained_base().folder
    model = AutoModelForCausalLM.from_pretrained(folder)
    model.eval()  # type: ignore[no-untyped-call]
    return model, AutoTokenizer.from_pretrained(folder)


def write_keywords(text: str, keywords: dict[tuple[str, str], list[str]]) -> str:
    """``text`` (a knowledge TOML file) with a ``keywords = [...]`` line after each venue's ``name``
    line (replacing one there), for the venues in ``keywords`` by (cell id, name); all else kept."""
    out: list[str] = []
    cell = ""
    for line in text.splitlines(keepends=True):
        if line.startswith("keywords = "):
            continue
        out.append(line)
        if m := re.match(r"^\[\[cells\.([^.\]]+)\.venues\]\]", line):
            cell = m.group(1)
        elif (m := re.match(r'^name = "(.*)"\s*$', line)) and (cell, m.group(1)) in keywords:
            words = ", ".join(f'"{w}"' for w in keywords[cell, m.group(1)])
            out.append(f"keywords = [{words}]\n")
    return "".join(out)


def expand(path: Path, out: Path) -> dict[tuple[str, str], list[str]]:
    text = path.read_text(encoding="utf-8")
    venues = [v for _, listed in parse_cells(tomllib.loads(text), str(path)).values() for v in listed
              if v.category != "fact"]
    model, tokenizer = load_model()
    found = dict(zip(((v.cell_id, v.name) for v in venues), venue_keywords(venues, model, tokenizer), strict=True))
    out.write_text(write_keywords(text, found), encoding="utf-8")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("knowledge", type=Path, nargs="?", default=BUNDLED)
    parser.add_argument("--out", type=Path, help="where to write (default: the file itself)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    for (cell, name), words in expand(args.knowledge, args.out or args.knowledge).items():
        print(f"{cell} / {name}: {', '.join(words)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
