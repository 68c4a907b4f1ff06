"""What the model and dataset commands share: talking to the core's compute plane, byte progress bars,
human-readable sizes, and publishing a file with both."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from cli.common import on_core
from cmp.transfer_io import TransferStub
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc
from netgpt.words import enum_word

T = TypeVar("T")


def human_size(size: int) -> str:
    """``1536`` → ``1.5 KiB``: binary units, three significant digits."""
    if size < 1024:
        return f"{size} B"
    units = ("KiB", "MiB", "GiB", "TiB")
    value, index = size / 1024, 0
    while value >= 1024 and index < len(units) - 1:
        value, index = value / 1024, index + 1
    unit = units[index]
    return f"{value:.3g} {unit}" if value < 1000 else f"{value:.0f} {unit}"


def kind_word(kind: int) -> str:
    return enum_word(common_pb2.ModelKind, kind, sep="-")


@contextmanager
def progress_bar(what: str) -> Iterator[Callable[[int, int], None]]:
    """A ``progress(done, total)`` callback drawing a byte progress bar on stderr."""
    bar = tqdm(desc=what, unit="B", unit_scale=True, unit_divisor=1024, leave=True)
    try:
        def update(done: int, total: int) -> None:
            if bar.total != total:
                bar.reset(total=total)
            bar.update(done - bar.n)

        yield update
    finally:
        bar.close()


def stub_call(core: str, call: Callable[[cmp_grpc.ComputePlaneServiceStub], Awaitable[T]]) -> T:
    """``call`` on the core's compute plane, on an event loop of its own."""
    return asyncio.run(on_core(core, TransferStub, call))  # the generated stub, downloads without copies


def publish_with_progress(core: str, manifest: cmp_pb2.ModelManifest, path: Path) -> None:
    """Upload ``path`` to the core's store as ``manifest`` (chunked, sha256-checked), with a progress bar."""
    from cmp.transfer_client import publish_file

    async def upload(stub: cmp_grpc.ComputePlaneServiceStub) -> cmp_pb2.PublishModelResponse:
        with progress_bar(f"publish {manifest.name} {manifest.version}") as progress:
            return await publish_file(stub, manifest, path, progress=progress)

    reply = stub_call(core, upload)
    m = reply.manifest
    print(f"published {m.name} {m.version} ({kind_word(m.kind)}, {human_size(m.size_bytes)}, sha256 {m.sha256})"
          + (" - content already stored, kept once" if reply.deduplicated else ""))
