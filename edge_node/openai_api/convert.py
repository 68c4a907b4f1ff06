"""NetGPT's domain events → OpenAI response objects, in one place.

One :class:`Reply` per request follows its events and answers in the shape of its kind: a
``chat.completion`` (or ``text_completion``) when not streaming, else the chunks each event
becomes. NetGPT's own view travels beside the standard fields, under ``netgpt``: the comprehensive
prompt the edge built (with the first chunk), a fallback when the cloud failed mid-answer (the
answer starts again at the edge: a NetGPT-aware client discards what streamed before it), and the
``GenerationSummary`` (routing decision, models, latency split, workflow steps) in the final chunk
and the response — protobuf JSON of the gRPC messages (:mod:`google.protobuf.json_format`, field names as
in the protos), so both APIs report the same fields. The summary's ``text`` is left out: it is the
message content, before any ``stop`` cut. ``usage`` holds the summary's token counts.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from edge_node.openai_api.protocol import Ask
from edge_node.openai_api.stop import StopScan
from netgpt.v1 import user_plane_pb2 as up_pb2
from up.convert import encode_event, encode_summary
from up.events import Event, FellBack, PromptBuilt, Summary, Tokens

FINISH_REASONS = {up_pb2.FINISH_REASON_EOS: "stop", up_pb2.FINISH_REASON_MAX_TOKENS: "length"}


def as_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def summary_json(summary: Summary) -> dict[str, Any]:
    found = as_json(encode_summary(summary))
    found.pop("text", None)
    return found


def usage(summary: Summary) -> dict[str, int]:
    return {"prompt_tokens": summary.prompt_tokens, "completion_tokens": summary.completion_tokens,
            "total_tokens": summary.prompt_tokens + summary.completion_tokens}


class Reply:
    """The answer to one :class:`Ask` as its events arrive."""

    def __init__(self, ask: Ask) -> None:
        self.ask = ask
        self.chat = ask.kind == "chat"
        self.id = f"{'chatcmpl' if self.chat else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.text = ""  # what the client keeps: after the last fallback, cut at a stop sequence
        self.prompt: PromptBuilt | None = None
        self.summary: Summary | None = None
        self._stops = StopScan(ask.stop)
        self._started = False  # a chat stream's first chunk carries the assistant role

    def _absorb(self, event: Event) -> str:
        """Take ``event`` in; returns the text it adds."""
        if isinstance(event, PromptBuilt):
            self.prompt = event
            return ""
        if isinstance(event, Tokens):
            shown = self._stops.feed(event.text)
        elif isinstance(event, FellBack):
            self.text, self._stops = "", StopScan(self.ask.stop)
            return ""
        else:
            self.summary = event
            shown = self._stops.flush()
        self.text += shown
        return shown

    @property
    def finish_reason(self) -> str:
        if self._stops.stopped or self.summary is None:
            return "stop"
        return FINISH_REASONS.get(self.summary.finish_reason, "stop")

    def extension(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.prompt is not None:
            found["comprehensive_prompt"] = as_json(encode_event(self.prompt).comprehensive_prompt)
        if self.summary is not None:
            found["summary"] = summary_json(self.summary)
        return found

    # --- not streaming ---

    def take(self, event: Event) -> None:
        self._absorb(event)

    def completion(self) -> dict[str, Any]:
        """The whole response, once the summary is in."""
        assert self.summary is not None, "the pipeline ends every generation with a summary"
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": self.finish_reason}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": self.text, "refusal": None}
        else:
            choice["text"] = self.text
        return {"id": self.id, "object": "chat.completion" if self.chat else "text_completion",
                "created": self.created, "model": self.ask.model, "system_fingerprint": None, "choices": [choice],
                "usage": usage(self.summary), "netgpt": self.extension()}

    # --- streaming ---

    def chunks(self, event: Event) -> list[dict[str, Any]]:
        """The chunks ``event`` becomes (none for a token that is held back or past a stop sequence)."""
        shown = self._absorb(event)
        if isinstance(event, PromptBuilt):
            return [self._chunk("", netgpt={"comprehensive_prompt": self.extension()["comprehensive_prompt"]})]
        if isinstance(event, FellBack):
            return [self._chunk("", netgpt={"fallback": as_json(encode_event(event).fallback)})]
        out = [self._chunk(shown)] if shown else []
        if isinstance(event, Summary):
            out.append(self._chunk("", finish_reason=self.finish_reason))
            out.append(self._final_chunk())
        return out

    def _envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk" if self.chat else "text_completion",
                "created": self.created, "model": self.ask.model, "system_fingerprint": None, "choices": choices}

    def _chunk(self, text: str, finish_reason: str | None = None,
               netgpt: dict[str, Any] | None = None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish_reason}
        if self.chat:
            delta: dict[str, Any] = {} if finish_reason else {"content": text}
            if not self._started:
                delta = {"role": "assistant", **delta}
            choice["delta"] = delta
        else:
            choice["text"] = text
        self._started = True
        chunk = self._envelope([choice])
        if netgpt:
            chunk["netgpt"] = netgpt
        return chunk

    def _final_chunk(self) -> dict[str, Any]:
        """Usage and the summary, with no choices (OpenAI's ``include_usage`` chunk, always sent)."""
        assert self.summary is not None
        return {**self._envelope([]), "usage": usage(self.summary), "netgpt": {"summary": summary_json(self.summary)}}
