"""Background work an agent owns: started on the event loop, awaited when idle, cancelled on close."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Task[Any], every_s: float = 0.5) -> None:
    """Cancel ``tasks`` and wait until they are done, cancelling again while one keeps running.

    Python 3.11's ``asyncio.wait_for`` can swallow a cancellation that arrives as its inner
    future completes (gh-86296), so one ``cancel()`` may not end a loop that uses it; a task
    that survived the first one gets another every ``every_s`` instead of being awaited forever.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=every_s)


class TaskGroup:
    """Tasks that outlive the call that started them (a deploy, a training job) but not their owner."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def __bool__(self) -> bool:
        return bool(self._tasks)

    def start(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def idle(self) -> None:
        """Wait until no task runs (tests, graceful stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel_all(self) -> None:
        await cancel_and_wait(*self._tasks)
