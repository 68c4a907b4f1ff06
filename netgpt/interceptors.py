"""The one place where domain exceptions become gRPC statuses, and where request bodies are checked.

Every request body is decoded by :func:`checked_deserializer`: a body that does not parse, or
whose fields break a limit of :mod:`netgpt.validate`, never reaches a servicer. gRPC calls the
deserializer before any behaviour runs and cannot be told a status from there, so:

- for a single request, the deserializer hands on a blank message of the request type and
  remembers the problem in a context variable of the RPC's task; the behaviour wrapper finds
  it and answers INVALID_ARGUMENT (access checks that run before it see only the blank);
- for a request stream, the deserializer raises :class:`InvalidArgument` from the iterator the
  servicer reads, which the wrapper maps like any domain error.

Undecodable bodies are logged as one line, at most a few per minute per server.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

from netgpt.errors import InvalidArgument, NetGptError, bounded
from netgpt.status import status_code
from netgpt.validate import check_request

log = structlog.get_logger(__name__)


class RateLimitedLog:
    """At most ``per_window`` lines per ``window_s``; the first line of a later window says how
    many were suppressed in between."""

    def __init__(self, per_window: int = 5, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_window, self.window_s, self._clock = per_window, window_s, clock
        self._window_start = -float("inf")
        self._logged = self._suppressed = 0
        self._lock = threading.Lock()

    def warning(self, event: str, **fields: Any) -> None:
        with self._lock:
            now = self._clock()
            if now - self._window_start >= self.window_s:
                self._window_start, self._logged = now, 0
            if self._logged >= self.per_window:
                self._suppressed += 1
                return
            self._logged += 1
            if self._suppressed:
                fields["suppressed"], self._suppressed = self._suppressed, 0
        log.warning(event, **fields)


undecodable_log = RateLimitedLog()


class UndecodableRequest(InvalidArgument):
    """The request body is not a valid message of the method's request type (logged on its own)."""


# (the blank message handed on, the problem) for the single request of the RPC this task serves
_rejected: contextvars.ContextVar[tuple[Message, InvalidArgument] | None] = contextvars.ContextVar(
    "netgpt_rejected_request", default=None)


def rejection(request: Any) -> InvalidArgument | None:
    """The problem :func:`checked_deserializer` found with ``request``, if this is its blank stand-in."""
    found = _rejected.get()
    return found[1] if found is not None and found[0] is request else None


def _request_class(method: str) -> type[Message] | None:
    """The generated request class of ``/package.Service/Method`` (None when the pool does not know it)."""
    try:
        descriptor = descriptor_pool.Default().FindMethodByName(method.lstrip("/").replace("/", "."))
    except KeyError:
        return None
    return message_factory.GetMessageClass(descriptor.input_type)


def checked_deserializer(parse: Callable[[bytes], Any], method: str, streaming: bool) -> Callable[[bytes], Any]:
    """``parse`` whose results have passed :func:`netgpt.validate.check_request` (see the module doc)."""
    request_class = _request_class(method)
    type_name = request_class.DESCRIPTOR.name if request_class is not None else "request"

    def deserialize(raw: bytes) -> Any:
        try:
            message = parse(raw)
        except Exception as exc:  # DecodeError, or a parser's RecursionError on absurd nesting
            undecodable_log.warning("rpc.undecodable", method=method, bytes=len(raw), error=type(exc).__name__)
            problem: InvalidArgument = UndecodableRequest(
                f"the request body is not a valid {type_name} ({len(raw)} bytes); encode it with the "
                "netgpt.v1 protos")
        else:
            if not isinstance(message, Message):
                return message  # a hand-decoded chunk (cmp.transfer_io.ChunkView): nothing to bound
            try:
                check_request(message)
                return message
            except InvalidArgument as exc:
                problem = exc
        if streaming or request_class is None:
            raise problem
        blank = request_class()
        _rejected.set((blank, problem))
        return blank

    return deserialize


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException, method: str) -> None:
    if isinstance(exc, NetGptError):
        message, code = bounded(str(exc)), status_code(exc)
        if not isinstance(exc, UndecodableRequest):  # logged, rate-limited, when it was decoded
            log.info("rpc.rejected", method=method, code=code.name, reason=message)
        await context.abort(code, message)
    log.exception("rpc.failed", method=method)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")


