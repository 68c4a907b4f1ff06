"""Held-out text for the quantisation gate, in the form the edge model actually reads and writes.

Each text is a comprehensive prompt built exactly as the edge builds one at run time
(:mod:`edge_node.serving.prompt_format` with facts the bundled knowledge base retrieves)
for a question written here — phrasings of their own, apart from the starter datasets'
templates (``tests/test_quantize.py`` checks they share no word 4-gram with them) — followed by
the fp32 model's own greedy answer: the intent line first, then, on the prompt that carries
that intent, the answer. The gate scores the quantised graph on those positions against fp32.

The held-out texts are text, not token ids: each model's own tokenizer encodes them (and its own fp32
graph writes the answers), so the same gate serves GPT-2's and a LLaMA's vocabulary alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import cast

import numpy as np
import onnxruntime as ort
from transformers import AutoTokenizer

from edge_node.model.architecture import DecoderSpec
from edge_node.model.onnx_export import ATTENTION_MASK, INPUT_IDS, LOGITS, POSITION_IDS, past_names, present_names
from edge_node.serving.knowledge import KnowledgeBase
from edge_node.serving.prompt_format import ANSWER_CUE, MAX_FACTS, context_block, intent_prompt
from netgpt.engine import ModelLoadError
from netgpt.errors import one_line
from netgpt.generation import Tokenizer

INTENT_TOKENS, ANSWER_TOKENS = 16, 32

GATE_QUESTIONS: tuple[tuple[str, str], ...] = (
    ("cell-harbour-1", "Any decent place for mussels and chips down by the water?"),
    ("cell-harbour-1", "We missed dinner, is anything on the quay still cooking?"),
    ("cell-harbour-1", "How do we get across to the islands with two bikes?"),
    ("cell-harbour-1", "My daughter loves old ships, anything worth a visit?"),
    ("cell-harbour-1", "Room for a camper van overnight close to the marina?"),
    ("cell-harbour-1", "Ran out of my inhaler, who sells medicine at this hour?"),
    ("cell-harbour-1", "A steaming bowl of broth would be perfect right now."),
    ("cell-harbour-1", "Which boat goes out first thing tomorrow?"),
    ("cell-campus-2", "Need a desk with a socket to finish my thesis."),
    ("cell-campus-2", "Any espresso worth drinking near the lecture halls?"),
    ("cell-campus-2", "Fancy squash or table tennis after class, possible?"),
    ("cell-campus-2", "Toothache since this morning, can a nurse look at it?"),
    ("cell-campus-2", "Which line should I ride to reach the old town?"),
    ("cell-campus-2", "Somewhere cheap for soup and a sandwich between seminars?"),
    ("cell-campus-2", "Are the reading rooms open during the holidays?"),
    ("cell-campus-2", "I want to work out before breakfast, any gym nearby?"),
    ("cell-station-3", "My connection leaves in an hour, can I stash my backpack?"),
    ("cell-station-3", "Need a room tonight, walking distance from the tracks."),
    ("cell-station-3", "Where do cabs wait after midnight?"),
    ("cell-station-3", "Quickest way to the terminal for a morning flight?"),
    ("cell-station-3", "Anything warm to eat before the night train?"),
    ("cell-station-3", "A flat white and a croissant before boarding, where?"),
    ("cell-station-3", "Is there a sandwich counter upstairs from the platforms?"),
    ("cell-station-3", "Two wheels for the afternoon, who hires them out?"),
)


@dataclass(frozen=True)
class GateSequence:
    """One held-out text as token ids: ``prompt`` then ``answer`` (what the model is asked to generate)."""

    prompt: list[int]
    answer: list[int]


def bundled_knowledge() -> KnowledgeBase:
    with resources.as_file(resources.files("netgpt.assets") / "knowledge.toml") as path:
        return KnowledgeBase.load(path, ":memory:")


def gate_prompts(knowledge: KnowledgeBase) -> list[str]:
    """The comprehensive prompts (up to the intent cue) the edge would build for :data:`GATE_QUESTIONS`."""
    return [intent_prompt(context_block(question, cell, knowledge.area(cell),
                                        knowledge.facts_for(cell, question, MAX_FACTS), []))
            for cell, question in GATE_QUESTIONS]


def greedy_continuation(session: ort.InferenceSession, spec: DecoderSpec, prompt: list[int], limit: int,
                        eos: int | None) -> list[int]:
    """Up to ``limit`` greedy tokens after ``prompt`` (EOS excluded), decoding with the KV cache."""
    n_layer, max_context = spec.n_layer, spec.max_context
    past = {name: np.zeros((1, spec.kv_heads, 0, spec.head_dim), np.float32) for name in past_names(n_layer)}
    ids, start = list(prompt), 0
    produced: list[int] = []
    while len(produced) < limit and start + len(ids) < max_context:
        feed = {INPUT_IDS: np.asarray([ids], np.int64), ATTENTION_MASK: np.ones((1, start + len(ids)), np.int64),
                POSITION_IDS: np.arange(start, start + len(ids), dtype=np.int64)[None], **past}
        outputs = session.run([LOGITS, *present_names(n_layer)], feed)
        past = dict(zip(past_names(n_layer), outputs[1:], strict=True))
        start += len(ids)
        token = int(outputs[0][0, -1].argmax())
        if token == eos:
            break
        produced.append(token)
        ids = [token]
    return produced


def gate_sequences(model_dir: Path, reference: ort.InferenceSession, spec: DecoderSpec) -> list[GateSequence]:
    """Held-out prompts with the ``reference`` (fp32) graph's greedy intents and answers, as token ids."""
    try:
        # transformers types decode() for batches too (str | list[str]); for one id list it returns str
        tokenizer = cast(Tokenizer, AutoTokenizer.from_pretrained(model_dir))
    except Exception as exc:  # tokenizers/transformers raise many types; report one line
        raise ModelLoadError(f"cannot load tokenizer from {model_dir}: {one_line(exc)}") from exc
    eos = tokenizer.eos_token_id
    sequences = []
    for prompt in gate_prompts(bundled_knowledge()):
        intent_ids = tokenizer.encode(prompt, add_special_tokens=False)
        intent = greedy_continuation(reference, spec, intent_ids, INTENT_TOKENS, eos)
        sequences.append(GateSequence(intent_ids, intent))
        intent_line = tokenizer.decode(intent, skip_special_tokens=True).split("\n", 1)[0].rstrip()
        answer_ids = tokenizer.encode(f"{prompt}{intent_line}{ANSWER_CUE}", add_special_tokens=False)
        sequences.append(GateSequence(answer_ids, greedy_continuation(reference, spec, answer_ids, ANSWER_TOKENS,
                                                                      eos)))
    return sequences
