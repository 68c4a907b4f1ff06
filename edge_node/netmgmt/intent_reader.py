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

import hashlib
import json
import math
import tempfile
from collections.abc import Sized
from importlib import resources
from pathlib import Path

import numpy as np
import structlog

from edge_node.model.ort_engine import OrtGpt2Model
from edge_node.netmgmt.intent_clarify import Reading, clarification_text, unreadable
from edge_node.netmgmt.intent_decoding import CopyConstraint, token_bytes
from edge_node.netmgmt.intent_line import NOTHING, REQUIRED, Intent, parse_line, required_fields, value_text
from edge_node.netmgmt.intent_request import SPECIAL_TOKENS, prompt_text, ungrounded_fields, validate_text
from netgpt.engine import LanguageModel, ModelLoadError
from netgpt.errors import InvalidArgument, excerpt
from netgpt.generation import log_softmax

log = structlog.get_logger(__name__)

MAX_NEW_TOKENS = 64  # the longest keyword line (every field stated) is ~45 tokens
DEFAULT_MIN_CONFIDENCE = 0.5
# the pretrained reader's, chosen on its validation split (never the test) by tasks.intent.pretrained_recipe
PRETRAINED_MIN_CONFIDENCE = 0.3  # recipe.json "validation": the 900-step adapter (0.1 for the 200-step one)
CONSTRAINT_SCAN = 256  # most probable tokens tried against the copy constraint before giving up on it
SOURCE_KEY = "; src:"  # written for the model when its line leaves the source out (IntentReader.decode)
PRETRAINED_SOURCE_RETRY = 0.7  # the pretrained reader's, chosen on its validation split (tasks/intent/README.md)
# keys and values in the line's canonical spelling while decoding, a time window's sides clock times the request
# states: for the 900-step adapter exact match 75 -> 77 % on validation and 63 -> 67.5 % on 200 more held-out-
# generator requests, asks unchanged (tasks/intent/README.md)
PRETRAINED_VALUE_GRAMMAR = True


# --- the reader -----------------------------------------------------------------------------


