"""NetGPT (edge + cloud, routing and de-duplication on) vs cloud-only, over an emulated edge–cloud link:
cost, latency and answer quality side by side, on two workloads.

    python -m bench.netgpt_vs_cloud [--requests 120] [--concurrency 4] [--rtt-ms 40] [--mbit-s 50]
                                    [--edge-model starter] [--cloud-model starter] [--edge-quantization fp32]

Same run, same models, same requests for both systems:
- NetGPT: UE → edge on loopback; the edge personalises (knowledge base + the edge GPT-2's reading
  of the intent), answers lookups itself, shares identical in-flight cloud calls and reuses cached
  answers; edge → cloud crosses the link.
- cloud-only: every concise prompt goes from the UE straight to the cloud model across the same
  link (the UE is as far from the cloud as the edge is), with no location context.
- profile leg: the comprehensive prompts of NetGPT's cloud-answered requests sent straight to
  the cloud, so NetGPT's cloud route splits into edge overhead and what the cloud itself needs.

Workloads (each on a fresh cluster, so no answer cache carries over):
- ``zipf``: Zipf(1.1) over 18 catalogue prompts in three cells (most requests repeat a prompt).
- ``long_tail``: at least ``--unique-share`` (default 0.6) of requests are prompts seen once —
  the prompt task's held-out questions (``tasks/prompt_completion/heldout.py``), then variants of
  them — and the rest Zipf picks from the catalogue.

Every request has the venue(s) that answer it, so each final answer is scored like
``netgpt eval prompt`` does (names a fitting venue and no other of the cell): quality per system
and per route (where the answer terminated: edge, cloud, the edge's answer cache). Reports median
and p95 time to first and last token, bytes and calls to the cloud, answer quality, and where
NetGPT's time goes (personalise vs cloud vs the rest, from each request's summary). The starter
models (``netgpt/assets/starter``, trained here) are the default: tiny random models give no
quality signal. They are small, so compute is small next to the link; say so when quoting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from appkit.all_in_one import Cluster, start_all_in_one
from appkit.client import Question, establish
from bench.link import EmulatedLink
from bench.measure import run_concurrently
from cloud_node.daemon import load_cloud_model
from edge_node.daemon import load_edge_model
from edge_node.model.ort_engine import OrtGpt2Model
from netgpt.channels import open_channel
from netgpt.config import CloudConfig, CoreConfig, EdgeConfig
from netgpt.engine import LanguageModel
from netgpt.logs import configure_logging
from netgpt.tls import LocalPki
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc
from netgpt.words import enum_word
from tasks.prompt_completion.evaluate import cell_venues, score_answer
from tasks.prompt_completion.heldout import HELD_OUT

CHAT, LOOKUP = up_pb2.TASK_CLASS_CHAT, up_pb2.TASK_CLASS_LOOKUP
STARTER = Path(__file__).resolve().parent.parent / "netgpt" / "assets" / "starter"
HARBOUR, CAMPUS, STATION = "cell-harbour-1", "cell-campus-2", "cell-station-3"
# (prompt, task class, venues that answer it)
PROMPTS: dict[str, list[tuple[str, int, tuple[str, ...]]]] = {
    HARBOUR: [("Where can I eat seafood tonight?", CHAT, ("Harbour Fish Market",)),
              ("When does the ferry leave?", LOOKUP, ("Pier 3 Ferry Terminal",)),
              ("Plan a rainy afternoon by the harbour", CHAT, ("Maritime Museum",)),
              ("Is the pharmacy open now?", LOOKUP, ("Quay Street Pharmacy",)),
              ("Where can I charge my electric car?", CHAT, ("Harbour Car Park P2",)),
              ("What is on at the museum?", CHAT, ("Maritime Museum",))],
    CAMPUS: [("When does the library close?", LOOKUP, ("Central Library",)),
             ("Where can I get a vegetarian lunch?", CHAT, ("Campus Cafe",)),
             ("Can I book a badminton court tonight?", CHAT, ("Sports Hall",)),
             ("How do I get to the city centre?", CHAT, ("Main Gate Bus Stop",)),
             ("Is there a doctor on campus?", LOOKUP, ("Student Health Centre",)),
             ("Where can I study quietly?", CHAT, ("Central Library",))],
    STATION: [("How do I get to the airport quickly?", CHAT, ("Central Station",)),
              ("Where can I leave my suitcase?", LOOKUP, ("Left-Luggage Lockers",)),
              ("Is there a hotel near the station?", CHAT, ("Station Hotel",)),
              ("Where is the taxi rank?", LOOKUP, ("North Exit Taxi Rank",)),
              ("Where can I get a coffee before my train?", CHAT, ("Platform Coffee",)),
              ("What can I eat near platform 4?", CHAT, ("Upper Level Food Court", "Platform Coffee"))],
}
VARIANTS = ("", " Thanks!", " Asking for a friend.", " We are two.", " Quick answer please.", " Cheers.")


@dataclass(frozen=True)
class Item:
    cell_id: str
    prompt: str
    task: int
    expected: tuple[str, ...]


@dataclass
class Outcome:
    item: Item
    comprehensive: str  # the prompt the edge built ("" on cloud-only)
    first_token_ms: float
    last_token_ms: float
    route: str  # edge | cloud | cache | coalesced
    answer_ok: bool
    latency: dict[str, float]  # the summary's split (server side)
    prompt_tokens: int  # what the generating model read (the cloud's, for a cloud answer relayed by the edge)
    completion_tokens: int


@dataclass
class Measured:
    outcomes: list[Outcome] = field(default_factory=list)
    failures: int = 0

    def summary(self) -> dict[str, object]:
        def pct(values: list[float], q: float) -> float:
            return float(np.percentile(values, q)) if values else float("nan")

        first = [o.first_token_ms for o in self.outcomes]
        last = [o.last_token_ms for o in self.outcomes]
        routes: dict[str, list[Outcome]] = defaultdict(list)
        for o in self.outcomes:
            routes[o.route].append(o)
        return {"p50_first_token_ms": pct(first, 50), "p95_first_token_ms": pct(first, 95),
                "p50_last_token_ms": pct(last, 50), "p95_last_token_ms": pct(last, 95),
                "answer_ok": float(np.mean([o.answer_ok for o in self.outcomes])) if self.outcomes else float("nan"),
                "failures": self.failures,
                "routes": {route: {"requests": len(items), "answer_ok": float(np.mean([o.answer_ok for o in items])),
                                   "p50_last_token_ms": pct([o.last_token_ms for o in items], 50),
                                   "p95_last_token_ms": pct([o.last_token_ms for o in items], 95),
                                   "mean_prompt_tokens": float(np.mean([o.prompt_tokens for o in items])),
                                   "mean_completion_tokens": float(np.mean([o.completion_tokens for o in items]))}
                           for route, items in sorted(routes.items())}}

    def time_split(self) -> dict[str, dict[str, float]]:
        """Percentiles of each part of the server-side latency split, over the requests that have it."""
        parts: dict[str, list[float]] = defaultdict(list)
        for o in self.outcomes:
            for key, value in o.latency.items():
                parts[key].append(value)
            parts["client_minus_server_ms"].append(o.last_token_ms - o.latency.get("total_ms", 0.0))
        return {key: {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)),
                      "mean": float(np.mean(v))} for key, v in parts.items() if v}


def catalogue() -> list[Item]:
    return [Item(cell, prompt, task, expected) for cell, prompts in PROMPTS.items()
            for prompt, task, expected in prompts]


def zipf_workload(n: int, exponent: float, seed: int) -> list[Item]:
    """``n`` requests over the prompt catalogue, popularity rank r drawn with weight 1 / r**exponent."""
    items = catalogue()
    rng = np.random.default_rng(seed)
    rng.shuffle(items)  # popularity order independent of the catalogue order
    weights = 1.0 / np.arange(1, len(items) + 1) ** exponent
    picks = rng.choice(len(items), size=n, p=weights / weights.sum())
    return [items[i] for i in picks]


def long_tail_workload(n: int, exponent: float, unique_share: float, seed: int) -> list[Item]:
    """``n`` requests of which ``unique_share`` are prompts asked once (held-out questions, then variants)."""
    rng = np.random.default_rng(seed + 1)
    unique_needed = int(np.ceil(n * unique_share))
    questions = list(HELD_OUT)
    rng.shuffle(questions)
    unique = [Item(q.cell_id, q.question + VARIANTS[i // len(questions) % len(VARIANTS)], CHAT, q.expected)
              for i, q in ((i, questions[i % len(questions)]) for i in range(unique_needed))]
    items = unique + zipf_workload(n - unique_needed, exponent, seed)
    order = rng.permutation(len(items))
    return [items[i] for i in order]


ROUTES = {common_pb2.NODE_ROLE_EDGE: "edge", common_pb2.NODE_ROLE_CLOUD: "cloud"}


@dataclass
class StreamRead:
    """What one ``Generate`` stream brought: when (by ``clock``) it began, gave its first token and ended."""

    started: float
    first: float
    done: float
    summary: up_pb2.GenerationSummary
    comprehensive: str

    @property
    def route(self) -> str:
        """Where it ended: edge, cloud, cache or coalesced."""
        if self.summary.answer_cached:
            return "cache"
        if self.summary.coalesced:
            return "coalesced"
        return ROUTES.get(self.summary.terminated_at, enum_word(common_pb2.NodeRole, self.summary.terminated_at))

    @property
    def latency(self) -> dict[str, float]:
        return {f.name: getattr(self.summary.latency, f.name) for f in self.summary.latency.DESCRIPTOR.fields}


async def read_stream(call: AsyncIterator[up_pb2.GenerateResponse],
                      clock: Callable[[], float] = time.perf_counter) -> StreamRead:
    """Consume a ``Generate`` stream; RuntimeError when it ends without a summary."""
    started, first, summary, comprehensive = clock(), None, None, ""
    async for event in call:
        if first is None and event.HasField("tokens"):
            first = clock()
        if event.HasField("comprehensive_prompt"):
            comprehensive = event.comprehensive_prompt.text
        if event.HasField("summary"):
            summary = event.summary
    done = clock()
    if summary is None:
        raise RuntimeError("stream ended without a summary")
    return StreamRead(started, first if first is not None else done, done, summary, comprehensive)


async def timed_stream(call, item: Item, venues: dict[str, list[str]]) -> Outcome:
    read = await read_stream(call)
    return Outcome(item, read.comprehensive, (read.first - read.started) * 1000, (read.done - read.started) * 1000,
                   read.route, score_answer(read.summary.text, item.expected, venues.get(item.cell_id, [])),
                   read.latency, read.summary.prompt_tokens, read.summary.completion_tokens)


async def run_requests(items: list[Item], concurrency: int, send) -> Measured:
    outcomes, failures = await run_concurrently(items, concurrency, send)
    return Measured(outcomes, failures)


async def one_workload(items: list[Item], models: tuple[OrtGpt2Model, LanguageModel], args: argparse.Namespace,
                       pki: LocalPki) -> dict:
    """Both systems over ``items`` on a fresh cluster whose daemons hold certificates of ``pki``."""
    gpt2, llama = models
    params = up_pb2.GenerationParams(max_new_tokens=args.max_new_tokens)
    edge_link, ue_link = EmulatedLink("", args.rtt_ms, args.mbit_s), EmulatedLink("", args.rtt_ms, args.mbit_s)
    edge_side = await edge_link.start()
    store = tempfile.mkdtemp(prefix="netgpt-bench-")
    cluster: Cluster = await start_all_in_one(
        gpt2, llama, CoreConfig(listen="127.0.0.1:0", heartbeat_interval_s=0.5, store_dir=store),
        CloudConfig(listen="127.0.0.1:0", advertise=edge_side, max_concurrency=2, max_queue=256),
        EdgeConfig(listen="127.0.0.1:0", max_queue=256, profiles_db=":memory:", max_concurrency=args.edge_concurrency,
                   max_batch=args.edge_concurrency),
        pki=pki)
    cluster.scratch.append(Path(store))
    edge_link.upstream = ue_link.upstream = cluster.cloud.address
    ue_side = await ue_link.start()
    venues = cell_venues()
    try:
        async with open_channel(cluster.core.address, cluster.operator) as core_channel, \
                open_channel(cluster.edge.address, cluster.operator) as edge_channel, \
                open_channel(ue_side, cluster.operator) as cloud_channel:
            core = cp_grpc.ControlPlaneServiceStub(core_channel)
            sessions = {cell: await establish(core, Question("", ue_id=f"ue-{cell}", cell_id=cell)) for cell in PROMPTS}
            edge, cloud = up_grpc.UserPlaneServiceStub(edge_channel), up_grpc.UserPlaneServiceStub(cloud_channel)

            def via_edge(item: Item):
                session = sessions[item.cell_id]
                return timed_stream(edge.Generate(up_pb2.GenerateRequest(
                    session_id=session.session_id, kind=up_pb2.PROMPT_KIND_CONCISE, prompt=item.prompt,
                    ran=common_pb2.RanContext(cell_id=item.cell_id, ue_id=session.ue_id), params=params,
                    task=item.task), timeout=120), item, venues)

            def cloud_only(item: Item):
                return timed_stream(cloud.Generate(up_pb2.GenerateRequest(
                    prompt=item.prompt, params=params, ran=common_pb2.RanContext(cell_id=item.cell_id)),
                    timeout=120), item, venues)

            built: dict[Item, str] = {}
            cloud_routed: list[Item] = []  # NetGPT's requests that the cloud answered, in order

            def cloud_same_prompt(item: Item):
                """What NetGPT's cloud leg costs without the edge: its comprehensive prompt straight to the cloud."""
                return timed_stream(cloud.Generate(up_pb2.GenerateRequest(
                    kind=up_pb2.PROMPT_KIND_COMPREHENSIVE, prompt=built[item], params=params,
                    ran=common_pb2.RanContext(cell_id=item.cell_id)), timeout=120), item, venues)

            runs: dict[str, dict] = {}
            profiles = {}
            systems = (("netgpt", via_edge, edge_link), ("cloud_only", cloud_only, ue_link),
                       ("cloud_given_netgpt_prompts", cloud_same_prompt, ue_link))
            for system, send, link in systems:
                calls_before, bytes_before = cluster.cloud.runner.completed, link.stats.bytes_up
                todo = items if system != "cloud_given_netgpt_prompts" else cloud_routed
                measured = await run_requests(todo, args.concurrency, send)
                if system == "netgpt":
                    cloud_routed = [o.item for o in measured.outcomes if o.route == "cloud"]
                    built.update({o.item: o.comprehensive for o in measured.outcomes if o.route == "cloud"})
                runs[system] = measured.summary() | {
                    "cloud_calls": cluster.cloud.runner.completed - calls_before,
                    "bytes_to_cloud": link.stats.bytes_up - bytes_before,
                }
                profiles[system] = measured.time_split()
            runs["netgpt"]["edge_counters"] = cluster.edge.gateway.counters()
            batcher = gpt2.batcher
            if batcher is not None and batcher.runs:
                runs["netgpt"]["edge_mean_decode_batch"] = batcher.steps / batcher.runs
    finally:
        await cluster.stop()
        await edge_link.close()
        await ue_link.close()
    ratio_keys = ["p50_first_token_ms", "p95_first_token_ms", "p50_last_token_ms", "p95_last_token_ms",
                  "bytes_to_cloud", "cloud_calls", "answer_ok"]
    ratios = {k: runs["netgpt"][k] / runs["cloud_only"][k] if runs["cloud_only"][k] else float("nan")
              for k in ratio_keys}
    cloud_leg = runs.pop("cloud_given_netgpt_prompts")
    netgpt_cloud = runs["netgpt"]["routes"].get("cloud", {})
    profile = {
        "netgpt_cloud_route": {k: netgpt_cloud.get(k) for k in ("requests", "p50_last_token_ms", "p95_last_token_ms")},
        "same_prompts_straight_to_cloud": {k: cloud_leg[k] for k in ("p50_last_token_ms", "p95_last_token_ms")}
        | {"requests": cloud_leg["routes"].get("cloud", {}).get("requests", 0)},
        "netgpt_edge_split_ms": profiles["netgpt"], "cloud_only_split_ms": profiles["cloud_only"],
        "note": "netgpt cloud route ≈ edge overhead (personalise + relay) + what the cloud needs for the "
                "comprehensive prompt (prompt and answer tokens per route are in runs.*.routes)"}
    part = {"requests": len(items), "distinct_prompts": len({(i.cell_id, i.prompt) for i in items}),
            "requests_with_a_prompt_seen_once": sum(1 for i in items if items.count(i) == 1),
            "runs": runs, "ratios_netgpt_over_cloud_only": ratios, "where_netgpt_time_goes": profile}
    return part


