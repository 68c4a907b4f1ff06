"""OpenAI request bodies → one protocol-neutral :class:`Ask`, or a 400 naming the field.

What maps: the last user message (chat) or the prompt (completions) is the concise prompt;
``max_completion_tokens`` / ``max_tokens``, ``temperature``, ``top_p``, ``seed`` and ``stop`` map onto
the edge's generation parameters; ``model`` picks the route (:mod:`edge_node.openai_api.models`);
``extra_body={"netgpt": {"workflow": ..., "task": "chat" | "lookup"}}`` names a workflow or a task
class. Earlier turns and system messages are accepted and not sent on: NetGPT answers one concise
prompt, personalised at the edge from the UE's profile and location. What cannot be honoured
(``n`` > 1, tools, log-probabilities, penalties, JSON mode, token-id prompts, ...) is refused
rather than ignored. Omitted sampling fields take the edge's defaults (greedy decoding, its
``default_new_tokens``), not OpenAI's ``temperature = 1``. Unknown fields are ignored, as other
OpenAI-compatible servers do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from netgpt.errors import InvalidArgument, NotFound, excerpt
from netgpt.v1 import user_plane_pb2 as up_pb2

MAX_BODY_BYTES = 1 << 20
MAX_MESSAGES = 4096
MAX_STOPS = 4  # as OpenAI
MAX_STOP_CHARS = 64
MAX_TEMPERATURE = 2.0  # OpenAI's range; the edge's own cap is higher
SEED_MODULUS = 1 << 64  # OpenAI seeds are signed 64-bit, the edge's unsigned: same bits, same stream
TASKS = {"chat": up_pb2.TASK_CLASS_CHAT, "lookup": up_pb2.TASK_CLASS_LOOKUP}

Kind = Literal["chat", "text"]  # /v1/chat/completions, /v1/completions


class InvalidField(InvalidArgument):
    """A field of the request body (``param``) the edge cannot map; the OpenAI error names it."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class ModelNotFound(NotFound):
    def __init__(self, message: str, param: str | None = "model") -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Ask:
    """One OpenAI request in NetGPT's terms."""

    kind: Kind
    model: str
    prompt: str
    params: up_pb2.GenerationParams
    stop: tuple[str, ...] = ()
    stream: bool = False
    workflow: str = ""
    task: up_pb2.TaskClass = up_pb2.TASK_CLASS_UNSPECIFIED


