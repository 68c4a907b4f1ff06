"""First token over the edge's OpenAI-compatible HTTP API vs its gRPC ``Generate``, same run, same edge.

    python -m bench.http_vs_grpc [--requests 40] [--max-new-tokens 8] [--models starter]

One all-in-one cluster on a throw-away CA (mutual TLS on both APIs), its edge serving HTTPS as well
(``openai_listen``). A UE with its own certificate keeps one gRPC channel and one HTTP/1.1 connection
(steady state: handshakes excluded) and asks, alternating between the two so machine noise hits both
alike, unique prompts (the answer cache is off, nothing is shared) on both routes: the edge's model
(gRPC route preference edge; HTTP ``model`` = the edge's) and the cloud's (route preference cloud; HTTP
``model`` = the cloud's). gRPC: time to the first ``tokens`` event; HTTP: to the first server-sent event
carrying content (``stream: true``). Reports p50/p95 of first and last token and the HTTP/gRPC ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from appkit.all_in_one import Cluster, load_models, start_all_in_one
from appkit.client import Question, establish
from bench.measure import first_last_summary, generate_timed, machine, write_report
from netgpt.channels import open_channel
from netgpt.config import CloudConfig, CoreConfig, EdgeConfig
from netgpt.logs import configure_logging
from netgpt.tls import LocalPki
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc

REPORT = Path(__file__).parent / "reports" / "http_vs_grpc.json"
CELL = "cell-harbour-1"
UE = "ue-bench"
ROUTES = {"edge": up_pb2.ROUTE_PREFERENCE_EDGE, "cloud": up_pb2.ROUTE_PREFERENCE_CLOUD}
Sample = tuple[float, float]  # (first token ms, last token ms)


def _prompt(n: int) -> str:
    return f"Where can I eat seafood tonight? ({n})"


def _grpc_request(session_id: str, route: str, n: int, max_new_tokens: int) -> up_pb2.GenerateRequest:
    return up_pb2.GenerateRequest(
        session_id=session_id, kind=up_pb2.PROMPT_KIND_CONCISE, prompt=_prompt(n),
        ran=common_pb2.RanContext(cell_id=CELL), route=ROUTES[route],
        params=up_pb2.GenerationParams(max_new_tokens=max_new_tokens))


async def _http_timed(client: httpx.AsyncClient, headers: dict[str, str], model: str, n: int,
                      max_new_tokens: int) -> Sample:
    """One streamed chat completion: ms to the first content delta and to the end of the stream."""
    body = {"model": model, "stream": True, "max_tokens": max_new_tokens,
            "messages": [{"role": "user", "content": _prompt(n)}]}
    start = time.perf_counter()
    first = None
    async with client.stream("POST", "/chat/completions", json=body, headers=headers) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {(await response.aread())[:300]!r}")
        async for line in response.aiter_lines():
            if first is None and line.startswith("data: {"):
                choices = json.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    first = time.perf_counter() - start
    total = time.perf_counter() - start
    return (first if first is not None else total) * 1000, total * 1000


async def _models(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
    """A model of each route as ``GET /v1/models`` lists them (its ``netgpt.route`` extension field)."""
    listed = (await client.get("/models", headers=headers)).json()["data"]
    return {route: next(m["id"] for m in listed if m["netgpt"]["route"] == route) for route in ROUTES}


def _tls(pki: LocalPki) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.folder / "ca.crt"))
    issued = pki.files("ue", UE)
    context.load_cert_chain(str(issued.cert), str(issued.key))
    return context


async def _measure(cluster: Cluster, args: argparse.Namespace) -> dict[str, dict[str, list[Sample]]]:
    assert cluster.pki is not None and cluster.edge.http is not None
    ue = cluster.pki.identity("ue", UE)
    async with open_channel(cluster.core.address, cluster.operator) as core_channel:
        session = await establish(cp_grpc.ControlPlaneServiceStub(core_channel),
                                  Question(prompt="", cell_id=CELL, ue_id=UE))
    samples: dict[str, dict[str, list[Sample]]] = {route: {"grpc": [], "http": []} for route in ROUTES}
    base_url = f"https://127.0.0.1:{cluster.edge.http.port}/v1"
    async with open_channel(cluster.edge.address, ue) as channel, \
            httpx.AsyncClient(base_url=base_url, verify=_tls(cluster.pki), timeout=120) as client:
        stub = up_grpc.UserPlaneServiceStub(channel)
        headers = {"X-NetGPT-Session": session.session_id}
        models = await _models(client, headers)
        tokens = args.max_new_tokens
        calls: dict[str, Callable[[str, int], Awaitable[Sample]]] = {
            "grpc": lambda route, n: generate_timed(stub, _grpc_request(session.session_id, route, n, tokens)),
            "http": lambda route, n: _http_timed(client, headers, models[route], n, tokens),
        }
        for n in range(args.requests + 2):  # two warm-up rounds are dropped
            for route in ROUTES:
                for api in (("grpc", "http") if n % 2 else ("http", "grpc")):  # neither always goes first
                    sample = await calls[api](route, n * 10 + len(api))
                    if n >= 2:
                        samples[route][api].append(sample)
    return samples


async def run(args: argparse.Namespace) -> dict[str, Any]:
    gpt2, llama = load_models(args.models, args.models)
    with tempfile.TemporaryDirectory() as store:
        cluster = await start_all_in_one(
            gpt2, llama, CoreConfig(listen="127.0.0.1:0", heartbeat_interval_s=0.5, store_dir=store),
            CloudConfig(listen="127.0.0.1:0"),
            EdgeConfig(listen="127.0.0.1:0", profiles_db=":memory:", answer_cache_ttl_s=0, coalesce=False,
                       openai_listen="127.0.0.1:0"))
        try:
            samples = await _measure(cluster, args)
        finally:
            await cluster.stop()
    report: dict[str, Any] = {"machine": machine(), "requests": args.requests, "max_new_tokens": args.max_new_tokens,
                              "models": args.models, "routes": {}}
    for route, by_api in samples.items():
        grpc_s, http_s = first_last_summary(by_api["grpc"]), first_last_summary(by_api["http"])
        report["routes"][route] = {"grpc": grpc_s, "http": http_s,
                                   "http_over_grpc": {k: round(http_s[k] / grpc_s[k], 3) for k in grpc_s},
                                   "http_minus_grpc_ms": {k: round(http_s[k] - grpc_s[k], 1) for k in grpc_s}}
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=40, help="measured requests per route and API")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--models", default="starter", help="edge and cloud models: starter or tiny")
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    configure_logging(json=True, level="warning")
    report = asyncio.run(run(args))
    write_report(args.out, report)
    print(json.dumps(report["routes"], indent=2))


if __name__ == "__main__":
    main()