async def bench(args: argparse.Namespace) -> dict:
    edge_model = str(STARTER / "gpt2") if args.edge_model == "starter" else args.edge_model
    cloud_model = str(STARTER / "llama") if args.cloud_model == "starter" else args.cloud_model
    gpt2 = await asyncio.to_thread(load_edge_model, EdgeConfig(
        model=edge_model, providers="cpu", quantization=args.edge_quantization, max_batch=args.edge_concurrency))
    llama = await asyncio.to_thread(load_cloud_model, CloudConfig(model=cloud_model))
    workloads = {"zipf": zipf_workload(args.requests, args.zipf, args.seed),
                 "long_tail": long_tail_workload(args.requests, args.zipf, args.unique_share, args.seed)}
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="netgpt-bench-pki-") as folder:
        pki = LocalPki(Path(folder))
        for name, items in workloads.items():
            report[name] = await one_workload(items, (gpt2, llama), args, pki)
    return {"workloads": report,
            "settings": {"requests": args.requests, "zipf": args.zipf, "unique_share": args.unique_share,
                         "concurrency": args.concurrency, "max_new_tokens": args.max_new_tokens, "seed": args.seed,
                         "edge_max_concurrency_and_batch": args.edge_concurrency},
            "link": {"rtt_ms": args.rtt_ms, "mbit_s": args.mbit_s},
            "models": {"edge": edge_model, "edge_quantization": args.edge_quantization, "cloud": cloud_model},
            "machine": {"platform": platform.platform(), "python": platform.python_version()}}


