"""``netgpt demo``: core + cloud + edge on loopback in one process, a few requests from different cells."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

import grpc

from cloud_node.daemon import load_cloud_model, start_cloud
from core.daemon import CoreHandle, start_core
from edge_node.daemon import load_edge_model, load_knowledge, start_edge
from cli.client import Printer, Question, Transcript, ask
from netgpt.config import CloudConfig, CoreConfig, EdgeConfig
from netgpt.engine import LanguageModel
from node.runtime import NodeHandle
from netgpt.timing import wait_until
from netgpt.v1 import user_plane_pb2 as up_pb2

SAMPLE_QUESTIONS = [
    Question("Where can I eat fresh seafood tonight?", ue_id="ue-101", cell_id="cell-harbour-1"),
    Question("When does the library close?", ue_id="ue-202", cell_id="cell-campus-2",
             task=up_pb2.TASK_CLASS_LOOKUP),
    Question("Is there a hotel with a restaurant near the station?", ue_id="ue-303", cell_id="cell-station-3"),
    Question("How do I get to the airport quickly?", ue_id="ue-304", cell_id="cell-station-3",
             latency_budget_ms=5),
]


@dataclass
class Cluster:
    core: CoreHandle
    cloud: NodeHandle
    edge: NodeHandle

    async def stop(self) -> None:
        await self.edge.stop(1.0)
        await self.cloud.stop(1.0)
        await self.core.stop(1.0)


def load_models(edge_model: str = "tiny", cloud_model: str = "tiny", adapter: str = "") -> tuple[LanguageModel, LanguageModel]:
    """(edge GPT-2 on ONNX Runtime, cloud LLaMA on torch) from folders, or the tiny built-in ones."""
    gpt2 = load_edge_model(EdgeConfig(model=edge_model))
    llama = load_cloud_model(CloudConfig(model=cloud_model, adapter=adapter))
    return gpt2, llama


async def start_cluster(gpt2: LanguageModel, llama: LanguageModel, heartbeat_interval_s: float = 0.5,
                        cloud: dict | None = None, edge: dict | None = None,
                        cloud_interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
                        core: dict | None = None) -> Cluster:
    """Core, cloud and edge on 127.0.0.1 with ephemeral ports; returns once the edge knows the cloud.

    ``core``/``cloud``/``edge`` override fields of CoreConfig/CloudConfig/EdgeConfig (e.g.
    store_dir, max_concurrency).
    """
    core_config = {"listen": "127.0.0.1:0", "heartbeat_interval_s": heartbeat_interval_s, **(core or {})}
    core_node = await start_core(CoreConfig(**core_config))
    cloud_config = CloudConfig(node_id="cloud-1", listen="127.0.0.1:0", core=core_node.address, **(cloud or {}))
    edge_config = EdgeConfig(node_id="edge-1", listen="127.0.0.1:0", core=core_node.address,
                             **{"profiles_db": ":memory:", **(edge or {})})
    knowledge = load_knowledge(edge_config)
    edge_config.cells = edge_config.cells or sorted(knowledge.cells)
    cloud_node = await start_cloud(cloud_config, llama, cloud_interceptors)
    await asyncio.wait_for(cloud_node.agent.registered.wait(), 10)
    edge_node = await start_edge(edge_config, gpt2, knowledge)
    await wait_until(lambda: len(edge_node.peers) > 0, 10, "the edge to learn about the cloud")
    return Cluster(core_node, cloud_node, edge_node)


async def run_demo(edge_model: str = "tiny", cloud_model: str = "tiny", adapter: str = "",
                   out: TextIO | None = sys.stdout) -> list[Transcript]:
    printer = Printer(out)
    printer.line("[demo]  starting core, cloud and edge on loopback (tiny seeded models unless paths given)...")
    gpt2, llama = await asyncio.to_thread(load_models, edge_model, cloud_model, adapter)
    cluster = await start_cluster(gpt2, llama)
    printer.line(f"[demo]  core {cluster.core.address} | cloud {cluster.cloud.address} | edge {cluster.edge.address}")
    transcripts = []
    try:
        for question in SAMPLE_QUESTIONS:
            printer.line("")
            printer.line(f"[ue]    {question.ue_id} in {question.cell_id} asks: {question.prompt!r}")
            transcripts.append(await ask(cluster.core.address, question, printer))
    finally:
        await cluster.stop()
    return transcripts
