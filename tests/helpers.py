"""Client helpers for tests: sessions and Generate calls through the generated stubs, and one way to wait."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
import structlog
from structlog.testing import capture_logs
from throwaway_ca import as_node

from appkit.client import Question, establish
from cli.main import main
from netgpt.channels import open_channel
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc

T = TypeVar("T")


async def eventually(predicate: Callable[[], T | Awaitable[T]], what: str | Callable[[], str],
                     timeout_s: float = 10.0, poll_s: float = 0.02) -> T:
    """Poll ``predicate`` (a plain or an async function) until it returns something truthy, and return that;
    TimeoutError naming ``what`` otherwise (a callable ``what`` is asked only then, e.g. for the last state).

    The one way tests wait; a sync test waits with ``asyncio.run(eventually(...))``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return cast(T, value)
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what() if callable(what) else what}")
        await asyncio.sleep(poll_s)


async def new_session(core_address: str, cell_id: str = "cell-harbour-1", budget_ms: int = 0) -> cp_pb2.AiSession:
    async with open_channel(core_address) as channel:
        question = Question(prompt="", cell_id=cell_id, latency_budget_ms=budget_ms)
        return await establish(cp_grpc.ControlPlaneServiceStub(channel), question)


def concise(session: cp_pb2.AiSession, prompt: str, **fields) -> up_pb2.GenerateRequest:
    params = up_pb2.GenerationParams(max_new_tokens=fields.pop("max_new_tokens", 16))
    return up_pb2.GenerateRequest(session_id=session.session_id, kind=up_pb2.PROMPT_KIND_CONCISE, prompt=prompt,
                                  ran=common_pb2.RanContext(cell_id=session.cell_id, ue_id=session.ue_id),
                                  params=params, **fields)


async def generate(address: str, request: up_pb2.GenerateRequest, timeout: float = 60) -> list[up_pb2.GenerateResponse]:
    async with open_channel(address) as channel:
        return [event async for event in up_grpc.UserPlaneServiceStub(channel).Generate(request, timeout=timeout)]


def kinds(events: list[up_pb2.GenerateResponse]) -> list[str]:
    """Event kinds with consecutive duplicates collapsed: e.g. [comprehensive_prompt, tokens, summary]."""
    out: list[str] = []
    for event in events:
        kind = event.WhichOneof("event")
        if not out or out[-1] != kind:
            out.append(kind)
    return out


def streamed_text(events: list[up_pb2.GenerateResponse], after_fallback: bool = True) -> str:
    """Token text the UE should keep (what follows the last Fallback, if any)."""
    start = max((i for i, e in enumerate(events) if e.HasField("fallback")), default=-1) + 1
    return "".join(e.tokens.text for e in events[start:] if e.HasField("tokens"))


@contextmanager
def captured_events() -> Iterator[list[dict]]:
    """structlog events, whatever level the suite's logging was configured at (capture_logs keeps the filter)."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as logs:
            yield logs
    finally:
        structlog.configure(**saved)


async def cli(*argv: str) -> int:
    """``netgpt ARGV`` on a thread (it runs its own event loop); the logging set-up it makes, bound
    to pytest's capture stream, is undone so later log lines do not write to a closed stream."""
    saved = structlog.get_config()
    try:
        return await asyncio.to_thread(main, list(argv))
    finally:
        structlog.configure(**saved)


async def register_as_node(core_address: str, info: common_pb2.NodeInfo) -> cp_pb2.RegisterNodeResponse:
    """RegisterNode as the node ``info`` describes, with that node's certificate (``tests/throwaway_ca.py``)."""
    async with open_channel(core_address, as_node(info)) as channel:
        return await cp_grpc.ControlPlaneServiceStub(channel).RegisterNode(cp_pb2.RegisterNodeRequest(node=info),
                                                                           timeout=5)


class RecordGenerate(grpc.aio.ServerInterceptor):
    """On a server (the cloud: what it sees, byte for byte): keeps every Generate request it receives,
    and holds the answers while ``gate`` is clear."""

    def __init__(self) -> None:
        self.requests: list[up_pb2.GenerateRequest] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or not details.method.endswith("/Generate"):
            return handler
        inner = handler.unary_stream

        async def recorded(request, context):
            self.requests.append(request)
            await self.gate.wait()
            async for event in inner(request, context):
                yield event

        return grpc.unary_stream_rpc_method_handler(recorded, request_deserializer=handler.request_deserializer,
                                                    response_serializer=handler.response_serializer)


def run_bench(module: str, out: Path, *argv: str, timeout: float = 280) -> dict[str, Any]:
    """``python -m bench.MODULE ARGV --out OUT`` from the repository root; its JSON report (the run must succeed)."""
    root = Path(__file__).resolve().parent.parent
    run = subprocess.run([sys.executable, "-m", f"bench.{module}", *argv, "--out", str(out)], cwd=root,
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    return cast(dict[str, Any], json.loads(out.read_text()))
