"""The core's view of the RAN: which cell, slice and 5QI each UE has, each cell's load, and the
re-anchoring of AI sessions when a UE is handed over.

Fed by :mod:`cp.ran_servicer` (a testbed, a RIC xApp, ``netgpt ran-sim``). In memory, like the
node registry: the RAN reports again, and the sessions themselves are durable (``cp.state_db``),
so a handover reported after a core restart still re-anchors them (an unknown UE handed over is
taken as attached in the target cell).

Re-anchoring: each live session of the UE moves to the target cell. It keeps its serving edge
when that edge also serves the target cell (nothing for the UE to do), else it moves to the
least-loaded serving edge of the target cell. Nothing changes unless every session has a place.
Session id, AI flow id, QoS and expiry are kept; the UE learns its new serving edge from
GetSession. Edges look sessions up at the core (cached ``session_cache_s``), so the new edge
fetches the moved session on the UE's first request there.

Cell load: the last ``ReportCellLoad`` of each cell is the one record of it. A cell at or above
``saturated_prb`` is *saturated*: new sessions and workflows go to edges covering no saturated
cell where one covers the UE's cell (``NodeRegistry.pick_edge``, ``cp.placement``; a cell's crowd
lands on every edge that serves it). Each report's cells are forwarded to the edges that serve
them (a ``CellLoads`` command with their next heartbeat), whose routing reads them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from cp.qos import check_five_qi, qos_for
from cp.registry import NodeRegistry
from cp.sessions import SessionTable, UeDefaults
from netgpt.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, StartupError, excerpt
from netgpt.v1 import common_pb2, control_plane_pb2
from netgpt.validate import check_id

log = structlog.get_logger(__name__)

MAX_UES = 1_000_000  # UE contexts held; past this, attaches are refused until UEs detach
MAX_CELLS = 100_000  # cells with a reported load
MAX_LOAD_REPORTS = 1_000  # cells in one ReportCellLoad


@dataclass
class UeState:
    ue_id: str
    cell_id: str
    slice_id: str = ""
    five_qi: int = 0
    updated_at: float = 0.0  # unix seconds

    @property
    def qos(self) -> common_pb2.QoS:
        return qos_for(self.five_qi)


@dataclass(frozen=True)
class Reanchored:
    session_id: str
    from_cell_id: str
    to_cell_id: str
    from_edge_id: str
    to_edge_id: str


@dataclass(frozen=True)
class Mobility:
    """What an attach or handover did: the UE as it is now, and the sessions that moved with it."""

    ue: UeState
    reanchored: list[Reanchored] = field(default_factory=list)
    reanchor_ms: float = 0.0


@dataclass(frozen=True)
class CellLoadReport:
    cell_id: str
    prb_utilization: float
    connected_ues: int
    reported_at: float = 0.0


@dataclass(frozen=True)
class CellView:
    cell_id: str
    load: CellLoadReport | None
    attached_ues: int
    edge_ids: list[str]


class RanView:
    def __init__(self, registry: NodeRegistry, sessions: SessionTable, wall: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.perf_counter, saturated_prb: float = 0.0) -> None:
        """``saturated_prb``: the PRB utilisation from which a cell counts as saturated (0: none ever does)."""
        if not 0.0 <= saturated_prb <= 1.0:
            raise StartupError(f"cell_saturated_prb is a PRB utilisation and must be within 0..1 (0: off); "
                               f"got {saturated_prb}")
        self._saturated_prb = saturated_prb
        self._registry = registry
        self._sessions = sessions
        self._wall = wall
        self._clock = clock
        self._ues: dict[str, UeState] = {}
        self._loads: dict[str, CellLoadReport] = {}
        sessions.ue_defaults = self.defaults  # sessions established without slice/QoS take the RAN's
        registry.saturated_cells = self.saturated  # placement reads the loads from here

    def __len__(self) -> int:
        return len(self._ues)

    def defaults(self, ue_id: str) -> UeDefaults | None:
        ue = self._ues.get(ue_id)
        return None if ue is None else UeDefaults(slice_id=ue.slice_id, qos=ue.qos)

    def saturated(self) -> frozenset[str]:
        """The cells whose last report is at or above ``saturated_prb``."""
        if not self._saturated_prb:
            return frozenset()
        return frozenset(c for c, r in self._loads.items() if r.prb_utilization >= self._saturated_prb)

    def ue(self, ue_id: str) -> UeState:
        check_id(ue_id, "ue_id", required=True)
        ue = self._ues.get(ue_id)
        if ue is None:
            raise NotFound(f"UE {excerpt(ue_id)} is not attached (no AttachUe, or it detached)")
        return ue

    def attach(self, ue_id: str, cell_id: str, slice_id: str = "", five_qi: int = 0) -> Mobility:
        """Attach (or re-attach) a UE; one attached in another cell is handed over to ``cell_id``."""
        check_id(ue_id, "ue_id", required=True)
        check_id(cell_id, "cell_id", required=True)
        check_id(slice_id, "slice_id")
        check_five_qi(five_qi)
        if ue_id not in self._ues and len(self._ues) >= MAX_UES:
            raise ResourceExhausted(f"{MAX_UES} UEs are attached; detach some first")
        moved, took_ms = self._reanchor(ue_id, cell_id)
        ue = UeState(ue_id, cell_id, slice_id, five_qi, self._wall())
        self._ues[ue_id] = ue
        log.info("ran.attached", ue_id=ue_id, cell_id=cell_id, slice_id=slice_id, five_qi=five_qi,
                 reanchored=len(moved))
        return Mobility(ue, moved, took_ms)

    def handover(self, ue_id: str, target_cell_id: str, source_cell_id: str = "") -> Mobility:
        """Move a UE to ``target_cell_id`` and re-anchor its sessions; all or nothing."""
        check_id(ue_id, "ue_id", required=True)
        check_id(target_cell_id, "target_cell_id", required=True)
        check_id(source_cell_id, "source_cell_id")
        known = self._ues.get(ue_id)
        if known is not None and source_cell_id and source_cell_id != known.cell_id:
            raise FailedPrecondition(f"handover of UE {excerpt(ue_id)} from {excerpt(source_cell_id)}, but it is in "
                                     f"{known.cell_id!r}: a stale or reordered event (report the handovers in order)")
        if known is None and len(self._ues) >= MAX_UES:
            raise ResourceExhausted(f"{MAX_UES} UEs are attached; detach some first")
        moved, took_ms = self._reanchor(ue_id, target_cell_id)
        ue = known or UeState(ue_id, target_cell_id)
        ue.cell_id, ue.updated_at = target_cell_id, self._wall()
        self._ues[ue_id] = ue
        edges = sorted({m.to_edge_id for m in moved if m.to_edge_id != m.from_edge_id})
        log.info("ran.handover", ue_id=ue_id, source_cell_id=source_cell_id or (known.cell_id if known else ""),
                 target_cell_id=target_cell_id, sessions=len(moved), new_edges=edges, reanchor_ms=round(took_ms, 3))
        return Mobility(ue, moved, took_ms)

    def detach(self, ue_id: str, keep_sessions: bool = False) -> list[str]:
        """Forget the UE; release its sessions unless ``keep_sessions``. Returns the released session ids."""
        check_id(ue_id, "ue_id", required=True)
        self._ues.pop(ue_id, None)
        released = [] if keep_sessions else [s.session_id for s in self._sessions.of_ue(ue_id)]
        for session_id in released:
            try:
                self._sessions.release(session_id)
            except NotFound:
                pass  # released or expired meanwhile
        log.info("ran.detached", ue_id=ue_id, released=len(released), kept_sessions=keep_sessions)
        return released

    def report_load(self, reports: list[CellLoadReport]) -> None:
        if len(reports) > MAX_LOAD_REPORTS:
            raise InvalidArgument(f"{len(reports)} cells in one report; at most {MAX_LOAD_REPORTS}")
        now = self._wall()
        for i, report in enumerate(reports):
            check_id(report.cell_id, f"cells[{i}].cell_id", required=True)
            if not 0.0 <= report.prb_utilization <= 1.0:  # also refuses NaN
                raise InvalidArgument(f"cells[{i}].prb_utilization must be within 0..1; got {report.prb_utilization}")
        fresh = {r.cell_id for r in reports} - self._loads.keys()
        if len(self._loads) + len(fresh) > MAX_CELLS:
            raise ResourceExhausted(f"loads of {MAX_CELLS} cells are held already")
        for report in reports:
            self._loads[report.cell_id] = CellLoadReport(report.cell_id, report.prb_utilization,
                                                         report.connected_ues, now)
        self._tell_edges({r.cell_id for r in reports})

    def _tell_edges(self, reported: set[str]) -> None:
        """Each serving edge covering a reported cell gets the loads of all its cells with its next heartbeat
        (in place of any it has not picked up yet: a slow heartbeat never queues a backlog of reports)."""
        for status in self._registry.statuses(common_pb2.NODE_ROLE_EDGE):
            cells = status.info.cell_ids
            if status.health != common_pb2.NODE_HEALTH_SERVING or not reported.intersection(cells):
                continue
            mine = {c: self._loads[c].prb_utilization for c in cells if c in self._loads}
            self._registry.queue_replacing(status.info.node_id, control_plane_pb2.NodeCommand(
                cell_loads=control_plane_pb2.CellLoads(prb_utilization=mine)))
        saturated = sorted(reported & self.saturated())
        if saturated:
            log.info("ran.cells_saturated", cells=saturated, saturated_prb=self._saturated_prb)

    def cells(self) -> list[CellView]:
        edges: dict[str, list[str]] = {}
        for status in self._registry.statuses(common_pb2.NODE_ROLE_EDGE):
            if status.health == common_pb2.NODE_HEALTH_SERVING:
                for cell_id in status.info.cell_ids:
                    edges.setdefault(cell_id, []).append(status.info.node_id)
        ues: dict[str, int] = {}
        for ue in self._ues.values():
            ues[ue.cell_id] = ues.get(ue.cell_id, 0) + 1
        cell_ids = sorted(edges.keys() | self._loads.keys() | ues.keys())
        return [CellView(c, self._loads.get(c), ues.get(c, 0), edges.get(c, [])) for c in cell_ids]

    def _reanchor(self, ue_id: str, cell_id: str) -> tuple[list[Reanchored], float]:
        """Move every live session of the UE to ``cell_id``; (what moved, how long it took in ms)."""
        started = self._clock()
        plan: list[tuple[str, str, common_pb2.NodeInfo, str]] = []
        target: common_pb2.NodeInfo | None = None
        for session in self._sessions.of_ue(ue_id):
            if session.cell_id == cell_id:
                continue
            edge = session.serving_edge
            if not self._serves(edge.node_id, cell_id):
                target = target or self._registry.pick_edge(cell_id).info  # NotFound: nothing moves
                edge = target
            plan.append((session.session_id, session.cell_id, edge, session.serving_edge.node_id))
        moved = []
        for session_id, from_cell, edge, from_edge in plan:
            try:
                self._sessions.reanchor(session_id, cell_id, edge)
            except NotFound:
                continue  # released meanwhile
            moved.append(Reanchored(session_id, from_cell, cell_id, from_edge, edge.node_id))
        self._tell_old_edges(moved)
        return moved, (self._clock() - started) * 1000

    def _tell_old_edges(self, moved: list[Reanchored]) -> None:
        """Each edge a session moved from (or moved cell on) drops its cached copy with its next
        heartbeat, so a request that still reaches it is redirected within one heartbeat rather than
        answered with the old cell for up to its ``session_cache_s``."""
        by_edge: dict[str, list[str]] = {}
        for item in moved:
            by_edge.setdefault(item.from_edge_id, []).append(item.session_id)
        for edge_id, session_ids in by_edge.items():
            try:
                self._registry.queue_command(edge_id, control_plane_pb2.NodeCommand(
                    sessions_moved=control_plane_pb2.SessionsMoved(session_ids=session_ids)))
            except NotFound:
                pass  # that edge is gone: nothing of it to correct

    def _serves(self, node_id: str, cell_id: str) -> bool:
        """Whether edge ``node_id`` is registered, serving, and covers ``cell_id``."""
        try:
            status = self._registry.node_status(node_id)
        except NotFound:
            return False
        return status.health == common_pb2.NODE_HEALTH_SERVING and cell_id in status.info.cell_ids
