"""Tidying an answer (the ``post_process`` function), applied to the stream itself, not just the summary.

Tidying means: collapse whitespace, and cut a trailing unfinished sentence when a full one
exists. Text is released sentence by sentence as tokens arrive (a finished sentence never
changes), the rest is held until the answer ends, so what the UE streams is exactly the
summary's text.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import replace

from netgpt.v1 import common_pb2
from up.events import Event, FellBack, Summary, Tokens

SENTENCE_ENDS = ".!?"


def post_process(text: str) -> str:
    """Tidy a generated answer: trim, and cut a trailing unfinished sentence when a full one exists."""
    text = " ".join(text.split())
    cut = _last_sentence_end(text)
    if text and text[-1] not in SENTENCE_ENDS and cut > 0:
        return text[:cut]
    return text


def _last_sentence_end(text: str) -> int:
    """Index just past the last sentence end followed by a space (0 if none)."""
    return max(text.rfind(f"{end} ") for end in SENTENCE_ENDS) + 1


class SentenceStream:
    """Accumulates raw token text; releases tidied text whose sentences are complete."""

    def __init__(self) -> None:
        self.raw = ""
        self.sent = ""
        self._ids: list[int] = []

    def feed(self, tokens: Tokens) -> Tokens | None:
        self.raw += tokens.text
        self._ids.extend(tokens.token_ids)
        tidy = " ".join(self.raw.split())
        stable = tidy[:_last_sentence_end(tidy)].rstrip()
        return self._release(stable, tokens.source) if len(stable) > len(self.sent) else None

    def finish(self, source: common_pb2.NodeRole) -> Tokens | None:
        final = post_process(self.raw)
        return self._release(final, source) if len(final) > len(self.sent) or self._ids else None

    def _release(self, text: str, source: common_pb2.NodeRole) -> Tokens:
        chunk = text[len(self.sent):]
        self.sent, ids, self._ids = text, tuple(self._ids), []
        return Tokens(text=chunk, token_ids=ids, source=source)


class StreamTidier:
    """One answer's stream, tidied as it goes: what a generation step streams through when a
    post_process step runs after it, and what that step finishes once the answer is complete."""

    def __init__(self) -> None:
        self._stream = SentenceStream()
        self._source = common_pb2.NODE_ROLE_UNSPECIFIED  # until tokens name their source

    def feed(self, event: Tokens | FellBack) -> Tokens | FellBack | None:
        """What to send on for ``event`` now (None: held until more text or the end)."""
        if isinstance(event, FellBack):
            self._stream = SentenceStream()  # the UE discards what streamed; so do we
            return event
        self._source = event.source
        return self._stream.feed(event)

    def finish(self) -> Tokens | None:
        """The tidied rest, once the answer is complete."""
        return self._stream.finish(self._source)

    @property
    def text(self) -> str:
        """Everything released so far: after :meth:`finish`, the tidied answer."""
        return self._stream.sent


async def post_processed(events: AsyncGenerator[Event, None]) -> AsyncGenerator[Event, None]:
    """``events`` with token text tidied as it streams and the summary's text equal to what streamed."""
    tidier = StreamTidier()
    async with aclosing(events) as upstream:
        async for event in upstream:
            if isinstance(event, Tokens | FellBack):
                released = tidier.feed(event)
                if released is not None:
                    yield released
            elif isinstance(event, Summary):
                rest = tidier.finish()
                if rest is not None:
                    yield rest
                yield replace(event, text=tidier.text)
            else:
                yield event
