"""One channel factory: keepalive, message limits, retries for idempotent calls, deadlines."""

from __future__ import annotations

import json

import grpc

from netgpt.server import MAX_MESSAGE_BYTES

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


def open_channel(address: str) -> grpc.aio.Channel:
    """An insecure aio channel to ``address`` (host:port) with the project defaults."""
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


def remaining_s(context: grpc.aio.ServicerContext, cap_s: float | None = None) -> float | None:
    """Time left on the caller's deadline, to pass downstream (``None`` = caller set none)."""
    left: float | None = context.time_remaining()
    if left is None:
        return cap_s
    return left if cap_s is None else min(left, cap_s)
