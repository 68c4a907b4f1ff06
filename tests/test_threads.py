"""in_own_thread: torch work off the event loop on a thread that ends (see netgpt.threads for why)."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from netgpt.threads import in_own_thread

CALLER = contextvars.ContextVar("caller", default="none")


async def test_result_context_and_the_thread_ends() -> None:
    CALLER.set("deploy-7")
    seen: dict[str, object] = {}

    def work(x: int) -> int:
        seen["thread"], seen["caller"] = threading.current_thread(), CALLER.get()
        return 2 * x

    assert await in_own_thread(work, 21) == 42
    thread = seen["thread"]
    assert isinstance(thread, threading.Thread) and thread is not threading.main_thread()
    assert seen["caller"] == "deploy-7"
    thread.join(timeout=5)
    assert not thread.is_alive()  # nothing pooled keeps it (and its OpenMP team) alive


async def test_errors_reach_the_caller() -> None:
    def broken() -> None:
        raise ValueError("adapter does not fit")

    with pytest.raises(ValueError, match="adapter does not fit"):
        await in_own_thread(broken)


async def test_a_cancelled_caller_leaves_the_work_to_finish_quietly() -> None:
    release, finished = threading.Event(), threading.Event()

    def slow() -> str:
        release.wait(5)
        finished.set()
        return "done"

    task = asyncio.create_task(in_own_thread(slow))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    assert await asyncio.to_thread(finished.wait, 5)
    await asyncio.sleep(0.05)  # the late result lands on a done future without an error
