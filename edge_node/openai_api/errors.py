"""Errors in the OpenAI shape, ``{"error": {"message", "type", "param", "code"}}``, with the HTTP status
and error type of their status code's row in the one table (:data:`netgpt.status.HTTP_STATUSES`);
``code`` is the gRPC status name in lower case, so a client reads the same verdict on both APIs."""

from __future__ import annotations

from typing import Any

import grpc
import structlog
from starlette.responses import JSONResponse

from netgpt.errors import NetGptError, bounded
from netgpt.status import HttpStatus, http_status, status_code

log = structlog.get_logger(__name__)


def _message(exc: BaseException) -> str:
    if isinstance(exc, NetGptError):
        return bounded(str(exc))
    if isinstance(exc, grpc.aio.AioRpcError):  # a call to the core failed: its status says why
        return bounded(str(exc.details() or exc.code().name))
    return f"internal error: {type(exc).__name__}"


def error_body(exc: BaseException) -> tuple[HttpStatus, dict[str, Any]]:
    """The HTTP row and the OpenAI error object of ``exc``; anything not a domain error or a failed call is
    a bug, logged with its traceback."""
    row, code = http_status(exc), status_code(exc)
    if isinstance(exc, NetGptError | grpc.aio.AioRpcError):
        log.info("openai.rejected", status=row.status, code=code.name, reason=_message(exc))
    else:
        log.error("openai.failed", exc_info=exc)
    param = getattr(exc, "param", None)
    return row, {"error": {"message": _message(exc), "type": row.error_type,
                           "param": param if isinstance(param, str) else None, "code": code.name.lower()}}


def error_response(exc: BaseException) -> JSONResponse:
    row, body = error_body(exc)
    headers = {"Retry-After": str(row.retry_after_s)} if row.retry_after_s is not None else None
    return JSONResponse(body, status_code=row.status, headers=headers)
