"""The intent model's training data: JSONL prompt/completion pairs for the project's trainer.

Each line is ``{"prompt": "<|request|>{normalised request}<|intent|>", "completion": "{keyword line}"}``
(the trainer appends EOS). Requests come from the seeded generator (training split) or from a
user's own labelled file, one JSON object per line::

    {"text": "build a 10 Gbit/s link from Access 1 to Cloud 2", "intent": {"action": "create",
     "source": "Access 1", "destination": "Cloud 2", "bandwidth_mbps": 10000}}
    {"text": "...", "target": "act: delete; src: Access 1; dst: Cloud 2"}

(``intent`` uses NetworkIntent's field names; ``target`` is a keyword line, ``none`` for a text
with no request). ``netgpt data build intent --labelled FILE --out train.jsonl`` converts such a
file; without ``--labelled`` it writes generated requests (``--seed 2024 --n 6000``: the recipe's
training split).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path

from edge_node.netmgmt.intent_line import Intent, parse_line, to_target
from edge_node.netmgmt.intent_request import normalise, prompt_text
from netgpt.errors import InvalidArgument, excerpt
from netgpt.training.dataset import jsonl_records
from tasks.intent.generator import Request, generate

SEED = 2024
TRAIN_EXAMPLES = 6000
_FIELD_TYPES = {f.name: f.type for f in fields(Intent)}


def example(request: Request) -> dict[str, str]:
    """One trainer record: the prompt the reader builds at serving time and the keyword line."""
    return {"prompt": prompt_text(normalise(request.text)), "completion": request.target}


def write_dataset(requests: Iterable[Request], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for request in requests:
            out.write(json.dumps(example(request), ensure_ascii=False) + "\n")
    return path


def build_dataset(path: Path, seed: int = SEED, n: int = TRAIN_EXAMPLES) -> Path:
    """The generated training split as the trainer's JSONL."""
    return write_dataset(generate(n, seed), path)


def _intent_from(record: dict[str, object], where: str) -> Intent:
    if "target" in record:
        target = record["target"]
        if not isinstance(target, str):
            raise InvalidArgument(f"{where}: 'target' must be a keyword line string")
        parsed = parse_line(target)
        if parsed.problems:
            raise InvalidArgument(f"{where}: bad keyword line: {'; '.join(parsed.problems)}")
        return parsed.intent
    values = record.get("intent")
    if not isinstance(values, dict):
        raise InvalidArgument(f"{where}: expected 'intent' (an object of NetworkIntent fields) or 'target'")
    unknown = sorted(set(values) - set(_FIELD_TYPES))
    if unknown:
        raise InvalidArgument(f"{where}: unknown intent fields {unknown[:5]}")
    intent = Intent(**values)
    parsed = parse_line(to_target(intent))  # the same checks as a generated line
    if parsed.problems or parsed.intent != intent:
        raise InvalidArgument(f"{where}: intent does not fit the keyword line: {'; '.join(parsed.problems)}")
    return intent


def read_labelled(path: Path) -> list[Request]:
    """A user's labelled requests (``text`` + ``intent`` or ``target`` per line), or InvalidArgument."""
    requests = []
    for where, _number, line, record in jsonl_records(path, "labelled requests"):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str) or not record["text"].strip():
            raise InvalidArgument(f"{where}: expected an object with a non-empty 'text': {excerpt(line)}")
        try:
            requests.append(Request(record["text"], _intent_from(record, where)))
        except TypeError as exc:
            raise InvalidArgument(f"{where}: {exc}") from None
    if not requests:
        raise InvalidArgument(f"{path} holds no labelled requests")
    return requests
