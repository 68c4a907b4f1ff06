"""The one place where domain exceptions become gRPC statuses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog

from netgpt.errors import NetGptError

log = structlog.get_logger(__name__)


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException, method: str) -> None:
    if isinstance(exc, NetGptError):
        log.info("rpc.rejected", method=method, code=exc.code.name, reason=str(exc))
        await context.abort(exc.code, str(exc))
    log.exception("rpc.failed", method=method)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")


def _is_abort(exc: BaseException) -> bool:
    # context.abort() raises a private exception type; let it and cancellation through.
    return isinstance(exc, asyncio.CancelledError) or type(exc).__name__ == "AbortError"


Behaviour = Callable[..., Any]  # a gRPC method behaviour: (request or request iterator, context) -> reply


def _wrap_unary(fn: Behaviour, method: str) -> Behaviour:
    async def wrapper(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await fn(request_or_iterator, context)
        except BaseException as exc:
            if _is_abort(exc):
                raise
            await _abort(context, exc, method)

    return wrapper


def _wrap_stream(fn: Behaviour, method: str) -> Behaviour:
    async def wrapper(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
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
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream), **kwargs)
    return grpc.stream_stream_rpc_method_handler(stream(handler.stream_stream), **kwargs)


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    """Wraps the behaviour of every method it :meth:`covers`; subclasses say how."""

    def covers(self, method: str) -> bool:
        return True

    def wrap_unary(self, fn: Behaviour, method: str) -> Behaviour:
        return fn

    def wrap_stream(self, fn: Behaviour, method: str) -> Behaviour:
        return fn

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not self.covers(method):
            return handler
        return rewrap(handler, lambda fn: self.wrap_unary(fn, method), lambda fn: self.wrap_stream(fn, method))


class ErrorMappingInterceptor(WrappingInterceptor):
    """Maps :class:`NetGptError` to its status code; anything else is INTERNAL and logged."""

    def covers(self, method: str) -> bool:
        return method.startswith("/netgpt.")  # health and reflection handle their own errors

    def wrap_unary(self, fn: Behaviour, method: str) -> Behaviour:
        return _wrap_unary(fn, method)

    def wrap_stream(self, fn: Behaviour, method: str) -> Behaviour:
        return _wrap_stream(fn, method)
