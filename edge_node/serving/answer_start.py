"""The edge's answer begins with the name of a venue its prompt lists.

The edge GPT-2 was trained to answer "{venue name}, open {hours}." after the comprehensive prompt, and the
name is what a user acts on. Left free, the 2.2M-parameter starter sometimes runs two listed names together
("Campus Cafe Central Library") or breaks one off ("Station, open ..."). With ``answer_start = "venue"`` (the
default) its first tokens must spell one listed name and the comma after it: at each step the likeliest token
that keeps some name possible (:class:`netgpt.generation.StartConstraint`), then the rest is free. It costs nothing: no
extra forward pass, the logits are only masked. A name the model would not start on cannot be forced on it
either: the choice among the names is still the model's. Models that read the prompt through a chat
template (LLaMA-family instruct models) answer in their own form, so they are left free.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge_node.serving.knowledge import fact_name
from netgpt.engine import LanguageModel
from netgpt.generation import StartConstraint

ANSWER_STARTS = ("venue", "free")  # EdgeConfig.answer_start
NAME_END = ","  # what follows the name in the edge answer's form: the name is over, the model goes on


def venue_start(model: LanguageModel, facts: Sequence[str], answer_start: str) -> StartConstraint | None:
    """What the edge answer's first tokens must spell, or None (free: no facts listed, ``answer_start`` is
    ``free``, or the model reads a chat template)."""
    if answer_start != "venue" or not facts or getattr(model.tokenizer, "chat_template", None):
        return None
    return StartConstraint([model.tokenizer.encode(f" {fact_name(fact)}{NAME_END}", add_special_tokens=False)
                            for fact in facts])
