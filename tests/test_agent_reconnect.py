"""A node re-registers within one heartbeat interval of a core restart (README).

No wall-clock assertions: the agent says, in its own log events, how long it waited
before each new try at the core, and none of those waits may exceed the interval the
core last gave. Before the fix they doubled 0.1 → 2 s whatever the interval, and each
registration try could wait 5 s on the channel's own reconnect backoff.
"""

from __future__ import annotations

import asyncio
from itertools import islice
from pathlib import Path

import pytest
from helpers import captured_events, eventually
from throwaway_ca import as_node, tls

from core.daemon import start_core
from cp.agent import MAX_BACKOFF_S, ControlPlaneAgent, retry_delays
from netgpt.config import CoreConfig
from netgpt.v1 import common_pb2

INTERVAL_S = 0.2  # the `core` fixture's heartbeat interval
RETRY_EVENTS = ("cp.core_unreachable", "cp.heartbeat_broken")


def _edge() -> common_pb2.NodeInfo:
    return common_pb2.NodeInfo(node_id="edge-r", role=common_pb2.NODE_ROLE_EDGE, address="127.0.0.1:1",
                               cell_ids=["cell-1"])


def test_retry_schedule_never_exceeds_its_cap():
    assert list(islice(retry_delays(0.2), 5)) == [0.1, 0.2, 0.2, 0.2, 0.2]
    assert list(islice(retry_delays(1.0), 6)) == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert max(islice(retry_delays(0.05), 10)) == 0.05  # the shortest interval the agent accepts


async def test_agent_never_waits_longer_than_an_interval_for_a_restarted_core(core, tmp_path: Path):
    agent = ControlPlaneAgent(core.address, _edge(), common_pb2.NodeLoad, transport=as_node(_edge()))
    assert agent.retry_cap_s() == MAX_BACKOFF_S  # no interval known before the first registration
    agent.start()
    try:
        await eventually(lambda: agent.registrations == 1, "first registration", timeout_s=10)
        address = core.address
        with captured_events() as logs:
            def retries() -> list[dict]:
                return [e for e in logs if e["event"] in RETRY_EVENTS]

            await asyncio.wait_for(core.stop(0), timeout=30)
            # Down long enough that a 0.1 s backoff doubling on every failure would have passed the interval.
            await eventually(lambda: len(retries()) >= 5, "the agent retrying while the core is down",
                             timeout_s=60)
            restarted = await asyncio.wait_for(start_core(CoreConfig(**tls("core", "core"),
                listen=address, heartbeat_interval_s=INTERVAL_S, store_dir=str(tmp_path / "store"))), timeout=30)
            try:
                await eventually(lambda: [s.info.node_id for s in restarted.registry.statuses()] == ["edge-r"],
                                 "re-registration", timeout_s=10)
            finally:
                await asyncio.wait_for(restarted.stop(0), timeout=30)

        waits = [(e["event"], e.get("waited_s", 0.0), e["retry_in_s"]) for e in retries()]
        assert all(waited <= INTERVAL_S and retry_in <= INTERVAL_S for _, waited, retry_in in waits), waits
        assert agent.registrations >= 2
        assert agent.retry_cap_s() == pytest.approx(INTERVAL_S)
    finally:
        await asyncio.wait_for(agent.stop(), timeout=30)