def parse_json(raw: bytes) -> Mapping[str, Any]:
    """The request body as a JSON object (400 for anything else, never a 500)."""
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidField(f"the request body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InvalidField(f"the request body is not valid JSON: {excerpt(str(exc))}") from None
    if not isinstance(body, dict):
        raise InvalidField(f"the request body must be a JSON object, not {type(body).__name__}")
    return body


def parse_chat(body: Mapping[str, Any]) -> Ask:
    """A ``/v1/chat/completions`` body."""
    _refuse_unsupported(body, CHAT_ONLY_UNSUPPORTED)
    return _ask("chat", body, _last_user_message(body.get("messages")))


def parse_completion(body: Mapping[str, Any]) -> Ask:
    """A ``/v1/completions`` body."""
    _refuse_unsupported(body, COMPLETION_ONLY_UNSUPPORTED)
    return _ask("text", body, _single_prompt(body.get("prompt")))


def _ask(kind: Kind, body: Mapping[str, Any], prompt: str) -> Ask:
    _refuse_unsupported(body, UNSUPPORTED)
    n = _integer(body, "n")
    if n is not None and n != 1:
        raise InvalidField(f"n={n}: the edge returns one choice per request; send n=1 (or leave it out) and "
                           "repeat the request for more", "n")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidField("model is required: one of the ids GET /v1/models lists", "model")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidField("stream must be true or false", "stream")
    workflow, task = _extension(body.get("netgpt"))
    return Ask(kind=kind, model=model, prompt=prompt, params=_params(body), stop=_stops(body.get("stop")),
               stream=bool(stream), workflow=workflow, task=task)


def _params(body: Mapping[str, Any]) -> up_pb2.GenerationParams:
    params = up_pb2.GenerationParams()
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _integer(body, name)
    if max_tokens is not None:
        if max_tokens < 1:
            raise InvalidField(f"{name} must be at least 1, got {max_tokens}", name)
        params.max_new_tokens = min(max_tokens, 1 << 31)  # the edge's own cap is checked, and named, later
    temperature = _number(body, "temperature", 0.0, MAX_TEMPERATURE)
    top_p = _number(body, "top_p", 0.0, 1.0)
    if temperature is not None:
        params.temperature = temperature
    if top_p is not None:  # top_p 0 keeps only the likeliest token: greedy (the edge reads 0 as "no cut")
        params.top_p = top_p
        if top_p == 0.0:
            params.temperature = 0.0
    seed = _integer(body, "seed")
    if seed is not None:
        if not -(1 << 63) <= seed < SEED_MODULUS:
            raise InvalidField(f"seed must be a 64-bit integer, got {excerpt(str(seed))}", "seed")
        params.seed = seed % SEED_MODULUS
    return params


def _number(body: Mapping[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidField(f"{name} must be a number within [{low:g}, {high:g}], got {excerpt(json.dumps(value))}",
                           name)
    return float(value)


def _integer(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(f"{name} must be an integer, got {excerpt(json.dumps(value))}", name)
    return value


def _stops(value: Any) -> tuple[str, ...]:
    stops = [value] if isinstance(value, str) else value
    if stops is None:
        return ()
    if (not isinstance(stops, list) or len(stops) > MAX_STOPS
            or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in stops)):
        raise InvalidField(f"stop must be a string or a list of at most {MAX_STOPS} non-empty strings of at most "
                           f"{MAX_STOP_CHARS} characters", "stop")
    return tuple(stops)


def _last_user_message(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise InvalidField("messages must be a non-empty list; its last message, from the user, is the prompt",
                           "messages")
    if len(messages) > MAX_MESSAGES:
        raise InvalidField(f"messages has {len(messages)} entries; the limit is {MAX_MESSAGES}", "messages")
    last = messages[-1]
    role = last.get("role") if isinstance(last, dict) else None
    if role != "user":
        raise InvalidField(f"the last message must be the user's (role 'user'), not {excerpt(str(role))}: "
                           "the edge answers the user's last message", "messages")
    text = _text_of(last.get("content"))
    if not text.strip():
        raise InvalidField("the last user message is empty; send at least one non-space character", "messages")
    return text


def _text_of(content: Any) -> str:
    """A message's text: a string, or text parts (images, audio and files are refused)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, dict)]
        if len(parts) == len(content) and all(p.get("type") == "text" and isinstance(p.get("text"), str)
                                              for p in parts):
            return "\n".join(p["text"] for p in parts)
    raise InvalidField("the last user message must be a string or a list of text parts "
                       "({'type': 'text', 'text': ...}); the edge models read text only", "messages")


def _single_prompt(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise InvalidField("prompt must be one string (token-id prompts and batches of prompts are not served)",
                           "prompt")
    if not prompt.strip():
        raise InvalidField("prompt is empty; send at least one non-space character", "prompt")
    return prompt


def _extension(value: Any) -> tuple[str, up_pb2.TaskClass]:
    if value is None:
        return "", up_pb2.TASK_CLASS_UNSPECIFIED
    if not isinstance(value, dict) or set(value) - {"workflow", "task"}:
        raise InvalidField("netgpt must be an object with at most 'workflow' (a workflow name) and 'task' "
                           f"({' or '.join(TASKS)})", "netgpt")
    workflow, task = value.get("workflow", ""), value.get("task", "")
    if not isinstance(workflow, str):
        raise InvalidField("netgpt.workflow must be a workflow name", "netgpt.workflow")
    if task and task not in TASKS:
        raise InvalidField(f"netgpt.task must be {' or '.join(TASKS)}, got {excerpt(str(task))}", "netgpt.task")
    return workflow, TASKS.get(task, up_pb2.TASK_CLASS_UNSPECIFIED)


def _is_default(value: Any, default: Any) -> bool:
    return value is None or value == default


# field -> the value that means "not used" (anything else cannot be honoured by the edge)
UNSUPPORTED: Mapping[str, Any] = {
    "frequency_penalty": 0, "presence_penalty": 0, "logit_bias": {}, "logprobs": False, "top_logprobs": 0,
}
CHAT_ONLY_UNSUPPORTED: Mapping[str, Any] = {
    "tools": [], "tool_choice": "none", "functions": [], "function_call": "none", "audio": None,
    "prediction": None, "response_format": {"type": "text"}, "modalities": ["text"],
}
COMPLETION_ONLY_UNSUPPORTED: Mapping[str, Any] = {"echo": False, "suffix": None, "best_of": 1}


def _refuse_unsupported(body: Mapping[str, Any], fields: Mapping[str, Any]) -> None:
    for name, default in fields.items():
        if not _is_default(body.get(name), default):
            raise InvalidField(f"{name} is not supported by the NetGPT edge (its models generate plain text); "
                               f"leave it out", name)
