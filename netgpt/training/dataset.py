"""Fine-tuning datasets: JSONL of prompt/completion pairs (or Alpaca records), validated line by line.

Schema, one JSON object per line (blank lines are skipped; other keys are ignored):

- ``{"prompt": str, "completion": str}`` — the model is trained to continue ``prompt`` with
  ``completion`` (loss on the completion only; the trainer appends EOS), or
- ``{"instruction": str, "input": str (optional), "output": str}`` — Stanford Alpaca, turned
  into a prompt with :func:`alpaca_prompt` and ``" " + output`` as the completion.

Every error is :class:`~netgpt.errors.InvalidArgument` naming the file, the line and a short
escaped excerpt of it, so a user can fix the file without reading a traceback.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from netgpt.chat_format import as_model_prompt
from netgpt.errors import InvalidArgument

EXCERPT_CHARS = 60


@dataclass(frozen=True)
class Example:
    prompt: str
    completion: str
    line: int = field(default=0, compare=False)  # 1-based line in its file, 0 when not from a file


class TextEncoder(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


def alpaca_prompt(instruction: str, input: str = "") -> str:
    """The Stanford Alpaca template (with or without an input), ending where the response starts."""
    if input.strip():
        return ("Below is an instruction that describes a task, paired with an input that provides further "
                "context. Write a response that appropriately completes the request.\n\n"
                f"### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:")
    return ("Below is an instruction that describes a task. Write a response that appropriately completes "
            f"the request.\n\n### Instruction:\n{instruction}\n\n### Response:")


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A short, escaped quote of user input for error messages."""
    shown = text if len(text) <= limit else text[:limit] + "..."
    return repr(shown)


def _field(record: dict[str, Any], key: str, where: str, required: bool = True) -> str:
    value = record.get(key)
    if value is None:
        if required:
            raise InvalidArgument(f"{where}: missing field {key!r}")
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"{where}: field {key!r} must be a string, not {type(value).__name__}")
    if required and not value.strip():
        raise InvalidArgument(f"{where}: field {key!r} is empty")
    return value


def parse_record(record: Any, where: str, line: int = 0) -> Example:
    """One decoded JSONL line → Example (prompt/completion or Alpaca), or InvalidArgument."""
    if not isinstance(record, dict):
        raise InvalidArgument(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "prompt" in record or "completion" in record:
        return Example(_field(record, "prompt", where), _field(record, "completion", where), line)
    if "instruction" in record:
        prompt = alpaca_prompt(_field(record, "instruction", where), _field(record, "input", where, required=False))
        return Example(prompt, " " + _field(record, "output", where).strip(), line)
    raise InvalidArgument(f"{where}: expected fields 'prompt' and 'completion' (or Alpaca 'instruction' and "
                          f"'output'); found {sorted(record)[:8]}")


def jsonl_records(path: Path, what: str = "dataset") -> Iterator[tuple[str, int, str, Any]]:
    """(``path:line``, line number, line, parsed JSON) of every non-blank line of a UTF-8 JSONL file;
    InvalidArgument for an unreadable file or a line that is not JSON, naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidArgument(f"{what} {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise InvalidArgument(f"{what} {path} cannot be read: {exc.strerror}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"{where}: malformed JSON ({exc.msg} at column {exc.colno}): "
                                  f"{excerpt(line)}") from None
        yield where, number, line, record


def read_jsonl(path: Path, max_examples: int | None = None) -> list[Example]:
    """All examples of a JSONL file (at most ``max_examples``), or InvalidArgument naming the bad line."""
    examples: list[Example] = []
    for where, number, line, record in jsonl_records(path):
        if max_examples is not None and len(examples) >= max_examples:
            break
        try:
            examples.append(parse_record(record, where, number))
        except InvalidArgument as exc:
            raise InvalidArgument(f"{exc}: {excerpt(line)}") from None
    if not examples:
        raise InvalidArgument(f"dataset {path} has no examples (empty file)")
    return examples


def example_ids(example: Example, tokenizer: TextEncoder) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids) tokenised apart, as at serving time: the node encodes the
    prompt alone and the model continues it."""
    prompt = tokenizer.encode(as_model_prompt(tokenizer, example.prompt), add_special_tokens=False)
    completion = tokenizer.encode(example.completion, add_special_tokens=False)
    return list(prompt), list(completion)


def check_lengths(examples: Sequence[Example], tokenizer: TextEncoder, max_tokens: int,
                  source: str = "dataset") -> None:
    """InvalidArgument naming the first example (its file line when known) whose prompt + completion
    (+ EOS) exceeds ``max_tokens``."""
    for number, example in enumerate(examples, start=1):
        prompt, completion = example_ids(example, tokenizer)
        length = len(prompt) + len(completion) + 1
        if length > max_tokens:
            where = f"{source}:{example.line}" if example.line else f"{source}: example {number}"
            raise InvalidArgument(f"{where}: {length} tokens (prompt {len(prompt)} + "
                                  f"completion {len(completion)} + EOS), more than the model's context of "
                                  f"{max_tokens}: {excerpt(example.prompt)}")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_jsonl(out: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """``rows`` as JSON lines into ``out``, written beside it and renamed: never a half-written dataset."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(out)
    return out