class IntentReader:
    """Reads requests with an intent model (any :class:`~netgpt.engine.LanguageModel`): the intent GPT-2
    (its tokenizer has the special tokens: ``<|request|>…<|intent|>``) or a fine-tune that kept its
    base's tokenizer (the pretrained SmolLM2 reader: the plain ``Request: …`` frame)."""

    def __init__(self, model: LanguageModel, min_confidence: float | None = None,
                 copy_constraint: bool = True, value_grammar: bool | None = None,
                 source_retry: float | None = None) -> None:
        """``min_confidence`` None: the default of the model's kind (the GPT-2's, or the pretrained
        reader's, chosen on its validation split). ``value_grammar`` (with the copy constraint): keys and
        values in the line's canonical spelling too (:class:`CopyConstraint`); None: on for the pretrained
        reader (``PRETRAINED_VALUE_GRAMMAR``), off for the GPT-2 (tasks/intent/README.md)."""
        if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
            raise InvalidArgument(f"min_confidence must be in [0, 1], not {min_confidence}")
        self.model = model
        tokenizer = model.tokenizer
        special = [tokenizer.encode(token, add_special_tokens=False) for token in SPECIAL_TOKENS]
        self.plain = any(len(ids) != 1 for ids in special)  # no special tokens: the base's tokenizer, plain frame
        self.value_grammar = value_grammar if value_grammar is not None else self.plain and PRETRAINED_VALUE_GRAMMAR
        self.min_confidence = (min_confidence if min_confidence is not None
                               else PRETRAINED_MIN_CONFIDENCE if self.plain else DEFAULT_MIN_CONFIDENCE)
        # the least probability a source written after a forced "src:" may have (1.0: never retried); the
        # intent GPT-2 is not retried: it asks back on most held-out requests for other reasons
        self.source_retry = (source_retry if source_retry is not None
                             else PRETRAINED_SOURCE_RETRY if self.plain else 1.0)
        self._special = set() if self.plain else {ids[0] for ids in special}
        self._end_ids = self._special | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())
        size = len(tokenizer) if isinstance(tokenizer, Sized) else 0
        self._vocab = token_bytes(tokenizer, size) if copy_constraint and size else None

    @property
    def version(self) -> str:
        return self.model.identity.version

    def read(self, text: str) -> Reading:
        """The intent of ``text``; InvalidArgument for empty or over-long text, a clarification
        (never an exception) for text the model cannot read."""
        normalised = validate_text(text)
        prompt = self.model.tokenizer.encode(prompt_text(normalised, self.plain), add_special_tokens=False)
        budget = min(MAX_NEW_TOKENS, self.model.max_context - len(prompt))
        if budget < MAX_NEW_TOKENS:
            return unreadable("The request is too long for the intent model to read (it may not be in English); "
                              "shorten it.")
        line, probs = self.decode(prompt, budget, normalised)
        return self.interpret(line, probs, normalised)

    def decode(self, prompt: list[int], budget: int, request: str = "") -> tuple[str, list[tuple[int, int, float]]]:
        """Greedy keyword line and, per generated token, (start, end) in the line and its probability
        (the model's own, before any constraint). With the copy constraint on (and ``request``), the
        most probable token that :class:`CopyConstraint` allows is chosen instead of the argmax.

        A line that states an action and a destination but leaves the source out entirely is decoded once
        more with ``src:`` written for the model after the action (:meth:`_with_source`). That reading is kept
        when it states both endpoints, different and each a span of the request, and its source was written
        with probability ≥ ``source_retry``; its destination may differ from the first line's, which often
        holds the source. The pretrained reader drops the source under route phrasings it never saw ("for X
        to reach Y"); a request that truly names one endpoint yields no such pair."""
        line, probs = self._decode(prompt, budget, request)
        if request and self.source_retry < 1.0:
            retried = self._with_source(prompt, budget, request, line)
            if retried is not None:
                return retried
        return line, probs

    def _with_source(self, prompt: list[int], budget: int, request: str,
                     line: str) -> tuple[str, list[tuple[int, int, float]]] | None:
        parsed = parse_line(line)
        intent = parsed.intent
        if (not intent.action or not intent.destination or "action" not in parsed.spans
                or "source" in parsed.dropped or "source" in parsed.unclear or intent.source):
            return None
        forced = line[:parsed.spans["action"][1]] + SOURCE_KEY
        retried, probs = self._decode(prompt, budget, request, forced)
        again = parse_line(retried)
        source, destination = again.intent.source, again.intent.destination
        if (not source or not destination or source == destination
                or {"source", "destination"} & set(ungrounded_fields(again.intent, request))):
            return None
        if field_confidence(probs, again.spans["source"]) < self.source_retry:
            return None
        return retried, probs

    def _decode(self, prompt: list[int], budget: int, request: str,
                forced: str = "") -> tuple[str, list[tuple[int, int, float]]]:
        """Greedy decoding after ``forced`` (line text written for the model: its tokens count as certain)."""
        tokenizer = self.model.tokenizer
        constraint = (CopyConstraint(self._vocab, self._end_ids, request, self.value_grammar)
                      if self._vocab is not None and request else None)
        ids: list[int] = tokenizer.encode(forced, add_special_tokens=False) if forced else []
        if constraint is not None:
            for token in ids:
                constraint.push(token)
        text = tokenizer.decode(ids, skip_special_tokens=True) if ids else ""
        spans: list[tuple[int, int, float]] = [(0, len(text), 1.0)] if ids else []
        session = self.model.new_session()
        logits = session.prefill(prompt + ids)
        for _ in range(budget - len(ids)):
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
        for name, span in parsed.spans.items():
            confidence[name] = field_confidence(probs, span)
        ungrounded = set(ungrounded_fields(intent, request)) if request else set()
        ambiguous = [name for name in intent.stated()
                     if confidence.get(name, 0.0) < self.min_confidence or name in ungrounded]
        guesses = {name: value_text(intent, name) for name in ambiguous}
        for name in ambiguous:
            setattr(intent, name, getattr(Intent(), name))
        ambiguous += [name for name in parsed.dropped if name not in ambiguous]
        ambiguous += [name for name in parsed.unclear if name not in ambiguous]
        required = required_fields(intent) if intent.action else REQUIRED
        missing = [name for name in required if not getattr(intent, name) and name not in ambiguous]
        # a field written as "?" (stated, not pinned down: "10" without a unit) is asked about whatever the action
        unclear = [name for name in ambiguous if name in required or name in parsed.unclear]
        needs = bool(missing or unclear)
        if parsed.problems:
            log.info("intent.line_problems", line=excerpt(line, 120), problems=parsed.problems)
        question = clarification_text(missing, unclear, guesses) if needs else ""
        if needs and line.strip() == NOTHING:
            question = "This does not read as a network request. " + question
        return Reading(intent, confidence, needs, missing, ambiguous, question, line)


def field_confidence(probs: list[tuple[int, int, float]], span: tuple[int, int]) -> float:
    """A field's confidence: the lowest probability among the tokens that overlap its ``span`` of the line."""
    start, end = span
    return min((p for a, b, p in probs if a < end and b > start), default=0.0)


# --- loading --------------------------------------------------------------------------------


def packaged_model_dir() -> Path:
    """The trained intent model shipped in the package (``netgpt/assets/netmgmt/intent``)."""
    root = Path(str(resources.files("netgpt.assets").joinpath("netmgmt", "intent")))
    if not (root / "config.json").is_file():
        raise ModelLoadError(f"the intent model is missing from {root}: run `make netmgmt-models`")
    return root


