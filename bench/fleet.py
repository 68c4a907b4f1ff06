"""Fleet deploy kit shared by bench/fleet_deploy.py and tests/test_fleet_distribution.py: real edge
nodes (BlobService on their own port) registered with a real core, deploys, and settling."""

from __future__ import annotations

import asyncio
import os
import tarfile
from pathlib import Path
from typing import Any

from cmp.archive import pack
from edge_node.daemon import load_knowledge, start_edge
from edge_node.serving.knowledge import KnowledgeBase
from netgpt.config import EdgeConfig
from netgpt.engine import LanguageModel
from netgpt.hashing import sha256_file
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc
from node.runtime import NodeHandle

FINAL = {common_pb2.DEPLOYMENT_PHASE_SERVING, common_pb2.DEPLOYMENT_PHASE_FAILED}
_KNOWLEDGE: list[KnowledgeBase] = []


async def start_fleet_edge(core_address: str, node_id: str, root: Path, model: LanguageModel,
                           **overrides: Any) -> NodeHandle:
    """One edge node on 127.0.0.1:0 with its own deploy folder under ``root``."""
    config = EdgeConfig(**{"node_id": node_id, "listen": "127.0.0.1:0", "core": core_address, "cells": ["cell-1"],
                           "profiles_db": ":memory:", "deploy_dir": str(root / node_id), "intent_tokens": 0,
                           "popularity_model": "none", "intent_model": "none", **overrides})
    if not _KNOWLEDGE:
        _KNOWLEDGE.append(load_knowledge(config))
    return await start_edge(config, model, _KNOWLEDGE[0])  # type: ignore[arg-type]  # the edge runs any LanguageModel


async def deploy_to(stub: cmp_grpc.ComputePlaneServiceStub, name: str, version: str,
                    node_ids: list[str]) -> dict[str, str]:
    """Queue a deploy; {node id: command id}."""
    reply = await stub.DeployModel(cmp_pb2.DeployModelRequest(name=name, version=version, node_ids=node_ids),
                                   timeout=30)
    return {n.node_id: n.deployments[0].command_id for n in reply.nodes}


async def settle_all(stub: cmp_grpc.ComputePlaneServiceStub, commands: dict[str, str],
                     timeout_s: float = 120.0) -> dict[str, common_pb2.DeploymentState]:
    """Each node's state of its command once SERVING or FAILED, as the core reports it."""
    loop = asyncio.get_running_loop()
    deadline, done = loop.time() + timeout_s, {}
    while loop.time() < deadline:
        reply = await stub.GetDeploymentStatus(cmp_pb2.GetDeploymentStatusRequest(), timeout=10)
        for node in reply.nodes:
            state = next((s for s in node.deployments if s.command_id == commands.get(node.node_id)), None)
            if state is not None and state.phase in FINAL:
                done[node.node_id] = state
        if len(done) == len(commands):
            return done
        await asyncio.sleep(0.05)
    raise TimeoutError(f"not settled in {timeout_s} s: {sorted(set(commands) - set(done))}")


def shelf_is_verified(node: NodeHandle) -> bool:
    """Every blob a node would serve hashes to its name: nothing half-written or unverified."""
    assert node.deployer is not None
    return all(sha256_file(path) == path.name for path in node.deployer.blobs.root.glob("*"))


def padded_edge_artifact(edge_artifact: Path, out: Path, padding_bytes: int) -> Path:
    """A loadable edge artifact made ``padding_bytes`` bigger by a random extra member."""
    with tarfile.open(edge_artifact) as tar:
        folder = out.parent / f"{out.stem}-files"
        tar.extractall(folder, filter="data")
    files = {p.name: p for p in folder.iterdir()}
    padding = folder / "padding.dat"
    with open(padding, "wb") as handle:
        for _ in range(padding_bytes >> 20):
            handle.write(os.urandom(1 << 20))
    return pack({**files, "padding.dat": padding}, out)
