"""One HTTP server factory beside the gRPC one (:mod:`netgpt.server`): an ASGI app served by uvicorn
inside the daemon's own asyncio loop, started and stopped with the daemon.

- The daemon keeps SIGTERM: uvicorn's own signal handling is off, the daemon's stop stops this server.
- The socket is bound here (port 0 = ephemeral, the bound port read back, no ``SO_REUSEPORT``), so a
  taken port is a one-line :class:`StartupError` before anything serves.
- With TLS (the daemon's own certificate and key) the server asks every caller for a client
  certificate, verified against the daemon's CA, but does not require one at the handshake: a caller
  without one reaches the app and gets its 401 rather than a failed handshake. uvicorn has no ASGI
  TLS extension, so the verified certificate travels in the request scope's ``state``
  (:func:`peer_certificate`). Without TLS, loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from netgpt.errors import StartupError
from netgpt.tls import Identity, is_loopback

log = structlog.get_logger(__name__)

_PEER_CERTIFICATE = "netgpt.peer_certificate"
_START_POLL_S = 0.01


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of the daemon's identity: the CA callers must chain to, its certificate and key."""

    ca: str
    cert: str
    key: str


def peer_certificate(scope: Mapping[str, Any]) -> bytes | None:
    """The caller's verified client certificate (PEM) on a TLS connection, else None."""
    state = scope.get("state") or {}
    found = state.get(_PEER_CERTIFICATE)
    return found if isinstance(found, bytes) else None


class _CertifyingH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, handing each request of a connection that connection's client
    certificate (asyncio calls ``connection_made`` once the TLS handshake has verified it)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:  # per connection: the scope's state is a copy of this mapping
            self.app_state = {**self.app_state, _PEER_CERTIFICATE: ssl.DER_cert_to_PEM_cert(der).encode()}


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the daemon owns SIGTERM and SIGINT, and stops this server itself


@dataclass
class HttpServer:
    server: uvicorn.Server
    serving: asyncio.Task[None]
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def use_identity(self, identity: Identity) -> None:
        """New HTTPS connections present ``identity``'s certificate (the daemon reloaded its files) and
        accept clients of its CA bundle. Python's ``ssl`` can add CAs to a live context but not drop
        one: a CA taken out of the bundle is still trusted here until the daemon restarts."""
        if self.server.config.ssl is not None:
            identity.load_into(self.server.config.ssl)
            log.info("http.tls_reloaded", address=self.address)

    async def close(self) -> None:
        """Stop accepting, let requests in flight finish (up to the grace given at start), then return."""
        self.server.should_exit = True
        await asyncio.gather(self.serving, return_exceptions=True)
        log.info("http.stopped", address=self.address)


def _bind(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        family, kind, proto, _, where = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM,
                                                           flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, ValueError) as exc:
        raise StartupError(f"HTTP: cannot listen on {address}: {exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT only: Linux never shares a listener
        sock.bind(where)
    except OSError as exc:
        sock.close()
        raise StartupError(f"HTTP: cannot listen on {address}: {exc.strerror or exc}") from exc
    return sock


async def start_http_server(address: str, app: Any, tls: TlsFiles | None, grace_s: float = 1.0) -> HttpServer:
    """Serve the ASGI ``app`` on ``address`` (HTTPS with ``tls``; plaintext, loopback only, without)."""
    if tls is None and not is_loopback(address):
        raise StartupError(f"refusing to serve plaintext HTTP on {address}: give the daemon TLS material "
                           "or listen on loopback with --insecure")
    sock = _bind(address)
    host, port = sock.getsockname()[:2]
    secure: dict[str, Any] = {} if tls is None else {
        "ssl_certfile": tls.cert, "ssl_keyfile": tls.key, "ssl_ca_certs": tls.ca, "ssl_cert_reqs": ssl.CERT_OPTIONAL}
    config = uvicorn.Config(app, http=_CertifyingH11, lifespan="off", log_config=None, access_log=False,
                            server_header=False, timeout_graceful_shutdown=max(1, round(grace_s)), **secure)
    try:
        config.load()  # the certificate and key are read here, before anything serves
    except (OSError, ssl.SSLError) as exc:
        sock.close()
        raise StartupError(f"HTTP on {address}: cannot load the TLS material: {exc}") from exc
    server = _EmbeddedServer(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # uvicorn signals nothing else; its startup takes a few ms
        if serving.done():
            sock.close()
            serving.result()  # what stopped it
            raise StartupError(f"HTTP: cannot serve on {address}")
        await asyncio.sleep(_START_POLL_S)
    handle = HttpServer(server, serving, host, port)
    log.info("http.started", address=handle.address, tls="on (client certificates asked)" if tls else "off (loopback)")
    return handle
