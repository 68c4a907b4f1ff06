"""The PRB load of the cells this edge serves, as the RAN last reported it to the core.

The core's record (``cp.ran.RanView``, fed by ``RanService.ReportCellLoad``) is the one source of
truth; the core forwards each report's cells to the edges covering them in a ``CellLoads`` command
with the edges' next heartbeat, so the copy here is at most one heartbeat interval behind the RAN's
report. The routing policy reads it per request (``edge_node.serving.routing``).
"""

from __future__ import annotations

import math

import structlog

from netgpt.v1 import control_plane_pb2 as cp_pb2

log = structlog.get_logger(__name__)


class CellLoads:
    def __init__(self, cells: frozenset[str] = frozenset()) -> None:
        """``cells``: the cells this edge serves (empty: keep whatever the core sends)."""
        self._cells = cells
        self._prb: dict[str, float] = {}

    def prb(self, cell_id: str) -> float | None:
        """The cell's last reported PRB utilisation (0..1), or None while none was reported."""
        return self._prb.get(cell_id)

    def apply(self, command: cp_pb2.NodeCommand) -> None:
        """Take a ``cell_loads`` command's values (the cells it names; others keep theirs)."""
        for cell_id, prb in command.cell_loads.prb_utilization.items():
            if (not self._cells or cell_id in self._cells) and math.isfinite(prb):
                self._prb[cell_id] = min(max(prb, 0.0), 1.0)
        log.info("edge.cell_loads", **{f"prb.{c}": round(v, 3) for c, v in sorted(self._prb.items())})
