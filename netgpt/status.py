"""The one table from domain errors to gRPC status codes.

The error interceptor (:mod:`netgpt.interceptors`) answers a servicer's :class:`NetGptError` with
its row; the access interceptor, peer fetches and the nodes' deploy and training reports read
the same rows. A subclass (``UndecodableRequest``, ``TrainingFailed``) takes the row of its
nearest listed ancestor.
"""

from __future__ import annotations

from collections.abc import Mapping
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
