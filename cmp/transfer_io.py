"""I/O helpers of chunked artifact streaming, shared by the server and client sides.

Speed comes from overlap, not from bigger messages: sha256 and file I/O run on a worker
thread (both release the GIL) a few chunks behind or ahead of the network, disk writeback
starts during the transfer (``HashingWriter``), and each 1 MiB chunk is copied into its
message once (``chunk_message``). The event loop stays free for the core's other RPCs.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Self, TypeVar, cast

from netgpt.v1 import compute_plane_pb2 as cmp_pb2

T = TypeVar("T")
M = TypeVar("M", cmp_pb2.PublishModelRequest, cmp_pb2.FetchModelResponse)
_END = object()


class BackgroundWriter:
    """Runs ``write(offset, data)`` in order on one worker thread, at most ``depth`` chunks behind.

    Errors surface on a later :meth:`put` or on leaving the block. On an error exit the
    chunks already queued are still written (a partial download keeps all it received, for
    resuming) and no write is running when the block ends, so the caller may delete the file.
    """

    def __init__(self, write: Callable[[int, bytes], None], depth: int = 4) -> None:
        self._write = write
        self._depth = depth
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netgpt-write")
        self._pending: deque[asyncio.Future[None]] = deque()

    async def put(self, offset: int, data: bytes) -> None:
        while len(self._pending) >= self._depth:
            await self._pending.popleft()
        loop = asyncio.get_running_loop()
        self._pending.append(loop.run_in_executor(self._executor, self._write, offset, data))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            while exc_type is None and self._pending:
                await self._pending.popleft()
        finally:
            for future in self._pending:  # their errors were superseded by the one leaving the block
                future.add_done_callback(_retrieve)
            self._executor.shutdown(wait=True)  # at most `depth` chunk writes


def chunk_message(cls: type[M], offset: int, data: bytes) -> M:
    """``cls(chunk=ModelChunk(...))`` without building the chunk twice: passing a message to a
    constructor copies it, 30x slower than the 1 MiB assignment here (measured, upb protobuf)."""
    message = cls()
    message.chunk.offset = offset
    message.chunk.data = data
    return message


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


async def read_ahead(items: Iterator[T], depth: int = 2) -> AsyncIterator[T]:
    """Iterate a blocking iterator (file reads) on a worker thread, ``depth`` items ahead."""
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netgpt-read")
    pending = deque(loop.run_in_executor(executor, next, items, _END) for _ in range(depth))
    try:
        while (item := await pending.popleft()) is not _END:
            pending.append(loop.run_in_executor(executor, next, items, _END))
            yield cast(T, item)
    finally:
        for future in pending:
            future.cancel()
        executor.shutdown(wait=True, cancel_futures=True)
        close = getattr(items, "close", None)
        if close is not None:
            close()
