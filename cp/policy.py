"""The edges' routing policy as set through the control plane, delivered by heartbeat commands.

Besides routing thresholds it carries the edges' data rules: residency (which cloud regions
requests from which cells may reach) and the workflows exempt from desensitisation.
"""

from __future__ import annotations

from collections.abc import Sequence

from cp.registry import NodeRegistry
from cp.state_db import CoreState, MemoryState
from netgpt.errors import InvalidArgument, excerpt
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.validate import check_id

MAX_PROBE_TOKENS = 64
MAX_RESIDENCY_RULES = 256


def check_policy(policy: cp_pb2.RoutingPolicy) -> None:
    if policy.HasField("confidence_threshold") and policy.confidence_threshold > 0:
        raise InvalidArgument("confidence_threshold is a mean log-probability and must be <= 0")
    if policy.confidence_probe_tokens > MAX_PROBE_TOKENS:
        raise InvalidArgument(f"confidence_probe_tokens must be <= {MAX_PROBE_TOKENS}")
    unknown = [t for t in policy.edge_tasks if t not in up_pb2.TaskClass.values() or t == 0]
    if unknown:
        raise InvalidArgument(f"edge_tasks holds unknown task classes {unknown}")
    check_data_rules(policy)


def check_data_rules(policy: cp_pb2.RoutingPolicy) -> None:
    """Residency rules and verbatim workflows: well-formed ids, a bounded number of rules."""
    if len(policy.residency) > MAX_RESIDENCY_RULES:
        raise InvalidArgument(f"residency holds {len(policy.residency)} rules; at most {MAX_RESIDENCY_RULES}")
    for i, rule in enumerate(policy.residency):
        for cell_id in rule.cell_ids:
            check_id(cell_id, f"residency[{i}].cell_ids", required=True)
        for region in rule.allowed_cloud_regions:
            check_id(region, f"residency[{i}].allowed_cloud_regions", required=True)
    for name in policy.verbatim_workflows:
        check_id(name, "verbatim_workflows", required=True)


ALL_EDGES = ""  # the key of the policy set for every edge, now and later
POLICY_FIELDS = tuple(f.name for f in cp_pb2.RoutingPolicy.DESCRIPTOR.fields)


def check_fields(fields: Sequence[str]) -> list[str]:
    """The RoutingPolicy field names of an update mask, once each; InvalidArgument for any other path."""
    unknown = [name for name in fields if name not in POLICY_FIELDS]
    if unknown:
        raise InvalidArgument(f"update_mask names {', '.join(excerpt(n, 40) for n in unknown[:4])}, not a "
                              f"RoutingPolicy field; the fields are {', '.join(POLICY_FIELDS)}")
    return list(dict.fromkeys(fields))


def merged(base: cp_pb2.RoutingPolicy | None, change: cp_pb2.RoutingPolicy,
           fields: Sequence[str]) -> cp_pb2.RoutingPolicy:
    """``base`` (or an empty policy) with the named ``fields`` taken from ``change``: a repeated field
    whole, an optional one cleared when ``change`` leaves it unset."""
    result = cp_pb2.RoutingPolicy()
    if base is not None:
        result.CopyFrom(base)
    for name in fields:
        result.ClearField(name)
        field = cp_pb2.RoutingPolicy.DESCRIPTOR.fields_by_name[name]
        if field.is_repeated:
            getattr(result, name).extend(getattr(change, name))
        elif not field.has_presence or change.HasField(name):
            setattr(result, name, getattr(change, name))
    return result


class PolicyBook:
    """The routing policy set for all edges, and per-edge ones set since, kept in the core's state
    so a restarted core reports them and hands them to every edge that registers again."""

    def __init__(self, registry: NodeRegistry, state: CoreState | None = None, shared: bool = False) -> None:
        """``shared``: core replicas share ``state``, so it is read again before each use (a policy set at
        another replica is what an edge that moves here must get, not the one this replica started with)."""
        self._registry = registry
        self._state: CoreState = state if state is not None else MemoryState()
        self._shared = shared
        self._policies = self._state.policies()  # edge node id (or ALL_EDGES) -> policy

    def _current(self) -> dict[str, cp_pb2.RoutingPolicy]:
        if self._shared:
            self._policies = self._state.policies()
        return self._policies

    @property
    def for_all_edges(self) -> cp_pb2.RoutingPolicy | None:
        return self._current().get(ALL_EDGES)

    def for_edge(self, node_id: str) -> cp_pb2.RoutingPolicy | None:
        """What the edge should apply: the policy set for it since the last one for all edges, else that one."""
        policies = self._current()
        return policies.get(node_id, policies.get(ALL_EDGES))

    def set(self, policy: cp_pb2.RoutingPolicy, node_ids: list[str],
            fields: Sequence[str] = ()) -> list[str]:
        """Queue ``policy`` for the given edges (or all, now and later); returns the edges reached now.
        With ``fields`` (an update mask) only those fields change, in what each edge has now."""
        if node_ids:
            for node_id in node_ids:
                if self._registry.get(node_id).info.role != common_pb2.NODE_ROLE_EDGE:
                    raise InvalidArgument(f"node {node_id!r} is not an edge node")
            targets = list(dict.fromkeys(node_ids))
        else:
            targets = [s.info.node_id for s in self._registry.statuses(common_pb2.NODE_ROLE_EDGE)]
        self._current()
        if fields:
            names = check_fields(fields)
            keys = targets if node_ids else list(self._policies.keys() | {ALL_EDGES})
            # a per-edge key without a policy of its own starts from the one for all edges
            changed = {key: merged(self._policies.get(key, self._policies.get(ALL_EDGES)), policy, names)
                       for key in keys}
            policies = {**self._policies, **changed}
        else:
            stored = merged(None, policy, POLICY_FIELDS)
            # for all edges it reaches every edge, so it replaces the per-edge ones
            policies = {**self._policies, **dict.fromkeys(targets, stored)} if node_ids else {ALL_EDGES: stored}
        for key, each in policies.items():
            if each is not self._policies.get(key):
                check_policy(each)
        self._state.replace_policies(policies)  # kept before any edge hears of it
        self._policies = policies
        for node_id in targets:
            target = self.for_edge(node_id)
            if target is not None:
                self._push(node_id, target)
        return targets

    def on_register(self, node_id: str) -> None:
        """A (re-)registered edge, also after a core restart, gets the policy it should apply."""
        policy = self.for_edge(node_id)
        if policy is not None and self._registry.get(node_id).info.role == common_pb2.NODE_ROLE_EDGE:
            self._push(node_id, policy)

    def _push(self, node_id: str, policy: cp_pb2.RoutingPolicy) -> None:
        command = cp_pb2.NodeCommand()
        command.routing_policy.CopyFrom(policy)
        self._registry.queue_command(node_id, command)