def load_reader(folder: Path, cache_root: Path | None = None, providers: str = "cpu", name: str = "intent",
                min_confidence: float | None = None, copy_constraint: bool = True) -> IntentReader:
    """An :class:`IntentReader` over ``folder`` served by ONNX Runtime (exported once, cached)."""
    model = OrtGpt2Model.load(folder, cache_root=cache_root, providers=providers, name=name, max_batch=1)
    return IntentReader(model, min_confidence, copy_constraint)


# --- the pretrained reader: SmolLM2-135M-Instruct + the intent LoRA adapter ---------------------

PRETRAINED_INTENT = "pretrained"  # the intent_model setting that serves it
_BASE_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json")


def packaged_adapter_dir() -> Path:
    """The intent LoRA adapter shipped in the package (``netgpt/assets/netmgmt/intent_pretrained``)."""
    root = Path(str(resources.files("netgpt.assets").joinpath("netmgmt", "intent_pretrained")))
    if not (root / "adapter_model.safetensors").is_file():
        raise ModelLoadError(f"the pretrained intent adapter is missing from {root}: run `make intent-pretrained`")
    return root


def base_folder_without_chat_template(base: Path, out: Path) -> Path:
    """``base`` as a folder whose tokenizer has no chat template (the reader's plain frame is the
    prompt as is): its config and tokenizer files copied, its weights linked."""
    out.mkdir(parents=True, exist_ok=True)
    for name in _BASE_FILES:
        if (base / name).is_file():
            text = (base / name).read_text(encoding="utf-8")
            if name == "tokenizer_config.json":
                config = json.loads(text)
                config.pop("chat_template", None)
                text = json.dumps(config, indent=2, sort_keys=True)
            (out / name).write_text(text, encoding="utf-8")
    weights = out / "model.safetensors"
    if not weights.exists():
        weights.symlink_to((base / "model.safetensors").resolve())
    return out


def _adapter_key(base_sha: str, adapter: Path) -> str:
    digest = hashlib.sha256(f"{MERGE_FORMAT}:{base_sha}".encode())
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        digest.update(hashlib.sha256((adapter / name).read_bytes()).digest())
    return digest.hexdigest()[:16]


MERGE_FORMAT = 1  # bump when the merged folder's make-up changes


def pretrained_intent_folder(adapter: Path | None = None, cache_root: Path | None = None,
                             base: Path | None = None) -> Path:
    """The pretrained base with the intent adapter merged in (peft ``merge_and_unload``), float32, as a
    servable LLaMA folder (the base's tokenizer without its chat template). Built once and cached
    under ``<cache>/intent-pretrained/<hash of the base's GGUF and the adapter>``; ModelLoadError naming
    the package when the pretrained base is not installed. ``base``: another LLaMA folder to merge into
    (tests use the tiny LLaMA)."""
    from edge_node.model.onnx_export import weights_sha256
    from edge_node.model.training import merge_lora
    from netgpt.build_once import build_once
    from netgpt.checkpoint.pretrained import GGUF_SHA256, pretrained_base
    from netgpt.tiny_models import default_cache_root

    if base is None:  # first: a missing package is the error to name
        imported = pretrained_base(cache_root)
        base_dir, base_sha, lineage = imported.folder, GGUF_SHA256, imported.lineage
    else:
        base_dir, base_sha, lineage = base, weights_sha256(base), {"base": str(base)}
    adapter = adapter or packaged_adapter_dir()
    if not (adapter / "adapter_model.safetensors").is_file():
        raise ModelLoadError(f"{adapter} holds no LoRA adapter (adapter_model.safetensors)")
    folder = (cache_root or default_cache_root()) / "intent-pretrained" / _adapter_key(base_sha, adapter)

    def merge(staging: Path) -> None:
        with tempfile.TemporaryDirectory(prefix=".base-") as tmp:
            merge_lora(base_folder_without_chat_template(base_dir, Path(tmp)), adapter, staging)
        (staging / "intent_adapter.json").write_text(json.dumps(
            {"adapter": str(adapter), "base": lineage, "merge_format": MERGE_FORMAT}, indent=2) + "\n")

    if build_once(folder, merge):
        log.info("intent.pretrained.merged", folder=str(folder))
    return folder


def load_pretrained_reader(adapter: Path | None = None, cache_root: Path | None = None, providers: str = "cpu",
                           min_confidence: float | None = None, copy_constraint: bool = True,
                           max_batch: int = 1, base: Path | None = None) -> IntentReader:
    """An :class:`IntentReader` over the merged pretrained intent model, ONNX fp32 (merge and export cached)."""
    folder = pretrained_intent_folder(adapter, cache_root, base)
    model = OrtGpt2Model.load(folder, cache_root=cache_root, providers=providers, name="smollm2-intent",
                              quantization="fp32", max_batch=max_batch)
    return IntentReader(model, min_confidence, copy_constraint)
