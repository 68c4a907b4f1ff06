"""Domain errors. Domain code raises these; one table beside the interceptor (:mod:`netgpt.status`)
says which gRPC status each becomes, so nothing here knows of gRPC."""

from __future__ import annotations


class NetGptError(Exception):
    """Base class: the caller sees the status :mod:`netgpt.status` maps the class to, and the message verbatim."""


class InvalidArgument(NetGptError):
    pass


class NotFound(NetGptError):
    pass


class FailedPrecondition(NetGptError):
    pass


class ResourceExhausted(NetGptError):
    pass


class Unavailable(NetGptError):
    pass


class DeadlineExceeded(NetGptError):
    pass


class AlreadyExists(NetGptError):
    pass


class OutOfRange(NetGptError):
    pass


class DataLoss(NetGptError):
    """Bytes were lost or corrupted in transit or on disk (size or sha256 mismatch)."""


class Unauthenticated(NetGptError):
    """The caller presented no usable identity (no certificate, or one naming no role)."""


class PermissionDenied(NetGptError):
    """The caller's role, or the identity it is bound to, may not make this call."""


class Cancelled(NetGptError):
    """Stopped on request before it finished."""


class Aborted(NetGptError):
    """Could not finish for a reason that is not the caller's input (e.g. training diverged)."""


class Internal(NetGptError):
    """A fault of the server, not of the request (a bug): the message says where, the log has the rest."""


def restated(exc: NetGptError, message: str) -> NetGptError:
    """``message`` (``exc``'s own with context added, say) as an error of the nearest class of this module
    that ``exc`` is, so it keeps its status row (a subclass elsewhere may mean more than its message)."""
    kind = next(c for c in type(exc).__mro__ if c.__module__ == __name__ and issubclass(c, NetGptError))
    return kind(message)


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

