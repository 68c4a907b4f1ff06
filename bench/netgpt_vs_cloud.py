"""NetGPT (edge + cloud, routing and de-duplication on) vs cloud-only, over an emulated edge–cloud link.

    python -m bench.netgpt_vs_cloud [--requests 200] [--concurrency 4] [--rtt-ms 40] [--mbit-s 50]

Same run, same models, same Zipf(1.1) workload of concise prompts from three cells:
- NetGPT: UE → edge on loopback; the edge personalises, answers lookups itself, shares
  identical in-flight cloud calls and reuses cached answers; edge → cloud crosses the link.
- cloud-only: every concise prompt goes from the UE straight to the cloud model across
  the same link (the UE is as far from the cloud as the edge is).
Reports median and p95 time to first and last token, bytes sent to the cloud, and
cloud calls, each as NetGPT / cloud-only. Models are the tiny built-in ones unless
paths are given, so compute is small and the link dominates; say so when quoting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.link import EmulatedLink
from cli.all_in_one import load_models, start_all_in_one
from cli.client import Question, establish
from netgpt.channels import open_channel
from netgpt.config import CloudConfig, CoreConfig, EdgeConfig
from netgpt.logs import configure_logging
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc

CHAT, LOOKUP = up_pb2.TASK_CLASS_CHAT, up_pb2.TASK_CLASS_LOOKUP
PROMPTS = {
    "cell-harbour-1": [("Where can I eat seafood tonight?", CHAT), ("When does the ferry leave?", LOOKUP),
                       ("Plan a rainy afternoon by the harbour", CHAT), ("Is the pharmacy open now?", LOOKUP),
                       ("Where can I charge my electric car?", CHAT), ("What is on at the museum?", CHAT)],
    "cell-campus-2": [("When does the library close?", LOOKUP), ("Where can I get a vegetarian lunch?", CHAT),
                      ("Can I book a badminton court tonight?", CHAT), ("How do I get to the city centre?", CHAT),
                      ("Is there a doctor on campus?", LOOKUP), ("Where can I study quietly?", CHAT)],
    "cell-station-3": [("How do I get to the airport quickly?", CHAT), ("Where can I leave my suitcase?", LOOKUP),
                       ("Is there a hotel near the station?", CHAT), ("Where is the taxi rank?", LOOKUP),
                       ("Where can I get a coffee before my train?", CHAT), ("What can I eat near platform 4?", CHAT)],
}


@dataclass(frozen=True)
class Item:
    cell_id: str
    prompt: str
    task: int


@dataclass
class Measured:
    first_token_ms: list[float] = field(default_factory=list)
    last_token_ms: list[float] = field(default_factory=list)
    failures: int = 0

    def summary(self) -> dict[str, float]:
        def pct(values: list[float], q: float) -> float:
            return float(np.percentile(values, q)) if values else float("nan")

        return {"p50_first_token_ms": pct(self.first_token_ms, 50), "p95_first_token_ms": pct(self.first_token_ms, 95),
                "p50_last_token_ms": pct(self.last_token_ms, 50), "p95_last_token_ms": pct(self.last_token_ms, 95),
                "failures": self.failures}


def zipf_workload(n: int, exponent: float, seed: int) -> list[Item]:
    """``n`` requests over the prompt catalogue, popularity rank r drawn with weight 1 / r**exponent."""
    items = [Item(cell, prompt, task) for cell, prompts in PROMPTS.items() for prompt, task in prompts]
    rng = np.random.default_rng(seed)
    rng.shuffle(items)  # popularity order independent of the catalogue order
    weights = 1.0 / np.arange(1, len(items) + 1) ** exponent
    picks = rng.choice(len(items), size=n, p=weights / weights.sum())
    return [items[i] for i in picks]


async def timed_stream(call) -> tuple[float, float]:
    started, first = time.perf_counter(), None
    async for event in call:
        if first is None and event.HasField("tokens"):
            first = time.perf_counter()
    done = time.perf_counter()
    return ((first or done) - started) * 1000, (done - started) * 1000


async def run_requests(items: list[Item], concurrency: int, send) -> Measured:
    measured, queue = Measured(), asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def worker() -> None:
        while not queue.empty():
            item = queue.get_nowait()
            try:
                first, last = await send(item)
                measured.first_token_ms.append(first)
                measured.last_token_ms.append(last)
            except Exception:  # counted and reported; a benchmark run should not stop on one
                measured.failures += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return measured


async def bench(args: argparse.Namespace) -> dict:
    gpt2, llama = await asyncio.to_thread(load_models, args.edge_model, args.cloud_model, "")
    params = up_pb2.GenerationParams(max_new_tokens=args.max_new_tokens)
    edge_link, ue_link = EmulatedLink("", args.rtt_ms, args.mbit_s), EmulatedLink("", args.rtt_ms, args.mbit_s)
    edge_side = await edge_link.start()
    store = tempfile.mkdtemp(prefix="netgpt-bench-")
    cluster = await start_all_in_one(
        gpt2, llama, CoreConfig(listen="127.0.0.1:0", heartbeat_interval_s=0.5, store_dir=store),
        CloudConfig(listen="127.0.0.1:0", advertise=edge_side, max_concurrency=2, max_queue=256),
        EdgeConfig(listen="127.0.0.1:0", max_queue=256, profiles_db=":memory:"))
    edge_link.upstream = ue_link.upstream = cluster.cloud.address
    ue_side = await ue_link.start()
    items = zipf_workload(args.requests, args.zipf, args.seed)
    try:
        async with open_channel(cluster.core.address) as core_channel, \
                open_channel(cluster.edge.address) as edge_channel, open_channel(ue_side) as cloud_channel:
            core = cp_grpc.ControlPlaneServiceStub(core_channel)
            sessions = {cell: await establish(core, Question("", ue_id=f"ue-{cell}", cell_id=cell)) for cell in PROMPTS}
            edge, cloud = up_grpc.UserPlaneServiceStub(edge_channel), up_grpc.UserPlaneServiceStub(cloud_channel)

            def via_edge(item: Item):
                session = sessions[item.cell_id]
                return timed_stream(edge.Generate(up_pb2.GenerateRequest(
                    session_id=session.session_id, kind=up_pb2.PROMPT_KIND_CONCISE, prompt=item.prompt,
                    ran=common_pb2.RanContext(cell_id=item.cell_id, ue_id=session.ue_id), params=params,
                    task=item.task), timeout=60))

            def cloud_only(item: Item):
                return timed_stream(cloud.Generate(up_pb2.GenerateRequest(
                    prompt=item.prompt, params=params, ran=common_pb2.RanContext(cell_id=item.cell_id)), timeout=60))

            runs = {}
            for name, send, link in (("netgpt", via_edge, edge_link), ("cloud_only", cloud_only, ue_link)):
                calls_before, bytes_before = cluster.cloud.runner.completed, link.stats.bytes_up
                measured = await run_requests(items, args.concurrency, send)
                runs[name] = measured.summary() | {
                    "cloud_calls": cluster.cloud.runner.completed - calls_before,
                    "bytes_to_cloud": link.stats.bytes_up - bytes_before,
                }
            runs["netgpt"]["edge_counters"] = cluster.edge.gateway.counters()
    finally:
        await cluster.stop()
        await edge_link.close()
        await ue_link.close()
    ratio_keys = ["p50_first_token_ms", "p95_first_token_ms", "p50_last_token_ms", "p95_last_token_ms",
                  "bytes_to_cloud", "cloud_calls"]
    ratios = {k: runs["netgpt"][k] / runs["cloud_only"][k] if runs["cloud_only"][k] else float("nan")
              for k in ratio_keys}
    return {"workload": {"requests": args.requests, "zipf": args.zipf, "distinct_prompts": len(set(items)),
                         "concurrency": args.concurrency, "max_new_tokens": args.max_new_tokens, "seed": args.seed},
            "link": {"rtt_ms": args.rtt_ms, "mbit_s": args.mbit_s},
            "models": {"edge": gpt2.identity.name, "cloud": llama.identity.name},
            "machine": {"platform": platform.platform(), "python": platform.python_version()},
            "runs": runs, "ratios_netgpt_over_cloud_only": ratios}


def print_report(report: dict) -> None:
    runs, ratios = report["runs"], report["ratios_netgpt_over_cloud_only"]
    print(f"{'metric':<22}{'netgpt':>12}{'cloud-only':>12}{'ratio':>8}")
    for key, ratio in ratios.items():
        print(f"{key:<22}{runs['netgpt'][key]:>12.1f}{runs['cloud_only'][key]:>12.1f}{ratio:>8.2f}")
    print(f"failures: netgpt {runs['netgpt']['failures']}, cloud-only {runs['cloud_only']['failures']}; "
          f"edge counters {runs['netgpt']['edge_counters']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    parser.add_argument("--mbit-s", type=float, default=50.0)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--edge-model", default="tiny")
    parser.add_argument("--cloud-model", default="tiny")
    parser.add_argument("--out", type=Path, default=Path("bench/reports/netgpt_vs_cloud.json"))
    args = parser.parse_args()
    configure_logging(json=False, level="error")
    report = asyncio.run(bench(args))
    print_report(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
