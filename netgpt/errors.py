"""Domain errors. Domain code raises these; one interceptor turns them into gRPC statuses."""

from __future__ import annotations

import grpc


class NetGptError(Exception):
    """Base class: ``code`` is the gRPC status the caller sees, the message is shown verbatim."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN


class InvalidArgument(NetGptError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(NetGptError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(NetGptError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(NetGptError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(NetGptError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(NetGptError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class StartupError(Exception):
    """A daemon cannot start (bad model folder, bad config, port taken); one line for the operator."""
