"""The core's state on PostgreSQL as core replicas share it: the revocation store over every backend, two
stores on one database, a sweep from two replicas at once, a connection that breaks, a URL that does not
connect, and the lease that picks the one replica doing the work that must run once."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import psycopg
import pytest
from helpers import eventually
from test_job_store import a_job
from throwaway_ca import tls

from cmp.job_store import SqlJobStore
from core.daemon import SINGLETON_LEASE, start_core
from core.state import PG_SCHEMA_VERSION, open_pg, open_stores
from cp.state_db import SqlState
from cp.ue_token_store import ALL_UES, MemoryRevocations, RevocationStore, SqlRevocations
from netgpt.config import CoreConfig
from netgpt.errors import StartupError, Unavailable
from netgpt.lease import DbLease, LocalLease
from netgpt.v1 import control_plane_pb2 as cp_pb2

# --- the revocation store, over memory, SQLite and PostgreSQL -----------------------------------------


def test_revocations_keep_the_latest_time_and_prune_old_rows(core_db):
    memory = MemoryRevocations()

    def make() -> RevocationStore:
        db = core_db()
        return memory if db is None else SqlRevocations(db)

    store = make()
    assert store.load() == {}
    store.put("ue-1", 100.0)
    store.put("ue-1", 50.0)  # an earlier time never moves it back
    store.put("ue-2", 10.0)
    store.put(ALL_UES, 70.0)
    store.put("ue-1", 120.0)
    again = make()
    assert again.load() == {"ue-1": 120.0, "ue-2": 10.0, ALL_UES: 70.0}
    assert again.prune(80.0) == 2 and again.prune(80.0) == 0
    assert make().load() == {"ue-1": 120.0}


# --- PostgreSQL: replicas sharing one database --------------------------------------------------------


def test_two_stores_on_one_database_see_each_others_writes(pg_url: str):
    one, two = open_stores(pg_url, Path("/nonexistent")), open_stores(pg_url, Path("/nonexistent"))
    try:
        assert one.db is not None and one.db.version == PG_SCHEMA_VERSION == 6  # ... leases, the shared registry
        assert "postgresql://postgres@127.0.0.1:" in one.where
        session = cp_pb2.AiSession(session_id="sess-1", ue_id="ue-1", cell_id="cell-1")
        one.state.put_session(session, 100.0)
        stored = two.state.get_session("sess-1")
        assert stored is not None and stored.session == session and stored.expires_at == 100.0
        two.state.set_session_expiry("sess-1", 200.0)
        assert one.state.get_session("sess-1").expires_at == 200.0
        policy = cp_pb2.RoutingPolicy(max_cloud_queue=3)
        two.state.replace_policies({"": policy})
        assert one.state.policies() == {"": policy}
        one.jobs.save(a_job("job-1"))
        assert [j.id for j in two.jobs.load()] == ["job-1"]
        two.revocations.put("ue-1", 5.0)
        assert one.revocations.load() == {"ue-1": 5.0}
        assert two.state.delete_session("sess-1") and not one.state.delete_session("sess-1")
    finally:
        one.close()
        two.close()


def test_two_replicas_sweeping_at_once_remove_each_expired_session_once(pg_url: str):
    states = [SqlState(open_pg(pg_url)) for _ in range(2)]
    try:
        for i in range(3000):
            states[0].put_session(cp_pb2.AiSession(session_id=f"s{i:05d}"), float(i % 500))
        states[0].put_session(cp_pb2.AiSession(session_id="alive"), 1e12)
        removed = [0, 0]
        start = threading.Barrier(2)

        def sweep(k: int) -> None:
            start.wait()
            while (batch := states[k].sweep_sessions(1000.0, 50)) > 0:
                removed[k] += batch

        threads = [threading.Thread(target=sweep, args=(k,)) for k in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert sum(removed) == 3000, removed  # no session counted twice, none left behind
        assert states[1].session_count() == 1
    finally:
        for state in states:
            state.close()


def terminate_connections(admin_url: str, dbname: str) -> int:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,)).fetchall()
    return len(rows)


def test_a_broken_connection_is_unavailable_once_then_reconnected(pg_server, pg_url: str):
    db = open_pg(pg_url)
    state, jobs = SqlState(db), SqlJobStore(db)
    try:
        state.put_session(cp_pb2.AiSession(session_id="kept"), None)
        assert terminate_connections(pg_server.admin_url, pg_url.rsplit("/", 1)[1]) >= 1
        with pytest.raises(Unavailable, match="PostgreSQL unavailable") as failed:
            state.get_session("kept")
        assert "postgresql://postgres@127.0.0.1" in str(failed.value)
        assert state.get_session("kept") is not None  # the next call connects again
        terminate_connections(pg_server.admin_url, pg_url.rsplit("/", 1)[1])
        with pytest.raises(Unavailable):
            jobs.save(a_job("job-1"))  # a write in a transaction fails the same way, and is not half done
        jobs.save(a_job("job-1"))
        assert [j.id for j in jobs.load()] == ["job-1"]
    finally:
        db.close()


def test_a_url_that_does_not_connect_stops_the_core_naming_the_host_not_the_password(tmp_path: Path):
    from pg_server import free_port

    url = f"postgresql://netgpt:s3cret-pw@127.0.0.1:{free_port()}/core"
    with pytest.raises(StartupError, match=r"cannot connect to PostgreSQL on host 127\.0\.0\.1") as failed:
        open_stores(url, tmp_path)
    assert "s3cret-pw" not in str(failed.value) and "postgresql://netgpt@127.0.0.1:" in str(failed.value)
    with pytest.raises(StartupError, match="cannot connect") as failed:  # the daemon says the same, before serving
        await_core(CoreConfig(**tls("core", "core"), listen="127.0.0.1:0", store_dir=str(tmp_path),
                              state_db=url.replace("postgresql://", "postgres://")))
    assert "s3cret-pw" not in str(failed.value)
    with pytest.raises(StartupError, match="must be longer than heartbeat_interval_s"):
        await_core(CoreConfig(**tls("core", "core"), listen="127.0.0.1:0", store_dir=str(tmp_path),
                              heartbeat_interval_s=0.5, lease_ttl_s=0.5))


def await_core(config: CoreConfig) -> None:
    async def start_and_stop() -> None:
        core = await start_core(config)
        await core.stop(0)

    asyncio.run(start_and_stop())


# --- the lease -----------------------------------------------------------------------------------------


def test_one_holder_at_a_time_taken_over_after_the_ttl_or_at_once_on_release(pg_url: str):
    db_a, db_b = open_pg(pg_url), open_pg(pg_url)
    try:
        a, b = DbLease(db_a, "work", ttl_s=0.6, holder="a"), DbLease(db_b, "work", ttl_s=0.6, holder="b")
        assert not a.held() and a.renew() and a.held()
        assert not b.renew() and not b.held()
        assert a.renew() and not b.renew()  # renewed: still a's
        assert DbLease(db_b, "other work", ttl_s=0.6).renew()  # another name is another lease
        time.sleep(0.7)  # a stops renewing: by its own clock it no longer holds it ...
        assert not a.held()
        assert b.renew() and b.held()  # ... and by the database's, b may take it
        assert not a.renew() and not a.held()
        b.release()
        assert not b.held() and a.renew()  # handed over at once
        local = LocalLease(SINGLETON_LEASE)
        assert local.held() and local.renew() and local.holder
    finally:
        db_a.close()
        db_b.close()


def test_a_lease_whose_database_is_away_is_held_until_it_runs_out(pg_server, pg_url: str):
    db = open_pg(pg_url)
    try:
        now = [0.0]
        lease = DbLease(db, "work", ttl_s=5.0, clock=lambda: now[0])
        assert lease.renew()
        terminate_connections(pg_server.admin_url, pg_url.rsplit("/", 1)[1])
        now[0] = 4.0
        assert lease.renew()  # the renewal failed, but what was taken at 0 holds until 5
        now[0] = 5.0
        assert not lease.held()
    finally:
        db.close()


async def test_two_cores_on_one_database_one_holds_the_singleton_lease_the_other_takes_it_over(
        pg_url: str, tmp_path: Path):
    def config(name: str) -> CoreConfig:
        return CoreConfig(**tls("core", "core"), listen="127.0.0.1:0", heartbeat_interval_s=0.2,
                          store_dir=str(tmp_path / name), state_db=pg_url)

    first = await start_core(config("a"))
    second = await start_core(config("b"))
    running = [first, second]
    try:
        assert first.lease.held() and not second.lease.held() and first.lease.ttl_s == pytest.approx(0.6)
        await asyncio.sleep(0.5)  # a few heartbeats: the first keeps renewing, the second keeps waiting
        assert first.lease.held() and not second.lease.held()
        running.remove(first)
        await first.stop(0)  # releases it: the other replica's next renewal (a heartbeat) takes it
        await eventually(second.lease.held, "the second core to take the lease over", timeout_s=5, poll_s=0.05)
        second.stores.state.put_session(cp_pb2.AiSession(session_id="s-1"), 1.0)
        assert second.sessions.sweep() == 1
    finally:
        for core in running:
            await core.stop(0)


def test_the_backends_bench_times_every_operation_on_both(pg_url: str):
    from bench.state_backends import backends, measure, summary

    with backends(pg_url) as dbs:
        table = summary(measure(dbs, rounds=20))
    assert set(table) == {"put_session", "get_session", "heartbeat_write", "sweep_1000"}
    for row in table.values():
        assert set(row) == {"sqlite", "postgresql"} and row["sqlite"]["p50_vs_sqlite"] == 1.0
        assert all(figures["p50_us"] > 0 for figures in row.values())


def test_two_replicas_starting_the_same_output_at_once_place_one_job(pg_url: str, tmp_path: Path):
    """Placing runs under a lock of the database (``exclusive("placement")``): the replica that comes second
    sees the job the first placed and refuses the same output, instead of both placing from their own picture."""
    from test_job_store import OneCloud, store_with_dataset
    from test_training_jobs import spec

    from cmp.training_jobs import JobBook
    from netgpt.errors import AlreadyExists

    store, _ = store_with_dataset(tmp_path)
    dbs = [open_pg(pg_url), open_pg(pg_url)]
    books = [JobBook(OneCloud(), store, SqlJobStore(db), shared=True, placing=lambda db=db: db.exclusive("placement"))
             for db in dbs]
    try:
        def start(book: JobBook, version: str, gate: threading.Barrier, placed: list, refused: list) -> None:
            gate.wait()
            try:
                placed.append(book.start(spec(output_name="same", output_version=version)).id)
            except AlreadyExists:
                refused.append(book)

        for round_ in range(6):
            gate, placed, refused = threading.Barrier(2), [], []
            threads = [threading.Thread(target=start, args=(book, f"v{round_}", gate, placed, refused))
                       for book in books]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            assert (len(placed), len(refused)) == (1, 1), (round_, placed, refused)
    finally:
        for db in dbs:
            db.close()
