"""Calls from the edge to a cloud node, de-duplicated.

Identical comprehensive prompts in flight at the same time share one upstream call
(coalescing): the call runs in its own task and every subscriber replays its events
from the start, so a follower that joins late misses nothing, and the call is only
cancelled when its last subscriber has gone. Finished answers go to the
:class:`AnswerCache`. Both can be turned off.

Calls and cached answers remember the UEs they served (their owners): :meth:`CloudGateway.forget`
erases what derives from one user's requests — their cached answers, their distillation samples
(:mod:`edge_node.serving.distill_samples`, when the edge keeps them), and the sharing of their
calls in flight (no later request joins such a call, and its answer is not cached).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import grpc
import structlog

from edge_node.serving.answer_cache import AnswerCache, request_key
from edge_node.serving.cloud_peers import CloudPeer, CloudPeers
from edge_node.serving.distill_samples import DistillSamples
from netgpt.errors import DeadlineExceeded
from netgpt.v1 import user_plane_pb2 as up_pb2
from up.convert import decode_event
from up.events import Event, Summary, Tokens

log = structlog.get_logger(__name__)


class CloudFailed(Exception):
    """The cloud could not deliver a complete answer; ``discarded_tokens`` had already streamed.

    ``busy``: the cloud refused for lack of capacity (RESOURCE_EXHAUSTED) — a healthy node
    under load, not a failed one.
    """

    def __init__(self, reason: str, discarded_tokens: int = 0, busy: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.discarded_tokens = discarded_tokens
        self.busy = busy


class CloudCall:
    """One upstream Generate call whose events any number of subscribers can replay."""

    def __init__(self, peer: CloudPeer, forward: up_pb2.GenerateRequest, deadline_s: float | None,
                 token_timeout_s: float) -> None:
        self.events: list[Event] = []
        self.error: Exception | None = None
        self.done = False
        self.subscribers = 0
        self.owners: set[str] = set()  # UEs whose requests this call answers
        self.cacheable = True  # false once an owner was erased: the answer must not outlive the call
        self._changed = asyncio.Condition()
        self.task = asyncio.create_task(self._run(peer, forward, deadline_s, token_timeout_s))

    async def _run(self, peer: CloudPeer, forward: up_pb2.GenerateRequest, deadline_s: float | None,
                   token_timeout_s: float) -> None:
        call = peer.stub.Generate(forward, timeout=deadline_s)
        streamed = 0
        try:
            while (message := await asyncio.wait_for(call.read(), token_timeout_s)) is not grpc.aio.EOF:
                event = decode_event(message)
                if isinstance(event, Tokens):
                    streamed += len(event.token_ids)
                if event is not None:
                    await self._publish(event)
            if not self.events or not isinstance(self.events[-1], Summary):
                raise CloudFailed("cloud stream ended without a summary", streamed)
        except TimeoutError:
            self.error = CloudFailed(f"no token within {token_timeout_s:g} s", streamed)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                self.error = DeadlineExceeded("the request's deadline passed while the cloud was generating")
            else:
                self.error = CloudFailed(f"{exc.code().name}: {exc.details()}", streamed,
                                         busy=exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED)
        except CloudFailed as exc:
            self.error = exc
        finally:
            call.cancel()
            self.done = True
            async with self._changed:
                self._changed.notify_all()

    async def _publish(self, event: Event) -> None:
        self.events.append(event)
        async with self._changed:
            self._changed.notify_all()

    async def subscribe(self) -> AsyncGenerator[Event, None]:
        """All events from the first; raises the call's error after the events that did arrive."""
        self.subscribers += 1
        seen = 0
        try:
            while True:
                while seen < len(self.events):
                    seen += 1
                    yield self.events[seen - 1]
                if self.done:
                    break
                async with self._changed:
                    await self._changed.wait_for(lambda: self.done or len(self.events) > seen)  # noqa: B023
            if self.error is not None:
                raise self.error
        finally:
            self.subscribers -= 1
            if self.subscribers == 0 and not self.done:
                self.task.cancel()  # nobody is listening any more: stop the cloud's work


@dataclass(frozen=True)
class Forgotten:
    """What :meth:`CloudGateway.forget` erased."""

    cached_answers: int = 0
    shared_calls: int = 0
    distill_samples: int = 0


@dataclass
class CloudAnswer:
    """How a cloud answer was obtained: ``cloud`` (a new call), ``coalesced`` or ``cache``."""

    mode: str
    events: AsyncGenerator[Event, None]  # closed by whoever reads it (aclosing)


class CloudGateway:
    def __init__(self, peers: CloudPeers, token_timeout_s: float, cache: AnswerCache, coalesce: bool = True,
                 samples: DistillSamples | None = None) -> None:
        self.peers = peers
        self.samples = samples  # the cloud's answers kept for the edge to learn from; None: off (the default)
        self.token_timeout_s = token_timeout_s
        self.cache = cache
        self.coalesce = coalesce
        self._in_flight: dict[str, CloudCall] = {}
        self.cloud_calls = 0
        self.coalesced = 0

    def counters(self) -> dict[str, int]:
        return {"cloud_calls": self.cloud_calls, "coalesced_requests": self.coalesced,
                "answer_cache_hits": self.cache.hits, "answer_cache_misses": self.cache.misses,
                "answer_cache_entries": len(self.cache)}

    def open(self, peer: CloudPeer, forward: up_pb2.GenerateRequest, deadline_s: float | None,
             owner: str = "") -> CloudAnswer:
        """The answer to ``forward``: cached, shared with an identical call in flight, or a new call.
        ``owner``: the UE the request comes from ("" for none), for :meth:`forget`."""
        key = request_key(forward, peer.model_tag)
        if key is not None and self.cache.enabled:
            cached = self.cache.get(key, owner)
            if cached is not None:
                return CloudAnswer("cache", _replay(cached))
        if key is not None and self.coalesce and key in self._in_flight:
            self.coalesced += 1
            shared = self._in_flight[key]
            shared.owners.add(owner)
            return CloudAnswer("coalesced", shared.subscribe())
        self.cloud_calls += 1
        call = CloudCall(peer, forward, deadline_s, self.token_timeout_s)
        call.owners.add(owner)
        if key is not None:
            self._track(key, call)
        return CloudAnswer("cloud", call.subscribe())

    def forget(self, owner: str) -> Forgotten:
        """Erase what derives from ``owner``'s requests: cached answers, and sharing of calls in flight."""
        shared = [key for key, call in self._in_flight.items() if owner in call.owners]
        for key in shared:
            self._in_flight.pop(key).cacheable = False
        samples = self.samples.forget(owner) if self.samples is not None else 0
        return Forgotten(cached_answers=self.cache.forget(owner), shared_calls=len(shared), distill_samples=samples)

    def _track(self, key: str, call: CloudCall) -> None:
        if self.coalesce:
            self._in_flight[key] = call

        def finished(_: asyncio.Task[None]) -> None:
            if self._in_flight.get(key) is call:
                del self._in_flight[key]
            if call.error is None and call.events and call.cacheable:
                self.cache.put(key, call.events, call.owners - {""})

        call.task.add_done_callback(finished)


async def _replay(events: list[Event]) -> AsyncGenerator[Event, None]:
    for event in events:
        yield event
