"""``netgpt demo``: core + cloud + edge on loopback in one process, a few requests from different cells."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from appkit.all_in_one import Cluster, load_models, start_all_in_one
from appkit.client import Question, Transcript, ask
from cli.netmgmt import format_ranking, format_reading
from cli.printer import Printer
from cloud_node.llama_engine import LlamaModel
from edge_node.model.ort_engine import OrtGpt2Model
from edge_node.netmgmt.popularity import write_views_csv
from netgpt.channels import open_channel
from netgpt.config import CloudConfig, CoreConfig, EdgeConfig
from netgpt.tls import LocalPki
from netgpt.v1 import network_management_pb2 as nm_pb2
from netgpt.v1 import network_management_pb2_grpc as nm_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2

SAMPLE_QUESTIONS = [
    Question("Where can I eat fresh seafood tonight?", ue_id="ue-101", cell_id="cell-harbour-1"),
    Question("When does the library close?", ue_id="ue-202", cell_id="cell-campus-2",
             task=up_pb2.TASK_CLASS_LOOKUP),
    Question("Is there a hotel with a restaurant near the station?", ue_id="ue-303", cell_id="cell-station-3"),
    Question("How do I get to the airport quickly?", ue_id="ue-304", cell_id="cell-station-3",
             latency_budget_ms=5),
]
OPERATOR_REQUEST = "Build a 10 Gbit/s connection from Access 1 to Cloud 2 with traffic protection"
NEXT_INTERVAL = 14 * 4  # the 6-hour interval right after the demo's two-week view log


async def run_demo(edge_model: str = "starter", cloud_model: str = "pretrained", adapter: str = "",
                   out: TextIO | None = sys.stdout) -> list[Transcript]:
    printer = Printer(out)
    printer.line(f"[demo]  starting core, cloud ({cloud_model}) and edge ({edge_model}) on loopback...")
    gpt2, llama = await asyncio.to_thread(load_models, edge_model, cloud_model, adapter)
    with tempfile.TemporaryDirectory(prefix="netgpt-demo-") as state:
        transcripts = await _ask_all(gpt2, llama, state, printer)
    return transcripts


async def _ask_all(gpt2: OrtGpt2Model, llama: LlamaModel, state: str, printer: Printer) -> list[Transcript]:
    """The sample questions against a fresh all-in-one cluster whose core keeps its state under ``state``."""
    pki = LocalPki(Path(state) / "pki")  # a throw-away CA: every hop is mutual TLS, as on real hosts
    views = await asyncio.to_thread(demo_view_log, Path(state) / "views.csv")
    cluster = await start_all_in_one(
        gpt2, llama, CoreConfig(listen="127.0.0.1:0", heartbeat_interval_s=0.5, store_dir=state),
        CloudConfig(node_id="cloud-1", listen="127.0.0.1:0"),
        EdgeConfig(node_id="edge-1", listen="127.0.0.1:0", profiles_db=":memory:", popularity_log=str(views)),
        pki=pki)
    printer.line(f"[demo]  core {cluster.core.address} | cloud {cluster.cloud.address} | edge {cluster.edge.address}")
    printer.line("[demo]  mutual TLS on a throw-away CA; each UE asks with its own certificate")
    transcripts = []
    try:
        for question in SAMPLE_QUESTIONS:
            printer.line("")
            printer.line(f"[ue]    {question.ue_id} in {question.cell_id} asks: {question.prompt!r}")
            ue = pki.identity("ue", question.ue_id)
            transcripts.append(await ask(cluster.core.address, question, printer, ue))
        await _network_management(cluster, printer)
    finally:
        await cluster.stop()
    return transcripts


def demo_view_log(path: Path) -> Path:
    """Two weeks of a seeded synthetic viewer log: the edge's own view log in the demo."""
    from tasks.popularity.synth import SynthConfig, generate

    write_views_csv(path, generate(seed=7, config=SynthConfig(days=14)).rows())
    return path


async def _network_management(cluster: Cluster, printer: Printer) -> None:
    """The edge's other two models: an operator's intent, and what a cache should prefetch next."""
    async with open_channel(cluster.edge.address, cluster.operator) as channel:
        stub = nm_grpc.NetworkManagementServiceStub(channel)
        printer.line("")
        printer.line(f"[op]    operator asks the edge: {OPERATOR_REQUEST!r}")
        reading = await stub.InferIntent(nm_pb2.InferIntentRequest(text=OPERATOR_REQUEST), timeout=60)
        printer.line("[edge]  " + format_reading(reading).replace("\n", "\n        "))
        printer.line("")
        printer.line("[ran]   edge cache asks which titles appear in the next 6-hour interval of its view log")
        last = await stub.PredictPopularity(nm_pb2.PredictPopularityRequest(interval=NEXT_INTERVAL, top_k=5),
                                            timeout=60)
        printer.line("[edge]  " + format_ranking(last).replace("\n", "\n        "))
