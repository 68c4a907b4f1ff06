"""The edge's OpenAI-compatible HTTP API: a Starlette app, an adapter over the same generation call as
the gRPC ``Generate`` (:class:`edge_node.serving.generate_call.EdgeGenerate`).

``POST /v1/chat/completions`` and ``POST /v1/completions`` (streamed as server-sent events with
``"stream": true``, ``data: [DONE]`` last) and ``GET /v1/models``. A call is checked as its gRPC
counterpart would be (:mod:`edge_node.openai_api.access`), bound to a session
(:mod:`edge_node.openai_api.sessions`), resolved and admitted by ``EdgeGenerate`` — so every error
up to the first event is the response's HTTP status — and its events become the OpenAI objects of
:mod:`edge_node.openai_api.convert`. An error after streaming began arrives as a last ``data:``
event holding the OpenAI error object (the ``openai`` client raises it), then ``[DONE]``.

Every request counts in the gRPC server's drain gate: once the daemon stops, new requests get 503
and the drain waits for HTTP requests in flight as for gRPC calls.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from edge_node.openai_api.access import HttpAccess
from edge_node.openai_api.convert import Reply
from edge_node.openai_api.errors import error_body, error_response
from edge_node.openai_api.models import ModelCatalogue
from edge_node.openai_api.protocol import MAX_BODY_BYTES, Ask, InvalidField, parse_chat, parse_completion, parse_json
from edge_node.openai_api.sessions import CELL_HEADER, SESSION_HEADER, UE_HEADER, SessionBinder
from edge_node.serving.generate_call import EdgeGenerate
from netgpt.access import Principal
from netgpt.access_rules import CP, HTTP_MODELS, UP
from netgpt.errors import Unavailable
from netgpt.server import DrainGate
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.validate import check_id, check_request
from up.events import Event

log = structlog.get_logger(__name__)

Parse = Callable[[Mapping[str, Any]], Ask]
Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]


@dataclass
class OpenAiApi:
    generate: EdgeGenerate
    models: ModelCatalogue
    sessions: SessionBinder
    access: HttpAccess
    gate: DrainGate
    cells: frozenset[str]

    def app(self) -> ASGIApp:
        routes = [Route("/v1/chat/completions", _answering(lambda r: self._generate(r, parse_chat)), methods=["POST"]),
                  Route("/v1/completions", _answering(lambda r: self._generate(r, parse_completion)), methods=["POST"]),
                  Route("/v1/models", _answering(self._models), methods=["GET"])]
        starlette = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
        return _Gated(starlette, self.gate)

    async def _models(self, request: Request) -> Response:
        await self.access.check(self.access.caller(request.scope), HTTP_MODELS, None)
        return JSONResponse(self.models.listing())

    async def _generate(self, request: Request, parse: Parse) -> Response:
        caller = self.access.caller(request.scope)
        ask = parse(parse_json(await _body(request)))
        route = self.models.route_for(ask.model)
        session_id = await self._session(request, caller)
        message = up_pb2.GenerateRequest(session_id=session_id, kind=up_pb2.PROMPT_KIND_CONCISE, prompt=ask.prompt,
                                         params=ask.params, task=ask.task, route=route, workflow=ask.workflow)
        check_request(message)  # as gRPC bodies are, before the access check looks the session up
        await self.access.check(caller, UP + "Generate", message)
        edge_request = await self.generate.resolve(message, deadline_s=None)
        with structlog.contextvars.bound_contextvars(session_id=edge_request.session_id,
                                                     ai_flow_id=edge_request.ran.ai_flow_id):
            log.info("openai.request", path=request.url.path, model=ask.model, stream=ask.stream)
        headers = {"X-NetGPT-Session": edge_request.session_id}
        reply, events = Reply(ask), self.generate.run(edge_request)
        if not ask.stream:
            async with aclosing(events):
                async for event in events:
                    reply.take(event)
            return JSONResponse(reply.completion(), headers=headers)
        try:
            first = await anext(events)  # a failure before anything streamed is still this response's status
        except BaseException:
            await events.aclose()
            raise
        return StreamingResponse(server_sent_events(reply, first, events), media_type="text/event-stream",
                                 headers={**headers, "Cache-Control": "no-cache"})

    async def _session(self, request: Request, caller: Principal) -> str:
        """The session the call names, or the one made (or reused) for its UE and cell."""
        named = request.headers.get(SESSION_HEADER)
        if named:
            return named
        ue_id = request.headers.get(UE_HEADER) or (caller.name if caller.role == "ue" else "")
        check_id(ue_id, "header X-NetGPT-UE (the UE a new session is for; or name a session in X-NetGPT-Session)",
                 required=True)
        cell_id = request.headers.get(CELL_HEADER) or _default_cell(caller, self.cells)
        if not cell_id:
            raise InvalidField(f"header X-NetGPT-Cell is required (the UE's cell; this edge serves "
                               f"{', '.join(sorted(self.cells))}), or name a session in X-NetGPT-Session")
        check_id(cell_id, "header X-NetGPT-Cell", required=True)
        establish = cp_pb2.EstablishSessionRequest(ue_id=ue_id, cell_id=cell_id)
        await self.access.check(caller, CP + "EstablishSession", establish)
        return await self.sessions.session_for(establish)


def _default_cell(caller: Principal, cells: frozenset[str]) -> str:
    """The cell a UE token names when this edge serves it, else the edge's only cell ("" if it has several)."""
    if caller.token is not None and caller.token.cell_id in cells:
        return caller.token.cell_id
    return next(iter(cells)) if len(cells) == 1 else ""


def _answering(handler: Endpoint) -> Endpoint:
    """``handler`` with every failure answered in the OpenAI error shape."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:
            return error_response(exc)

    return endpoint


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (unknown path, wrong method) in the OpenAI shape."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    kind = "not_found_error" if status == 404 else "invalid_request_error"
    return JSONResponse({"error": {"message": f"{request.method} {request.url.path}: {getattr(exc, 'detail', '')}",
                                   "type": kind, "param": None, "code": None}}, status_code=status)


async def _body(request: Request) -> bytes:
    """The request body, refused past :data:`MAX_BODY_BYTES` without reading it all."""
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > MAX_BODY_BYTES:
            raise InvalidField(f"the request body is over {MAX_BODY_BYTES} bytes")
    return bytes(body)


def _sse(data: Mapping[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, separators=(',', ':'))}\n\n"


async def server_sent_events(reply: Reply, first: Event, events: AsyncGenerator[Event, None]) -> AsyncIterator[str]:
    async with aclosing(events):  # the client going away closes this: the pipeline stops
        try:
            for chunk in reply.chunks(first):
                yield _sse(chunk)
            async for event in events:
                for chunk in reply.chunks(event):
                    yield _sse(chunk)
        except Exception as exc:
            yield _sse(error_body(exc)[1])
    yield _sse("[DONE]")


class _Gated:
    """Counts every HTTP request in the daemon's drain gate; refuses new ones once it drains (503)."""

    def __init__(self, app: ASGIApp, gate: DrainGate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self.gate.enter()
        except Unavailable as exc:
            await error_response(exc)(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.gate.leave()
