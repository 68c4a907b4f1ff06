"""The one table from domain errors to gRPC status codes, and from those to HTTP statuses.

The error interceptor (:mod:`netgpt.interceptors`) answers a servicer's :class:`NetGptError` with
its row; the access interceptor, peer fetches and the nodes' deploy and training reports read
the same rows. A subclass (``UndecodableRequest``, ``TrainingFailed``) takes the row of its
nearest listed ancestor.

HTTP APIs (the edge's OpenAI-compatible one) answer with the HTTP columns of the same status
code (:data:`HTTP_STATUSES`), so an error reads the same over gRPC and HTTP; errors that come
back from another daemon's gRPC call (an ``AioRpcError``) map by their code alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import grpc

from netgpt import errors
from netgpt.engine import ModelLoadError

Code = grpc.StatusCode

STATUS_CODES: Mapping[type[Exception], grpc.StatusCode] = MappingProxyType({
    errors.NetGptError: Code.UNKNOWN,
    errors.InvalidArgument: Code.INVALID_ARGUMENT,
    errors.NotFound: Code.NOT_FOUND,
    errors.FailedPrecondition: Code.FAILED_PRECONDITION,
    errors.ResourceExhausted: Code.RESOURCE_EXHAUSTED,
    errors.Unavailable: Code.UNAVAILABLE,
    errors.DeadlineExceeded: Code.DEADLINE_EXCEEDED,
    errors.AlreadyExists: Code.ALREADY_EXISTS,
    errors.OutOfRange: Code.OUT_OF_RANGE,
    errors.DataLoss: Code.DATA_LOSS,
    errors.Unauthenticated: Code.UNAUTHENTICATED,
    errors.PermissionDenied: Code.PERMISSION_DENIED,
    errors.Cancelled: Code.CANCELLED,
    errors.Aborted: Code.ABORTED,
    errors.Internal: Code.INTERNAL,
    # a model that cannot be used, as a node reports a failed deploy or training job; the
    # interceptor maps only NetGptError: anything else escaping a servicer is INTERNAL
    ModelLoadError: Code.FAILED_PRECONDITION,
})


def status_code(exc: BaseException) -> grpc.StatusCode:
    """The status ``exc`` is reported with: a failed call's own code, the row of the nearest class
    of ``exc`` in :data:`STATUS_CODES`, UNKNOWN for anything else."""
    if isinstance(exc, grpc.aio.AioRpcError):
        code: grpc.StatusCode = exc.code()
        return code
    for cls in type(exc).__mro__:
        found = STATUS_CODES.get(cls)
        if found is not None:
            return found
    return Code.UNKNOWN


@dataclass(frozen=True)
class HttpStatus:
    """How an HTTP API answers a status code: the HTTP status, the OpenAI error ``type``, and the
    ``Retry-After`` seconds worth waiting (None: retrying here will not help)."""

    status: int
    error_type: str
    retry_after_s: int | None = None


# The HTTP status of each gRPC code, as Google's HTTP mapping of google.rpc.Code (and grpc-gateway)
# has it; the error types follow the OpenAI-compatible servers' (OpenAI, llama.cpp).
# FAILED_PRECONDITION is the caller's to fix here (a session of a cell this edge does not serve, a
# model it cannot use): 400, not 500. Only INTERNAL, UNKNOWN and DATA_LOSS are the server's fault.
HTTP_STATUSES: Mapping[grpc.StatusCode, HttpStatus] = MappingProxyType({
    Code.INVALID_ARGUMENT: HttpStatus(400, "invalid_request_error"),
    Code.OUT_OF_RANGE: HttpStatus(400, "invalid_request_error"),
    Code.FAILED_PRECONDITION: HttpStatus(400, "invalid_request_error"),
    Code.UNAUTHENTICATED: HttpStatus(401, "authentication_error"),
    Code.PERMISSION_DENIED: HttpStatus(403, "permission_error"),
    Code.NOT_FOUND: HttpStatus(404, "not_found_error"),
    Code.ALREADY_EXISTS: HttpStatus(409, "conflict_error"),
    Code.ABORTED: HttpStatus(409, "conflict_error"),
    Code.RESOURCE_EXHAUSTED: HttpStatus(429, "rate_limit_error", retry_after_s=1),
    Code.CANCELLED: HttpStatus(499, "cancelled_error"),  # the client closed the request
    Code.UNKNOWN: HttpStatus(500, "server_error"),
    Code.INTERNAL: HttpStatus(500, "server_error"),
    Code.DATA_LOSS: HttpStatus(500, "server_error"),
    Code.UNIMPLEMENTED: HttpStatus(501, "not_implemented_error"),
    Code.UNAVAILABLE: HttpStatus(503, "unavailable_error", retry_after_s=1),  # draining, or a peer is down
    Code.DEADLINE_EXCEEDED: HttpStatus(504, "timeout_error"),
})


def http_status(exc: BaseException) -> HttpStatus:
    """The HTTP answer to ``exc``: the HTTP columns of its status code (500 for what has no row)."""
    return HTTP_STATUSES.get(status_code(exc), HTTP_STATUSES[Code.INTERNAL])
