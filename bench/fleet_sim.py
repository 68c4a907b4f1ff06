"""Fleet simulation: N simulated nodes (real gRPC clients, mutual TLS) against one real core process.

    python -m bench.fleet_sim [--nodes 100,1000,2000] [--interval-s 2] [--clouds 4] [--window-s 20]
                              [--sessions 2000] [--storm-concurrency 200] [--per-worker 1000]
                              [--before DIR] [--profile-s 10] [--out bench/reports/fleet_sim.json]

The core is ``python -m cli core`` (a child process, mutual TLS, its SQLite state, log level info:
as deployed). The nodes are simulated by worker processes (``--per-worker`` nodes each, one asyncio
loop, grpc.aio): each node has its own certificate (CN = node id, OU = role: the core lets a node
register and heartbeat only as itself), its own channel (one TCP + TLS connection to the core),
registers, then heartbeats as ``cp.agent`` does — a beat, the reply, ``interval`` of sleep; no reply
within max(interval, 0.5 s) and it registers again — with a load report like a real node's (queue,
tokens/s, served model, a dozen counters; after a deploy its deployment state and blob). ``--clouds``
of the nodes are clouds; the rest are edges, one cell each. A deploy command is taken (its arrival
time noted) and reported SERVING in the next beats; other commands are counted.

For each N, on a fresh core: all N register at once (as after a core restart), then
- a steady window of ``--window-s``: heartbeat round trips (write → reply, as the node sees it),
  beats whose reply came later than the interval, re-registrations, the core's CPU
  (/proc/PID/stat) and resident memory, and the workers' own event-loop lag (if the clients are
  late, the round trips are the clients' fault, not the core's);
- a fleet deploy: ``DeployModel`` of a published edge version to every edge (what ``netgpt model
  deploy NAME VERSION`` sends), timed to the moment the last node has its command;
- a session storm: ``--sessions`` EstablishSession calls, ``--storm-concurrency`` in flight, made
  by the edges for their UEs (as the edge's HTTP API does); set-up time p50/p99 and heartbeats
  meanwhile;
- with ``--profile-s``, py-spy samples the core for that long afterwards (top frames in the report).
The ladder stops at the first N whose nodes miss their interval badly (or cannot register).

``--before DIR`` runs the same ladder first with the core started from DIR (a copy of the tree with
the code before a change, e.g. ``git show HEAD:cp/registry.py``), so before and after are measured
in the same run on the same machine. Writes JSON and a markdown table next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench.measure import ROOT, Process, cpu_seconds, daemon_argv, machine, pct, rss_bytes
from cp.agent import MIN_REPLY_WAIT_S, RPC_TIMEOUT_S, retry_delays, spread
from netgpt.channels import open_channel
from netgpt.logs import configure_logging
from netgpt.targets import rotated, split_addresses
from netgpt.tls import Identity, LocalPki
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc

MiB = 1 << 20
COUNTERS = ("cloud_calls", "coalesced_requests", "answer_cache_hits", "answer_cache_misses", "answer_cache_entries",
            "edge_answers", "fallbacks", "blob_bytes_served", "blob_streams", "deploys", "requests", "rejected")
LAG_PROBE_S = 0.05
MISSING = 0.01  # a step whose nodes miss their interval on more than this share of beats ends the ladder


def node_names(n: int, clouds: int) -> list[tuple[str, str]]:
    """(node id, role) of a fleet of ``n``: the first ``clouds`` are clouds, the rest edges."""
    clouds = min(clouds, n - 1) if n > 1 else 0
    return [(f"cloud-{i:03d}", "cloud") for i in range(clouds)] + [(f"edge-{i:05d}", "edge")
                                                                      for i in range(n - clouds)]


# --- a worker: many simulated nodes in one process -------------------------------------------------

@dataclass
class Window:
    """What the nodes of one worker saw since the last ``mark``."""

    rtt_s: list[float] = field(default_factory=list)
    late: int = 0  # replies later than the interval
    timeouts: int = 0  # no reply within the agent's wait: the node registered again
    registrations: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    commands: Counter[str] = field(default_factory=Counter)
    edge_beats: int = 0
    peers_updates: int = 0  # edge beats whose reply carried the clouds' statuses
    reply_bytes: int = 0
    lag_s: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"rtt_s": [round(r, 6) for r in self.rtt_s], "late": self.late, "timeouts": self.timeouts,
                "registrations": self.registrations, "errors": dict(self.errors), "commands": dict(self.commands),
                "edge_beats": self.edge_beats, "peers_updates": self.peers_updates, "reply_bytes": self.reply_bytes,
                "lag_s": [round(lag, 6) for lag in self.lag_s]}


class SimNode:
    """One node: its certificate and channel, a registration, and a heartbeat stream as ``cp.agent`` runs it."""

    def __init__(self, worker: Worker, node_id: str, role: str, identity: Identity, index: int) -> None:
        self.worker = worker
        self.role = common_pb2.NODE_ROLE_CLOUD if role == "cloud" else common_pb2.NODE_ROLE_EDGE
        self.cell = f"cell-{index:05d}"
        model = common_pb2.ModelRef(name="llama-cloud" if role == "cloud" else "gpt2-edge", version="v1",
                                    sha256=f"{index:064x}", kind=common_pb2.MODEL_KIND_ONNX_EDGE)
        self.info = common_pb2.NodeInfo(
            node_id=node_id, role=self.role, address=f"127.0.0.1:{20000 + index % 40000}", region="region-1",
            cell_ids=[self.cell] if self.role == common_pb2.NODE_ROLE_EDGE else [],
            capabilities=common_pb2.Capabilities(accelerator="cpu", runtime="onnxruntime", max_concurrency=4,
                                                 max_context_tokens=1024, models=[model]))
        self.load = common_pb2.NodeLoad(models_served=[model], p50_first_token_ms=40.0,
                                        counters={name: 0 for name in COUNTERS})
        replicas = split_addresses(worker.core)  # as cp.agent: each node starts at the replica its id picks
        self.channel = open_channel(",".join(rotated(replicas, spread(node_id, len(replicas)))), identity)
        self.stub = cp_grpc.ControlPlaneServiceStub(self.channel)
        self.registered = asyncio.Event()
        self.deploys: dict[str, float] = {}  # command id -> wall time it arrived
        self.replies: deque[float] = deque(maxlen=64)  # wall times of its last heartbeat replies
        self._rng = random.Random(index)

    def next_load(self) -> common_pb2.NodeLoad:
        """This beat's report: counters grow; for a cloud, the load edges route on moves now and then."""
        load, rng = self.load, self._rng
        for name in ("requests", "edge_answers", "cloud_calls"):
            load.counters[name] += rng.randrange(3)
        if self.role == common_pb2.NODE_ROLE_EDGE or rng.random() < self.worker.cloud_change:
            load.queue_depth = rng.randrange(3)
            load.active_requests = rng.randrange(5)
            load.p50_first_token_ms = round(rng.uniform(30, 60))
        load.tokens_per_second = round(rng.uniform(0, 200), 1)
        return load

    def take(self, command: cp_pb2.NodeCommand) -> None:
        kind = command.WhichOneof("command") or "none"
        self.worker.window.commands[kind] += 1
        if kind != "deploy" or command.command_id in self.deploys:
            return
        self.deploys[command.command_id] = time.time()
        model = command.deploy.model
        state = common_pb2.DeploymentState(command_id=command.command_id, model=model,
                                           phase=common_pb2.DEPLOYMENT_PHASE_SERVING, bytes_done=1024,
                                           bytes_total=1024)
        state.started_at.GetCurrentTime()
        state.updated_at.GetCurrentTime()
        self.load.deployments.insert(0, state)
        del self.load.deployments[4:]
        self.load.models_served[0].CopyFrom(model)
        self.load.blobs[:] = [model.sha256]

    async def run(self) -> None:
        """Register, heartbeat; on any failure register again after the agent's backoff (capped by the interval)."""
        interval = self.worker.interval_s
        delays = retry_delays(interval)
        await asyncio.sleep(self._rng.uniform(0, interval))  # nodes start at random phases
        while True:
            try:
                async with self.worker.registering:
                    await self.stub.RegisterNode(cp_pb2.RegisterNodeRequest(node=self.info), timeout=RPC_TIMEOUT_S)
                self.worker.window.registrations += 1
                self.registered.set()
                delays = retry_delays(interval)
                await self._beat(interval)
            except TimeoutError:
                self.worker.window.timeouts += 1
            except grpc.aio.AioRpcError as exc:
                self.worker.window.errors[exc.code().name] += 1
            except Exception as exc:  # a write on a stream the core dropped, say: as cp.agent, never give up
                self.worker.window.errors[type(exc).__name__] += 1
            await asyncio.sleep(next(delays))

    async def _beat(self, interval: float) -> None:
        call = self.stub.Heartbeat()
        sequence = 0
        try:
            while True:
                sequence += 1
                sent = time.perf_counter()
                await call.write(cp_pb2.HeartbeatRequest(node_id=self.info.node_id, load=self.next_load(),
                                                         sequence=sequence))
                reply = await asyncio.wait_for(call.read(), timeout=max(interval, MIN_REPLY_WAIT_S))
                if reply is grpc.aio.EOF:
                    await call
                    return
                rtt = time.perf_counter() - sent
                self.replies.append(time.time())
                window = self.worker.window
                window.rtt_s.append(rtt)
                window.late += rtt > interval
                window.reply_bytes += reply.ByteSize()
                if self.role == common_pb2.NODE_ROLE_EDGE:
                    window.edge_beats += 1
                    window.peers_updates += any(c.HasField("peers_update") for c in reply.commands)
                for command in reply.commands:
                    self.take(command)
                await asyncio.sleep(interval)
        finally:
            call.cancel()


