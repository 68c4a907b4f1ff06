"""What mutual TLS and the access checks cost a request: first-token and total time, secure vs plaintext.

    python -m bench.security [--requests 40] [--max-new-tokens 8]

Two all-in-one clusters in one process, same starter models, same prompts: one on a
throw-away CA (mutual TLS on every hop: UE → edge, edge → core session lookups, edge → cloud;
the access interceptor on every call), one ``--insecure`` (plaintext, no checks). Requests
alternate between the two so that machine noise hits both alike; every prompt is unique and
the answer cache is off, so each request crosses every hop. Each request opens fresh channels
(a new UE connecting: TLS handshakes included), then a second figure reuses one channel
(steady state). Reports medians and p95 of time to first token and to the last one, and the
secure/plaintext ratio of each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
from pathlib import Path

from appkit.all_in_one import Cluster, load_models, start_all_in_one
from appkit.client import Question, establish
from bench.measure import first_last_summary, generate_timed
from netgpt.channels import open_channel
from netgpt.config import CloudConfig, CoreConfig, EdgeConfig
from netgpt.logs import configure_logging
from netgpt.tls import PLAINTEXT, Transport
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc

REPORT = Path(__file__).parent / "reports" / "security.json"


async def _cluster(models: tuple, insecure: bool, store: str) -> Cluster:
    gpt2, llama = models
    return await start_all_in_one(
        gpt2, llama, CoreConfig(listen="127.0.0.1:0", heartbeat_interval_s=0.5, store_dir=store, insecure=insecure),
        CloudConfig(listen="127.0.0.1:0", insecure=insecure),
        EdgeConfig(listen="127.0.0.1:0", profiles_db=":memory:", answer_cache_ttl_s=0, coalesce=False,
                   insecure=insecure))


def _request(session_id: str, n: int, max_new_tokens: int) -> up_pb2.GenerateRequest:
    return up_pb2.GenerateRequest(
        session_id=session_id, kind=up_pb2.PROMPT_KIND_CONCISE, prompt=f"Where can I eat seafood tonight? ({n})",
        ran=common_pb2.RanContext(cell_id="cell-harbour-1"), route=up_pb2.ROUTE_PREFERENCE_CLOUD,
        params=up_pb2.GenerationParams(max_new_tokens=max_new_tokens))


async def _cold(cluster: Cluster, who: Transport, n: int, max_new_tokens: int) -> tuple[float, float]:
    """A UE that connects for this request: session at the core, then Generate on a new edge channel."""
    async with open_channel(cluster.core.address, who) as core_channel:
        session = await establish(cp_grpc.ControlPlaneServiceStub(core_channel),
                                  Question(prompt="", cell_id="cell-harbour-1", ue_id="ue-bench"))
    async with open_channel(cluster.edge.address, who) as channel:
        stub = up_grpc.UserPlaneServiceStub(channel)
        return await generate_timed(stub, _request(session.session_id, n, max_new_tokens))


async def run(args: argparse.Namespace) -> dict:
    models = load_models("starter", "starter")
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        secure = await _cluster(models, insecure=False, store=a)
        plain = await _cluster(models, insecure=True, store=b)
        try:
            pairs = ((secure, secure.operator, "secure"), (plain, PLAINTEXT, "plaintext"))
            cold: dict[str, list[tuple[float, float]]] = {"secure": [], "plaintext": []}
            for n in range(args.requests + 2):  # two warm-up rounds are dropped
                for cluster, who, name in pairs:
                    sample = await _cold(cluster, who, n, args.max_new_tokens)
                    if n >= 2:
                        cold[name].append(sample)
            warm: dict[str, list[tuple[float, float]]] = {"secure": [], "plaintext": []}
            sessions = {}
            channels = {}
            for cluster, who, name in pairs:
                async with open_channel(cluster.core.address, who) as core_channel:
                    sessions[name] = await establish(cp_grpc.ControlPlaneServiceStub(core_channel),
                                                     Question(prompt="", cell_id="cell-harbour-1", ue_id="ue-bench"))
                channels[name] = open_channel(cluster.edge.address, who)
            for n in range(args.requests):
                for name in channels:
                    stub = up_grpc.UserPlaneServiceStub(channels[name])
                    warm[name].append(await generate_timed(stub, _request(sessions[name].session_id, 1000 + n,
                                                                  args.max_new_tokens)))
            for channel in channels.values():
                await channel.close()
        finally:
            await secure.stop()
            await plain.stop()
    report: dict = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                    "requests": args.requests, "max_new_tokens": args.max_new_tokens, "models": "starter"}
    for label, samples in (("new_connection", cold), ("reused_channel", warm)):
        secure_s, plain_s = first_last_summary(samples["secure"]), first_last_summary(samples["plaintext"])
        report[label] = {"secure": secure_s, "plaintext": plain_s,
                         "ratio": {k: round(secure_s[k] / plain_s[k], 3) for k in secure_s}}
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    args = parser.parse_args(argv)
    configure_logging(json=True, level="warning")
    report = asyncio.run(run(args))
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
