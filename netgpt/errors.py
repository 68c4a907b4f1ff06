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


class AlreadyExists(NetGptError):
    code = grpc.StatusCode.ALREADY_EXISTS


class OutOfRange(NetGptError):
    code = grpc.StatusCode.OUT_OF_RANGE


class DataLoss(NetGptError):
    """Bytes were lost or corrupted in transit or on disk (size or sha256 mismatch)."""

    code = grpc.StatusCode.DATA_LOSS


class StartupError(Exception):
    """A daemon cannot start (bad model folder, bad config, port taken); one line for the operator."""


EXCERPT_CHARS = 48
MAX_STATUS_BYTES = 1024  # a status message past ~8 KiB of metadata turns into RESOURCE_EXHAUSTED


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """Client input quoted in an error message: at most ``limit`` characters, escaped to printable
    ASCII (``ascii()``), with the full length when cut. Every message that quotes input uses this."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return ascii(text)
    return f"{ascii(text[:limit])}... ({len(text)} characters)"


def bounded(message: str, limit: int = MAX_STATUS_BYTES) -> str:
    """``message`` cut to at most ``limit`` UTF-8 bytes: the last guard before a status goes out."""
    data = message.encode()
    if len(data) <= limit:
        return message
    return data[: limit - 3].decode(errors="ignore") + "..."


def one_line(exc: BaseException, limit: int = 300) -> str:
    """First non-empty line of an exception message, shortened for operator logs."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    # peft/torch put the useful detail ("size mismatch for ...") on the second line
    if len(lines) > 1 and text.endswith(":"):
        text = f"{text} {lines[1]}"
    return text if len(text) <= limit else text[: limit - 3] + "..."

