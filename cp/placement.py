"""Placing workflows onto serving nodes, and the table of applied workflows that keeps them placed.

Placement is a pure function of a workflow and the registry's node statuses, so it is
recomputed whenever the topology (node ids, roles, addresses, cells, health,
registration time) differs from what the last placement saw: lazily, on read.
Load changes alone do not move a placed workflow, so placements do not flap with every
heartbeat. A cell's radio crossing ``cell_saturated_prb`` (``cp.ran``) does: placement prefers
edges that cover no saturated cell, as long as one covers the workflow's cell.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from cp.registry import NodeRegistry, covers_any
from cp.state_db import CoreState, MemoryState
from cp.workflows import FUNCTIONS, Workflow
from netgpt.errors import FailedPrecondition, NotFound
from netgpt.node_status import least_loaded_key, load_ratio
from netgpt.v1 import common_pb2
from netgpt.words import enum_word

log = structlog.get_logger(__name__)

HOP_MS = 20.0  # estimated cost of handing a step's output to another node
MAX_CANDIDATES = 16  # per role, least loaded first; bounds the combinations tried


@dataclass(frozen=True)
class StepPlacement:
    step_id: str
    function: str
    node_id: str
    node_address: str
    role: common_pb2.NodeRole


@dataclass(frozen=True)
class Placement:
    steps: tuple[StepPlacement, ...]
    estimated_latency_ms: float
    critical_path: tuple[str, ...]

    def node_of(self, step_id: str) -> str:
        return next(s.node_id for s in self.steps if s.step_id == step_id)


def place(workflow: Workflow, nodes: Sequence[common_pb2.NodeStatus],
          saturated: frozenset[str] = frozenset()) -> Placement:
    """Choose a node per step: allowed role, one node per role (edge steps stay together), nodes
    covering no ``saturated`` cell first, least loaded next, and an estimated critical path within
    the latency budget.

    Raises FailedPrecondition naming the step and role when no serving node fits, or the
    estimate and budget when no combination of nodes is fast enough.
    """
    candidates = _candidates(workflow, nodes, saturated)
    step_roles = {s.id: _role_for(workflow, s.id, candidates) for s in workflow.steps}
    roles = sorted(set(step_roles.values()))
    best: tuple[tuple[object, ...], Placement] | None = None
    fastest: Placement | None = None
    for combo in itertools.product(*(candidates[r] for r in roles)):
        chosen = dict(zip(roles, combo, strict=True))
        placement = _estimate(workflow, {s: chosen[r] for s, r in step_roles.items()})
        if fastest is None or placement.estimated_latency_ms < fastest.estimated_latency_ms:
            fastest = placement
        if placement.estimated_latency_ms > workflow.latency_budget_ms:
            continue
        ratios = [load_ratio(n) for n in combo]
        crowded = sum(covers_any(n.info, saturated) for n in combo)
        rank = (crowded, max(ratios), sum(ratios), placement.estimated_latency_ms, [n.info.node_id for n in combo])
        if best is None or rank < best[0]:
            best = (rank, placement)
    if best is None:
        assert fastest is not None
        raise FailedPrecondition(
            f"workflow {workflow.name!r} cannot meet its latency budget of {workflow.latency_budget_ms} ms: "
            f"the fastest placement is estimated at {fastest.estimated_latency_ms:.0f} ms along "
            f"{' -> '.join(fastest.critical_path)} (on {', '.join(sorted({s.node_id for s in fastest.steps}))})")
    return best[1]


def _candidates(workflow: Workflow, nodes: Sequence[common_pb2.NodeStatus],
                saturated: frozenset[str]) -> dict[int, list[common_pb2.NodeStatus]]:
    serving = [n for n in nodes if n.health == common_pb2.NODE_HEALTH_SERVING]
    by_role: dict[int, list[common_pb2.NodeStatus]] = {}
    for role in (common_pb2.NODE_ROLE_EDGE, common_pb2.NODE_ROLE_CLOUD):
        of_role = [n for n in serving if n.info.role == role]
        if role == common_pb2.NODE_ROLE_EDGE and workflow.cell_id:
            of_role = [n for n in of_role if workflow.cell_id in n.info.cell_ids]
        by_role[role] = sorted(of_role, key=lambda n: (covers_any(n.info, saturated), least_loaded_key(n)))[
            :MAX_CANDIDATES]
    return by_role


def _role_for(workflow: Workflow, step_id: str, candidates: dict[int, list[common_pb2.NodeStatus]]) -> int:
    function = FUNCTIONS[workflow.step(step_id).function]
    for role in function.roles:
        if candidates.get(role):
            return role
    wanted = " or ".join(enum_word(common_pb2.NodeRole, r) for r in function.roles)
    covering = workflow.cell_id and common_pb2.NODE_ROLE_EDGE in function.roles
    where = f" covering cell {workflow.cell_id!r}" if covering else ""
    raise FailedPrecondition(f"step {step_id!r} ({function.name}) needs a serving {wanted} node{where}; "
                             "none is serving")


def _estimate(workflow: Workflow, nodes: dict[str, common_pb2.NodeStatus]) -> Placement:
    """Longest path through the DAG: step costs, measured first-token time for generation, hops."""
    finish: dict[str, float] = {}
    previous: dict[str, str | None] = {}
    for step in workflow.steps:
        node = nodes[step.id]
        start, before = 0.0, None
        for parent in step.after:
            hop = 0.0 if nodes[parent].info.node_id == node.info.node_id else HOP_MS
            if finish[parent] + hop > start or before is None:
                start, before = max(start, finish[parent] + hop), parent
        function = FUNCTIONS[step.function]
        cost = function.cost_ms + (node.load.p50_first_token_ms if function.generates else 0.0)
        finish[step.id] = start + cost
        previous[step.id] = before
    last: str | None = max(finish, key=finish.__getitem__)
    total = max(finish.values())
    path: list[str] = []
    while last is not None:
        path.append(last)
        last = previous[last]
    steps = tuple(StepPlacement(step_id=s.id, function=s.function, node_id=nodes[s.id].info.node_id,
                                node_address=nodes[s.id].info.address, role=nodes[s.id].info.role)
                  for s in workflow.steps)
    return Placement(steps=steps, estimated_latency_ms=total, critical_path=tuple(reversed(path)))



def topology_fingerprint(nodes: Sequence[common_pb2.NodeStatus],
                         saturated: frozenset[str] = frozenset()) -> tuple[object, ...]:
    """What placement depends on besides load; when it changes, workflows are re-placed."""
    return (tuple(sorted((n.info.node_id, n.info.role, n.info.address, tuple(n.info.cell_ids), n.health,
                          n.registered_at.seconds) for n in nodes)), tuple(sorted(saturated)))


@dataclass
class AppliedWorkflow:
    workflow: Workflow
    applied_at: float
    placed_at: float
    placement: Placement | None = None
    error: str = ""  # why it cannot be placed on the current topology
    fingerprint: tuple[object, ...] | None = None  # the topology the placement was made for; None: never placed


class WorkflowTable:
    """Applied workflows by name, each re-placed on read when the topology has changed.

    The specs are kept in the core's state; after a restart they are placed on first read,
    on whatever nodes have registered again by then.
    """

    def __init__(self, registry: NodeRegistry, wall: Callable[[], float] = time.time,
                 state: CoreState | None = None, shared: bool = False) -> None:
        """``shared``: core replicas share ``state``; it is read again before each use, so a workflow
        applied or deleted at another replica is seen here."""
        self._registry = registry
        self._wall = wall
        self._state: CoreState = state if state is not None else MemoryState()
        self._shared = shared
        self._workflows: dict[str, AppliedWorkflow] = {}
        self._take_stored()

    def _take_stored(self) -> None:
        """The stored workflows, keeping this replica's placement of those not applied again since."""
        now, known = self._wall(), self._workflows
        self._workflows = {
            s.workflow.name: (known[s.workflow.name] if s.workflow.name in known
                              and known[s.workflow.name].applied_at == s.applied_at
                              else AppliedWorkflow(workflow=s.workflow, applied_at=s.applied_at, placed_at=now))
            for s in self._state.workflows()}

    def _sync(self) -> None:
        if self._shared:
            self._take_stored()

    def apply(self, workflow: Workflow) -> AppliedWorkflow:
        """Place and store (replacing one of the same name); a workflow that cannot be placed is not stored."""
        nodes, saturated = self._registry.statuses(), self._registry.saturated_cells()
        placement = place(workflow, nodes, saturated)
        now = self._wall()
        replaced = workflow.name in self._workflows
        self._state.put_workflow(workflow, now)
        applied = AppliedWorkflow(workflow=workflow, applied_at=now, placed_at=now, placement=placement,
                                  fingerprint=topology_fingerprint(nodes, saturated))
        self._workflows[workflow.name] = applied
        log.info("workflow.applied", workflow=workflow.name, replaced=replaced, nodes=_nodes(placement),
                 estimated_latency_ms=round(placement.estimated_latency_ms, 1),
                 latency_budget_ms=workflow.latency_budget_ms)
        return applied

    def get(self, name: str) -> AppliedWorkflow:
        self._sync()
        applied = self._workflows.get(name)
        if applied is None:
            raise NotFound(f"workflow {name!r} is not applied; applied: {sorted(self._workflows)}")
        return self._refresh(applied)

    def placement(self, name: str) -> Placement | None:
        """The current placement, recomputed if the topology changed; None when it cannot be placed."""
        return self.get(name).placement

    def __len__(self) -> int:
        self._sync()
        return len(self._workflows)

    def list(self) -> list[AppliedWorkflow]:
        self._sync()
        return [self._refresh(self._workflows[n]) for n in sorted(self._workflows)]

    def delete(self, name: str) -> None:
        self._sync()
        if name not in self._workflows:
            raise NotFound(f"workflow {name!r} is not applied")
        self._state.delete_workflow(name)
        del self._workflows[name]
        log.info("workflow.deleted", workflow=name)

    def _refresh(self, applied: AppliedWorkflow) -> AppliedWorkflow:
        nodes, saturated = self._registry.statuses(), self._registry.saturated_cells()
        fingerprint = topology_fingerprint(nodes, saturated)
        if fingerprint == applied.fingerprint:
            return applied
        before = _nodes(applied.placement)
        try:
            applied.placement, applied.error = place(applied.workflow, nodes, saturated), ""
        except FailedPrecondition as exc:
            applied.placement, applied.error = None, str(exc)
        applied.fingerprint, applied.placed_at = fingerprint, self._wall()
        after = _nodes(applied.placement)
        if after != before or applied.error:
            log.info("workflow.replaced", workflow=applied.workflow.name, before=before, after=after,
                     error=applied.error or None)
        return applied


def _nodes(placement: Placement | None) -> dict[str, str]:
    return {s.step_id: s.node_id for s in placement.steps} if placement else {}
