"""Where a deploy's artifact comes from: the node's shelf, the plan's peers and core, or the core alone.

With a fetch plan the node fetches pieces from several peers and the core at once
(``cmp.peer_fetch``), checking each piece; without one it downloads from the core's model
store, resuming after dropped connections (:class:`cmp.node_kit.CoreLink`). Either way the
whole sha256 is checked before the blob goes onto the node's shelf (``BlobCache``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

import grpc

from cmp.blob_cache import BlobCache
from cmp.distribution import FetchPlan, Source, SourceTally
from cmp.node_kit import CoreLink
from cmp.peer_fetch import PeerFetch, PeerFetchPolicy
from netgpt.channels import open_channel
from netgpt.errors import DataLoss, NetGptError
from netgpt.tls import Transport
from netgpt.v1 import blob_pb2_grpc as blob_grpc
from netgpt.v1 import common_pb2


class Fetching(Protocol):
    """What a fetch reads from and reports into (a :class:`cmp.deployer.Deployment`)."""

    command_id: str
    ref: common_pb2.ModelRef
    plan: FetchPlan | None
    sources: list[SourceTally]

    def progress(self, done: int, total: int) -> None: ...


class ArtifactFetcher:
    """Puts verified artifacts on the shelf ``blobs``; partial downloads wait in ``artifacts``."""

    def __init__(self, core: CoreLink, blobs: BlobCache, artifacts: Path, peer_policy: PeerFetchPolicy,
                 node_id: str, transport: Transport | None) -> None:
        self.core = core
        self.blobs = blobs
        self.artifacts = artifacts
        self.bytes_fetched = 0  # artifact bytes fetched from the core and peers (resumed parts counted once)
        self._peer_policy = peer_policy
        self._node_id = node_id
        self._transport = transport  # the node's certificate, for peers (None: process default)
        self._peer_channels: dict[str, grpc.aio.Channel] = {}
        self._peer_fetches = 0

    @property
    def attempts(self) -> int:
        """FetchModel calls and peer fetches made (tests and logs see resumes)."""
        return self.core.fetch_calls + self._peer_fetches

    async def fetch(self, job: Fetching) -> Path:
        """The verified artifact on the shelf: held already, from the plan's sources, or from the core."""
        ref = job.ref
        try:
            held, size = self.blobs.blob(ref.sha256)
        except NetGptError:
            pass
        else:
            job.progress(size, size)
            return held
        self.artifacts.mkdir(parents=True, exist_ok=True)
        dest = self.artifacts / f"{ref.name}-{ref.version}-{ref.sha256[:16]}"
        if job.plan is not None:
            fetch = PeerFetch(job.plan, dest, self._blob_stub, self._peer_policy, job.progress, self._node_id)
            job.sources = fetch.tallies
            self._peer_fetches += 1
            await fetch.run()
        else:
            await self._from_core(job, dest)
        self.bytes_fetched += dest.stat().st_size  # the verified whole: a resumed part counts once
        return await asyncio.to_thread(self.blobs.admit, dest, ref.sha256)

    async def close(self) -> None:
        """Close the channels to the core and to peers."""
        await self.core.close()
        for channel in self._peer_channels.values():
            await channel.close()

    def _blob_stub(self, source: Source) -> blob_grpc.BlobServiceStub:
        """The core's BlobService for the origin, one cached channel per peer address otherwise."""
        if source.origin or not source.address:
            return blob_grpc.BlobServiceStub(self.core.channel)
        channel = self._peer_channels.get(source.address)
        if channel is None:
            channel = self._peer_channels[source.address] = open_channel(source.address, self._transport)
        return blob_grpc.BlobServiceStub(channel)

    async def _from_core(self, job: Fetching, dest: Path) -> None:
        ref = job.ref
        job.sources = [SourceTally(Source(origin=True))]
        manifest = await self.core.fetch(ref, dest, "deploy.fetch.retry", progress=job.progress,
                                         command_id=job.command_id)
        # fetch_to_file hashed every byte as it arrived and matched it to the store's trailer;
        # the store served the version pinned to ref.sha256. Both must agree with the command.
        if manifest.sha256 != ref.sha256:
            dest.unlink(missing_ok=True)
            raise DataLoss(f"the store sent {ref.name} {ref.version} with sha256 {manifest.sha256}, "
                           f"the deploy names {ref.sha256}")
        job.sources[0].bytes = manifest.size_bytes
