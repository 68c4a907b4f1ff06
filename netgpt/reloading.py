"""A value read from files and read again when they change (polled) or on SIGHUP, e.g. a daemon's TLS identity.

A new value replaces the old only once it loaded whole: a half-written file, or a certificate replaced
before its key, fails the load, is logged (``<what>.reload_failed``) and the old value stays in use. The
files are polled by their size, modification time and inode (``os.stat``: cheap, and an atomic rename
changes the inode); ``reload_all`` is what a daemon's SIGHUP handler calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")
Stamp = tuple[tuple[int, int, int], ...]

_live: weakref.WeakSet[Reloading[object]] = weakref.WeakSet()


def _stamp(paths: Sequence[Path]) -> Stamp:
    stamps = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            stamps.append((-1, -1, -1))
            continue
        stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(stamps)


class Reloading(Generic[T]):
    """The current value made from ``paths`` (``initial``, then what ``load()`` made of newer files);
    ``generation`` counts the values taken."""

    def __init__(self, what: str, paths: Sequence[Path], load: Callable[[], T], poll_s: float, initial: T,
                 describe: Callable[[T], dict[str, object]] = lambda value: {}) -> None:
        self.what = what
        self._describe = describe  # what the reloaded event says of a new value (e.g. a certificate's serial)
        self.paths = tuple(paths)
        self.poll_s = poll_s
        self._load = load
        self._stamp = _stamp(self.paths)
        self.value = initial
        self.generation = 0
        self._listeners: list[Callable[[T], None]] = []
        self._task: asyncio.Task[None] | None = None
        _live.add(self)  # type: ignore[arg-type]  # the set only calls reload()

    def on_reload(self, listener: Callable[[T], None]) -> None:
        """Call ``listener(new value)`` after every reload that took a new value."""
        self._listeners.append(listener)

    def reload(self, reason: str) -> bool:
        """Load the files again; whether a new value was taken (False: unchanged, or refused and logged)."""
        stamp = _stamp(self.paths)
        try:
            value = self._load()
        except Exception as exc:  # whatever is wrong with the new files, the daemon serves on with the old
            self._stamp = stamp  # logged once per change of the files, not once per poll
            log.warning(f"{self.what}.reload_failed", reason=reason, error=str(exc), kept_generation=self.generation)
            return False
        self._stamp = stamp
        if value == self.value:
            return False
        self.value = value
        self.generation += 1
        for listener in self._listeners:
            try:
                listener(value)
            except Exception:  # one user of the value (e.g. the HTTPS API) failing must not stop the others
                log.exception(f"{self.what}.reload_listener_failed", listener=getattr(listener, "__qualname__", ""))
        log.info(f"{self.what}.reloaded", reason=reason, generation=self.generation,
                 files=[str(p) for p in self.paths], **self._describe(value))
        return True

    def poll(self) -> bool:
        """Reload if a file changed since the last look."""
        return _stamp(self.paths) != self._stamp and self.reload("files changed")

    def start(self) -> None:
        """Poll every ``poll_s`` seconds on the running loop (0: only on :meth:`reload`, e.g. SIGHUP)."""
        if self.poll_s > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._polling(), name=f"{self.what}-reload")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _polling(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            self.poll()


def reload_all(reason: str = "SIGHUP") -> int:
    """Reload every live value of the process (its daemons' identities); how many took a new one."""
    return sum(item.reload(reason) for item in list(_live))
