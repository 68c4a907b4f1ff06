"""NetGPT as deployed: core, cloud and edge as separate processes on loopback (``netgpt core``,
``netgpt cloud``, ``netgpt edge``, mutual TLS), the edge→cloud and UE→cloud hops through the
emulated link (``bench/link.py``, in a process of its own), and what each step of a request costs.

    python -m bench.as_deployed [--requests 40] [--concurrency 4] [--rtt-ms 40] [--mbit-s 50]
                                [--edge-model starter|tiny|gpt2-124m|DIR] [--cloud-model starter|tiny|DIR]
                                [--edge-intent knowledge|model|none] [--edge-cloud-intent] [--split-cores]
                                [--edge-threads N] [--cloud-threads N] [--edge-decode-first] [--du-load SHARE]
                                [--edge-quantization fp32|int8|int4]
                                [--toll-requests 16] [--out bench/reports/as_deployed.json]

The workloads are ``bench.netgpt_vs_cloud``'s (``zipf`` and ``long_tail``), each on a fresh edge
process (no answer cache carries over; core and cloud stay up). Per workload, as there:
``netgpt`` (concise prompts to the edge), ``cloud_only`` (the concise prompts straight to the cloud
over the UE→cloud link) and ``straight_same_prompt`` (the comprehensive prompts of NetGPT's
cloud-answered requests straight to the cloud). Then the edge's toll on a forwarded request: unseen
held-out questions one at a time, each sent through the edge and then, its comprehensive prompt,
straight to the cloud (pairs the edge did not forward are dropped).

Per step, every request is cut into consecutive parts that add up to its last-token time as the UE
saw it. Each request runs in its own trace (the UE starts a span; ``traceparent`` carries it UE →
edge → cloud, and every daemon log line carries its ``trace_id``), which joins three sources:
- the UE (this process): wall-clock send, first and last token;
- the edge's GenerationSummary (``latency.personalise_ms``, the workflow's ``StepTiming``s) and its
  ``edge.done`` log line (when the workflow ended, so when it began on the shared clock);
- the cloud's ``cloud.generate.start`` / ``cloud.generate.done`` log lines (time queued for the
  batch scheduler, first token, total).
All processes share the host's wall clock, so cross-process gaps are differences of timestamps.

Parts: ``ue_to_edge`` (UE send → edge workflow start), ``personalise`` (workflow start → comprehensive
prompt published: desensitise + knowledge base + intent line), ``route`` (→ the generation step
starts), ``queue`` (cloud: waiting for the batch scheduler; the edge's own admission wait is inside
``edge_generate``), ``edge_generate`` (the generate_edge step), ``edge_to_cloud`` (generation step
start → the cloud begins: link + gRPC + the cloud's request decoding; on a straight-to-cloud request
UE send → the cloud begins), ``cloud_prefill`` (admitted → first token), ``cloud_decode`` (first →
last token), ``stream_back`` (last token produced → at the UE: link back, edge relay, summary),
``other`` (the last-token time less the parts: what no clock covered).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import grpc
import numpy as np

from appkit.client import Question, establish
from bench.du_load import DuLoad
from bench.measure import Process, daemon_argv, machine, pct, run_concurrently
from bench.netgpt_vs_cloud import HARBOUR, PROMPTS, STARTER, Item, long_tail_workload, read_stream, zipf_workload
from netgpt.channels import open_channel
from netgpt.logs import configure_logging
from netgpt.tls import LocalPki, Transport
from netgpt.tracing import tracer
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc
from tasks.prompt_completion.evaluate import cell_venues, score_answer
from tasks.prompt_completion.heldout import HELD_OUT

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("ue_to_edge", "personalise", "route", "queue", "edge_generate", "edge_to_cloud", "cloud_prefill",
         "cloud_decode", "stream_back", "other")
HEADERS = {"ue_to_edge": "UE→edge", "personalise": "personalise", "route": "route", "queue": "queue",
           "edge_generate": "edge generate", "edge_to_cloud": "edge→cloud", "cloud_prefill": "cloud prefill",
           "cloud_decode": "cloud decode", "stream_back": "stream back", "other": "other"}
SYSTEMS = ("netgpt", "cloud_only", "straight_same_prompt")
VIA_EDGE = {"netgpt", "toll_via_edge"}
EDGE_CPU, CLOUD_CPU = 0, 1  # --split-cores
SPLIT = f" (edge on CPU {EDGE_CPU}, cloud on CPU {CLOUD_CPU}, a thread each)"


# --- the processes ----------------------------------------------------------------------------------

class LinkProcess:
    """``python -m bench.link``: the edge→cloud and UE→cloud links, driven over its stdin/stdout."""

    def __init__(self, rtt_ms: float, mbit_s: float) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.link", "--rtt-ms", str(rtt_ms),
                                      "--mbit-s", str(mbit_s)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=ROOT)
        self.sides: dict[str, str] = self._reply()

    def _reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the link process exited {self.proc.wait()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def command(self, text: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Deployment:
    """Core and cloud (up for the whole run), the link process, and the edge of the current workload."""

    pki: LocalPki
    operator: Transport
    folder: Path
    env: dict[str, str]
    link: LinkProcess
    core: Process
    core_address: str
    cloud: Process
    edges: list[Process] = field(default_factory=list)

    def stop(self) -> None:
        for process in (*self.edges, self.cloud, self.core):
            process.stop()
        self.link.close()


async def deploy(args: argparse.Namespace, folder: Path) -> Deployment:
    pki = LocalPki(folder / "pki")
    env = {**os.environ, "NETGPT_DATA_DIR": str(folder / "data"), "PYTHONUNBUFFERED": "1"}
    link = LinkProcess(args.rtt_ms, args.mbit_s)
    core = Process("core", daemon_argv("core", pki, "core", "--listen", "127.0.0.1:0", "--store-dir",
                                       str(folder / "store"), "--heartbeat-interval-s", "0.5"), env)
    cloud: Process | None = None
    try:
        core_address = (await core.wait_for("server.started"))["address"]
        cloud = Process("cloud", daemon_argv("cloud", pki, "cloud-1", "--listen", "127.0.0.1:0", "--node-id", "cloud-1",
                                             "--advertise", link.sides["edge_side"], "--core", core_address,
                                             "--model", args.cloud_model, "--max-concurrency", "2",
                                             "--max-queue", "256", *cloud_threads_flags(args)),
                        {**env, "OMP_NUM_THREADS": "1"} if args.split_cores else env,
                        cpus={CLOUD_CPU} if args.split_cores else None)
        link.command(f"upstream {(await cloud.wait_for('server.started'))['address']}")
    except BaseException:
        for process in (cloud, core):
            if process is not None:
                process.stop()
        link.close()
        raise
    return Deployment(pki, pki.identity("operator", "operator"), folder, env, link, core, core_address, cloud)


def cloud_threads_of(args: argparse.Namespace) -> int:
    return args.cloud_threads or (1 if args.split_cores else 0)  # a core of its own: one thread


def cloud_threads_flags(args: argparse.Namespace) -> list[str]:
    threads = cloud_threads_of(args)
    return ["--torch-threads", str(threads)] if threads else []


def start_edge(deployment: Deployment, args: argparse.Namespace, tag: str) -> Process:
    threads = args.edge_threads or (1 if args.split_cores else 0)  # a core of its own: one thread
    edge = Process(f"edge-{tag}", daemon_argv(
        "edge", deployment.pki, "edge-1", "--listen", "127.0.0.1:0", "--node-id", "edge-1",
        "--core", deployment.core_address, "--model", args.edge_model, "--providers", "cpu",
        "--quantization", args.edge_quantization, "--max-concurrency", str(args.edge_concurrency),
        "--max-batch", str(args.edge_concurrency), "--max-queue", "256", "--profiles-db", ":memory:",
        "--cells", ",".join(PROMPTS), "--deploy-dir", str(deployment.folder / f"deploy-{tag}"),
        *intent_flags(args.edge_intent), "--cloud-intent", str(args.edge_cloud_intent).lower(),
        "--prefill-first", str(not args.edge_decode_first).lower(),
        *(["--prefix-cache-mb", str(args.edge_prefix_cache_mb)] if args.edge_prefix_cache_mb is not None else []),
        *(["--intra-op-threads", str(threads)] if threads else [])),
        deployment.env, cpus={EDGE_CPU} if args.split_cores else None)
    deployment.edges.append(edge)
    return edge


def intent_flags(intent: str) -> list[str]:
    """The edge daemon's flags for ``--edge-intent``: knowledge | model (``intent_from``), none (no intent line)."""
    return ["--intent-tokens", "0"] if intent == "none" else ["--intent-from", intent]


