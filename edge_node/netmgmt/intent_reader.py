"""Intent inference at the edge: an operator's free-text request → a structured network intent.

The intent GPT-2 (fine-tuned from the starter GPT-2 by ``python -m tasks.intent.recipe``) reads the
request (:mod:`edge_node.netmgmt.intent_request`) and greedy-decodes one keyword line
(:mod:`edge_node.netmgmt.intent_line`), copying endpoint names and figures from the request
(:mod:`edge_node.netmgmt.intent_decoding`). The reader adds a per-field confidence (the lowest
probability among the tokens the model chose for that field) and asks the operator for
clarification (:mod:`edge_node.netmgmt.intent_clarify`) instead of guessing when a required field is
missing or was read with low confidence.
"""

from __future__ import annotations

import math
from collections.abc import Sized
from importlib import resources
from pathlib import Path

import numpy as np
import structlog

from edge_node.model.ort_engine import OrtGpt2Model
from edge_node.netmgmt.intent_clarify import Reading, clarification_text, unreadable
from edge_node.netmgmt.intent_decoding import CopyConstraint, token_bytes
from edge_node.netmgmt.intent_line import KEY_TOKENS, NOTHING, REQUIRED, Intent, parse_line, required_fields, value_text
from edge_node.netmgmt.intent_request import SPECIAL_TOKENS, prompt_text, ungrounded_fields, validate_text
from netgpt.engine import LanguageModel, ModelLoadError
from netgpt.errors import InvalidArgument, excerpt
from netgpt.generation import log_softmax

log = structlog.get_logger(__name__)

MAX_NEW_TOKENS = 64  # the longest keyword line (every field stated) is ~45 tokens
DEFAULT_MIN_CONFIDENCE = 0.5
CONSTRAINT_SCAN = 256  # most probable tokens tried against the copy constraint before giving up on it


# --- the reader -----------------------------------------------------------------------------


class IntentReader:
    """Reads requests with an intent GPT-2 (any :class:`~netgpt.engine.LanguageModel`)."""

    def __init__(self, model: LanguageModel, min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                 copy_constraint: bool = True) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise InvalidArgument(f"min_confidence must be in [0, 1], not {min_confidence}")
        self.model = model
        self.min_confidence = min_confidence
        tokenizer = model.tokenizer
        self._special = {tokenizer.encode(token, add_special_tokens=False)[0] for token in SPECIAL_TOKENS}
        self._end_ids = self._special | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())
        self._key_of = {ids[0]: token.removeprefix("; ").removesuffix(":") for token in KEY_TOKENS
                        if len(ids := tokenizer.encode(token, add_special_tokens=False)) == 1}
        size = len(tokenizer) if isinstance(tokenizer, Sized) else 0
        self._vocab = token_bytes(tokenizer, size) if copy_constraint and size else None

    @property
    def version(self) -> str:
        return self.model.identity.version

    def read(self, text: str) -> Reading:
        """The intent of ``text``; InvalidArgument for empty or over-long text, a clarification
        (never an exception) for text the model cannot read."""
        normalised = validate_text(text)
        prompt = self.model.tokenizer.encode(prompt_text(normalised), add_special_tokens=False)
        budget = min(MAX_NEW_TOKENS, self.model.max_context - len(prompt))
        if budget < MAX_NEW_TOKENS:
            return unreadable("The request is too long for the intent model to read (it may not be in English); "
                              "shorten it.")
        line, probs = self.decode(prompt, budget, normalised)
        return self.interpret(line, probs, normalised)

    def decode(self, prompt: list[int], budget: int, request: str = "") -> tuple[str, list[tuple[int, int, float]]]:
        """Greedy keyword line and, per generated token, (start, end) in the line and its probability
        (the model's own, before any constraint). With the copy constraint on (and ``request``), the
        most probable token that :class:`CopyConstraint` allows is chosen instead of the argmax."""
        tokenizer = self.model.tokenizer
        constraint = (CopyConstraint(self._vocab, self._key_of, self._end_ids, request)
                      if self._vocab is not None and request else None)
        session = self.model.new_session()
        logits = session.prefill(prompt)
        ids: list[int] = []
        spans: list[tuple[int, int, float]] = []
        text = ""
        for _ in range(budget):
            logp = log_softmax(np.asarray(logits, dtype=np.float64))
            token = int(np.argmax(logp))
            if constraint is not None and not constraint.allows(token):
                token = next((int(t) for t in np.argsort(-logp)[:CONSTRAINT_SCAN] if constraint.allows(int(t))), token)
            if token in self._end_ids:
                break
            if constraint is not None:
                constraint.push(token)
            ids.append(token)
            decoded = tokenizer.decode(ids, skip_special_tokens=True)
            if "\n" in decoded:
                break
            spans.append((len(text), len(decoded), math.exp(float(logp[token]))))
            text = decoded
            logits = session.advance(token)
        return text, spans

    def interpret(self, line: str, probs: list[tuple[int, int, float]], request: str = "") -> Reading:
        """A generated keyword line (with per-token probabilities) → the reading. With the
        ``request`` text, a field whose value the text does not contain (an endpoint name, a
        figure) is ambiguous whatever the model's confidence: the model must copy, not invent."""
        parsed = parse_line(line)
        intent, confidence = parsed.intent, {}
        for name, (start, end) in parsed.spans.items():
            inside = [p for a, b, p in probs if a < end and b > start]
            confidence[name] = min(inside) if inside else 0.0
        ungrounded = set(ungrounded_fields(intent, request)) if request else set()
        ambiguous = [name for name in intent.stated()
                     if confidence.get(name, 0.0) < self.min_confidence or name in ungrounded]
        guesses = {name: value_text(intent, name) for name in ambiguous}
        for name in ambiguous:
            setattr(intent, name, getattr(Intent(), name))
        ambiguous += [name for name in parsed.dropped if name not in ambiguous]
        required = required_fields(intent) if intent.action else REQUIRED
        missing = [name for name in required if not getattr(intent, name) and name not in ambiguous]
        unclear = [name for name in ambiguous if name in required]
        needs = bool(missing or unclear)
        if parsed.problems:
            log.info("intent.line_problems", line=excerpt(line, 120), problems=parsed.problems)
        question = clarification_text(missing, unclear, guesses) if needs else ""
        if needs and line.strip() == NOTHING:
            question = "This does not read as a network request. " + question
        return Reading(intent, confidence, needs, missing, ambiguous, question, line)


# --- loading --------------------------------------------------------------------------------


def packaged_model_dir() -> Path:
    """The trained intent model shipped in the package (``netgpt/assets/netmgmt/intent``)."""
    root = Path(str(resources.files("netgpt.assets").joinpath("netmgmt", "intent")))
    if not (root / "config.json").is_file():
        raise ModelLoadError(f"the intent model is missing from {root}: run `make netmgmt-models`")
    return root


def load_reader(folder: Path, cache_root: Path | None = None, providers: str = "cpu", name: str = "intent",
                min_confidence: float = DEFAULT_MIN_CONFIDENCE, copy_constraint: bool = True) -> IntentReader:
    """An :class:`IntentReader` over ``folder`` served by ONNX Runtime (exported once, cached)."""
    model = OrtGpt2Model.load(folder, cache_root=cache_root, providers=providers, name=name, max_batch=1)
    return IntentReader(model, min_confidence, copy_constraint)
