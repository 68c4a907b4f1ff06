"""Runs blocking token generation on worker threads with bounded concurrency and a bounded queue.

gRPC handlers stay on the event loop; each request's decode loop runs on a thread
and hands tokens back through an asyncio queue. When the caller goes away (client
cancel, deadline) the generator is closed, which sets the worker's cancel event, so
the thread stops within one forward pass and frees its slot.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import statistics
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import structlog

from netgpt.engine import LanguageModel
from netgpt.errors import ResourceExhausted
from netgpt.generation import GenerationCancelled, SamplingParams, StartConstraint, TokenPiece, generate_tokens

log = structlog.get_logger(__name__)
T = TypeVar("T")

Handoff = asyncio.Queue[TokenPiece | BaseException | None]  # worker thread → caller; None: finished


def in_caller_context(work: Callable[..., T]) -> Callable[..., T]:
    """``work`` to run on a decode thread inside a copy of the caller's context: its log events
    keep the bound session/flow ids and the current span's trace id (``run_in_executor``, unlike
    ``asyncio.to_thread``, does not carry contextvars over)."""
    context = contextvars.copy_context()
    return functools.partial(context.run, work)


class GenerationRunner:
    def __init__(self, max_concurrency: int = 2, max_queue: int = 16) -> None:
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self._executor = ThreadPoolExecutor(max_concurrency, thread_name_prefix="generate")
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._slot_freed = asyncio.Condition()
        self.active = 0  # decode loops running on threads right now
        self.queued = 0  # requests waiting for a slot
        self.cancelled = 0  # decode loops stopped early because their caller left
        self.completed = 0
        self._tokens_per_second = 0.0
        self._first_token_ms: deque[float] = deque(maxlen=64)

    @property
    def tokens_per_second(self) -> float:
        """Exponential moving average over finished requests."""
        return self._tokens_per_second

    @property
    def p50_first_token_ms(self) -> float:
        """Median time from admission request to first token over recent requests (queueing included)."""
        return statistics.median(self._first_token_ms) if self._first_token_ms else 0.0

    async def stream(self, model: LanguageModel, prompt_ids: list[int], params: SamplingParams, *,
                     start: StartConstraint | None = None) -> AsyncGenerator[TokenPiece, None]:
        """Tokens of one request, generated on a worker thread (``start``: what the first ones must spell)."""
        requested = time.perf_counter()
        await self._acquire()
        loop = asyncio.get_running_loop()
        queue: Handoff = asyncio.Queue()
        cancel = threading.Event()
        worker = loop.run_in_executor(self._executor, in_caller_context(self._work), model, prompt_ids, params, start,
                                      cancel, loop, queue)
        worker.add_done_callback(lambda _: self._release(loop))
        first = True
        try:
            while (item := await queue.get()) is not None:  # None: the decode loop finished
                if isinstance(item, BaseException):
                    raise item
                if first:
                    first = False
                    self._first_token_ms.append((time.perf_counter() - requested) * 1000.0)
                yield item
        finally:
            cancel.set()  # no-op when finished; stops the thread when the caller left early

    async def call(self, work: Callable[[], T]) -> T:
        """Run ``work`` (a forward pass that is not a token stream: scoring, a short greedy read) on a
        decode slot, under the same admission control as generations."""
        await self._acquire()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, in_caller_context(work))
        future.add_done_callback(lambda _: self._release(loop))
        return await future

    def _work(self, model: LanguageModel, prompt_ids: list[int], params: SamplingParams,
              start: StartConstraint | None, cancel: threading.Event, loop: asyncio.AbstractEventLoop,
              queue: Handoff) -> None:
        started, produced = time.perf_counter(), 0
        try:
            for piece in generate_tokens(model.new_session(), model.tokenizer, prompt_ids, params, cancel, start):
                produced += 1
                loop.call_soon_threadsafe(queue.put_nowait, piece)
            self._record_speed(produced, time.perf_counter() - started)
            loop.call_soon_threadsafe(queue.put_nowait, None)
        except GenerationCancelled:
            self.cancelled += 1
            log.info("generate.cancelled", produced=produced)
        except BaseException as exc:  # surfaced to the awaiting handler, not lost on the thread
            loop.call_soon_threadsafe(queue.put_nowait, exc)

    def _record_speed(self, produced: int, seconds: float) -> None:
        self.completed += 1
        if produced and seconds > 0:
            rate = produced / seconds
            previous = self._tokens_per_second
            self._tokens_per_second = rate if not previous else 0.8 * previous + 0.2 * rate

    async def _acquire(self) -> None:
        if self._slots.acquire(blocking=False):
            self.active += 1
            return
        if self.queued >= self.max_queue:
            raise ResourceExhausted(
                f"node is at capacity: {self.active} generating, {self.queued} queued (max_queue={self.max_queue})"
            )
        self.queued += 1
        try:
            async with self._slot_freed:
                await self._slot_freed.wait_for(lambda: self._slots.acquire(blocking=False))
        finally:
            self.queued -= 1
        self.active += 1

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        self.active -= 1
        self._slots.release()

        async def notify() -> None:
            async with self._slot_freed:
                self._slot_freed.notify()

        loop.create_task(notify())

    def shutdown(self, wait: bool = False) -> None:
        """Stop taking work; ``wait``: also join the worker threads (and with them their OpenMP teams)."""
        self._executor.shutdown(wait=wait, cancel_futures=True)