# --- one request, as the UE sees it ----------------------------------------------------------------

@dataclass
class Record:
    system: str  # netgpt | cloud_only | straight_same_prompt | toll_via_edge | toll_straight
    item: Item
    trace_id: str
    sent: float  # wall clock, s
    first: float
    last: float
    route: str  # edge | cloud | cache | coalesced (straight to the cloud: cloud)
    answer_ok: bool
    comprehensive: str
    latency: dict[str, float]
    steps: dict[str, tuple[float, float]]  # function → (started_ms, finished_ms) of the steps that ran
    prompt_tokens: int = 0  # of the prompt the answering model read
    answer_tokens: int = 0  # the answer's length: last-token times compare only at like lengths
    parts: dict[str, float] = field(default_factory=dict)  # filled from the logs after the run

    @property
    def first_token_ms(self) -> float:
        return (self.first - self.sent) * 1000

    @property
    def last_token_ms(self) -> float:
        return (self.last - self.sent) * 1000


async def timed(system: str, item: Item, call: Callable[[], Any], venues: dict[str, list[str]]) -> Record:
    with tracer(__name__).start_as_current_span(f"bench.{system}") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        read = await read_stream(call(), clock=time.time)
    summary = read.summary
    steps = {s.function: (s.started_ms, s.finished_ms) for s in summary.steps if not s.skipped}
    return Record(system, item, trace_id, read.started, read.first, read.done, read.route,
                  score_answer(summary.text, item.expected, venues.get(item.cell_id, [])), read.comprehensive,
                  read.latency, steps, summary.prompt_tokens, summary.completion_tokens)


