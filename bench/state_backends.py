"""What PostgreSQL costs the core over SQLite, per state operation: the same store code
(``cp.state_db.SqlState``) on the core's SQLite file and on a PostgreSQL database, call by call in one run.

    python -m bench.state_backends [--rounds 2000] [--url postgresql://user@host:port/db]

Without ``--url`` the bench starts its own PostgreSQL (Debian's binaries, as the tests do, ``tests/pg_server.py``)
with the server's own durability defaults (a flushed WAL at every commit), reached over loopback TCP. PostgreSQL
is measured twice on that server, in two databases: as configured (``synchronous_commit = on``) and with
``synchronous_commit = off`` for the bench's connection, which is about what SQLite's WAL + ``synchronous =
NORMAL`` promises (a committed change survives the core's crash; the last ones may be lost with the machine's
power).

Operations, each a committed transaction as the core runs it: ``put_session`` (establish), ``get_session``
(a lookup; a read, no transaction), ``heartbeat_write`` (one node's status, ~300 bytes, upserted: what a heartbeat
costs once the registry lives in the database; a bench-only table), and ``sweep_1000`` (one batch of the session
sweeper deleting 1,000 expired sessions). Reports p50/p99 per operation in microseconds and the ratio
PostgreSQL / SQLite of the p50s, and writes ``bench/reports/state_backends.json``.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench.measure import machine, pct, write_report
from core.state import STATE_FILE, open_db, open_pg
from cp.state_db import SqlState
from netgpt.database import Database, typed
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2

REPORT = Path(__file__).parent / "reports" / "state_backends.json"
NODES = 100  # heartbeat writes go round this many node rows
SWEEP = 1000  # sessions per sweep batch (cp.sessions.SWEEP_BATCH)
HEARTBEATS_TABLE = """CREATE TABLE IF NOT EXISTS bench_heartbeats (
    node_id TEXT PRIMARY KEY, status {blob} NOT NULL, seen_at {real} NOT NULL)"""
HEARTBEAT = ("INSERT INTO bench_heartbeats (node_id, status, seen_at) VALUES (?, ?, ?) ON CONFLICT (node_id) "
             "DO UPDATE SET status = excluded.status, seen_at = excluded.seen_at")


def a_session(i: int) -> cp_pb2.AiSession:
    edge = common_pb2.NodeInfo(node_id="edge-0042", role=common_pb2.NODE_ROLE_EDGE, address="10.0.4.2:50071",
                               cell_ids=["cell-harbour-1"], region="north")
    cloud = common_pb2.NodeInfo(node_id="cloud-07", role=common_pb2.NODE_ROLE_CLOUD, address="10.0.9.7:50061")
    session = cp_pb2.AiSession(session_id=f"sess-{i:08d}", ai_flow_id=f"flow-{i:08d}", ue_id=f"ue-{i % 5000}",
                               cell_id="cell-harbour-1", qos=common_pb2.QoS(priority=2, latency_budget_ms=800),
                               serving_edge=edge, serving_cloud=cloud)
    session.created_at.FromSeconds(1_700_000_000 + i)
    return session


def a_status(i: int) -> bytes:
    node = f"edge-{i % NODES:04d}"
    load = common_pb2.NodeLoad(queue_depth=i % 7, active_requests=i % 3, tokens_per_second=181.5,
                               p50_first_token_ms=42.0, counters={"cloud_calls": i, "answer_cache_hits": i // 3},
                               models_served=[common_pb2.ModelRef(name="edge-gpt2", version="v3", sha256="ab" * 32)])
    status = common_pb2.NodeStatus(info=common_pb2.NodeInfo(node_id=node, role=common_pb2.NODE_ROLE_EDGE,
                                                            address="10.0.4.2:50071", cell_ids=["cell-1", "cell-2"]),
                                   health=common_pb2.NODE_HEALTH_SERVING, load=load)
    return status.SerializeToString()


@contextmanager
def backends(url: str) -> Iterator[dict[str, Database]]:
    """SQLite in a temporary folder; PostgreSQL at ``url`` (or a server of the bench's own), twice."""
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="netgpt-bench-state-")))
        dbs: dict[str, Database] = {"sqlite": open_db(folder / STATE_FILE)}
        if url:
            dbs["postgresql"] = open_pg(url)
        else:
            from tests.pg_server import local_postgres

            server = stack.enter_context(local_postgres(durable=True))
            dbs["postgresql"] = open_pg(server.create_database("bench"))
            dbs["postgresql_async_commit"] = open_pg(f"{server.create_database('bench')}"
                                                     "?options=-c%20synchronous_commit%3Doff")
        for db in dbs.values():
            stack.callback(db.close)
        yield dbs


