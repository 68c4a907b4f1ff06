"""Core replicas: the same fleet against one core on SQLite, one on PostgreSQL and two on PostgreSQL,
then ``kill -9`` of one replica.

    python -m bench.core_replicas [--nodes 200] [--interval-s 1] [--window-s 10] [--sessions 1000]
                                  [--storm-concurrency 50] [--out bench/reports/core_replicas.json]

The nodes are ``bench.fleet_sim``'s simulated nodes (real gRPC clients with mutual TLS, registering and
heartbeating as ``cp.agent`` does) given every replica's address (``--core a,b``: one gRPC channel over both,
starting at the replica the node's id hashes to and failing over by itself). The cores are ``python -m cli
core`` child processes; PostgreSQL is a server of the bench's own (Debian's PostgreSQL 15, its default durable
settings) unless ``--pg-url`` names one. Per variant: registration of every node, a steady window (heartbeat
round trips as the nodes see them, beats later than the interval, each core's CPU share), a session storm
(set-up p50/p99). With two replicas the first is then killed with SIGKILL and the bench reports when the first
heartbeat reply after the kill came to each node that beat to it (from the surviving replica), and a session
storm started at the kill (its errors are the calls that were in flight to the dead replica).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.fleet_sim import Core, WorkerProcess, ask_all, merge, ms, node_names
from bench.measure import ROOT, machine, pct, write_report
from cp.agent import spread
from netgpt.tls import LocalPki

VARIANTS = (("sqlite", 1), ("postgresql", 1), ("postgresql", 2))


@contextmanager
def postgres(url: str) -> Iterator[Any]:
    """A factory of fresh database URLs: at ``url``'s server, or a local server of the bench's own."""
    if url:
        yield lambda name: url
        return
    from tests.pg_server import local_postgres

    with local_postgres(durable=True) as server:
        yield server.create_database


async def storm(workers: list[WorkerProcess], sessions: int, concurrency: int) -> dict[str, Any]:
    parts = len(workers)
    share = [sessions // parts + (k < sessions % parts) for k in range(parts)]
    conc = max(1, concurrency // parts)
    started = time.perf_counter()
    results = await ask_all(workers, [{"op": "storm", "sessions": s, "concurrency": conc} for s in share],
                            timeout_s=600)
    seconds = time.perf_counter() - started
    setup = [x for r in results for x in r["latency_s"]]
    errors: Counter[str] = Counter()
    for r in results:
        errors.update(r["errors"])
    firsts = [r["first_ok_at"] for r in results if r.get("first_ok_at") is not None]
    return {"sessions": len(setup), "errors": dict(errors), "sessions_per_s": round(len(setup) / seconds, 1),
            "setup_ms": {"p50": ms(setup, 50), "p99": ms(setup, 99)}, "first_ok_at": min(firsts, default=None)}


async def failover(workers: list[WorkerProcess], killed_at: float, timeout_s: float,
                   replicas: int) -> dict[str, Any]:
    """When the first heartbeat reply after ``killed_at`` came to each node that beat to the killed replica
    (the first: the nodes whose id :func:`cp.agent.spread` sends there), polled until all have one."""
    deadline = time.monotonic() + timeout_s
    while True:
        replies = await ask_all(workers, {"op": "first_reply_after", "t": killed_at})
        firsts = [t for r in replies for t, node_id in zip(r["first"], r["ids"], strict=True)
                  if spread(node_id, replicas) == 0]
        if all(t is not None for t in firsts) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    back = [t - killed_at for t in firsts if t is not None]
    return {"nodes": len(firsts), "back": len(back), "p50_s": round(pct(back, 50), 3) if back else None,
            "all_s": round(max(back), 3) if len(back) == len(firsts) else None}


async def one_variant(backend: str, replicas: int, args: argparse.Namespace, pki: LocalPki, workdir: Path,
                      new_database: Any) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"{backend}-{replicas}-", dir=workdir))
    flags = ("--state-db", new_database(f"bench_{replicas}")) if backend == "postgresql" else ()
    cores = [Core(ROOT, pki, folder / f"core-{k}", args.interval_s, *flags) for k in range(replicas)]
    workers: list[WorkerProcess] = []
    result: dict[str, Any] = {"backend": backend, "replicas": replicas, "nodes": args.nodes}
    try:
        target = ",".join([await core.started() for core in cores])
        names = node_names(args.nodes, args.clouds)
        parts = max(1, math.ceil(args.nodes / args.per_worker))
        for k in range(parts):
            part = [(i, role, name) for i, (name, role) in enumerate(names) if i % parts == k]
            spec = {"core": target, "pki": str(pki.folder), "names": part, "interval_s": args.interval_s,
                    "cloud_change": 0.25}
            workers.append(await WorkerProcess.start(spec, folder / f"worker-{k}.log"))
        started = time.perf_counter()
        registered = await ask_all(workers, {"op": "start", "deadline_s": 120}, timeout_s=240)
        result["register_s"] = round(time.perf_counter() - started, 2)
        result["registered"] = sum(r["registered"] for r in registered)
        await asyncio.sleep(2 * args.interval_s)
        await ask_all(workers, {"op": "mark"})
        cpu0, t0 = [core.cpu_s() for core in cores], time.perf_counter()
        await asyncio.sleep(args.window_s)
        steady = merge(await ask_all(workers, {"op": "stats"}))
        elapsed = time.perf_counter() - t0
        result["steady"] = {"heartbeat_rtt_ms": steady["rtt_ms"], "missed_share": steady["missed_share"],
                            "core_cpu_share": [round((core.cpu_s() - c0) / elapsed, 3)
                                               for core, c0 in zip(cores, cpu0, strict=True)]}
        result["storm"] = await storm(workers, args.sessions, args.storm_concurrency)
        if replicas > 1:
            await asyncio.sleep(args.interval_s)
            killed_at = time.time()
            cores[0].process.proc.kill()  # kill -9 of the first replica (the nodes spread(...) == 0 beat to)
            result["storm_at_kill"] = at_kill = await storm(workers, args.sessions, args.storm_concurrency)
            first_ok = at_kill["first_ok_at"]
            at_kill["first_session_after_kill_s"] = round(first_ok - killed_at, 3) if first_ok else None
            # the nodes keep their last 64 reply times: asked once the storm is over (a worker answers in turn)
            result["failover"] = await failover(workers, killed_at, 30 * args.interval_s, replicas)
            result["storm_after"] = await storm(workers, args.sessions, args.storm_concurrency)
        result["core_log_problems"] = [e for core in cores for e in core.process.events
                                       if e.get("level") in ("warning", "error", "critical")][:20]
        return result
    finally:
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
        for core in cores:
            core.stop()


def markdown(report: dict[str, Any]) -> str:
    lines = ["| backend | replicas | heartbeat RTT p50 / p99 ms | beats late | core CPU | session set-up p50 / "
             "p99 ms |", "|---|---|---|---|---|---|"]
    for v in report["variants"]:
        rtt, setup = v["steady"]["heartbeat_rtt_ms"], v["storm"]["setup_ms"]
        cpu = " + ".join(f"{c:.0%}" for c in v["steady"]["core_cpu_share"])
        lines.append(f"| {v['backend']} | {v['replicas']} | {rtt['p50']} / {rtt['p99']} | "
                     f"{v['steady']['missed_share']:.2%} | {cpu} | {setup['p50']} / {setup['p99']} |")
    for v in report["variants"]:
        if "failover" in v:
            f, during, after = v["failover"], v["storm_at_kill"], v["storm_after"]
            lines += ["", f"kill -9 of the replica {f['nodes']} nodes beat to: every one of them beating to the other "
                          f"within {f['all_s']} s (p50 {f['p50_s']} s); a session storm started at the kill: "
                          f"first session set up {during['first_session_after_kill_s']} s after the kill, "
                          f"{during['sessions']} set up, errors {during['errors'] or 'none'}, p99 "
                          f"{during['setup_ms']['p99']} ms; the next storm: p99 {after['setup_ms']['p99']} ms, "
                          f"errors {after['errors'] or 'none'}."]
    return "\n".join(lines) + "\n"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="netgpt-bench-replicas-"))
    pki = LocalPki(workdir / "pki")
    variants = []
    with postgres(args.pg_url) as new_database:
        for backend, replicas in args.variants:
            variants.append(await one_variant(backend, replicas, args, pki, workdir, new_database))
    return {"benchmark": "core_replicas", "machine": machine(), "interval_s": args.interval_s,
            "variants": variants}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--clouds", type=int, default=4)
    parser.add_argument("--interval-s", type=float, default=1.0)
    parser.add_argument("--window-s", type=float, default=10.0)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--storm-concurrency", type=int, default=50)
    parser.add_argument("--per-worker", type=int, default=1000)
    parser.add_argument("--variants", default=VARIANTS,
                        type=lambda text: [(b, int(r)) for b, r in (v.split(":") for v in text.split(","))],
                        help="backend:replicas, comma-separated (default: sqlite:1,postgresql:1,postgresql:2)")
    parser.add_argument("--pg-url", default="", help="a PostgreSQL server to use (default: one of the bench's own)")
    parser.add_argument("--out", type=Path, default=Path("bench/reports/core_replicas.json"))
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    write_report(args.out, report)
    table = markdown(report)
    args.out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