def _is_abort(exc: BaseException) -> bool:
    # context.abort() raises a private exception type; let it and cancellation through.
    return isinstance(exc, asyncio.CancelledError) or type(exc).__name__ == "AbortError"


Behaviour = Callable[..., Any]  # a gRPC method behaviour: (request or request iterator, context) -> reply


def _wrap_unary(fn: Behaviour, method: str) -> Behaviour:
    async def wrapper(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            problem = rejection(request_or_iterator)
            if problem is not None:
                raise problem
            return await fn(request_or_iterator, context)
        except BaseException as exc:
            if _is_abort(exc):
                raise
            await _abort(context, exc, method)

    return wrapper


def _wrap_stream(fn: Behaviour, method: str) -> Behaviour:
    async def wrapper(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            problem = rejection(request_or_iterator)
            if problem is not None:
                raise problem
            async for item in fn(request_or_iterator, context):
                yield item
        except BaseException as exc:
            if _is_abort(exc) or isinstance(exc, GeneratorExit):
                raise
            await _abort(context, exc, method)

    return wrapper


def rewrap(handler: grpc.RpcMethodHandler, unary: Callable[[Behaviour], Behaviour],
           stream: Callable[[Behaviour], Behaviour]) -> grpc.RpcMethodHandler:
    """``handler`` with its behaviour wrapped: by ``unary`` for single replies, ``stream`` for streamed ones."""
    kwargs = dict(request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **kwargs)
    # a streamed reply is an async generator, or a coroutine that writes with context.write (grpcio's
    # own health Watch): that one is wrapped as a coroutine
    if handler.unary_stream:
        fn = handler.unary_stream
        return grpc.unary_stream_rpc_method_handler((stream if inspect.isasyncgenfunction(fn) else unary)(fn),
                                                    **kwargs)
    fn = handler.stream_stream
    return grpc.stream_stream_rpc_method_handler((stream if inspect.isasyncgenfunction(fn) else unary)(fn), **kwargs)


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    """Wraps the behaviour of every method it :meth:`covers`; subclasses say how."""

    def covers(self, method: str) -> bool:
        return True

    def wrap_unary(self, fn: Behaviour, method: str) -> Behaviour:
        return fn

    def wrap_stream(self, fn: Behaviour, method: str) -> Behaviour:
        return fn

    def prepare(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """``handler`` before its behaviour is wrapped (e.g. with another request deserializer)."""
        return handler

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not self.covers(method):
            return handler
        handler = self.prepare(handler, method)
        return rewrap(handler, lambda fn: self.wrap_unary(fn, method), lambda fn: self.wrap_stream(fn, method))


COVERED_PREFIXES = ("/netgpt.", "/grpc.health.v1.", "/grpc.reflection.")


class ErrorMappingInterceptor(WrappingInterceptor):
    """Checks every request body (:func:`checked_deserializer`) and maps :class:`NetGptError` to its
    status code (:data:`netgpt.status.STATUS_CODES`); anything else is INTERNAL and logged."""

    def covers(self, method: str) -> bool:
        # grpcio's own health and reflection servicers too: they answer an undecodable body with
        # UNKNOWN ("Exception deserializing request!"); wrapped, it is INVALID_ARGUMENT like ours
        return method.startswith(COVERED_PREFIXES)

    def prepare(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if handler.request_deserializer is None:
            return handler
        deserialize = checked_deserializer(handler.request_deserializer, method, handler.request_streaming)
        return handler._replace(request_deserializer=deserialize)

    def wrap_unary(self, fn: Behaviour, method: str) -> Behaviour:
        return _wrap_unary(fn, method)

    def wrap_stream(self, fn: Behaviour, method: str) -> Behaviour:
        return _wrap_stream(fn, method)
