"""The comprehensive prompt's text, spelled once.

The edge builds it at run time (:class:`~edge_node.serving.personalise.Personaliser`); the
quantisation gate (:mod:`edge_node.model.quality_gate`) and the prompt-completion datasets
(``tasks/prompt_completion/build.py``) build theirs with these same pieces, so a model is trained
and checked on exactly the text it reads when serving::

    {context block}
    Intent: The user wants{the edge GPT-2's reading}
    Answer:{the answer}
"""

from __future__ import annotations

INTENT_CUE = "\nIntent: The user wants"  # the edge GPT-2 continues it with its reading of the need
ANSWER_CUE = "\nAnswer:"  # the answer (the edge's or the cloud's) follows it
MAX_FACTS = 3  # knowledge-base facts a prompt lists


def context_block(concise: str, cell_id: str, area: str, facts: list[str], preferences: list[str]) -> str:
    """Where the user is, what they prefer, the local facts that fit, and their concise request."""
    lines = [f"Location: {area or 'unknown area'} (cell {cell_id or 'unknown'})."]
    if preferences:
        lines.append(f"User preferences: {'; '.join(preferences)}.")
    if facts:
        lines.append("Local information:")
        lines.extend(f"- {fact}" for fact in facts)
    lines.append(f"User request: {concise}")
    return "\n".join(lines)


def intent_prompt(block: str) -> str:
    """The prompt the edge GPT-2 writes its reading of the intent after."""
    return f"{block}{INTENT_CUE}"


def answer_prompt(block: str, intent: str) -> str:
    """The prompt an answer is generated after: ``intent`` is the reading ("" when none was made)."""
    return f"{block}{INTENT_CUE}{intent}{ANSWER_CUE}"
