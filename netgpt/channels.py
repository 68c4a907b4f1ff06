"""One channel factory: keepalive, message limits, retries for idempotent calls, deadlines."""

from __future__ import annotations

import json

import grpc

from netgpt import tracing
from netgpt.errors import StartupError
from netgpt.reloading_channel import ReloadingChannel
from netgpt.server import MAX_MESSAGE_BYTES
from netgpt.server_check import ServerCheck, server_check_interceptors
from netgpt.targets import channel_target
from netgpt.tls import Bearer, Identity, Transport

DEFAULT_TIMEOUT_S = 10.0

# Retry only calls that are safe to repeat; never Generate (it streams and costs compute).
_IDEMPOTENT = [
    {"service": "netgpt.v1.ControlPlaneService", "method": m}
    for m in ("RegisterNode", "GetSession", "ListNodes", "ReleaseSession")
] + [{"service": "netgpt.v1.ComputePlaneService", "method": "ListModels"}]

SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": _IDEMPOTENT,
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)

CHANNEL_OPTIONS: list[tuple[str, object]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.enable_retries", 1),
    ("grpc.service_config", SERVICE_CONFIG),
    # Reconnect quickly after a peer restarts (the default backoff grows to minutes).
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


_default: list[Transport] = []  # the process's client identity (the CLI's flags; the test suite's operator)


def set_default_transport(transport: Transport | None) -> None:
    """The identity ``open_channel`` uses when none is given: one per client process (the CLI, a
    script). Daemons never rely on it: each passes its own node identity explicitly."""
    _default[:] = [] if transport is None else [transport]


def has_default_transport() -> bool:
    return bool(_default)


def default_transport() -> Transport:
    if not _default:
        raise StartupError("no client identity: give --tls-ca/--tls-cert/--tls-key (or NETGPT_TLS_CA, NETGPT_TLS_CERT, "
                           "NETGPT_TLS_KEY), or --insecure for a loopback development cluster")
    return _default[0]


def open_channel(address: str, transport: Transport | Bearer | None = None) -> grpc.aio.Channel:
    """An aio channel to ``address`` (host:port, or comma-separated replicas that it fails over between)
    with the project defaults: mutual TLS with ``transport``'s certificate (the process default when
    None), TLS with a UE token (:class:`Bearer`, to a ``token_listen`` port), or plaintext when it is
    PLAINTEXT.

    A daemon's identity (watched files, a revocation list) gives a :class:`ReloadingChannel`: new calls
    use the newest certificate files, and the server's certificate is checked against the list
    (:mod:`netgpt.server_check`)."""
    transport = default_transport() if transport is None else transport
    traced = tracing.client_interceptors()  # the caller's trace context goes out as traceparent
    target, extra = channel_target(address)  # several comma-separated addresses: fail-over (netgpt.targets)
    options = CHANNEL_OPTIONS + extra
    if isinstance(transport, Identity) and transport.source is not None:
        checks = server_check_interceptors(ServerCheck(address, transport)) if transport.revoked is not None else []
        return ReloadingChannel(transport.source, lambda identity: grpc.aio.secure_channel(
            target, identity.channel_credentials(), options=options, interceptors=[*traced, *checks]))
    if isinstance(transport, Identity | Bearer):
        return grpc.aio.secure_channel(target, transport.channel_credentials(), options=options, interceptors=traced)
    return grpc.aio.insecure_channel(target, options=options, interceptors=traced)
