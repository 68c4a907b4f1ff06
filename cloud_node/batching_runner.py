"""The cloud's generation runner: requests on the loaded LLaMA base go through the batch scheduler.

Models the scheduler cannot batch (another base, or a wrapper such as the tests' slow
model) keep the thread-per-request path of :class:`~up.runner.GenerationRunner`. Both
paths share one set of load counters (active, queued, completed, cancelled, tokens/s,
first-token time), so the node's load report reads the same either way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable

from cloud_node.scheduler import Admitted, BatchRequest, BatchScheduler
from netgpt.engine import LanguageModel
from netgpt.generation import SamplingParams, StartConstraint, TokenPiece
from up.runner import GenerationRunner

Inbox = asyncio.Queue[TokenPiece | Admitted | BaseException | None]


class BatchingRunner(GenerationRunner):
    def __init__(self, scheduler: BatchScheduler, max_concurrency: int = 2, max_queue: int = 16) -> None:
        super().__init__(max_concurrency, max_queue)
        self.scheduler = scheduler

    async def stream(self, model: LanguageModel, prompt_ids: list[int], params: SamplingParams,
                     priority: int = 0, admitted: Callable[[], None] | None = None, *,
                     start: StartConstraint | None = None) -> AsyncGenerator[TokenPiece, None]:
        """Tokens of one request; ``priority`` is the session's QoS priority (1 highest, 0 unset);
        ``admitted`` is called when the scheduler admits it (the end of its queueing). A model the batch does
        not serve, or a ``start`` constraint (which the batch scheduler does not apply), runs on its own."""
        if start is not None or not self.scheduler.accepts(model):
            async for piece in super().stream(model, prompt_ids, params, start=start):
                yield piece
            return
        loop = asyncio.get_running_loop()
        inbox: Inbox = asyncio.Queue()
        request = BatchRequest(prompt_ids, params, getattr(model, "lora", None), model.tokenizer,
                               lambda item: loop.call_soon_threadsafe(inbox.put_nowait, item), priority)
        requested = time.perf_counter()
        self.scheduler.submit(request)
        self.queued += 1
        was_admitted = finished = failed = False
        produced, started = 0, requested
        try:
            while (item := await inbox.get()) is not None:
                if isinstance(item, Admitted):
                    was_admitted, started = True, time.perf_counter()
                    self.queued -= 1
                    self.active += 1
                    if admitted is not None:
                        admitted()
                    continue
                if isinstance(item, BaseException):
                    failed = True
                    raise item
                if not produced:
                    self._first_token_ms.append((time.perf_counter() - requested) * 1000.0)
                produced += 1
                yield item
            finished = True
            self._record_speed(produced, time.perf_counter() - started)
        finally:
            if not finished:
                request.cancel.set()
                self.scheduler.poke()
                if not failed:  # the caller left (deadline, cancel); a failed step is not a cancellation
                    self.cancelled += 1
            if was_admitted:
                self.active -= 1
            else:
                self.queued -= 1

    def shutdown(self, wait: bool = False) -> None:
        self.scheduler.close()
        super().shutdown(wait)
