"""Clients check the *server's* certificate against the CA's revocation list too.

gRPC Python gives a client no hold on the certificate a server presents: ``ssl_channel_credentials``
takes no CRL and no verification callback, and a client call has no auth context (only a server's
``ServicerContext`` has one). So a daemon's channel reads the certificate itself: before its first call
once the daemon holds a list, and again before the first call after a newer list arrived, it makes
one TLS handshake of its own to the same address (Python's ``ssl``, the daemon's certificate and CA
bundle, ALPN ``h2``) and looks the served certificate's serial up in the list. A revoked server gets no
call: UNAVAILABLE, "... is revoked" (what a failed TLS handshake gives, and no retry, as it is final).

Why this is sound enough: the party to fear is one holding a revoked certificate's key. To pass the
check it must present a certificate of the CA that is not revoked, and it has none. What it cannot
cover: a name that several servers answer behind a balancer (the check reads one of them), and a
connection gRPC reopens to the address between two lists (the check ran for the address, not per
connection). A list of replicas (``a:1,b:2``) is refused when any of them presents a revoked
certificate. The daemon gets the list from the core with its heartbeats (``netgpt.crl``); clients
without a list (the CLI, a UE) check nothing, as before.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import grpc
import structlog
from cryptography import x509

from netgpt.targets import host_port, split_addresses
from netgpt.tls import Identity
from netgpt.tracing import CLIENT_KINDS

log = structlog.get_logger(__name__)

HANDSHAKE_TIMEOUT_S = 5.0


async def served_serial(address: str, identity: Identity) -> int | None:
    """The serial of the certificate the server at ``address`` presents to ``identity`` (None: no handshake)."""
    host, port = host_port(address)
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=identity.live().ssl_client_context, server_hostname=host or None),
            timeout=HANDSHAKE_TIMEOUT_S)
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        log.info("tls.server_check_failed", address=address, error=str(exc) or type(exc).__name__)
        return None
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.transport.abort()  # a TLS close waits up to 30 s for the server's close_notify; nothing is owed
    return x509.load_der_x509_certificate(der).serial_number if der else None


class ServerCheck:
    """The revocation check of the server at ``address``, for one channel (its result is kept per list)."""

    def __init__(self, address: str, identity: Identity) -> None:
        self.address = address
        self._identity = identity
        self._checked = 0  # the number of the list the server was last checked against (0: none held)
        self._refusal: str | None = None
        self._lock = asyncio.Lock()

    async def check(self) -> None:
        """Raise UNAVAILABLE when the server's certificate is revoked (reading it first if the list is newer)."""
        revoked = self._identity.revoked
        if revoked is not None and revoked.number != self._checked:
            async with self._lock:
                number = revoked.number
                if number != self._checked:
                    served = [(address, await served_serial(address, self._identity))
                              for address in split_addresses(self.address)]
                    if any(serial is not None for _, serial in served):  # else gRPC's own call says it is down
                        self._refusal = next((f"the server at {address} presents certificate serial {serial}, "
                                              f"which is revoked (revocation list {number})"
                                              for address, serial in served if revoked.revoked(serial)), None)
                        self._checked = number
                        if self._refusal:
                            log.warning("tls.server_revoked", reason=self._refusal)
        if self._refusal is not None:
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                       details=self._refusal)


def server_check_interceptors(check: ServerCheck) -> list[grpc.aio.ClientInterceptor]:
    """One client interceptor per kind of call, each running ``check`` before the call goes out."""

    async def intercept(self: object, continuation: Any, client_call_details: grpc.aio.ClientCallDetails,
                        request: Any) -> Any:
        await check.check()
        return await continuation(client_call_details, request)

    return [type(f"ServerCheck{kind.__name__}", (kind,), {hook: intercept})() for kind, hook in CLIENT_KINDS]
