"""Node-side control-plane agent: register with the core, heartbeat load, take commands.

The agent never gives up: if the core is down or restarts, the heartbeat stream
breaks (or the core answers NOT_FOUND for a node it forgot) and the agent registers
again with a short backoff, keeping its node id. That is what lets the core keep
its registry in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import structlog

from netgpt.channels import open_channel
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc

log = structlog.get_logger(__name__)

RPC_TIMEOUT_S = 5.0
MAX_BACKOFF_S = 2.0


class ControlPlaneAgent:
    def __init__(
        self,
        core_address: str,
        info: common_pb2.NodeInfo,
        load: Callable[[], common_pb2.NodeLoad],
        on_command: Callable[[cp_pb2.NodeCommand], None] = lambda command: None,
    ) -> None:
        self.core_address = core_address
        self.info = info
        self._load = load
        self._on_command = on_command
        self.registered = asyncio.Event()
        self.registrations = 0  # how many times the core accepted us (tests watch re-registration)
        self._task: asyncio.Task | None = None
        self._channel = open_channel(core_address)
        self._stub = cp_grpc.ControlPlaneServiceStub(self._channel)

    @property
    def node_id(self) -> str:
        return self.info.node_id

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"cp-agent-{self.info.node_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._channel.close()

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                interval_s = await self._register()
                backoff = 0.1
                await self._heartbeat(interval_s)
            except grpc.aio.AioRpcError as exc:
                self.registered.clear()
                log.warning("cp.core_unreachable", core=self.core_address, code=exc.code().name,
                            detail=exc.details(), retry_in_s=backoff)
            except Exception as exc:  # timeouts, writes on a dead stream: never let the agent die
                self.registered.clear()
                log.warning("cp.heartbeat_broken", core=self.core_address, error=repr(exc), retry_in_s=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _register(self) -> float:
        request = cp_pb2.RegisterNodeRequest(node=self.info)
        reply = await self._stub.RegisterNode(request, timeout=RPC_TIMEOUT_S, wait_for_ready=True)
        self.info.node_id = reply.node_id
        self.registrations += 1
        self.registered.set()
        structlog.contextvars.bind_contextvars(node_id=reply.node_id)
        log.info("cp.registered", core=self.core_address, node_id=reply.node_id,
                 heartbeat_interval_ms=reply.heartbeat_interval_ms, registrations=self.registrations)
        return max(reply.heartbeat_interval_ms, 50) / 1000

    async def _heartbeat(self, interval_s: float) -> None:
        """Send a beat every interval and apply the commands that come back; return when the stream ends."""
        call = self._stub.Heartbeat()
        sequence = 0
        try:
            while True:
                sequence += 1
                await call.write(cp_pb2.HeartbeatRequest(node_id=self.node_id, load=self._load(), sequence=sequence))
                reply = await asyncio.wait_for(call.read(), timeout=interval_s * 3 + RPC_TIMEOUT_S)
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
