"""The core's fine-tuning jobs survive a restart: one suite over both job stores (memory and the
core's database, SQLite and PostgreSQL), the book restored over them, and the one migration path that brings an older
core's file, and the job files it kept beside it, up to the current schema."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import eventually
from test_training_jobs import spec, write_dataset

from cmp.convert import job_to_proto, manifest_from_proto
from cmp.job_store import JobStore, MemoryJobStore, SqliteJobStore, SqlJobStore
from cmp.manifest import Manifest
from cmp.records import Job
from cmp.store import ModelStore
from cmp.training_jobs import JobBook
from core.state import LEGACY_JOBS_DIR, SCHEMA_VERSION, STATE_FILE, migrations, open_db, open_stores
from netgpt.hashing import sha256_file
from netgpt.sqlite_db import SqliteDb
from netgpt.v1 import common_pb2 as S
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2


@pytest.fixture
def make_jobs(core_db) -> Callable[[], JobStore]:
    """Opens the job store (memory, SQLite, PostgreSQL); every call opens the same database again, as a
    restarted core would."""
    memory = MemoryJobStore()

    def make() -> JobStore:
        db = core_db()
        return memory if db is None else SqlJobStore(db)

    return make


def a_job(job_id: str, state: int = S.TRAINING_STATE_PLACED, step: int = 0) -> Job:
    return Job(id=job_id, spec=spec(name=f"job {job_id}"), node_id="cloud-1", base=S.ModelRef(),
               dataset=S.ModelRef(name="rows", version="v1", sha256="ab" * 32), created_at=1_700_000_000.5,
               report=S.TrainingJobState(job_id=job_id, state=state, step=step, total_steps=4))


def test_saved_jobs_come_back_as_last_saved(make_jobs):
    jobs = make_jobs()
    assert jobs.load() == []
    first, second = a_job("b-job"), a_job("a-job", S.TRAINING_STATE_RUNNING, step=2)
    jobs.save(first)
    jobs.save(second)
    first.report.state = S.TRAINING_STATE_SUCCEEDED
    first.report.step = 4
    jobs.save(first)  # a state change replaces the saved job
    second.report.step = 3  # not saved: the store keeps a copy, not the object

    again = make_jobs()
    loaded = again.load()
    assert [j.id for j in loaded] == ["a-job", "b-job"]
    assert [job_to_proto(j) for j in loaded] == [job_to_proto(a_job("a-job", S.TRAINING_STATE_RUNNING, step=2)),
                                                 job_to_proto(first)]
    assert loaded[1].done and not loaded[0].done and loaded[0].spec == second.spec


def store_with_dataset(tmp_path: Path) -> tuple[ModelStore, Manifest]:
    """A model store holding one JSONL dataset, rows@v1; its manifest."""
    store = ModelStore(tmp_path / "store")
    data = write_dataset(tmp_path / "rows.jsonl")
    manifest = manifest_from_proto(cmp_pb2.ModelManifest(name="rows", version="v1", kind=S.MODEL_KIND_DATASET,
                                                         size_bytes=data.stat().st_size, sha256=sha256_file(data)))
    with store.begin_upload(manifest) as upload:
        upload.write(0, data.read_bytes())
        upload.commit()
    return store, manifest


class OneCloud:
    """A node directory of one serving cloud node, ``cloud-1``, keeping what is queued for it."""

    def __init__(self) -> None:
        self.queued: list = []
        self.status = S.NodeStatus(info=S.NodeInfo(node_id="cloud-1", role=S.NODE_ROLE_CLOUD),
                                   health=S.NODE_HEALTH_SERVING)

    def statuses(self, role=0):
        return [self.status] if role in (0, S.NODE_ROLE_CLOUD) else []

    def node_status(self, node_id):
        return self.status

    def queue_command(self, node_id, command):
        self.queued.append(command)


def test_jobs_survive_a_core_restart(make_jobs, tmp_path):
    """The book over a store: a restarted core knows its jobs and hands running ones to their node again."""
    store, manifest = store_with_dataset(tmp_path)
    nodes = OneCloud()
    book = JobBook(nodes, store, make_jobs())
    job = book.start(spec())
    assert [c.WhichOneof("command") for c in nodes.queued] == ["start_training"]
    nodes.status.load.training.add(job_id=job.id, state=S.TRAINING_STATE_RUNNING, step=3, total_steps=4)
    assert book.get(job.id).report.step == 3

    nodes.queued.clear()
    nodes.status.load.ClearField("training")  # e.g. the node has not heartbeated to the new core yet
    again = JobBook(nodes, store, make_jobs())
    restored = again.get(job.id)
    assert restored.state == S.TRAINING_STATE_RUNNING and restored.spec == job.spec
    assert restored.dataset.sha256 == manifest.sha256
    assert [c.start_training.job_id for c in nodes.queued] == [job.id]  # handed to the node again
    again.cancel(job.id)
    assert nodes.queued[-1].cancel_training.job_id == job.id


async def test_a_watch_follows_the_job_when_a_take_over_replaces_its_record(tmp_path):
    """A replica that gets the lease takes every unfinished job as stored (another replica may have ended
    it): a client watching the job there sees the stored state, not the replaced record for ever."""
    store, _ = store_with_dataset(tmp_path)
    saved = MemoryJobStore()
    book = JobBook(OneCloud(), store, saved, poll_s=0.01)
    job = book.start(spec())
    states: list[int] = []

    async def watch() -> None:
        async for seen in book.watch(job.id):
            states.append(seen.state)

    watching = asyncio.create_task(watch())
    await eventually(lambda: states, "the watch's first state")
    ended = saved.load()[0]  # what another replica stored meanwhile: the job done
    ended.report.state = S.TRAINING_STATE_SUCCEEDED
    saved.save(ended)
    assert book.take_over() == 1
    await asyncio.wait_for(watching, timeout=5)
    assert states == [S.TRAINING_STATE_PLACED, S.TRAINING_STATE_SUCCEEDED]


def test_a_lost_nodes_job_moves_survives_a_restart_and_fails_with_nowhere_to_go(make_jobs, tmp_path):
    """The book over a store, with a clock: a job whose node is LOST moves to the other node of its role (saved
    so), the node that lost it is cancelled when it reports it again and may not publish for it, and a job with
    no node left fails after the timeout with the reason, as saved."""
    from netgpt.errors import FailedPrecondition

    class Nodes:
        def __init__(self) -> None:
            self.queued: list[tuple[str, cp_pb2.NodeCommand]] = []
            self.nodes = {n: S.NodeStatus(info=S.NodeInfo(node_id=n, role=S.NODE_ROLE_CLOUD),
                                          health=S.NODE_HEALTH_SERVING) for n in ("cloud-1", "cloud-2")}

        def statuses(self, role=0):
            return [self.nodes[n] for n in sorted(self.nodes) if role in (0, S.NODE_ROLE_CLOUD)]

        def node_status(self, node_id):
            return self.nodes[node_id]

        def queue_command(self, node_id, command):
            self.queued.append((node_id, command))

    now = [100.0]
    store, manifest = store_with_dataset(tmp_path)
    nodes = Nodes()

    def book_over(jobs: JobStore) -> JobBook:
        return JobBook(nodes, store, jobs, lost_after_s=5.0, unplaced_timeout_s=30.0, checkpoint_every=10,
                       timer=lambda: now[0])

    book = book_over(make_jobs())
    job = book.start(spec())
    assert job.node_id == "cloud-1" and job.spec.hyper_parameters.checkpoint_every == 10  # the core's default
    nodes.nodes["cloud-1"].load.training.add(job_id=job.id, state=S.TRAINING_STATE_RUNNING, step=7, total_steps=4)
    nodes.nodes["cloud-1"].health = S.NODE_HEALTH_LOST
    nodes.queued.clear()
    book.supervise()
    assert job.node_id == "cloud-2" and job.state == S.TRAINING_STATE_PLACED and job.report.step == 7
    assert [(n, c.WhichOneof("command")) for n, c in nodes.queued] == [("cloud-2", "start_training")]
    nodes.queued.clear()
    nodes.nodes["cloud-1"].health = S.NODE_HEALTH_SERVING  # it comes back, still running the job
    book.supervise()
    book.supervise()  # one cancel per registration, not one per look
    assert [(n, c.cancel_training.job_id) for n, c in nodes.queued] == [("cloud-1", job.id)]
    with pytest.raises(FailedPrecondition, match="no longer placed on node cloud-1"):
        book.check_publish("tuned", "v1", {"lineage.job_id": job.id}, "cloud-1")
    with pytest.raises(FailedPrecondition, match="no longer placed"):
        book.check_publish(f"job-{job.id}-checkpoint", "step-000000010", {}, "cloud-1")
    book.check_publish("tuned", "v1", {"lineage.job_id": job.id}, "cloud-2")  # its owner may
    book.check_publish("other", "v1", {}, "cloud-1")  # not a job's: not the book's business

    again = book_over(make_jobs())  # a restarted core knows where the job went
    restored = again.get(job.id)
    assert restored.node_id == "cloud-2"
    del nodes.nodes["cloud-2"]  # gone (e.g. dropped from the registry)
    now[0] += 6
    again.supervise()  # a restarted core has forgotten that cloud-1 lost the job once: it may go back there
    assert restored.node_id == "cloud-1" and restored.state == S.TRAINING_STATE_PLACED
    del nodes.nodes["cloud-1"]
    now[0] += 6
    again.supervise()
    assert restored.node_id == "" and restored.state == S.TRAINING_STATE_PLACED
    now[0] += 31
    again.supervise()
    assert restored.state == S.TRAINING_STATE_FAILED
    assert "no serving cloud node to move to" in restored.report.error and "cloud-1, cloud-2" in restored.report.error
    assert restored.report.error_code == 9  # FAILED_PRECONDITION
    saved = {j.id: j for j in make_jobs().load()}[job.id]
    assert saved.state == S.TRAINING_STATE_FAILED and saved.report.error == restored.report.error


# --- one migration path ---------------------------------------------------------------------------------


def an_older_core(store_dir: Path, version: int) -> cp_pb2.AiSession:
    """The store dir a core of schema ``version`` left: its SQLite file (one session in it) and, beside
    it, the job files it kept (two jobs, one torn write, one file that is not a job)."""
    older = SqliteDb(store_dir / STATE_FILE, migrations()[:version], label="core state")
    session = cp_pb2.AiSession(session_id="sess-1", ue_id="ue-1", cell_id="cell-1")
    with older.transaction() as db:
        columns = "session_id, expires_at, session" + (", ue_id" if version >= 2 else "")
        values = ("sess-1", None, session.SerializeToString()) + (("ue-1",) if version >= 2 else ())
        db.execute(f"INSERT INTO sessions ({columns}) VALUES ({', '.join('?' * len(values))})", values)
    older.close()
    folder = store_dir / LEGACY_JOBS_DIR
    folder.mkdir()
    for job in (a_job("job-running", S.TRAINING_STATE_RUNNING, step=2), a_job("job-done", S.TRAINING_STATE_FAILED)):
        (folder / f"{job.id}.pb").write_bytes(job_to_proto(job).SerializeToString())
    (folder / "job-torn.tmp").write_bytes(b"\x0a\x03jo")  # a write the old store never finished
    (folder / "junk.pb").write_bytes(b"\xff" * 40)
    return session


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_core_file_and_its_job_files_are_migrated(tmp_path: Path, version: int):
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    session = an_older_core(store_dir, version)
    stores = open_stores("", store_dir)
    try:
        assert SCHEMA_VERSION == 5 and stores.db is not None and stores.db.version == 5
        assert [j.id for j in stores.jobs.load()] == ["job-done", "job-running"]
        assert job_to_proto(stores.jobs.load()[1]) == job_to_proto(a_job("job-running", S.TRAINING_STATE_RUNNING,
                                                                         step=2))
        assert [s.session for s in stores.state.sessions_of_ue("ue-1")] == [session]
    finally:
        stores.close()
    assert sqlite3.connect(store_dir / STATE_FILE).execute("PRAGMA user_version").fetchone()[0] == 5

    # the files were taken in once: the folder is no longer read, a job deleted from it stays
    (store_dir / LEGACY_JOBS_DIR / "job-done.pb").unlink()
    (store_dir / LEGACY_JOBS_DIR / "job-late.pb").write_bytes(job_to_proto(a_job("job-late")).SerializeToString())
    stores = open_stores("", store_dir)
    try:
        assert [j.id for j in stores.jobs.load()] == ["job-done", "job-running"]
    finally:
        stores.close()


def test_job_files_beside_a_memory_core_are_taken_in_by_a_new_file(tmp_path: Path):
    """A core with ``state_db = ":memory:"`` kept only its jobs (as files); the first file takes them in."""
    store_dir = tmp_path / "store"
    (store_dir / LEGACY_JOBS_DIR).mkdir(parents=True)
    job = a_job("job-1", S.TRAINING_STATE_RUNNING, step=1)
    (store_dir / LEGACY_JOBS_DIR / "job-1.pb").write_bytes(job_to_proto(job).SerializeToString())
    stores = open_stores("", store_dir)
    try:
        assert [job_to_proto(j) for j in stores.jobs.load()] == [job_to_proto(job)]
    finally:
        stores.close()
    memory = open_stores(":memory:", store_dir)
    assert memory.db is None and memory.jobs.load() == [] and memory.where == ":memory:"


def test_an_unreadable_saved_job_is_left_out(tmp_path: Path):
    db = open_db(tmp_path / STATE_FILE)
    try:
        jobs = SqliteJobStore(db)
        jobs.save(a_job("good"))
        with db.transaction() as conn:
            conn.execute("INSERT INTO training_jobs (job_id, job) VALUES (?, ?)", ("bad", b"\xff" * 40))
        assert [j.id for j in jobs.load()] == ["good"]
    finally:
        db.close()