class Worker:
    """Nodes of one process, driven over stdin/stdout, one JSON line per request and per reply."""

    def __init__(self, core: str, pki: Path, names: list[tuple[int, str, str]], interval_s: float,
                 cloud_change: float) -> None:
        self.core, self.pki, self.names = core, LocalPki(pki), names
        self.interval_s, self.cloud_change = interval_s, cloud_change
        self.window = Window()
        self.registering = asyncio.Semaphore(64)  # TLS handshakes + registrations in flight from this process
        self.nodes: list[SimNode] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def lag_probe(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(LAG_PROBE_S)
            self.window.lag_s.append(time.perf_counter() - started - LAG_PROBE_S)

    async def start(self, deadline_s: float) -> dict[str, Any]:
        """Every node registers (and goes on heartbeating); the reply comes when all have, or at the deadline."""
        started = time.perf_counter()
        self.nodes = [SimNode(self, name, role, self.pki.identity(role, name), index)
                      for index, role, name in self.names]
        issued = time.perf_counter()
        self.tasks = [asyncio.create_task(node.run()) for node in self.nodes]
        self.tasks.append(asyncio.create_task(self.lag_probe()))
        try:
            await asyncio.wait_for(asyncio.gather(*(node.registered.wait() for node in self.nodes)), deadline_s)
        except TimeoutError:
            pass
        return {"nodes": len(self.nodes), "registered": sum(n.registered.is_set() for n in self.nodes),
                "issue_s": issued - started, "register_s": time.perf_counter() - issued}

    async def storm(self, sessions: int, concurrency: int) -> dict[str, Any]:
        edges = [n for n in self.nodes if n.role == common_pb2.NODE_ROLE_EDGE]
        latencies: list[float] = []
        finished: list[float] = []  # wall time of the first success
        errors: Counter[str] = Counter()
        todo = iter(range(sessions))

        async def one_at_a_time() -> None:
            for k in todo:
                edge = edges[k % len(edges)]
                request = cp_pb2.EstablishSessionRequest(ue_id=f"ue-{edge.info.node_id}-{k}", cell_id=edge.cell)
                sent = time.perf_counter()
                try:
                    await edge.stub.EstablishSession(request, timeout=30)
                    latencies.append(time.perf_counter() - sent)
                    if not finished:
                        finished.append(time.time())
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] += 1

        started = time.perf_counter()
        if edges:
            await asyncio.gather(*(one_at_a_time() for _ in range(min(concurrency, sessions))))
        return {"latency_s": [round(x, 6) for x in latencies], "errors": dict(errors),
                "seconds": time.perf_counter() - started, "first_ok_at": finished[0] if finished else None}

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "start":
            return await self.start(request["deadline_s"])
        if op == "mark":
            self.window = Window()
            return {}
        if op == "stats":
            me = os.getpid()
            return {**self.window.summary(), "rss": rss_bytes(me), "cpu_s": cpu_seconds(me)}
        if op == "storm":
            return await self.storm(request["sessions"], request["concurrency"])
        if op == "deploys":  # when each node got its deploy commands (one deploy per step)
            return {"arrived": [t for n in self.nodes for t in n.deploys.values()]}
        if op == "first_reply_after":  # each node's first heartbeat reply after wall time t (None: none yet)
            return {"first": [next((r for r in n.replies if r > request["t"]), None) for n in self.nodes],
                    "ids": [n.info.node_id for n in self.nodes]}
        raise ValueError(f"unknown op {op!r}")

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        try:
            while line := await reader.readline():
                request = json.loads(line)
                if request["op"] == "stop":
                    break
                reply = await self.handle(request)
                sys.stdout.write(json.dumps(reply) + "\n")
                sys.stdout.flush()
        finally:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await asyncio.gather(*(n.channel.close() for n in self.nodes))


