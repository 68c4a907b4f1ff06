"""Several core addresses (``--core a,b``): nodes and clients move to another replica on their own.

The replicas here are two independent cores (no shared database): what is tested is that the node's
agent and a client's channel reach the replica that answers, without a restart. A replica that
accepts connections but never answers (a hung process keeps its port open) is left as well.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import cli, eventually
from throwaway_ca import as_node, tls

from core.daemon import CoreHandle, start_core
from cp.agent import ControlPlaneAgent
from netgpt.config import CoreConfig
from netgpt.errors import StartupError
from netgpt.targets import AUTHORITY_OPTION, channel_target, rotated, split_addresses
from netgpt.tls import is_loopback
from netgpt.v1 import common_pb2

INTERVAL_S = 0.2


def test_addresses_are_split_checked_and_rotated():
    assert split_addresses(" 127.0.0.1:1, localhost:2 ,127.0.0.1:1") == ["127.0.0.1:1", "localhost:2"]
    for bad in ("", " , ", "host", "host:", "host:0", "host:70000", ":80", "a:1,b"):
        with pytest.raises(StartupError, match="address"):
            split_addresses(bad)
    assert rotated(["a:1", "b:2", "c:3"], 4) == ["b:2", "c:3", "a:1"]
    assert is_loopback("127.0.0.1:1,localhost:2") and not is_loopback("127.0.0.1:1,10.1.2.3:2")


def test_one_address_is_the_target_and_a_list_fails_over_in_order():
    assert channel_target("core.example:50051") == ("core.example:50051", [])
    target, options = channel_target("localhost:7001,127.0.0.1:7002,[::1]:7003")
    assert target in ("ipv4:127.0.0.1:7001,127.0.0.1:7002", "ipv6:[::1]:7001,[::1]:7003")
    assert options == [(AUTHORITY_OPTION, "localhost")]  # replicas' certificates name the first host
    with pytest.raises(StartupError, match="resolves"):
        channel_target("no-such-host.invalid:1,also-not.invalid:2")


async def _core(tmp_path: Path, name: str) -> CoreHandle:
    return await start_core(CoreConfig(**tls("core", "core"), listen="127.0.0.1:0", heartbeat_interval_s=INTERVAL_S,
                                       store_dir=str(tmp_path / name)))


def _edge() -> common_pb2.NodeInfo:
    return common_pb2.NodeInfo(node_id="edge-f", role=common_pb2.NODE_ROLE_EDGE, address="127.0.0.1:1",
                               cell_ids=["cell-1"])


def _registered(core: CoreHandle) -> list[str]:
    return [s.info.node_id for s in core.registry.statuses()]


@contextmanager
def _silent_port() -> Iterator[str]:
    """A port that accepts TCP connections and never says a word: a hung replica."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


async def test_a_node_moves_to_the_other_replica_when_its_replica_dies(tmp_path: Path):
    first, second = await _core(tmp_path, "a"), await _core(tmp_path, "b")
    agent = ControlPlaneAgent(f"{first.address},{second.address}", _edge(), common_pb2.NodeLoad,
                              transport=as_node(_edge()))
    agent.start()
    try:
        await eventually(lambda: _registered(first) == ["edge-f"], "registration at the first replica", timeout_s=10)
        await first.stop(0)
        await eventually(lambda: _registered(second) == ["edge-f"] and agent.registrations >= 2,
                         "the node registered again, at the second replica", timeout_s=10)
        assert agent.node_id == "edge-f"  # same node, same id, no restart
    finally:
        await agent.stop()
        await second.stop(0)


async def test_a_node_leaves_a_replica_that_accepts_but_never_answers(tmp_path: Path):
    second = await _core(tmp_path, "b")
    try:
        with _silent_port() as hung:
            agent = ControlPlaneAgent(f"{hung},{second.address}", _edge(), common_pb2.NodeLoad,
                                      transport=as_node(_edge()))
            agent.start()
            try:
                await eventually(lambda: _registered(second) == ["edge-f"], "the node at the answering replica",
                                 timeout_s=20)
            finally:
                await agent.stop()
    finally:
        await second.stop(0)


async def test_a_client_command_reaches_the_replica_that_answers(tmp_path: Path, capsys):
    second = await _core(tmp_path, "b")
    try:
        with socket.socket() as closed:  # a port nobody listens on: a replica that is down
            closed.bind(("127.0.0.1", 0))
            down = f"127.0.0.1:{closed.getsockname()[1]}"
        assert await cli("nodes", "--core", f"{down},{second.address}") == 0
        assert await cli("nodes", "--core", f"{down}") != 0
    finally:
        await second.stop(0)
    assert "no such" not in capsys.readouterr().err.lower()


async def test_every_replica_down_is_a_clear_error_not_a_hang(capsys):
    sockets = [socket.socket() for _ in range(2)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        addresses = ",".join(f"127.0.0.1:{s.getsockname()[1]}" for s in sockets)
    finally:
        for s in sockets:
            s.close()
    status = await asyncio.wait_for(cli("nodes", "--core", addresses), timeout=60)
    assert status != 0
    assert "unavailable" in capsys.readouterr().err.lower()