def timed_rounds(dbs: dict[str, Database], rounds: int,
                 op: Callable[[str, Database, int], object]) -> dict[str, list[float]]:
    """``op`` ``rounds`` times on each database, alternating which goes first, call by call."""
    times: dict[str, list[float]] = {name: [] for name in dbs}
    names = list(dbs)
    for i in range(rounds):
        for name in names[i % len(names):] + names[:i % len(names)]:
            started = time.perf_counter()
            op(name, dbs[name], i)
            times[name].append(time.perf_counter() - started)
    return times


def measure(dbs: dict[str, Database], rounds: int) -> dict[str, dict[str, list[float]]]:
    states = {name: SqlState(db) for name, db in dbs.items()}
    for db in dbs.values():
        with db.transaction() as tx:
            tx.execute(typed(HEARTBEATS_TABLE, db.dialect))
            tx.execute("DELETE FROM sessions")
    now = time.time()
    results = {
        "put_session": timed_rounds(dbs, rounds, lambda n, _, i: states[n].put_session(a_session(i), now + 3600)),
        "get_session": timed_rounds(dbs, rounds, lambda n, _, i: states[n].get_session(
            f"sess-{random.randrange(rounds):08d}")),
        "heartbeat_write": timed_rounds(dbs, rounds, lambda n, db, i: write_heartbeat(db, i, now)),
    }
    batches = max(rounds // SWEEP, 5)
    for db in dbs.values():  # expired sessions for the sweep, bulk-loaded (not timed)
        with db.transaction() as tx:
            tx.executemany("INSERT INTO sessions (session_id, expires_at, session, ue_id) VALUES (?, ?, ?, ?)",
                           [(f"old-{i:08d}", now - 10 - i % 100, a_session(i).SerializeToString(), "")
                            for i in range(batches * SWEEP)])
    results["sweep_1000"] = timed_rounds(dbs, batches, lambda n, _, i: check_sweep(states[n], now))
    return results


def write_heartbeat(db: Database, i: int, now: float) -> None:
    with db.transaction() as tx:
        tx.execute(HEARTBEAT, (f"edge-{i % NODES:04d}", a_status(i), now + i))


def check_sweep(state: SqlState, now: float) -> None:
    removed = state.sweep_sessions(now, SWEEP)
    if removed != SWEEP:
        raise RuntimeError(f"a sweep batch removed {removed}, not {SWEEP}")


def summary(results: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for op, per_backend in results.items():
        row = {name: {"calls": len(t), "p50_us": round(pct(t, 50) * 1e6, 1), "p99_us": round(pct(t, 99) * 1e6, 1)}
               for name, t in per_backend.items()}
        base = row["sqlite"]["p50_us"]
        for name in row:
            row[name]["p50_vs_sqlite"] = round(row[name]["p50_us"] / base, 2) if base else None
        out[op] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2000, help="calls of each operation on each backend")
    parser.add_argument("--url", default="", help="a PostgreSQL database to use (its tables are created; "
                                                  "its sessions deleted); default: a server of the bench's own")
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args()
    with backends(args.url) as dbs:
        table = summary(measure(dbs, args.rounds))
        where = {name: db.where for name, db in dbs.items()}
    print(f"{'operation':<16} {'backend':<24} {'p50 µs':>9} {'p99 µs':>9} {'p50 ÷ SQLite':>13}")
    for op, row in table.items():
        for name, figures in row.items():
            print(f"{op:<16} {name:<24} {figures['p50_us']:>9.1f} {figures['p99_us']:>9.1f} "
                  f"{figures['p50_vs_sqlite']:>13.2f}")
    report = {"bench": "state_backends", "rounds": args.rounds, "heartbeat_status_bytes": len(a_status(1)),
              "session_bytes": len(a_session(1).SerializeToString()), "databases": where,
              "own_server": not args.url, "machine": machine(), "operations": table}
    write_report(args.out, report)
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