def worker_main(args: argparse.Namespace) -> None:
    configure_logging(json=True, level="critical")
    spec = json.loads(args.worker)
    names = [(index, role, name) for index, role, name in spec["names"]]
    asyncio.run(Worker(spec["core"], Path(spec["pki"]), names, spec["interval_s"], spec["cloud_change"]).serve())


# --- the driver ------------------------------------------------------------------------------------

class WorkerProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, spec: dict[str, Any], log: Path) -> WorkerProcess:
        with open(log, "ab") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.fleet_sim", "--worker", json.dumps(spec), cwd=ROOT,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, limit=64 * MiB)
        return cls(proc)

    async def ask(self, request: dict[str, Any], timeout_s: float = 60.0) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        if not line:
            raise RuntimeError(f"a worker exited ({await self.proc.wait()}) on {request['op']}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def stop(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(b'{"op": "stop"}\n')
                await self.proc.stdin.drain()
                await asyncio.wait_for(self.proc.wait(), 30)
            except (TimeoutError, ConnectionError):
                self.proc.kill()
                await self.proc.wait()


async def ask_all(workers: list[WorkerProcess], request: dict[str, Any] | list[dict[str, Any]],
                  timeout_s: float = 60.0) -> list[dict[str, Any]]:
    requests = request if isinstance(request, list) else [request] * len(workers)
    return list(await asyncio.gather(*(w.ask(r, timeout_s) for w, r in zip(workers, requests, strict=True))))


def ms(values: list[float], q: float) -> float | None:
    """The ``q`` percentile of ``values`` (seconds) in ms; None when there are none (no NaN in the JSON)."""
    return round(pct(values, q) * 1e3, 2) if values else None


def merge(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """One window over all workers: percentiles of the round trips, counts summed."""
    rtt = [x for s in stats for x in s["rtt_s"]]
    lag = [x for s in stats for x in s["lag_s"]]
    errors: Counter[str] = Counter()
    commands: Counter[str] = Counter()
    for s in stats:
        errors.update(s["errors"])
        commands.update(s["commands"])
    beats, edge_beats = len(rtt), sum(s["edge_beats"] for s in stats)
    return {"beats": beats,
            "rtt_ms": {"p50": ms(rtt, 50), "p99": ms(rtt, 99), "max": ms(rtt, 100)},
            "late": sum(s["late"] for s in stats), "timeouts": sum(s["timeouts"] for s in stats),
            "missed_share": round((sum(s["late"] + s["timeouts"] for s in stats)) / max(beats, 1), 4),
            "registrations": sum(s["registrations"] for s in stats), "errors": dict(errors),
            "commands": dict(commands),
            "peers_updates_per_edge_beat": round(sum(s["peers_updates"] for s in stats) / max(edge_beats, 1), 3),
            "reply_bytes_per_beat": round(sum(s["reply_bytes"] for s in stats) / max(beats, 1), 1),
            "client_loop_lag_ms": {"p50": ms(lag, 50), "p99": ms(lag, 99)},
            "sim_rss_mib": round(sum(s.get("rss", 0) for s in stats) / MiB, 1)}


class Core:
    """``python -m cli core`` from ``src`` (the tree under test), its CPU and memory read from /proc."""

    def __init__(self, src: Path, pki: LocalPki, folder: Path, interval_s: float, *flags: str) -> None:
        env = {**os.environ, "NETGPT_DATA_DIR": str(folder / "data"), "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(src)}
        self.process = Process("core", daemon_argv("core", pki, "core", "--listen", "127.0.0.1:0", "--store-dir",
                                                   str(folder / "store"), "--heartbeat-interval-s", str(interval_s),
                                                   *flags), env, cwd=src)
        self.pid = self.process.proc.pid
        self.address = ""

    async def started(self) -> str:
        self.address = (await self.process.wait_for("server.started", timeout_s=120))["address"]
        return self.address

    def cpu_s(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def stop(self) -> None:
        self.process.stop()


async def publish_edge_version(stub: cmp_grpc.ComputePlaneServiceStub, folder: Path) -> tuple[str, str]:
    """A small edge version in the store (its bytes do not matter: simulated nodes do not fetch)."""
    from cmp.transfer_client import publish_file

    artifact = folder / "edge.tar"
    artifact.write_bytes(os.urandom(64 * 1024))
    manifest = cmp_pb2.ModelManifest(name="gpt2-edge", version="v2", kind=common_pb2.MODEL_KIND_ONNX_EDGE)
    await publish_file(stub, manifest, artifact)
    return "gpt2-edge", "v2"


async def profile(pid: int, seconds: float, out: Path) -> dict[str, Any]:
    """py-spy samples of the core for ``seconds``: the frames most often on the stack, and the leaves."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return {"error": "py-spy is not installed (pip install -e '.[dev]' brings it)"}
    proc = await asyncio.create_subprocess_exec(spy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
                                                "--rate", "50", "--format", "raw", "--output", str(out),
                                                "--nonblocking", "--idle", stdout=subprocess.DEVNULL,
                                                stderr=subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0 or not out.exists():
        return {"error": err.decode(errors="replace")[-400:]}
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = idle = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack.startswith(MAIN_THREAD) or not count.isdigit():
            continue  # the event loop's thread only: it is what runs out of time
        frames = [_frame(f) for f in stack.split(";")]
        total += int(count)
        if frames[-1].startswith(IDLE_LEAVES):
            idle += int(count)
            continue
        leaves[frames[-1]] += int(count)
        for frame in set(frames) - {f for f in frames if f.endswith(PLUMBING)}:
            inclusive[frame] += int(count)
    busy = max(total - idle, 1)
    return {"samples": total, "busy_share": round((total - idle) / max(total, 1), 3),
            "top_inclusive_of_busy": [(f, round(c / busy, 3)) for f, c in inclusive.most_common(30)],
            "top_leaves_of_busy": [(f, round(c / busy, 3)) for f, c in leaves.most_common(15)]}


MAIN_THREAD = "_run_module_as_main"
IDLE_LEAVES = ("EpollSelector.select", "select ", "epoll_wait", "_poll ", "wait (threading")
PLUMBING = ("(runners.py)", "(base_events.py)", "(events.py)", "(<frozen runpy>)", "(__main__.py)", "(main.py)",
            "(daemons.py)", "(threading.py)")


def _frame(frame: str) -> str:
    """``function (path/to/file.py:123)`` -> ``function (file.py)``: one name per function, lines merged."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1].rsplit(':', 1)[0]})" if where else name


async def one_step(n: int, variant: str, src: Path, args: argparse.Namespace, pki: LocalPki,
                   workdir: Path) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"{variant}-{n}-", dir=workdir))
    names = node_names(n, args.clouds)
    edges = [name for name, role in names if role == "edge"]
    core = Core(src, pki, folder, args.interval_s)
    workers: list[WorkerProcess] = []
    result: dict[str, Any] = {"n": n, "variant": variant, "clouds": n - len(edges), "edges": len(edges)}
    operator = pki.identity("operator", "operator")
    try:
        address = await core.started()
        async with open_channel(address, operator) as channel:
            version = await publish_edge_version(cmp_grpc.ComputePlaneServiceStub(channel), folder)
        await asyncio.sleep(1.0)
        cpu_idle, t_idle = core.cpu_s(), time.perf_counter()
        await asyncio.sleep(3.0)
        rss_idle = core.rss()
        idle = (core.cpu_s() - cpu_idle) / (time.perf_counter() - t_idle)  # the core with no node
        cpu_idle = core.cpu_s()
        parts = max(1, math.ceil(n / args.per_worker))
        slices = [[(i, role, name) for i, (name, role) in enumerate(names) if i % parts == k] for k in range(parts)]
        for k, part in enumerate(slices):
            spec = {"core": address, "pki": str(pki.folder), "names": part, "interval_s": args.interval_s,
                    "cloud_change": args.cloud_change}
            workers.append(await WorkerProcess.start(spec, folder / f"worker-{k}.log"))
        # registration: every node at once, as after a core restart
        started = time.perf_counter()
        registered = await ask_all(workers, {"op": "start", "deadline_s": args.register_timeout_s},
                                   timeout_s=args.register_timeout_s + 120)
        count = sum(r["registered"] for r in registered)
        result["register"] = {"all_s": round(time.perf_counter() - started, 2) if count == n else None,
                              "registered": count, "issue_certs_s": round(max(r["issue_s"] for r in registered), 2),
                              "core_cpu_s": round(core.cpu_s() - cpu_idle, 2)}
        if count < n:  # the steady window all the same: what a fleet sees while a core cannot take it in
            result["failed"] = (f"{count:,} of {n:,} nodes registered within {args.register_timeout_s:g} s "
                                "(every node at once, as after a core restart); no deploy or storm")
        await asyncio.sleep(2 * args.interval_s)  # let the phases spread and the registration burst pass
        # the steady window
        before = await ask_all(workers, {"op": "stats"})
        await ask_all(workers, {"op": "mark"})
        cpu0, t0 = core.cpu_s(), time.perf_counter()
        await asyncio.sleep(args.window_s)
        stats = await ask_all(workers, {"op": "stats"})
        cpu1, t1, rss = core.cpu_s(), time.perf_counter(), core.rss()
        busy = (cpu1 - cpu0) / (t1 - t0)
        sim_cpu = sum(a["cpu_s"] - b["cpu_s"] for a, b in zip(stats, before, strict=True)) / (t1 - t0)
        result["steady"] = {**merge(stats), "window_s": round(t1 - t0, 1),
                            "core_cpu_share": round(busy, 4), "core_cpu_share_idle": round(idle, 4),
                            "core_cpu_share_per_1000_nodes": round(max(busy - idle, 0.0) / n * 1000, 4),
                            "core_rss_mib": round(rss / MiB, 1), "core_rss_idle_mib": round(rss_idle / MiB, 1),
                            "core_rss_per_node_kib": round((rss - rss_idle) / n / 1024, 2),
                            "sim_cpu_share": round(sim_cpu, 4), "sim_processes": parts}
        if count < n:
            return result
        # a fleet deploy to every edge
        async with open_channel(address, operator) as channel:
            stub = cmp_grpc.ComputePlaneServiceStub(channel)
            sent = time.time()
            reply = await stub.DeployModel(cmp_pb2.DeployModelRequest(name=version[0], version=version[1],
                                                                      role=common_pb2.NODE_ROLE_EDGE), timeout=120)
            answered = time.time()
            commands = [d.command_id for node in reply.nodes for d in node.deployments[:1]]
            arrived: list[float] = []
            deadline = time.monotonic() + 10 * args.interval_s + 30
            while time.monotonic() < deadline:
                arrived = [t for r in await ask_all(workers, {"op": "deploys"}) for t in r["arrived"]]
                if len(arrived) >= len(commands):
                    break
                await asyncio.sleep(0.25)
        result["deploy"] = {"nodes": len(commands), "arrived": len(arrived),
                            "rpc_s": round(answered - sent, 3),
                            "to_last_command_s": round(max(arrived) - sent, 3) if arrived else None,
                            "to_median_command_s": round(pct(arrived, 50) - sent, 3) if arrived else None}
        await asyncio.sleep(args.interval_s)
        # a session storm
        await ask_all(workers, {"op": "mark"})
        cpu0, t0 = core.cpu_s(), time.perf_counter()
        share = [args.sessions // parts + (k < args.sessions % parts) for k in range(parts)]
        conc = [max(1, args.storm_concurrency // parts) for _ in range(parts)]
        storms = await ask_all(workers, [{"op": "storm", "sessions": s, "concurrency": c}
                                         for s, c in zip(share, conc, strict=True)], timeout_s=600)
        stats = await ask_all(workers, {"op": "stats"})
        t1 = time.perf_counter()
        setup = [x for s in storms for x in s["latency_s"]]
        storm_errors: Counter[str] = Counter()
        for s in storms:
            storm_errors.update(s["errors"])
        during = merge(stats)
        result["storm"] = {"sessions": len(setup), "concurrency": sum(conc), "errors": dict(storm_errors),
                           "seconds": round(t1 - t0, 2), "sessions_per_s": round(len(setup) / (t1 - t0), 1),
                           "setup_ms": {"p50": ms(setup, 50), "p99": ms(setup, 99)},
                           "core_cpu_share": round((core.cpu_s() - cpu0) / (t1 - t0), 4),
                           "heartbeat_rtt_ms": during["rtt_ms"], "heartbeat_missed_share": during["missed_share"]}
        if args.profile_s and n >= args.profile_min:
            result["profile"] = await profile(core.pid, args.profile_s, folder / "core.pyspy.txt")
            spy = asyncio.create_task(profile(core.pid, args.profile_s, folder / "core-storm.pyspy.txt"))
            await ask_all(workers, [{"op": "storm", "sessions": sh, "concurrency": c}  # a second storm, sampled
                                    for sh, c in zip(share, conc, strict=True)], timeout_s=600)
            result["profile_storm"] = await spy
        result["core_log_errors"] = len([e for e in core.process.events if e.get("level") in ("error", "critical")])
        return result
    finally:
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
        core.stop()


REGISTRY_ALONE = """
import json, sys, time
from cp.registry import NodeRegistry
from netgpt.v1 import common_pb2 as c
n, clouds = int(sys.argv[1]), int(sys.argv[2])
registry = NodeRegistry()
load = c.NodeLoad(queue_depth=1, models_served=[c.ModelRef(name="m", version="v1")], counters={"calls": 1})
started = time.perf_counter()
for i in range(clouds):
    registry.register(c.NodeInfo(node_id=f"cloud-{i:03d}", role=c.NODE_ROLE_CLOUD, address="127.0.0.1:1"))
for i in range(n - clouds):
    registry.register(c.NodeInfo(node_id=f"edge-{i:05d}", role=c.NODE_ROLE_EDGE, address="127.0.0.1:2",
                                 cell_ids=[f"cell-{i:05d}"]))
registered = time.perf_counter() - started
beats = min(n - clouds, 2000)
started = time.perf_counter()
for i in range(beats):
    if i % 50 == 0:
        registry.heartbeat(f"cloud-{i // 50 % clouds:03d}", load)
        load.queue_depth += 1
    registry.heartbeat(f"edge-{i:05d}", load)
beat_s = (time.perf_counter() - started) / beats
started = time.perf_counter()
for i in range(200):
    registry.pick_edge(f"cell-{i % (n - clouds):05d}")
    registry.pick_cloud()
print(json.dumps({"n": n, "register_all_s": round(registered, 3), "edge_beat_us": round(beat_s * 1e6, 1),
                  "pick_edge_and_cloud_us": round((time.perf_counter() - started) / 200 * 1e6, 1)}))
"""


def registry_alone(src: Path, sizes: list[int], clouds: int, stop_after_s: float = 30.0) -> list[dict[str, Any]]:
    """The registry by itself, no gRPC (one process per size, code from ``src``): registering N nodes, an
    edge's heartbeat (a cloud's load changes every 50 beats), picking an edge and a cloud for a session.
    Sizes stop where the next would take longer than ``stop_after_s``."""
    rows: list[dict[str, Any]] = []
    for n in sizes:
        run = subprocess.run([sys.executable, "-c", REGISTRY_ALONE, str(n), str(clouds)], cwd=src, text=True,
                             capture_output=True, env={**os.environ, "PYTHONPATH": str(src)}, timeout=900)
        if run.returncode != 0:
            rows.append({"n": n, "error": run.stderr[-400:]})
            break
        rows.append(json.loads(run.stdout))
        later = [m for m in sizes if m > n]
        if later and rows[-1]["register_all_s"] * (later[0] / n) ** 3 > stop_after_s:
            break  # the next size would take too long if registering grows as N^3 (as it did before the fix)
    return rows


def healthy(step: dict[str, Any]) -> bool:
    return "failed" not in step and step["steady"]["missed_share"] <= MISSING


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="netgpt-fleet-sim-", dir=args.dir))
    pki = LocalPki(workdir / "pki")
    report: dict[str, Any] = {"benchmark": "fleet_sim", "machine": machine() | {"note": args.note},
                              "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "out", "dir")},
                              "steps": []}
    variants = ([("before", Path(args.before).resolve())] if args.before else []) + [("after" if args.before
                                                                                      else "current", ROOT)]
    report["registry_alone"] = {variant: registry_alone(src, args.registry_sizes, args.clouds)
                                for variant, src in variants}
    for variant, src in variants:
        for n in args.nodes:
            step = await one_step(n, variant, src, args, pki, workdir)
            report["steps"].append(step)
            print(json.dumps({k: v for k, v in step.items() if not k.startswith("profile")}), file=sys.stderr,
                  flush=True)
            if not healthy(step):
                break
    report["limits"] = limits(report["steps"])
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def limits(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Per variant: the largest N that held its interval and the first that did not."""
    out: dict[str, Any] = {}
    for variant in dict.fromkeys(s["variant"] for s in steps):
        mine = [s for s in steps if s["variant"] == variant]
        held = [s["n"] for s in mine if healthy(s)]
        missed = [s["n"] for s in mine if not healthy(s)]
        out[variant] = {"largest_n_on_time": max(held, default=None), "first_n_missing": min(missed, default=None)}
    return out


def _cell(value: Any, fmt: str = "{}") -> str:
    return "—" if value is None else fmt.format(value)


def markdown(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["settings"]
    lines = ["# Fleet simulation: one core, N simulated nodes", "",
             "`python -m bench.fleet_sim` — the core as its own process (`python -m cli core`, mutual TLS, SQLite "
             "state, log level info); simulated nodes in worker processes (grpc.aio, one certificate and one "
             f"connection per node), {s['clouds']} clouds and the rest edges; heartbeat interval "
             f"{s['interval_s']:g} s; steady window {s['window_s']:g} s; a deploy to every edge; a storm of "
             f"{s['sessions']} sessions, {s['storm_concurrency']} in flight.", "",
             f"- Machine: {m['cpu'] or m['platform']}, {m['cpus']} CPUs, load average at start "
             f"{', '.join(f'{x:.2f}' for x in m['load_average_at_start'])}. {m.get('note') or ''}".rstrip(),
             "- The core and every simulated node share these CPUs: the clients' own event-loop lag is reported; "
             "where it is high, round trips include the clients' delay, not only the core's.",
             "- CPU is the core process's user+system time (/proc/PID/stat) over the window, as a share of one "
             "core; per 1,000 nodes: (that − the same core's share with no node) / N × 1,000. Memory is its RSS, "
             "per node = (RSS − RSS before any node registered) / N. `sim CPU`: all simulated nodes together.", "",
             "| variant | N | register all (s) | heartbeat RTT p50 / p99 (ms) | missed | core CPU | CPU per 1,000 "
             "nodes | core RSS (MiB) | RSS per node (KiB) | peers per edge beat | reply B/beat | deploy → last "
             "command (s) | session set-up p50 / p99 (ms) | sessions/s | heartbeat p99 in storm (ms) | client lag "
             "p99 (ms) | sim CPU |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for step in report["steps"]:
        if "steady" not in step:
            lines.append(f"| {step['variant']} | {step['n']:,} | {step.get('failed', '?')} |" + " |" * 15)
            continue
        st, reg = step["steady"], step["register"]
        register = f"{reg['all_s']:.1f}" if reg["all_s"] is not None else f"{reg['registered']:,} of {step['n']:,} †"
        if "storm" in step:
            dep, st_ = step["deploy"], step["storm"]
            deploy = _cell(dep["to_last_command_s"], "{:.2f}")
            storm = (f"{_cell(st_['setup_ms']['p50'], '{:.1f}')} / {_cell(st_['setup_ms']['p99'], '{:.1f}')} | "
                     f"{st_['sessions_per_s']:.0f} | {_cell(st_['heartbeat_rtt_ms']['p99'], '{:.1f}')}")
        else:
            deploy, storm = "—", "— | — | —"
        lines.append(
            f"| {step['variant']} | {step['n']:,} | {register} | {_cell(st['rtt_ms']['p50'], '{:.1f}')} / "
            f"{_cell(st['rtt_ms']['p99'], '{:.1f}')} | {st['missed_share']:.1%} | {st['core_cpu_share']:.0%} | "
            f"{st['core_cpu_share_per_1000_nodes']:.1%} | {st['core_rss_mib']:.0f} | "
            f"{st['core_rss_per_node_kib']:.1f} | "
            f"{st['peers_updates_per_edge_beat']:.2f} | {st['reply_bytes_per_beat']:.0f} | {deploy} | {storm} | "
            f"{_cell(st['client_loop_lag_ms']['p99'], '{:.1f}')} | {st['sim_cpu_share']:.0%} |")
    lines += [f"\n† {failed['failed']}." for failed in report["steps"] if "failed" in failed]
    lines += ["", "Where heartbeats start missing their interval (a reply later than the interval, or none: "
              f"more than {MISSING:.0%} of beats):", ""]
    for variant, limit in report["limits"].items():
        lines.append(f"- {variant}: on time up to N = {_cell(limit['largest_n_on_time'], '{:,}')}; first N missing: "
                     f"{_cell(limit['first_n_missing'], '{:,}')} (ladder {', '.join(map(str, s['nodes']))}).")
    lines += ["", "The registry alone (no gRPC, one process per N): registering every node, one edge heartbeat, "
              "picking an edge and a cloud for a session:", "",
              "| variant | N | register all (s) | edge heartbeat (µs) | pick edge + cloud (µs) |",
              "|---|---:|---:|---:|---:|"]
    for variant, rows in report["registry_alone"].items():
        for row in rows:
            if "error" in row:
                lines.append(f"| {variant} | {row['n']:,} | error | | |")
                continue
            lines.append(f"| {variant} | {row['n']:,} | {row['register_all_s']:.2f} | {row['edge_beat_us']:.0f} | "
                         f"{row['pick_edge_and_cloud_us']:.0f} |")
    profiles = [st for st in report["steps"] if st.get("profile", {}).get("top_inclusive_of_busy")]
    for step in profiles:
        prof = step["profile"]
        lines += ["", f"## Where the core's time goes: {step['variant']}, N = {step['n']:,} (py-spy, steady "
                  f"heartbeats; the core's main thread was busy in {prof['busy_share']:.0%} of the samples; shares of "
                  "those busy samples with the function on the stack)", ""]
        lines += [f"- {share:.0%} `{frame}`" for frame, share in prof["top_inclusive_of_busy"][:16]]
        storm = step.get("profile_storm", {})
        if storm.get("top_inclusive_of_busy"):
            lines += ["", "During a second session storm (sampling started with it, for "
                      f"{report['settings']['profile_s']:g} s; busy in {storm['busy_share']:.0%} of the samples):", ""]
            lines += [f"- {share:.0%} `{frame}`" for frame, share in storm["top_inclusive_of_busy"][:16]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    parser.add_argument("--nodes", type=lambda s: [int(x) for x in s.split(",")], default=[100, 1000, 2000])
    parser.add_argument("--registry-sizes", type=lambda s: [int(x) for x in s.split(",") if x],
                        default=[250, 500, 1000, 2000, 5000, 10000], help="N of the registry-alone figures")
    parser.add_argument("--interval-s", type=float, default=2.0, help="the core's heartbeat_interval_s")
    parser.add_argument("--clouds", type=int, default=4)
    parser.add_argument("--cloud-change", type=float, default=0.25,
                        help="chance per cloud beat that the load edges route on changes")
    parser.add_argument("--window-s", type=float, default=20.0)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--storm-concurrency", type=int, default=200)
    parser.add_argument("--per-worker", type=int, default=1000, help="simulated nodes per worker process")
    parser.add_argument("--register-timeout-s", type=float, default=240.0)
    parser.add_argument("--before", default="", help="a source tree to run the core from first, as 'before'")
    parser.add_argument("--profile-s", type=float, default=0.0, help="py-spy the core this long after each step")
    parser.add_argument("--profile-min", type=int, default=1000, help="only for N at least this")
    parser.add_argument("--note", default="", help="said of the machine in the report")
    parser.add_argument("--dir", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, profiles)")
    parser.add_argument("--out", type=Path, default=Path("bench/reports/fleet_sim.json"))
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args)
        return
    configure_logging(json=True, level="error")
    report = asyncio.run(run(args))
    text = markdown(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
