"""One server factory for every daemon: health, reflection, error mapping, limits, graceful stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from netgpt.interceptors import ErrorMappingInterceptor

log = structlog.get_logger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # chunks are <= 1 MiB; this leaves headroom for framing

SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.so_reuseport", 0),  # two daemons must never silently share a port
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


class BindError(RuntimeError):
    """The listen address could not be bound (in use, bad host)."""


@dataclass
class Service:
    """A servicer and how to attach it: ``add(servicer, server)`` from the generated *_pb2_grpc."""

    full_name: str
    servicer: object
    add: Callable[[object, grpc.aio.Server], None]


@dataclass
class NetGptServer:
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int
    host: str
    services: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ["", *self.services]:
            await self.health.set(name, status)

    async def stop(self, grace_s: float = 5.0) -> None:
        """NOT_SERVING first (load balancers stop sending), then drain in-flight calls."""
        await self.set_serving(False)
        log.info("server.draining", address=self.address, grace_s=grace_s)
        await self.server.stop(grace_s)
        log.info("server.stopped", address=self.address)


def _split_host(address: str) -> str:
    host, _, _port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0"


async def start_server(address: str, services: Sequence[Service],
                       interceptors: Sequence[grpc.aio.ServerInterceptor] = ()) -> NetGptServer:
    """Bind ``address`` (port 0 = ephemeral), register services + health + reflection, start.

    ``interceptors`` run outside the error mapping (e.g. auth, metrics, auditing).
    """
    server = grpc.aio.server(interceptors=[*interceptors, ErrorMappingInterceptor()], options=SERVER_OPTIONS)
    for service in services:
        service.add(service.servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [s.full_name for s in services]
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc raises on some bind failures instead of returning 0
        raise BindError(f"cannot listen on {address}: {exc}") from exc
    if port == 0:
        raise BindError(f"cannot listen on {address}: address in use or invalid")
    await server.start()
    handle = NetGptServer(server=server, health=health_servicer, port=port, host=_split_host(address), services=names)
    await handle.set_serving(True)
    log.info("server.started", address=handle.address, services=names)
    return handle


async def serve_until_signalled(handle: NetGptServer, grace_s: float, on_stop: Callable[[], object] | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then NOT_SERVING → drain → return (the process exits 0)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("server.signal", address=handle.address)
    if on_stop is not None:
        result = on_stop()
        if asyncio.iscoroutine(result):
            await result
    await handle.stop(grace_s)