async def run_requests(items: list[Item], concurrency: int, send: Callable[[Item], Awaitable[Record]],
                       failures: dict[str, int], system: str) -> list[Record]:
    records, failed = await run_concurrently(items, concurrency, send)
    if failed:
        failures[system] += failed
    return records


# --- one workload on a fresh edge -------------------------------------------------------------------

def toll_items(n: int) -> list[Item]:
    """``n`` held-out questions made unseen (a suffix no workload uses): nothing in the answer cache."""
    return [Item(q.cell_id, f"{q.question} (pair {i})", up_pb2.TASK_CLASS_CHAT, q.expected)
            for i, q in ((i, HELD_OUT[i % len(HELD_OUT)]) for i in range(n))]


async def one_workload(deployment: Deployment, name: str, items: list[Item], args: argparse.Namespace,
                       failures: dict[str, int]) -> tuple[list[Record], Process]:
    edge = start_edge(deployment, args, name)
    edge_address = (await edge.wait_for("server.started", 900))["address"]  # a first ONNX export takes minutes
    await edge.wait_for("cp.registered")  # the core knows its cells: sessions can be established
    params = up_pb2.GenerationParams(max_new_tokens=args.max_new_tokens)
    venues, operator = cell_venues(), deployment.operator
    async with open_channel(deployment.core_address, operator) as core_channel, \
            open_channel(edge_address, operator) as edge_channel, \
            open_channel(deployment.link.sides["ue_side"], operator) as cloud_channel:
        core = cp_grpc.ControlPlaneServiceStub(core_channel)
        sessions = {cell: await establish_when_served(core, f"ue-{cell}", cell) for cell in PROMPTS}
        edge_stub, cloud_stub = up_grpc.UserPlaneServiceStub(edge_channel), up_grpc.UserPlaneServiceStub(cloud_channel)

        def edge_request(item: Item, session_id: str, ue_id: str,
                         route: up_pb2.RoutePreference = up_pb2.ROUTE_PREFERENCE_UNSPECIFIED,
                         ) -> up_pb2.GenerateRequest:
            return up_pb2.GenerateRequest(session_id=session_id, kind=up_pb2.PROMPT_KIND_CONCISE, prompt=item.prompt,
                                          ran=common_pb2.RanContext(cell_id=item.cell_id, ue_id=ue_id),
                                          params=params, task=cast("up_pb2.TaskClass", item.task),
                                          route=route)

        def via_edge(system: str) -> Callable[[Item], Awaitable[Record]]:
            def send(item: Item) -> Awaitable[Record]:
                session = sessions[item.cell_id]
                request = edge_request(item, session.session_id, session.ue_id)
                return timed(system, item, lambda: edge_stub.Generate(request, timeout=120), venues)
            return send

        def straight(system: str, prompt_of: Callable[[Item], str],
                     kind: up_pb2.PromptKind) -> Callable[[Item], Awaitable[Record]]:
            def send(item: Item) -> Awaitable[Record]:
                request = up_pb2.GenerateRequest(kind=kind, prompt=prompt_of(item), params=params,
                                                 ran=common_pb2.RanContext(cell_id=item.cell_id))
                return timed(system, item, lambda: cloud_stub.Generate(request, timeout=120), venues)
            return send

        await warm_up(core, edge_stub, cloud_stub, edge_request, params)
        records = await run_requests(items, args.concurrency, via_edge("netgpt"), failures, "netgpt")
        records += await run_requests(items, args.concurrency, straight("cloud_only", lambda i: i.prompt,
                                                                        up_pb2.PROMPT_KIND_UNSPECIFIED),
                                      failures, "cloud_only")
        built = {r.item: r.comprehensive for r in records if r.system == "netgpt" and r.route == "cloud"}
        records += await run_requests(list(built), args.concurrency,
                                      straight("straight_same_prompt", built.__getitem__,
                                               up_pb2.PROMPT_KIND_COMPREHENSIVE),
                                      failures, "straight_same_prompt")
        if name == "long_tail":  # the toll: pairs one at a time, through the edge then straight
            for item in toll_items(args.toll_requests):
                try:
                    through = await via_edge("toll_via_edge")(item)
                    records.append(through)
                    if through.route == "cloud":
                        records.append(await straight("toll_straight", lambda _: through.comprehensive,  # noqa: B023
                                                      up_pb2.PROMPT_KIND_COMPREHENSIVE)(item))
                except Exception:  # counted and reported
                    failures["toll"] += 1
    await asyncio.sleep(0.5)  # the edge's last log lines
    edge.stop()
    return records, edge


