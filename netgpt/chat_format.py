"""The prompt as the model expects it: wrapped in the tokenizer's chat template when it has one.

An instruct model (SmolLM2-Instruct, LLaMA chat models) was tuned on chat-formatted turns; given
raw text it answers worse. The comprehensive prompt goes in as the user's turn verbatim, so every
listed fact still reaches the model word for word. Models without a template (the starter and tiny
models, GPT-2) get the text unchanged. Training (``netgpt.training.dataset.example_ids``) and serving
(``up.local.encode_prompt``) both call this, so a fine-tune sees exactly what serving sends.
"""

from __future__ import annotations

from typing import Any


def as_model_prompt(tokenizer: Any, text: str) -> str:
    """``text`` as the user turn of the tokenizer's chat template (with the assistant's opening), or as is."""
    if not getattr(tokenizer, "chat_template", None):
        return text
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    return str(rendered)