def print_report(report: dict) -> None:
    for name, part in report["workloads"].items():
        runs, ratios = part["runs"], part["ratios_netgpt_over_cloud_only"]
        print(f"\n{name}: {part['requests']} requests, {part['distinct_prompts']} distinct prompts, "
              f"{part['requests_with_a_prompt_seen_once']} asked once")
        print(f"{'metric':<22}{'netgpt':>12}{'cloud-only':>12}{'ratio':>8}")
        for key, ratio in ratios.items():
            print(f"{key:<22}{runs['netgpt'][key]:>12.3g}{runs['cloud_only'][key]:>12.3g}{ratio:>8.2f}")
        print(f"{'route':<22}{'requests':>10}{'answer ok':>11}{'p50 last ms':>13}{'p95 last ms':>13}"
              f"{'prompt tok':>12}{'answer tok':>12}")
        for system in ("netgpt", "cloud_only"):
            for route, row in runs[system]["routes"].items():
                print(f"{system + ' / ' + route:<22}{row['requests']:>10}{row['answer_ok']:>11.1%}"
                      f"{row['p50_last_token_ms']:>13.1f}{row['p95_last_token_ms']:>13.1f}"
                      f"{row['mean_prompt_tokens']:>12.1f}{row['mean_completion_tokens']:>12.1f}")
        profile = part["where_netgpt_time_goes"]
        print("netgpt time split p50/p95 ms: " + ", ".join(
            f"{key} {v['p50']:.0f}/{v['p95']:.0f}" for key, v in profile["netgpt_edge_split_ms"].items()))
        leg, route = profile["same_prompts_straight_to_cloud"], profile["netgpt_cloud_route"]
        if route.get("requests"):
            print(f"netgpt cloud route p50/p95 last token {route['p50_last_token_ms']:.0f}/"
                  f"{route['p95_last_token_ms']:.0f} ms; the same {leg['requests']} comprehensive prompts sent "
                  f"straight to the cloud {leg['p50_last_token_ms']:.0f}/{leg['p95_last_token_ms']:.0f} ms")
        print(f"failures: netgpt {runs['netgpt']['failures']}, cloud-only {runs['cloud_only']['failures']}; "
              f"edge counters {runs['netgpt']['edge_counters']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--unique-share", type=float, default=0.6)
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    parser.add_argument("--mbit-s", type=float, default=50.0)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--edge-model", default="starter", help="GPT-2 folder, 'starter' or 'tiny'")
    parser.add_argument("--cloud-model", default="starter", help="LLaMA folder, 'starter' or 'tiny'")
    parser.add_argument("--edge-quantization", default="fp32", choices=["fp32", "int8", "int4"])
    parser.add_argument("--edge-concurrency", type=int, default=4, help="edge max_concurrency and max_batch")
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
