"""Run :func:`~netgpt.training.trainer.train` in a child OS process ("spawn"), so a node's
serving threads keep their CPU and the GIL; progress comes back over a multiprocessing queue,
read on a worker thread so the event loop never blocks.

The child sends ``("progress", Progress)`` messages, then exactly one ``("result", TrainResult)``
or ``("error", kind, message)``. InvalidArgument and TrainingCancelled keep their type across
the process boundary; anything else becomes :class:`TrainingFailed` with the child's message.

The child dies with the process that started it (``netgpt.training.guards.die_with_parent``:
Linux's parent-death signal, bound to the starting *thread*, so start it from a thread that
lives as long as the job: the node's event loop) and locks its work folder while it trains.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.process
import os
import queue
from collections.abc import AsyncIterator
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from netgpt.errors import FailedPrecondition, InvalidArgument, NetGptError, one_line
from netgpt.logs import configure_logging
from netgpt.training.guards import die_with_parent
from netgpt.training.trainer import Progress, TrainConfig, TrainingCancelled, TrainingFailed, TrainResult, train

_KINDS: dict[str, type[NetGptError]] = {
    "InvalidArgument": InvalidArgument,
    "FailedPrecondition": FailedPrecondition,
    "TrainingCancelled": TrainingCancelled,
    "TrainingFailed": TrainingFailed,
}
POLL_S = 0.2  # how often the reader thread looks at the queue / the child's liveness


def _child(base_dir: Path, dataset: Path, work_dir: Path, config: TrainConfig, out: Any, stop: Event,
           log_level: str, parent_pid: int) -> None:
    """The child's whole life: train, report, never raise (the parent reads the outcome from ``out``).
    It dies with its parent (a node killed with -9 leaves no orphan training on)."""
    die_with_parent(parent_pid)
    configure_logging(json=True, level=log_level)  # a spawned child starts with structlog unconfigured
    try:
        result = train(base_dir, dataset, work_dir, config, progress=lambda p: out.put(("progress", p)),
                       cancelled=stop.is_set)
        out.put(("result", result))
    except NetGptError as exc:
        kind = type(exc).__name__ if type(exc).__name__ in _KINDS else "TrainingFailed"
        out.put(("error", kind, str(exc)))
    except BaseException as exc:  # anything else reaches the parent as one line
        out.put(("error", "TrainingFailed", f"{type(exc).__name__}: {one_line(exc)}"))


class TrainingProcess:
    """One training run in a child process: ``start``, iterate ``progress()``, ``cancel``, ``await result()``."""

    def __init__(self) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._queue: Any = self._ctx.Queue()
        self._stop = self._ctx.Event()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._outcome: tuple[Any, ...] | None = None
        self._latest: Progress | None = None

    def start(self, base_dir: Path, dataset: Path, work_dir: Path, config: TrainConfig,
              log_level: str = "info") -> None:
        """Spawn the child; it logs JSON (structlog) to stderr at ``log_level``."""
        if self._process is not None:
            raise FailedPrecondition("this training process was already started")
        self._process = self._ctx.Process(target=_child, args=(base_dir, dataset, work_dir, config, self._queue,
                                                                self._stop, log_level, os.getpid()),
                                          name="netgpt-train", daemon=True)
        self._process.start()

    @property
    def pid(self) -> int | None:
        """The child's process id, once started."""
        return self._process.pid if self._process is not None else None

    @property
    def latest(self) -> Progress | None:
        """The last progress update received."""
        return self._latest

    def cancel(self) -> None:
        """Ask the child to stop at its next step; ``result()`` then raises TrainingCancelled."""
        self._stop.set()

    def _next_message(self) -> tuple[Any, ...] | None:
        """Blocking (run on a thread): the next message, or None once the child is gone and the queue empty."""
        assert self._process is not None
        while True:
            try:
                message: tuple[Any, ...] = self._queue.get(timeout=POLL_S)
                return message
            except queue.Empty:
                if not self._process.is_alive():
                    try:  # a last message may have landed between the timeout and the check
                        late: tuple[Any, ...] = self._queue.get(timeout=POLL_S)
                        return late
                    except queue.Empty:
                        return None

    async def progress(self) -> AsyncIterator[Progress]:
        """Progress updates until the child finishes (its outcome is kept for ``result()``)."""
        if self._process is None:
            raise FailedPrecondition("the training process was not started")
        while self._outcome is None:
            message = await asyncio.to_thread(self._next_message)
            if message is None:
                code = self._process.exitcode
                self._outcome = ("error", "TrainingFailed", f"the training process exited ({code}) without a result")
            elif message[0] == "progress":
                self._latest = message[1]
                yield message[1]
            else:
                self._outcome = message

    async def result(self) -> TrainResult:
        """The TrainResult, or the child's error re-raised; the child is always reaped."""
        try:
            async for _ in self.progress():
                pass
        finally:
            await asyncio.to_thread(self._reap)
        assert self._outcome is not None
        if self._outcome[0] == "result":
            result: TrainResult = self._outcome[1]
            return result
        _, kind, message = self._outcome
        raise _KINDS.get(kind, TrainingFailed)(message)

    def _reap(self) -> None:
        if self._process is None:
            return
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()

    async def close(self) -> None:
        """Cancel and reap (for shutdown paths that do not want the result)."""
        self.cancel()
        if self._process is not None and self._outcome is None:
            try:
                await self.result()
            except NetGptError:
                pass
        else:
            await asyncio.to_thread(self._reap)