async def establish_when_served(core: cp_grpc.ControlPlaneServiceStub, ue_id: str, cell: str,
                                timeout_s: float = 30.0) -> cp_pb2.AiSession:
    """A session, once the core has an edge serving ``cell`` (a restarted edge registers again)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await establish(core, Question("", ue_id=ue_id, cell_id=cell))
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def warm_up(core: cp_grpc.ControlPlaneServiceStub, edge: up_grpc.UserPlaneServiceStub,
                  cloud: up_grpc.UserPlaneServiceStub, edge_request: Callable[..., up_pb2.GenerateRequest],
                  params: up_pb2.GenerationParams, timeout_s: float = 120.0) -> None:
    """Until the edge knows the cloud (a cloud-preferring request answered there), then a request on
    each side and one straight to the cloud: first forward passes and connections are not measured.
    A UE of its own, so the measured UEs' profiles start empty."""
    session = await establish_when_served(core, "ue-warm-up", HARBOUR)
    deadline, n = time.monotonic() + timeout_s, 0

    async def ask(prompt: str, task: int, route: int) -> common_pb2.NodeRole:
        nonlocal n
        n += 1
        item = Item(HARBOUR, f"{prompt} ({n})", task, ())
        terminated = common_pb2.NODE_ROLE_UNSPECIFIED
        async for event in edge.Generate(edge_request(item, session.session_id, session.ue_id, route), timeout=120):
            if event.HasField("summary"):
                terminated = event.summary.terminated_at
        return terminated

    while await ask("Warm-up: what is near the harbour?", up_pb2.TASK_CLASS_CHAT,
                    up_pb2.ROUTE_PREFERENCE_CLOUD) != common_pb2.NODE_ROLE_CLOUD:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the edge did not reach the cloud in {timeout_s:g} s")
        await asyncio.sleep(0.5)
    await ask("Warm-up: is the pharmacy open?", up_pb2.TASK_CLASS_LOOKUP, up_pb2.ROUTE_PREFERENCE_EDGE)
    async for _ in cloud.Generate(up_pb2.GenerateRequest(kind=up_pb2.PROMPT_KIND_COMPREHENSIVE,
                                                         prompt="Warm-up: a short answer.", params=params),
                                  timeout=120):
        pass


# --- from logs to parts -----------------------------------------------------------------------------

