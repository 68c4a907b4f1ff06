"""What the node-side agents of the compute plane share: the deployer (``cmp.deployer``) and the
training agent (``cmp.training_agent``) each hold one channel to the core, fetch sha256-pinned
versions from its model store with retry and resume, and report every command they run as a
record with a failure line and status code (:func:`netgpt.status.status_code`)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import structlog

from cmp.transfer_client import Progress, fetch_to_file, publish_file
from cmp.transfer_io import TransferStub
from netgpt.channels import open_channel
from netgpt.errors import DataLoss, one_line
from netgpt.status import status_code
from netgpt.tls import Transport
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2

log = structlog.get_logger(__name__)

Code = grpc.StatusCode
# worth another FetchModel call; DATA_LOSS too: the corrupt partial was deleted, the retry starts clean
RETRYABLE = frozenset({Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.CANCELLED, Code.ABORTED, Code.INTERNAL,
                       Code.UNKNOWN, Code.RESOURCE_EXHAUSTED, Code.DATA_LOSS})
State = TypeVar("State", common_pb2.DeploymentState, common_pb2.TrainingJobState)


@dataclass(frozen=True)
class RetryPolicy:
    """How long a node keeps trying to fetch: a dropped connection resumes from the bytes it has."""

    attempts: int = 8
    first_backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    timeout_s: float = 3600.0  # one fetch call; a whole multi-GB artifact must fit


def describe(exc: BaseException) -> str:
    """One line for a failure report: a failed call's details, else the exception's first line."""
    if isinstance(exc, grpc.aio.AioRpcError):
        details: str = exc.details() or exc.code().name
        return details
    return one_line(exc)


@dataclass(kw_only=True)
class NodeRecord:
    """The part every record of a node command has: its failure and when it started and changed."""

    error: str = ""
    error_code: int = 0
    started_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    def set(self, state: Any, /, **fields: Any) -> None:
        """Enter ``state`` with ``fields`` changed (and log it); each kind of record says how."""
        raise NotImplementedError

    def fail(self, state: Any, exc: BaseException) -> grpc.StatusCode:
        """Enter the failed ``state`` for ``exc``: its one line and status code, which is returned."""
        code = status_code(exc)
        self.set(state, error=describe(exc), error_code=code.value[0])
        return code

    def _update(self, **fields: Any) -> None:
        self.updated_at = time.time()
        for name, value in fields.items():
            setattr(self, name, value)

    def _stamped(self, state: State) -> State:
        state.started_at.FromNanoseconds(int(self.started_at * 1e9))
        state.updated_at.FromNanoseconds(int(self.updated_at * 1e9))
        return state


class CoreLink:
    """A node agent's one channel to the core, for the model store's FetchModel and PublishModel."""

    def __init__(self, core_address: str, transport: Transport | None, retry: RetryPolicy) -> None:
        self.channel = open_channel(core_address, transport)
        self.stub = TransferStub(self.channel)
        self.retry = retry
        self.fetch_calls = 0  # FetchModel calls made (tests and logs see resumes)

    async def fetch(self, ref: common_pb2.ModelRef, dest: Path, retry_event: str, progress: Progress | None = None,
                    **log_fields: object) -> cmp_pb2.ModelManifest:
        """``ref`` into ``dest``, pinned to its sha256; a dropped connection resumes from the partial
        file, up to ``retry.attempts`` calls. Each retry is logged as ``retry_event`` with ``log_fields``."""
        backoff = self.retry.first_backoff_s
        for attempt in range(1, self.retry.attempts + 1):
            self.fetch_calls += 1
            try:
                return await fetch_to_file(self.stub, ref.name, ref.version, dest, resume=True, sha256=ref.sha256,
                                           progress=progress, timeout_s=self.retry.timeout_s)
            except (grpc.aio.AioRpcError, DataLoss) as exc:
                code = status_code(exc)
                if attempt == self.retry.attempts or code not in RETRYABLE:
                    raise
                part = dest.with_name(dest.name + ".part")
                log.warning(retry_event, **log_fields, attempt=attempt, code=code.name, error=describe(exc),
                            retry_in_s=backoff, resume_from=part.stat().st_size if part.exists() else 0)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.retry.max_backoff_s)
        raise AssertionError("unreachable")

    async def publish(self, manifest: cmp_pb2.ModelManifest, path: Path) -> cmp_pb2.PublishModelResponse:
        return await publish_file(self.stub, manifest, path, timeout_s=self.retry.timeout_s)

    async def close(self) -> None:
        await self.channel.close()
