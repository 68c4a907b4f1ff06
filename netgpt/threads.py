"""Blocking torch work off the event loop, on a thread that ends with it.

``asyncio.to_thread`` runs work on pooled threads that live on. A thread that has run a
parallel torch op keeps an OpenMP team for as long as it lives, and once libgomp manages
more threads than there are CPUs it stops spin-waiting between parallel regions: every
parallel op in the process then pays a sleep/wake-up. On the 2-core test machine, one
deploy's first-forward check run on a pooled thread cut the cloud's batched decoding from
239 to 175 tok/s at 8 streams for the rest of the process; the same check on a thread that
ended left it at 247. Use :func:`in_own_thread` for work that runs torch (model loads and
checks, exports); ``asyncio.to_thread`` stays right for file and hashing work.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def in_own_thread(fn: Callable[..., T], *args: object, name: str = "netgpt-torch") -> T:
    """``fn(*args)`` on a new thread (with the caller's contextvars), awaited; the thread then ends.

    Cancelling the awaiting task does not stop ``fn``; its result is dropped."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # the caller was cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]  # None only with an error

    def run() -> None:
        try:
            outcome: tuple[T | None, BaseException | None] = (context.run(fn, *args), None)
        except BaseException as exc:  # handed to the awaiting task, as asyncio.to_thread does
            outcome = (None, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop closed meanwhile: nobody is waiting
            pass

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future
