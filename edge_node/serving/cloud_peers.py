"""The cloud nodes an edge can forward to, learnt from the core's PeersUpdate commands.

Keeps one channel per cloud, a measured first-token latency per cloud, and a short
penalty box for clouds that just failed so the next request does not hit them again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc
import structlog

from netgpt.channels import open_channel
from netgpt.node_status import least_loaded_key, models_served, serving_ref
from netgpt.tls import Transport
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc

log = structlog.get_logger(__name__)

FAILURE_PENALTY_S = 5.0


@dataclass
class CloudPeer:
    status: common_pb2.NodeStatus
    channel: grpc.aio.Channel
    stub: up_grpc.UserPlaneServiceStub
    first_token_ms: float = 0.0  # moving average measured by this edge
    failed_at: float = float("-inf")
    failure: str = ""  # why it last failed

    @property
    def node_id(self) -> str:
        return self.status.info.node_id

    @property
    def model_tag(self) -> str:
        """The model versions this cloud serves, as it last reported them."""
        return ",".join(f"{m.name}@{m.version}:{m.sha256}" for m in models_served(self.status))

    @property
    def estimate_ms(self) -> float:
        return self.first_token_ms or self.status.load.p50_first_token_ms


class CloudPeers:
    def __init__(self, transport: Transport | None = None) -> None:
        self.transport = transport  # the edge's certificate: clouds admit edges only
        self._peers: dict[str, CloudPeer] = {}
        self._known = asyncio.Event()  # set while at least one cloud is known

    async def wait_known(self) -> None:
        """Return once the core has told this edge about at least one cloud."""
        await self._known.wait()

    def apply(self, command: cp_pb2.NodeCommand) -> None:
        """Handle a PeersUpdate from the control plane (other commands are not ours)."""
        if command.HasField("peers_update"):
            self.update(list(command.peers_update.cloud_nodes))

    def update(self, clouds: list[common_pb2.NodeStatus]) -> None:
        """The clouds' latest statuses (sent with every heartbeat); channels change only with addresses."""
        before, seen = set(self._peers), set()
        for status in clouds:
            node_id = status.info.node_id
            seen.add(node_id)
            peer = self._peers.get(node_id)
            if peer is not None and peer.status.info.address == status.info.address:
                peer.status = status
                continue
            if peer is not None:
                _close_later(peer.channel)
            channel = open_channel(status.info.address, self.transport)
            self._peers[node_id] = CloudPeer(status, channel, up_grpc.UserPlaneServiceStub(channel))
        for node_id in set(self._peers) - seen:
            _close_later(self._peers.pop(node_id).channel)
        if set(self._peers) != before:
            log.info("edge.peers", clouds=sorted(self._peers))
        if self._peers:
            self._known.set()
        else:
            self._known.clear()

    def pick(self, prefer: str = "", regions: frozenset[str] | None = None) -> CloudPeer | None:
        """A serving cloud not recently failed (in one of ``regions`` unless None): ``prefer`` if it
        qualifies, else the least loaded."""
        candidates = [p for p in self._peers.values()
                      if not self._unusable(p) and (regions is None or p.status.info.region in regions)]
        if not candidates:
            return None
        preferred = [p for p in candidates if p.node_id == prefer]
        if preferred:
            return preferred[0]
        return min(candidates, key=lambda p: least_loaded_key(p.status))

    def usable_regions(self) -> dict[str, str]:
        """Clouds that could take a request now, by node id, with their regions."""
        return {p.node_id: p.status.info.region for p in self._peers.values() if not self._unusable(p)}

    def serving_models(self) -> dict[str, common_pb2.ModelRef]:
        """The main model of every known cloud, by node id (what the edge's model listing offers)."""
        return {node_id: serving_ref(peer.status) for node_id, peer in sorted(self._peers.items())}

    def why_none(self) -> str:
        """Why :meth:`pick` found no cloud, in words for the routing detail."""
        reasons = [f"{p.node_id} {self._unusable(p)}" for p in sorted(self._peers.values(), key=lambda p: p.node_id)]
        return "; ".join(reasons) if reasons else "no cloud node is known to this edge"

    def _unusable(self, peer: CloudPeer) -> str:
        """Why ``peer`` cannot take a request now, or "" when it can."""
        if peer.status.health == common_pb2.NODE_HEALTH_STALE:
            return "is stale (missed heartbeats at the core)"
        since = time.monotonic() - peer.failed_at
        if since <= FAILURE_PENALTY_S:
            return f"failed {since:.1f} s ago ({peer.failure}); retried after {FAILURE_PENALTY_S:g} s"
        return ""

    def record_first_token(self, peer: CloudPeer, ms: float) -> None:
        peer.first_token_ms = ms if not peer.first_token_ms else 0.7 * peer.first_token_ms + 0.3 * ms

    def record_failure(self, peer: CloudPeer, reason: str) -> None:
        """Keep ``peer`` out of rotation for a short while (not for being busy: that is load, not failure)."""
        peer.failed_at, peer.failure = time.monotonic(), reason

    def __len__(self) -> int:
        return len(self._peers)

    async def close(self) -> None:
        for peer in self._peers.values():
            await peer.channel.close()
        self._peers.clear()


def _close_later(channel: grpc.aio.Channel) -> None:
    asyncio.get_running_loop().create_task(channel.close(grace=5.0))
