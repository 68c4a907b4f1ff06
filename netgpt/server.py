"""One server factory for every daemon: health, reflection, error mapping, limits, graceful stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
import structlog
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from netgpt import tracing
from netgpt.access import AccessInterceptor, AuditLog, ProbeAccess, Rule
from netgpt.alloc import tune_for_transfers
from netgpt.config import DaemonSettings
from netgpt.crl import RevokedCertificates
from netgpt.errors import StartupError, Unavailable
from netgpt.interceptors import Behaviour, ErrorMappingInterceptor, WrappingInterceptor
from netgpt.metrics import DaemonMetrics
from netgpt.reloading import reload_all
from netgpt.tls import PLAINTEXT, Identity, Transport, is_loopback
from netgpt.ue_tokens import UeTokenVerifier

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


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
_REFLECTION_V1_FILE = "grpc/reflection/v1/reflection.proto"


def _register_reflection_v1_descriptor() -> None:
    """Put ``grpc/reflection/v1/reflection.proto`` in the default pool (once).

    grpcio-reflection ships only ``v1alpha``, but ``v1`` is the same protocol, message for
    message and field for field, under another package; current clients (grpcurl, Postman,
    grpc-java, grpc-go) ask ``v1`` first. The v1 file is derived from the v1alpha one, so
    ``describe grpc.reflection.v1.ServerReflection`` works like any other service.
    """
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(_REFLECTION_V1_FILE)
        return  # a newer grpcio-reflection (or another library) already registered it
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old, new = f".{proto.package}.", ".grpc.reflection.v1."
    proto.name, proto.package = _REFLECTION_V1_FILE, "grpc.reflection.v1"
    proto.options.Clear()
    proto.options.java_package = "io.grpc.reflection.v1"
    proto.options.java_outer_classname = "ServerReflectionProto"
    proto.options.java_multiple_files = True
    proto.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    for message in proto.message_type:
        for fld in message.field:
            if fld.type_name.startswith(old):
                fld.type_name = new + fld.type_name[len(old):]
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new, 1)
            method.output_type = method.output_type.replace(old, new, 1)
    pool.AddSerializedFile(proto.SerializeToString())


def _add_reflection(server: grpc.aio.Server, service_names: Sequence[str]) -> None:
    """Server reflection under both ``grpc.reflection.v1`` and the older ``v1alpha``.

    One servicer answers both: the messages are wire-identical, so the v1 method is the
    v1alpha implementation registered under the v1 service name.
    """
    _register_reflection_v1_descriptor()
    servicer = reflection.aio.ReflectionServicer([*service_names, REFLECTION_V1, reflection.SERVICE_NAME])
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1_method = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": v1_method}),))


class BindError(RuntimeError):
    """The listen address could not be bound (in use, bad host)."""


@dataclass
class Service:
    """A servicer and how to attach it: ``add(servicer, server)`` from the generated *_pb2_grpc."""

    full_name: str
    servicer: object
    add: Callable[[object, grpc.aio.Server], None]


# Always answered, even while draining: probes must see NOT_SERVING, not a refused connection.
_UNGATED_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


class DrainGate(WrappingInterceptor):
    """Counts in-flight application calls; once draining, refuses new ones with UNAVAILABLE.

    ``grpc.aio.Server.stop`` closes the listener at once, so a load balancer calling
    ``Health/Check`` during the grace period would get "connection refused" instead of
    NOT_SERVING. Draining here first keeps the port open (health and reflection keep
    answering) until the calls already in flight finish; only then is the server stopped.
    """

    def __init__(self) -> None:
        self.draining = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def wait_idle(self) -> None:
        await self._idle.wait()

    def enter(self) -> None:
        """Count a call in, or refuse it (Unavailable) once draining; every call entered must :meth:`leave`.
        Calls that are not gRPC (the edge's HTTP API) enter here too, so one drain waits for both."""
        if self.draining:
            raise Unavailable("server is shutting down; retry on another node")
        self._in_flight += 1
        self._idle.clear()

    async def _admit(self, context: Any) -> None:
        try:
            self.enter()
        except Unavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))

    def leave(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    def covers(self, method: str) -> bool:
        return not method.startswith(_UNGATED_PREFIXES)

    def wrap_stream(self, fn: Behaviour, method: str) -> Behaviour:
        async def stream(request_or_iterator: Any, context: Any) -> AsyncIterator[Any]:
            await self._admit(context)
            try:
                async for item in fn(request_or_iterator, context):
                    yield item
            finally:
                self.leave()

        return stream

    def wrap_unary(self, fn: Behaviour, method: str) -> Behaviour:
        async def unary(request_or_iterator: Any, context: Any) -> Any:
            await self._admit(context)
            try:
                return await fn(request_or_iterator, context)
            finally:
                self.leave()

        return unary


@dataclass
class NetGptServer:
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int
    host: str
    services: list[str] = field(default_factory=list)
    gate: DrainGate = field(default_factory=DrainGate)
    metrics: DaemonMetrics | None = None  # the daemon's Prometheus registry, when it serves one
    metrics_port: int = 0
    token_port: int = 0  # the port for callers without a client certificate (token_listen); 0: none
    revoked: RevokedCertificates | None = None  # the revocation list its access check reads (None: plaintext)
    identity: Identity | None = None  # its TLS identity (None: plaintext); a daemon's files are watched

    def serve_metrics(self, address: str) -> None:
        """Start ``/metrics`` on ``address`` (after the daemon registered its collectors)."""
        if self.metrics is not None and address:
            self.metrics_port = self.metrics.serve(address)
            log.info("metrics.serving", address=f"{_split_host(address)}:{self.metrics_port}")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def token_address(self) -> str:
        """host:port of the token port ("" when there is none)."""
        return f"{self.host}:{self.token_port}" if self.token_port else ""

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ["", *self.services]:
            await self.health.set(name, status)

    async def stop(self, grace_s: float = 5.0) -> None:
        """NOT_SERVING first (load balancers stop sending), then drain in-flight calls.

        During the drain the port stays open: ``Health/Check`` and ``Watch`` answer
        NOT_SERVING, new application calls get UNAVAILABLE, calls in flight run on. Once
        they are done, or ``grace_s`` is spent, the server stops and cancels what is left
        (by then only health watches and reflection streams, or calls that overran the grace).
        """
        await self.health.enter_graceful_shutdown()  # NOT_SERVING for every service, and it stays so
        self.gate.draining = True
        log.info("server.draining", address=self.address, grace_s=grace_s, in_flight=self.gate.in_flight)
        if grace_s > 0:
            try:
                await asyncio.wait_for(self.gate.wait_idle(), timeout=grace_s)
            except TimeoutError:
                log.warning("server.drain_timeout", address=self.address, grace_s=grace_s,
                            in_flight=self.gate.in_flight)
        await self.server.stop(0)
        if self.identity is not None and self.identity.source is not None:
            await self.identity.source.stop()
        if self.metrics is not None:
            self.metrics.stop()
        log.info("server.stopped", address=self.address)


@dataclass(frozen=True)
class Security:
    """How a server admits callers: its TLS identity (or plaintext), the access table, the audit log,
    and for callers without a client certificate: the UE token check and the second port they call.

    ``token_listen`` is a port with server-authenticated TLS only. grpcio's Python server can require a
    client certificate or not ask for one at all (``require_client_auth=False`` sends no certificate
    request, so certificates never arrive; the same with the ``dynamic_ssl_server_credentials`` that
    certificate renewal serves with): asking without requiring is not possible on one port. So
    the main port keeps mutual TLS, and callers without a certificate (UEs with a token, anonymous
    health probes) use this one, where every other call gets UNAUTHENTICATED from the access check.
    """

    transport: Transport
    rules: Mapping[str, Rule] = field(default_factory=dict)
    audit: AuditLog | None = None
    tokens: UeTokenVerifier | None = None
    token_listen: str = ""  # host:port; empty: no such port
    probes: ProbeAccess = field(default_factory=ProbeAccess)
    revoked: RevokedCertificates | None = None  # the CA's revocation list (None: plaintext, nothing to revoke)


DEVELOPMENT = Security(PLAINTEXT)  # loopback only; what servicer-level tests use


def daemon_security(settings: DaemonSettings, transport: Transport, rules: Mapping[str, Rule], audit: AuditLog,
                    tokens: UeTokenVerifier | None = None) -> Security:
    """A daemon's :class:`Security` from its settings (token port, anonymous probes)."""
    return Security(transport, rules, audit, tokens, settings.token_listen,
                    ProbeAccess(settings.anonymous_health, settings.anonymous_reflection),
                    revoked_certificates(settings, transport))


def revoked_certificates(settings: DaemonSettings, transport: Transport) -> RevokedCertificates | None:
    """The revocation list a TLS daemon checks peers against (its identity's, which its channels check
    servers against too): its ``tls_crl`` file, if set, to begin with."""
    if not isinstance(transport, Identity):
        return None
    revoked = transport.revoked if transport.revoked is not None else RevokedCertificates(transport.ca)
    if settings.tls_crl:
        revoked.load_file(Path(settings.tls_crl).expanduser())
    return revoked


def _bind(server: grpc.aio.Server, address: str, transport: Transport, client_certificates: bool = True) -> int:
    if isinstance(transport, Identity):
        credentials = transport.server_credentials(client_certificates)
        port: int = server.add_secure_port(address, credentials)
        return port
    if not client_certificates:
        raise StartupError(f"token_listen {address}: a port for UE tokens needs TLS; give the daemon TLS material")
    if not is_loopback(address):
        raise StartupError(f"refusing to serve plaintext on {address}: give the daemon TLS material "
                           "(--tls-ca/--tls-cert/--tls-key) or listen on loopback with --insecure")
    plain: int = server.add_insecure_port(address)
    return plain


def _split_host(address: str) -> str:
    host, _, _port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0"


async def start_server(address: str, services: Sequence[Service],
                       interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
                       security: Security = DEVELOPMENT, metrics: DaemonMetrics | None = None) -> NetGptServer:
    """Bind ``address`` (port 0 = ephemeral), register services + health + reflection, start.

    ``security`` says who may call (mutual TLS + the access table; plaintext only on loopback);
    ``interceptors`` run inside the access check and outside the error mapping (e.g. metrics).
    """
    tune_for_transfers()  # every daemon streams artifacts (the core's store, the nodes' blobs)
    gate = DrainGate()  # outermost: a draining server refuses new work before auth or anything else runs
    access = AccessInterceptor(rules=security.rules, transport=security.transport, audit=security.audit,
                               tokens=security.tokens, probes=security.probes, revoked=security.revoked)
    counted = [metrics.rpc] if metrics is not None else []
    traced = tracing.server_interceptor()  # continues the caller's trace: refusals show in it too
    server = grpc.aio.server(interceptors=[gate, traced, access, *counted, *interceptors, ErrorMappingInterceptor()],
                             options=SERVER_OPTIONS)
    for service in services:
        service.add(service.servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [s.full_name for s in services]
    _add_reflection(server, [*names, health.SERVICE_NAME])
    port = _bind_checked(server, address, security.transport)
    token_port = _bind_checked(server, security.token_listen, security.transport, client_certificates=False) \
        if security.token_listen else 0
    await server.start()
    tls = security.transport
    identity = tls if isinstance(tls, Identity) else None
    handle = NetGptServer(server=server, health=health_servicer, port=port, host=_split_host(address), services=names,
                          gate=gate, metrics=metrics, token_port=token_port, revoked=security.revoked,
                          identity=identity)
    if identity is not None and identity.source is not None:
        identity.source.start()  # new certificate files are taken while serving
    await handle.set_serving(True)
    log.info("server.started", address=handle.address, services=names,
             tls=f"mutual ({tls.role}:{tls.name})" if isinstance(tls, Identity) else "off (loopback development)",
             token_address=handle.token_address or None, ue_tokens=security.tokens is not None)
    return handle


def _bind_checked(server: grpc.aio.Server, address: str, transport: Transport, client_certificates: bool = True) -> int:
    try:
        port = _bind(server, address, transport, client_certificates)
    except RuntimeError as exc:  # grpc raises on some bind failures instead of returning 0
        raise BindError(f"cannot listen on {address}: {exc}") from exc
    if port == 0:
        raise BindError(f"cannot listen on {address}: address in use or invalid")
    return port


def on_sighup() -> None:
    """SIGHUP: every daemon of the process reads its certificate, key and CA bundle again. New handshakes
    and new calls use them; connections and streams open now are not touched; bad files are logged
    (``tls.reload_failed``) and the old ones stay in use."""
    log.info("server.sighup", reloaded=reload_all("SIGHUP"))


class Stoppable(Protocol):
    """What :func:`serve_until_signalled` needs of a daemon: a NetGptServer, or a core's or node's handle."""

    @property
    def address(self) -> str: ...

    async def stop(self, grace_s: float = 5.0) -> None: ...


async def serve_until_signalled(handle: Stoppable, grace_s: float,
                                on_stop: Callable[[], object] | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then NOT_SERVING → drain → return (the process exits 0). SIGHUP reads
    the TLS files again (:func:`on_sighup`) and serves on."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    await stop.wait()
    log.info("server.signal", address=handle.address)
    if on_stop is not None:
        result = on_stop()
        if asyncio.iscoroutine(result):
            await result
    await handle.stop(grace_s)
