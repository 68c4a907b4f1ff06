"""The all-in-one mode: core, one cloud node and one edge node in one process (demo, benches, tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from cloud_node.daemon import load_cloud_model, start_cloud
from core.daemon import CoreHandle, start_core
from edge_node.daemon import load_edge_model, load_knowledge, start_edge
from netgpt.config import CloudConfig, CoreConfig, EdgeConfig
from netgpt.engine import LanguageModel
from node.runtime import NodeHandle


@dataclass
class Cluster:
    core: CoreHandle
    cloud: NodeHandle
    edge: NodeHandle

    async def stop(self) -> None:
        await self.edge.stop(1.0)
        await self.cloud.stop(1.0)
        await self.core.stop(1.0)


def load_models(edge_model: str = "tiny", cloud_model: str = "tiny",
                adapter: str = "") -> tuple[LanguageModel, LanguageModel]:
    """(edge GPT-2 on ONNX Runtime, cloud LLaMA on torch) from folders, or the tiny built-in ones."""
    gpt2 = load_edge_model(EdgeConfig(model=edge_model))
    llama = load_cloud_model(CloudConfig(model=cloud_model, adapter=adapter))
    return gpt2, llama


async def start_all_in_one(gpt2: LanguageModel, llama: LanguageModel, core: CoreConfig, cloud: CloudConfig,
                           edge: EdgeConfig, cloud_interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
                           ready_timeout_s: float = 10.0) -> Cluster:
    """Core, then cloud, then edge, each pointed at the core; returns once the edge knows the cloud.

    An edge config without cells serves every cell of its knowledge base.
    """
    core_node = await start_core(core)
    cloud.core = edge.core = core_node.address
    knowledge = load_knowledge(edge)
    edge.cells = edge.cells or sorted(knowledge.cells)
    cloud_node = await start_cloud(cloud, llama, cloud_interceptors)
    await asyncio.wait_for(cloud_node.agent.registered.wait(), ready_timeout_s)
    edge_node = await start_edge(edge, gpt2, knowledge)
    await asyncio.wait_for(edge_node.peers.wait_known(), ready_timeout_s)
    return Cluster(core_node, cloud_node, edge_node)
