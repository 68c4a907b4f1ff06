"""AI sessions: one per UE attachment, binding a serving edge, a cloud and an AI flow id.

Sessions live in the core's state (:mod:`cp.state_db`), so they survive a core restart. A
session not looked up for ``ttl_s`` seconds expires (``0``: never): a lookup after that is
NOT_FOUND, and expired sessions are deleted in bounded batches, a few on every
establishment and the rest by :func:`sweep_periodically`, so sessions nobody releases do not
grow the core for ever.

The servicer calls the ``*_async`` methods. With ``shared`` state (PostgreSQL that core replicas share:
a database across the network, whose commits wait for its disk flush) they do their reads and writes on
worker threads, so the event loop serves other calls meanwhile and concurrent set-ups' commits share
flushes; the choice of edge and cloud stays on the event loop, which owns the registry. Without it (memory,
SQLite: tens of µs) they run inline. Shared state also leaves the sweep to the lease holder's periodic
round: a sweep with each set-up would be a second transaction per session.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from cp.qos import is_unset
from cp.registry import NodeRegistry
from cp.state_db import CoreState, MemoryState
from netgpt.errors import NotFound, excerpt
from netgpt.lease import Lease
from netgpt.v1 import common_pb2, control_plane_pb2
from netgpt.validate import check_id, check_qos

log = structlog.get_logger(__name__)
T = TypeVar("T")

DEFAULT_TTL_S = 3600.0
ESTABLISH_SWEEP = 8  # expired sessions deleted along with each establishment: more than one, so they cannot pile up
SWEEP_BATCH = 1000  # per transaction of the periodic sweep, which yields to the event loop between batches
REFRESH_FRACTION = 0.1  # extend a session's expiry on lookup once this fraction of the TTL has passed


@dataclass(frozen=True)
class UeDefaults:
    """What the RAN knows of a UE (``cp.ran``): a session established without slice or QoS gets these."""

    slice_id: str
    qos: common_pb2.QoS


class SessionTable:
    def __init__(self, registry: NodeRegistry, state: CoreState | None = None, ttl_s: float = DEFAULT_TTL_S,
                 wall: Callable[[], float] = time.time, shared: bool = False) -> None:
        if ttl_s < 0:
            raise ValueError("ttl_s must be >= 0 (0: sessions never expire)")
        self._registry = registry
        self._state: CoreState = state if state is not None else MemoryState()
        self.ttl_s = ttl_s
        self._wall = wall
        self._shared = shared
        self.ue_defaults: Callable[[str], UeDefaults | None] = lambda ue_id: None  # set by the RAN view (cp.ran)

    @property
    def sweep_interval_s(self) -> float:
        """How often :func:`sweep_periodically` runs: a quarter of the TTL, within 1..60 s."""
        return min(max(self.ttl_s / 4, 1.0), 60.0)

    def establish(self, request: control_plane_pb2.EstablishSessionRequest) -> control_plane_pb2.AiSession:
        session, expires_at = self._new_session(request)
        self._store_new(session, expires_at)
        return session

    async def establish_async(self, request: control_plane_pb2.EstablishSessionRequest) -> control_plane_pb2.AiSession:
        session, expires_at = self._new_session(request)
        await self._blocking(self._store_new, session, expires_at)
        return session

    async def get_async(self, session_id: str) -> control_plane_pb2.AiSession:
        return await self._blocking(self.get, session_id)

    async def release_async(self, session_id: str) -> None:
        await self._blocking(self.release, session_id)

    async def _blocking(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.to_thread(fn, *args) if self._shared else fn(*args)

    def _new_session(self, request: control_plane_pb2.EstablishSessionRequest
                     ) -> tuple[control_plane_pb2.AiSession, float | None]:
        """The session to store (its edge and cloud picked from the registry), with its expiry."""
        check_id(request.ue_id, "ue_id", required=True)
        check_id(request.cell_id, "cell_id (the cell the UE is attached to)", required=True)
        check_id(request.slice_id, "slice_id")
        check_qos(request.qos.priority, request.qos.latency_budget_ms)
        slice_id, qos = request.slice_id, request.qos
        known = self.ue_defaults(request.ue_id)
        if known is not None:  # the client's own slice and QoS win; else the RAN's (QoS from the UE's 5QI)
            slice_id = slice_id or known.slice_id
            qos = known.qos if is_unset(qos) else qos
        edge = self._registry.pick_edge(request.cell_id)
        cloud = self._registry.pick_cloud()
        session = control_plane_pb2.AiSession(
            session_id=f"sess-{uuid.uuid4().hex[:12]}",
            ai_flow_id=f"flow-{uuid.uuid4().hex[:12]}",
            ue_id=request.ue_id,
            cell_id=request.cell_id,
            slice_id=slice_id,
            qos=qos,
            serving_edge=edge.info,
            serving_cloud=cloud.info if cloud else common_pb2.NodeInfo(),
        )
        now = self._wall()
        session.created_at.FromNanoseconds(int(now * 1e9))
        return session, self._expiry(now)

    def _store_new(self, session: control_plane_pb2.AiSession, expires_at: float | None) -> None:
        if not self._shared:
            self.sweep(ESTABLISH_SWEEP)
        self._state.put_session(session, expires_at)

    def get(self, session_id: str) -> control_plane_pb2.AiSession:
        """The session; NotFound when it is unknown or expired (an expired one is deleted). A lookup
        keeps the session alive for another ``ttl_s``."""
        check_id(session_id, "session_id", required=True)
        stored = self._state.get_session(session_id)
        if stored is None:
            raise NotFound(f"session {excerpt(session_id)} is unknown (released, expired or never established); "
                           "establish a new one")
        now = self._wall()
        if stored.expires_at is not None and stored.expires_at <= now:
            self._state.delete_session(session_id)
            raise NotFound(f"session {excerpt(session_id)} expired (not used for {self.ttl_s:g} s); "
                           "establish a new one")
        wanted = self._expiry(now)
        if wanted is None:
            if stored.expires_at is not None:  # the TTL was turned off since it was established
                self._state.set_session_expiry(session_id, None)
        elif stored.expires_at is None or wanted - stored.expires_at >= self.ttl_s * REFRESH_FRACTION:
            self._state.set_session_expiry(session_id, wanted)
        return stored.session

    def release(self, session_id: str) -> None:
        self.get(session_id)
        self._state.delete_session(session_id)

    def of_ue(self, ue_id: str) -> list[control_plane_pb2.AiSession]:
        """The live sessions of ``ue_id`` (expired ones are left for the sweep), by session id."""
        now = self._wall()
        return [s.session for s in self._state.sessions_of_ue(ue_id) if s.expires_at is None or s.expires_at > now]

    def reanchor(self, session_id: str, cell_id: str, edge: common_pb2.NodeInfo) -> control_plane_pb2.AiSession:
        """Move a session to ``cell_id`` served by ``edge`` (a handover), keeping its id, flow, QoS and
        expiry; NotFound when it is gone. The edges see the change on their next lookup."""
        stored = self._state.get_session(session_id)
        if stored is None:
            raise NotFound(f"session {excerpt(session_id)} is unknown (released or expired)")
        session = stored.session
        session.cell_id = cell_id
        session.serving_edge.CopyFrom(edge)
        self._state.put_session(session, stored.expires_at)
        return session

    def sweep(self, limit: int = SWEEP_BATCH) -> int:
        """Delete at most ``limit`` expired sessions; returns how many were deleted."""
        return self._state.sweep_sessions(self._wall(), limit)

    def _expiry(self, now: float) -> float | None:
        return now + self.ttl_s if self.ttl_s > 0 else None

    def __len__(self) -> int:
        return self._state.session_count()


async def sweep_expired(table: SessionTable) -> int:
    """Delete every session expired by now, one batch per transaction, yielding to the event loop
    between batches; returns how many were deleted."""
    removed = 0
    while True:
        batch = table.sweep(SWEEP_BATCH)
        removed += batch
        if batch < SWEEP_BATCH:
            return removed
        await asyncio.sleep(0)


async def sweep_periodically(table: SessionTable, lease: Lease | None = None) -> None:
    """:func:`sweep_expired` every ``table.sweep_interval_s`` until cancelled (never when ``ttl_s`` is 0); with
    ``lease``, only the rounds when this replica holds it (someone else renews it)."""
    if table.ttl_s <= 0:
        return
    while True:
        await asyncio.sleep(table.sweep_interval_s)
        if lease is not None and not lease.held():  # another replica sweeps
            continue
        try:
            removed = await sweep_expired(table)
        except Exception:  # a locked or full disk must not end the sweeper; the next round retries
            log.exception("sessions.sweep_failed")
            continue
        if removed:
            log.info("sessions.expired", removed=removed, ttl_s=table.ttl_s)