def wall(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def by_trace(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The last event of each trace (one per request here)."""
    return {e["trace_id"]: e for e in events if "trace_id" in e}


def split(record: Record, edge_done: dict[str, Any] | None, cloud_start: dict[str, Any] | None,
          cloud_done: dict[str, Any] | None) -> dict[str, float]:
    """``record``'s last-token time cut into consecutive parts (ms); the parts its clocks do not cover are absent."""
    parts: dict[str, float] = {}
    to_cloud = None  # wall clock, s, when this request's cloud call left the edge (or the UE)
    if record.system in VIA_EDGE and edge_done is not None:
        origin = wall(edge_done) - float(edge_done["total_ms"]) / 1000
        personalise = record.latency["personalise_ms"]
        parts["ue_to_edge"] = (origin - record.sent) * 1000
        parts["personalise"] = personalise
        generation = record.steps.get("generate_cloud" if record.route != "edge" else "generate_edge") \
            or record.steps.get("generate_cloud") or record.steps.get("generate_edge")  # a fallback: the cloud step
        if generation is not None:
            started, finished = generation
            parts["route"] = started - personalise
            if record.route == "edge":
                parts["edge_generate"] = finished - started
            to_cloud = origin + started / 1000
            if cloud_done is None:  # an edge answer, a cached or a shared one: the step's end is what the UE waits on
                parts["stream_back"] = (record.last - origin - finished / 1000) * 1000
                if record.route != "edge":
                    parts["edge_generate"] = finished - started  # relaying a cached / shared answer
    elif record.system not in VIA_EDGE:
        to_cloud = record.sent
    if cloud_start is not None and cloud_done is not None and to_cloud is not None:
        queued, first, total = (float(cloud_done[k]) for k in ("queued_ms", "first_token_ms", "total_ms"))
        parts["edge_to_cloud"] = (wall(cloud_start) - to_cloud) * 1000
        if queued >= 0:
            parts["queue"] = queued
        parts["cloud_prefill"] = first - max(queued, 0.0)
        parts["cloud_decode"] = total - first
        parts["stream_back"] = (record.last - wall(cloud_done)) * 1000
    if parts:
        parts["other"] = record.last_token_ms - sum(parts.values())
    return parts


# --- summaries and the report -----------------------------------------------------------------------

def group_summary(records: list[Record]) -> dict[str, Any]:
    parts: dict[str, list[float]] = defaultdict(list)
    for r in records:
        for key, value in r.parts.items():
            parts[key].append(value)
    return {"requests": len(records),
            "answer_ok": float(np.mean([r.answer_ok for r in records])) if records else float("nan"),
            "first_token_ms": p50_p95([r.first_token_ms for r in records]),
            "last_token_ms": p50_p95([r.last_token_ms for r in records]),
            "answer_tokens": p50_p95([r.answer_tokens for r in records]),
            "prompt_tokens": p50_p95([r.prompt_tokens for r in records]),
            "steps_ms": {key: {**p50_p95(parts[key]), "requests": len(parts[key])} for key in STEPS if parts.get(key)}}


def p50_p95(values: list[float] | list[int]) -> dict[str, float]:
    return {"p50": pct(values, 50), "p95": pct(values, 95)}


def workload_summary(records: list[Record], items: list[Item]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for system in SYSTEMS:
        mine = [r for r in records if r.system == system]
        rows[system] = group_summary(mine)
        for route in sorted({r.route for r in mine}):
            rows[f"{system} / {route}"] = group_summary([r for r in mine if r.route == route])
    netgpt, cloud_only = rows["netgpt"], rows["cloud_only"]
    ratios = {f"{q}_{kind}": netgpt[kind][q] / cloud_only[kind][q] if cloud_only[kind][q] else float("nan")
              for kind in ("first_token_ms", "last_token_ms") for q in ("p50", "p95")}
    return {"requests": len(items), "distinct_prompts": len({(i.cell_id, i.prompt) for i in items}),
            "rows": rows, "ratios_netgpt_over_cloud_only": ratios,
            "loaded_toll_ms": toll(rows.get("netgpt / cloud"), rows.get("straight_same_prompt / cloud"))}


def toll(via_edge: dict[str, Any] | None, straight: dict[str, Any] | None) -> dict[str, float]:
    if not via_edge or not straight or not via_edge["requests"] or not straight["requests"]:
        return {}
    return {f"{q}_{kind}": via_edge[kind][q] - straight[kind][q]
            for kind in ("first_token_ms", "last_token_ms") for q in ("p50", "p95")}


def paired_toll(records: list[Record]) -> dict[str, Any]:
    through = {r.item: r for r in records if r.system == "toll_via_edge" and r.route == "cloud"}
    pairs = [(through[r.item], r) for r in records if r.system == "toll_straight" and r.item in through]
    edge_rows, straight_rows = group_summary([p[0] for p in pairs]), group_summary([p[1] for p in pairs])
    last_diff = [a.last_token_ms - b.last_token_ms for a, b in pairs]
    first_diff = [a.first_token_ms - b.first_token_ms for a, b in pairs]
    # the first-token toll less personalisation: what the edge adds besides building the prompt (UE→edge, routing,
    # the relay both ways)
    relay_diff = [a.first_token_ms - b.first_token_ms - a.parts.get("personalise", 0.0) for a, b in pairs]
    return {"pairs": len(pairs), "dropped_not_forwarded": sum(1 for r in records if r.system == "toll_via_edge")
            - len(pairs), "via_edge": edge_rows, "straight": straight_rows,
            "p50_difference_ms": toll(edge_rows, straight_rows),
            "p50_of_paired_differences_ms": {"first_token": pct(first_diff, 50), "last_token": pct(last_diff, 50),
                                             "first_token_less_personalise": pct(relay_diff, 50)}}


def edge_model_folder(name: str) -> str:
    """``starter``, ``tiny``, ``gpt2-124m`` (GPT-2 base shape, 12 × 768, seeded random weights: the cost of a
    full-size edge model, not its answers; built once in the cache) or a folder."""
    if name == "starter":
        return str(STARTER / "gpt2")
    if name == "gpt2-124m":
        from bench.edge_generation import ensure_bench_model
        from netgpt.tiny_models import default_cache_root

        return str(ensure_bench_model(default_cache_root()))
    return name


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    models = {"edge": args.edge_model, "cloud": args.cloud_model}
    args.edge_model = edge_model_folder(args.edge_model)
    args.cloud_model = str(STARTER / "llama") if args.cloud_model == "starter" else args.cloud_model
    workloads = {"zipf": zipf_workload(args.requests, args.zipf, args.seed),
                 "long_tail": long_tail_workload(args.requests, args.zipf, args.unique_share, args.seed)}
    report: dict[str, Any] = {"machine": machine() | {"note": args.note}}
    failures: dict[str, int] = defaultdict(int)
    parts: dict[str, Any] = {}
    all_records: list[tuple[str, Record]] = []
    with tempfile.TemporaryDirectory(prefix="netgpt-bench-deployed-") as folder:
        deployment = await deploy(args, Path(folder))
        du = DuLoad(args.du_load, {EDGE_CPU}) if args.du_load else None
        if du is not None:
            report["du_load"] = du.describe()
        try:
            per_workload = {}
            for name, items in workloads.items():
                records, edge = await one_workload(deployment, name, items, args, failures)
                per_workload[name] = (records, edge)
            link_stats = deployment.link.command("stats")
        finally:
            await asyncio.sleep(0.5)  # the cloud's last log lines
            if du is not None:
                du.stop()
            deployment.stop()
        cloud_start = by_trace(deployment.cloud.named("cloud.generate.start"))
        cloud_done = by_trace(deployment.cloud.named("cloud.generate.done"))
        for name, (records, edge) in per_workload.items():
            edge_done = by_trace(edge.named("edge.done"))
            for r in records:
                r.parts = split(r, edge_done.get(r.trace_id), cloud_start.get(r.trace_id), cloud_done.get(r.trace_id))
            parts[name] = workload_summary(records, workloads[name])
            all_records += [(name, r) for r in records]
    report["workloads"] = parts
    report["edge_toll_on_a_forwarded_request"] = paired_toll([r for _, r in all_records])
    report["failures"] = dict(failures)
    if args.per_request:
        report["requests"] = [{"workload": workload, "system": r.system, "route": r.route, "cell": r.item.cell_id,
                               "prompt": r.item.prompt, "trace_id": r.trace_id, "answer_ok": r.answer_ok,
                               "first_token_ms": round(r.first_token_ms, 1),
                               "last_token_ms": round(r.last_token_ms, 1),
                               "parts_ms": {k: round(v, 1) for k, v in r.parts.items()}}
                              for workload, r in all_records]
    report["link"] = {"rtt_ms": args.rtt_ms, "mbit_s": args.mbit_s, "bytes": link_stats}
    report["models"] = {"edge": models["edge"], "edge_path": args.edge_model,
                        "edge_quantization": args.edge_quantization, "edge_intent": args.edge_intent,
                        "edge_cloud_intent": args.edge_cloud_intent, "split_cores": args.split_cores,
                        "edge_threads": args.edge_threads, "edge_prefill_first": not args.edge_decode_first,
                        "cloud": models["cloud"], "cloud_path": args.cloud_model,
                        "cloud_threads": cloud_threads_of(args)}
    report["settings"] = {k: getattr(args, k) for k in ("requests", "concurrency", "zipf", "unique_share",
                                                        "max_new_tokens", "seed", "edge_concurrency",
                                                        "toll_requests", "edge_prefix_cache_mb")}
    return report


def cell(summary: dict[str, Any] | None) -> str:
    if not summary or summary.get("p50") != summary.get("p50"):  # absent or nan
        return "—"
    return f"{summary['p50']:.0f} / {summary['p95']:.0f}"


def tokens(row: dict[str, Any]) -> str:
    """p50 prompt / p50 answer tokens, or — (reports made before tokens were counted)."""
    if "answer_tokens" not in row or not row["requests"]:
        return "—"
    return f"{row['prompt_tokens']['p50']:.0f} / {row['answer_tokens']['p50']:.0f}"


def cloud_threads(models: dict[str, Any]) -> str:
    threads = models.get("cloud_threads", 0)
    return f" ({threads} torch thread{'s' if threads > 1 else ''})" if threads and not models.get("split_cores") else ""


def row_columns() -> list[str]:
    """The headers of :func:`row_cells`."""
    return ["first token", "last token", "prompt / answer tokens", *(HEADERS[s] for s in STEPS)]


def row_cells(row: dict[str, Any]) -> str:
    """A row's cells after its count: first and last token, tokens, then every step."""
    cells = [cell(row["first_token_ms"]), cell(row["last_token_ms"]), tokens(row),
             *(cell(row["steps_ms"].get(s)) for s in STEPS)]
    return " | ".join(cells)


def markdown(report: dict[str, Any]) -> str:
    m, models, link = report["machine"], report["models"], report["link"]
    lines = ["# NetGPT as deployed: where a request's time goes", "",
             "`python -m bench.as_deployed` — core, cloud and edge as separate processes (`netgpt core|cloud|edge`, "
             "mutual TLS) on loopback; edge→cloud and UE→cloud through an emulated "
             f"{link['rtt_ms']:g} ms RTT / {link['mbit_s']:g} Mbit/s link (`bench/link.py`, its own process).", "",
             f"- Machine: {m['cpu'] or m['platform']}, {m['cpus']} CPUs, load average at start "
             f"{', '.join(f'{x:.2f}' for x in m['load_average_at_start'])}. {m.get('note') or ''}".rstrip(),
             f"- Models: edge `{models['edge']}` ({models['edge_quantization']}, intent from "
             f"{models.get('edge_intent', 'model')}"
             f"{', also for the cloud route' if models.get('edge_cloud_intent') else ''}), cloud `{models['cloud']}`"
             f"{cloud_threads(models)}"
             f"{SPLIT if models.get('split_cores') else ''}; "
             f"settings {json.dumps(report['settings'])}.",
             *([f"- A co-located RAN DU (`bench/du_load.py`) is busy {report['du_load']['duty']:.0%} of the edge's "
                f"CPU {report['du_load']['cpus']}, priority {report['du_load']['priority']}."]
               if report.get("du_load") else []),
             "- **All figures come from one run on one shared machine: compare them with each other (ratios, "
             "differences within the run), not with other runs or machines.**",
             "- Cells are p50 / p95 in ms. Each request is cut into consecutive parts that add up to its last-token "
             "time (`other`: what no clock covered); a part's p50s do not add up to the row's p50. On rows "
             "straight to the cloud, `edge→cloud` is the UE→cloud hop. `queue` is the cloud's batch-scheduler wait; "
             "the edge's own admission wait is inside `edge generate`. On `cache` / `coalesced` rows `edge generate` "
             "is the relay of a cached or shared answer.", ""]
    columns = row_columns()
    for name, part in report["workloads"].items():
        ratios = part["ratios_netgpt_over_cloud_only"]
        lines += [f"## {name}: {part['requests']} requests, {part['distinct_prompts']} distinct prompts", "",
                  "| system / route | n | answer ok | " + " | ".join(columns) + " |",
                  "|---|---:|---:|" + "---:|" * len(columns)]
        for row_name, row in part["rows"].items():
            lines.append(f"| {row_name} | {row['requests']} | {row['answer_ok']:.0%} | {row_cells(row)} |")
        lines += ["", "NetGPT / cloud-only: " + ", ".join(f"{k} ×{v:.2f}" for k, v in ratios.items()) + "."]
        loaded = part["loaded_toll_ms"]
        if loaded:
            lines.append(f"Loaded toll (NetGPT's cloud route vs its comprehensive prompts straight to the cloud, "
                         f"both at concurrency {report['settings']['concurrency']}): p50 first token "
                         f"{loaded['p50_first_token_ms']:+.0f} ms, p50 last token "
                         f"{loaded['p50_last_token_ms']:+.0f} ms.")
        lines.append("")
    t = report["edge_toll_on_a_forwarded_request"]
    lines += ["## The edge's toll on a forwarded request (goal ≤ 15 ms p50)", "",
              f"{t['pairs']} unseen held-out questions one at a time: through the edge, then its comprehensive prompt "
              f"straight to the cloud ({t['dropped_not_forwarded']} not forwarded, dropped).", ""]
    if t["pairs"]:
        columns = row_columns()
        lines += ["| path | n | " + " | ".join(columns) + " |", "|---|---:|" + "---:|" * len(columns)]
        for label, row in (("through the edge", t["via_edge"]), ("straight to the cloud", t["straight"])):
            lines.append(f"| {label} | {row['requests']} | {row_cells(row)} |")
        d, paired = t["p50_difference_ms"], t["p50_of_paired_differences_ms"]
        lines += ["", f"**Toll: p50 last token {d['p50_last_token_ms']:+.0f} ms, p50 first token "
                  f"{d['p50_first_token_ms']:+.0f} ms** (difference of p50s); median of the paired differences: "
                  f"last token {paired['last_token']:+.0f} ms, first token {paired['first_token']:+.0f} ms, "
                  f"first token less the edge's personalise {paired['first_token_less_personalise']:+.0f} ms "
                  "(UE→edge, routing and the relay both ways). Last-token differences also carry the relay's CPU: "
                  "on one host the edge relaying tokens competes with the cloud's decode.", ""]
    lines += [f"Failures: {json.dumps(report['failures'])}. Bytes through the links: {json.dumps(link['bytes'])}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=40, help="per workload")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--unique-share", type=float, default=0.6)
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    parser.add_argument("--mbit-s", type=float, default=50.0)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--edge-model", default="starter",
                        help="GPT-2 folder, 'starter', 'tiny' or 'gpt2-124m' (full size, random weights)")
    parser.add_argument("--cloud-model", default="starter", help="LLaMA folder, 'starter' or 'tiny'")
    parser.add_argument("--edge-quantization", default="fp32", choices=["fp32", "int8", "int4"])
    parser.add_argument("--edge-intent", default="knowledge", choices=["knowledge", "model", "none"],
                        help="the edge's Intent line: from the knowledge base when it decides (the edge's default), "
                             "always the edge model's (as before issue 29), or none")
    parser.add_argument("--edge-cloud-intent", action="store_true",
                        help="the edge reads the Intent line for requests it knows go to the cloud too (cloud_intent; "
                             "as before this stop)")
    parser.add_argument("--edge-decode-first", action="store_true",
                        help="the edge's decode steps do not wait for prefills (prefill_first = false; as before)")
    parser.add_argument("--edge-threads", type=int, default=0,
                        help="the edge's intra_op_threads (0: ONNX Runtime's default; 1 with --split-cores)")
    parser.add_argument("--cloud-threads", type=int, default=0,
                        help="the cloud's torch_threads (0: torch's default, one per core; 1 with --split-cores)")
    parser.add_argument("--split-cores", action="store_true",
                        help=f"the edge runs on CPU {EDGE_CPU} only and the cloud on CPU {CLOUD_CPU} only, a thread "
                             "each, as if each had a host of its own (core, link and UE share both)")
    parser.add_argument("--du-load", type=float, default=0.0,
                        help="with --split-cores: a co-located RAN DU busy this share of the edge's core at real-time "
                             "priority (bench/du_load.py), as a cell's PRB load would make it; 0: none")
    parser.add_argument("--edge-concurrency", type=int, default=4, help="edge max_concurrency and max_batch")
    parser.add_argument("--edge-prefix-cache-mb", type=float, default=None,
                        help="the edge's prefix_cache_mb (default: the edge's own; 0: off)")
    parser.add_argument("--toll-requests", type=int, default=16, help="pairs measuring the edge's toll")
    parser.add_argument("--per-request", action="store_true", help="every request's times and parts in the JSON")
    parser.add_argument("--note", default="", help="said of the machine in the report (e.g. what else runs on it)")
    parser.add_argument("--out", type=Path, default=Path("bench/reports/as_deployed.json"),
                        help="JSON report; the markdown table goes next to it (.md)")
    args = parser.parse_args(argv)
    if args.du_load and not args.split_cores:
        parser.error("--du-load needs --split-cores: the DU shares the edge's core, not the cloud's")
    configure_logging(json=False, level="error")
    report = asyncio.run(bench(args))
    text = markdown(report)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    args.out.with_suffix(".md").write_text(text)
    print(f"report: {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
