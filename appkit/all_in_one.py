"""The all-in-one mode: core, one cloud node and one edge node in one process (demo, benches, tests)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import grpc

from cloud_node.daemon import load_cloud_model, start_cloud
from cloud_node.llama_engine import LlamaModel
from core.daemon import CoreHandle, start_core
from edge_node.daemon import load_edge_model, load_knowledge, start_edge
from edge_node.model.ort_engine import OrtGpt2Model
from edge_node.serving.cloud_peers import CloudPeers
from netgpt.channels import has_default_transport, set_default_transport
from netgpt.config import CloudConfig, CoreConfig, DaemonSettings, EdgeConfig
from netgpt.tls import PLAINTEXT, LocalPki, Transport
from node.runtime import NodeHandle


@dataclass
class Cluster:
    core: CoreHandle
    cloud: NodeHandle
    edge: NodeHandle
    pki: LocalPki | None = None  # the throw-away CA the cluster runs on (None: plaintext development)
    operator: Transport = field(default=PLAINTEXT)  # the identity a client of this cluster calls with
    scratch: list[Path] = field(default_factory=list)  # folders made for this cluster alone, removed on stop

    async def stop(self) -> None:
        try:
            await self.edge.stop(1.0)
            await self.cloud.stop(1.0)
            await self.core.stop(1.0)
        finally:
            for folder in self.scratch:  # the throw-away CA's private keys must not outlive the cluster
                shutil.rmtree(folder, ignore_errors=True)


def load_models(edge_model: str = "tiny", cloud_model: str = "tiny",
                adapter: str = "") -> tuple[OrtGpt2Model, LlamaModel]:
    """(edge GPT-2 on ONNX Runtime, cloud LLaMA on torch) from folders, or the tiny built-in ones."""
    gpt2 = load_edge_model(EdgeConfig(model=edge_model))
    llama = load_cloud_model(CloudConfig(model=cloud_model, adapter=adapter))
    return gpt2, llama


def _issue(pki: LocalPki, config: DaemonSettings, role: str, name: str) -> None:
    if not (config.insecure or config.tls_cert):
        for key, value in pki.settings(role, name).items():
            setattr(config, key, value)


def secure_with(pki: LocalPki, core: CoreConfig, cloud: CloudConfig, edge: EdgeConfig) -> None:
    """Give each config without TLS material a certificate from ``pki`` (nodes keep their ids)."""
    _issue(pki, core, "core", "core")
    cloud.node_id = cloud.node_id or "cloud-1"
    edge.node_id = edge.node_id or "edge-1"
    _issue(pki, cloud, "cloud", cloud.node_id)
    _issue(pki, edge, "edge", edge.node_id)


async def start_all_in_one(gpt2: OrtGpt2Model, llama: LlamaModel, core: CoreConfig, cloud: CloudConfig,
                           edge: EdgeConfig, cloud_interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
                           ready_timeout_s: float = 10.0, pki: LocalPki | None = None) -> Cluster:
    """Core, then cloud, then edge, each pointed at the core; returns once the edge knows the cloud.

    An edge config without cells serves every cell of its knowledge base. Unless the core config
    is ``insecure``, every daemon gets a certificate from ``pki`` (a throw-away CA in a temporary
    folder when None), and the cluster's operator identity becomes this process's default client
    identity if it has none: the all-in-one process is also the operator's client.
    """
    operator: Transport = PLAINTEXT
    scratch: list[Path] = []
    if not core.insecure:
        if pki is None:
            scratch.append(Path(tempfile.mkdtemp(prefix="netgpt-pki-")))
            pki = LocalPki(scratch[0])
        secure_with(pki, core, cloud, edge)
        operator = pki.identity("operator", "operator")
        _adopt_default(operator)
    try:
        core_node = await start_core(core)
        cloud.core = edge.core = core_node.address
        knowledge = load_knowledge(edge)
        edge.cells = edge.cells or sorted(knowledge.cells)
        cloud_node = await start_cloud(cloud, llama, cloud_interceptors)
        await asyncio.wait_for(cloud_node.agent.registered.wait(), ready_timeout_s)
        edge_node = await start_edge(edge, gpt2, knowledge)
        peers = cast(CloudPeers, edge_node.peers)  # NodeHandle (node/, a floor below) keeps the edge's as object
        await asyncio.wait_for(peers.wait_known(), ready_timeout_s)
    except BaseException:
        for folder in scratch:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return Cluster(core_node, cloud_node, edge_node, pki, operator, scratch)


def _adopt_default(operator: Transport) -> None:
    if not has_default_transport():
        set_default_transport(operator)
