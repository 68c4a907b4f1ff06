"""Node-side control-plane agent: register with the core, heartbeat load, take commands.

The agent never gives up: if the core is down or restarts, the heartbeat stream
breaks (or the core answers NOT_FOUND for a node it forgot, or a heartbeat reply does
not come back within one interval) and the agent registers again, keeping its node id.
That is what lets the core keep its registry in memory.

Once the core has given a heartbeat interval, the agent never waits longer than that
interval between two tries at the core, so a restarted core sees every node again
within one interval of coming back (README). Its own backoff is capped by the interval,
and a channel that could not reach the core for a whole interval is replaced by a fresh
one: a gRPC channel's reconnect backoff grows past the interval on its own and cannot
be reset, while a new channel dials at once.

``core_address`` may list several core replicas (``a:50051,b:50051``): each node starts at the replica
its id hashes to (:func:`spread`), the channel fails over
by itself when its replica's connection drops (:mod:`netgpt.targets`), and whenever the agent finds
the core unreachable or silent it re-makes the channel starting at the next replica, so a replica
that hangs with its port open is left too. A node never needs a restart to move.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from collections.abc import Callable, Iterator

import grpc
import structlog

from netgpt.channels import open_channel
from netgpt.targets import rotated, split_addresses
from netgpt.tasks import cancel_and_wait
from netgpt.tls import Transport
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc

log = structlog.get_logger(__name__)

RPC_TIMEOUT_S = 5.0
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 2.0  # the cap before the core has given an interval (and for intervals longer than this)
MIN_REPLY_WAIT_S = 0.5  # a heartbeat reply later than max(interval, this) means the core is gone


def spread(node_id: str, replicas: int) -> int:
    """The replica a node starts at: nodes spread over the replicas by a stable hash of their id (random
    for a node the core will name), so N replicas share the beats instead of all going to the first."""
    if replicas <= 1:
        return 0
    return zlib.crc32(node_id.encode()) % replicas if node_id else random.randrange(replicas)


def retry_delays(cap_s: float) -> Iterator[float]:
    """Pauses between tries after fast failures: 0.1 s doubling, never above ``cap_s``."""
    delay = min(FIRST_BACKOFF_S, cap_s)
    while True:
        yield delay
        delay = min(delay * 2, cap_s)


class ControlPlaneAgent:
    def __init__(
        self,
        core_address: str,
        info: common_pb2.NodeInfo,
        load: Callable[[], common_pb2.NodeLoad],
        on_command: Callable[[cp_pb2.NodeCommand], None] = lambda command: None,
        transport: Transport | None = None,
    ) -> None:
        self.core_address = core_address
        self.transport = transport  # the node's certificate (None: the process default)
        self.info = info
        self._load = load
        self._on_command = on_command
        self.registered = asyncio.Event()
        self.registrations = 0  # how many times the core accepted us (tests watch re-registration)
        self.interval_s: float | None = None  # the heartbeat interval the core last gave
        self._task: asyncio.Task[None] | None = None
        self._replicas = split_addresses(core_address)
        self._turn = spread(info.node_id, len(self._replicas))  # which replica the channel tries first
        self._channel = open_channel(",".join(rotated(self._replicas, self._turn)), transport)
        self._stub = cp_grpc.ControlPlaneServiceStub(self._channel)

    def current_load(self) -> common_pb2.NodeLoad:
        """What the next heartbeat will report (also what the node's metrics endpoint shows)."""
        return self._load()

    @property
    def node_id(self) -> str:
        return self.info.node_id

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"cp-agent-{self.info.node_id}")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)  # its heartbeat loop uses wait_for, which can swallow one cancel
        await self._channel.close()

    def retry_cap_s(self) -> float:
        """The longest the agent waits before trying the core again: one heartbeat interval once known."""
        return MAX_BACKOFF_S if self.interval_s is None else min(self.interval_s, MAX_BACKOFF_S)

    async def _run(self) -> None:
        delays = retry_delays(self.retry_cap_s())
        windows = 0  # consecutive windows in which the core could not be reached
        while True:
            try:
                window_s = self.retry_cap_s()
                if not await self._core_reachable(window_s):
                    self.registered.clear()
                    windows += 1
                    (log.warning if windows == 1 else log.debug)(
                        "cp.core_unreachable", core=self.core_address, code="UNAVAILABLE", waited_s=window_s,
                        retry_in_s=0.0, windows=windows)
                    await self._reopen_channel(next_replica=True)  # dials at once; the window paced this try
                    continue
                windows = 0
                interval_s = await self._register()
                delays = retry_delays(self.retry_cap_s())
                await self._heartbeat(interval_s)
                delay = next(delays)  # the core ended the stream cleanly: register again
            except grpc.aio.AioRpcError as exc:
                self.registered.clear()
                delay = next(delays)
                log.warning("cp.core_unreachable", core=self.core_address, code=exc.code().name,
                            detail=exc.details(), retry_in_s=delay)
                await self._next_replica()
            except Exception as exc:  # timeouts, writes on a dead stream: never let the agent die
                self.registered.clear()
                delay = next(delays)
                log.warning("cp.heartbeat_broken", core=self.core_address, error=repr(exc), retry_in_s=delay)
                await self._next_replica()
            await asyncio.sleep(delay)

    async def _core_reachable(self, window_s: float) -> bool:
        """Whether the channel to the core connects within ``window_s`` (it dials now if idle)."""
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout=window_s)
        except TimeoutError:
            return False
        return True

    async def _next_replica(self) -> None:
        """With several core replicas, start the next channel at the next one (one core: keep the channel)."""
        if len(self._replicas) > 1:
            await self._reopen_channel(next_replica=True)

    async def _reopen_channel(self, next_replica: bool = False) -> None:
        if next_replica:
            self._turn += 1
        old = self._channel
        order = rotated(self._replicas, self._turn)
        if len(order) > 1:
            log.info("cp.core_replica_next", first=order[0], replicas=len(order))
        self._channel = open_channel(",".join(order), self.transport)
        self._stub = cp_grpc.ControlPlaneServiceStub(self._channel)
        await old.close()

    async def _register(self) -> float:
        request = cp_pb2.RegisterNodeRequest(node=self.info)
        # The channel was just seen READY: if it dropped since, fail fast and retry on the short schedule
        # rather than wait (wait_for_ready) on the channel's own, longer, reconnect backoff.
        reply = await self._stub.RegisterNode(request, timeout=RPC_TIMEOUT_S)
        self.info.node_id = reply.node_id
        self.registrations += 1
        self.registered.set()
        structlog.contextvars.bind_contextvars(node_id=reply.node_id)
        log.info("cp.registered", core=self.core_address, node_id=reply.node_id,
                 heartbeat_interval_ms=reply.heartbeat_interval_ms, registrations=self.registrations)
        self.interval_s = max(reply.heartbeat_interval_ms, 50) / 1000
        return self.interval_s

    async def _heartbeat(self, interval_s: float) -> None:
        """Send a beat every interval and apply the commands that come back; return when the stream ends."""
        call = self._stub.Heartbeat()
        sequence = 0
        try:
            while True:
                sequence += 1
                await call.write(cp_pb2.HeartbeatRequest(node_id=self.node_id, load=self._load(), sequence=sequence))
                # The core answers each beat at once; no answer within about an interval means it is gone.
                reply = await asyncio.wait_for(call.read(), timeout=max(interval_s, MIN_REPLY_WAIT_S))
                if reply is grpc.aio.EOF:
                    await call  # raises the status the core ended the stream with
                    return
                for command in reply.commands:
                    self._apply(command)
                await asyncio.sleep(interval_s)
        finally:
            call.cancel()

    def _apply(self, command: cp_pb2.NodeCommand) -> None:
        log.info("cp.command", command_id=command.command_id, kind=command.WhichOneof("command"))
        try:
            self._on_command(command)
        except Exception:  # a bad command must not kill the heartbeat loop
            log.exception("cp.command_failed", command_id=command.command_id)
