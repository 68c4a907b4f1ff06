"""One vocabulary for a node's status, used by the registry, placement, peers, the model store and
the topology view: which models a node serves, and how loaded it is."""

from __future__ import annotations

from netgpt.v1 import common_pb2


def models_served(status: common_pb2.NodeStatus) -> list[common_pb2.ModelRef]:
    """What a node serves: from its last heartbeat, else from its registration."""
    return list(status.load.models_served or status.info.capabilities.models)


def serving_ref(status: common_pb2.NodeStatus) -> common_pb2.ModelRef:
    """The node's main served model (its first), or an empty ref."""
    models = models_served(status)
    return models[0] if models else common_pb2.ModelRef()


def load_ratio(status: common_pb2.NodeStatus) -> float:
    """Requests generating or queued per decode slot: 0 idle, 1 every slot busy, above 1 queueing."""
    slots = max(status.info.capabilities.max_concurrency, 1)
    return (status.load.queue_depth + status.load.active_requests) / slots


def least_loaded_key(status: common_pb2.NodeStatus) -> tuple[float, str]:
    """Sort key: least loaded first, node id breaking ties so every ranking agrees."""
    return load_ratio(status), status.info.node_id
