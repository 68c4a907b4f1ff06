"""Deployment test kit: real artifacts (good, broken, pickled, misfit), publishing, status polling,
and a loopback TCP proxy that drops a connection mid-transfer."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import tarfile
from pathlib import Path

import torch
from helpers import eventually
from transformers import LlamaConfig, LlamaForCausalLM

from cloud_node.lora import make_lora_adapter
from cmp.archive import pack, pack_folder
from cmp.transfer_client import publish_file
from netgpt.hashing import sha256_file
from netgpt.tiny_models import TinyModels
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc

EDGE, LORA = common_pb2.MODEL_KIND_ONNX_EDGE, common_pb2.MODEL_KIND_LORA_ADAPTER
FINAL = {common_pb2.DEPLOYMENT_PHASE_SERVING, common_pb2.DEPLOYMENT_PHASE_FAILED}


def edge_files(edge_artifact: Path, folder: Path) -> dict[str, Path]:
    """The files of a good edge artifact, unpacked into ``folder`` (to build variants from)."""
    with tarfile.open(edge_artifact) as tar:
        tar.extractall(folder, filter="data")
    return {p.name: p for p in folder.iterdir()}


def broken_edge_artifact(edge_artifact: Path, out: Path) -> Path:
    """Config and tokenizer fine, but model.onnx is not a graph: fails when ONNX Runtime opens it."""
    files = edge_files(edge_artifact, out.parent / "broken-files")
    files["model.onnx"].write_bytes(b"this is not an ONNX graph")
    return pack(files, out)


def padded_edge_artifact(edge_artifact: Path, out: Path, padding_bytes: int) -> Path:
    """A good edge artifact made bigger by a random extra file (several 1 MiB chunks to resume within)."""
    files = edge_files(edge_artifact, out.parent / "padded-files")
    padding = out.parent / "padding.dat"
    padding.write_bytes(torch.randint(0, 256, (padding_bytes,), dtype=torch.uint8,
                                      generator=torch.Generator().manual_seed(0)).numpy().tobytes())
    return pack({**files, "padding.dat": padding}, out)


def tar_with(out: Path, members: dict[str, bytes]) -> Path:
    """A tar written directly (``pack`` would refuse pickles): for the node's own refusal."""
    with tarfile.open(out, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


def pickled_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(2)}, buffer)
    return buffer.getvalue()


def lora_artifact(base_dir: Path, folder: Path, out: Path, seed: int = 0) -> Path:
    return pack_folder(make_lora_adapter(base_dir, folder, seed=seed), out)


def wider_llama(tiny: TinyModels, folder: Path) -> Path:
    """A LLaMA like the tiny one but with another hidden size: its adapters do not fit the tiny one."""
    config = LlamaConfig.from_pretrained(tiny.llama_dir)
    config.hidden_size, config.intermediate_size = 32, 64
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    shutil.copy(tiny.llama_dir / "tokenizer.json", folder)
    return folder


def pickled_adapter_tar(adapter_dir: Path, out: Path) -> Path:
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    return tar_with(out, {"adapter_config.json": json.dumps(config).encode(), "adapter_model.bin": pickled_bytes()})


async def publish(stub: cmp_grpc.ComputePlaneServiceStub, path: Path, name: str, version: str, kind: int,
                  base_model: str = "") -> common_pb2.ModelRef:
    manifest = cmp_pb2.ModelManifest(name=name, version=version, kind=kind, base_model=base_model,
                                     size_bytes=path.stat().st_size, sha256=sha256_file(path))
    reply = await publish_file(stub, manifest, path)
    m = reply.manifest
    return common_pb2.ModelRef(name=m.name, version=m.version, sha256=m.sha256, kind=m.kind, base_model=base_model)


async def deploy(stub: cmp_grpc.ComputePlaneServiceStub, name: str, version: str,
                 node_ids: tuple[str, ...] = ()) -> dict[str, str]:
    """Queue a deploy; returns {node id: command id}."""
    reply = await stub.DeployModel(cmp_pb2.DeployModelRequest(name=name, version=version, node_ids=node_ids),
                                   timeout=5)
    assert all(n.deployments[0].phase == common_pb2.DEPLOYMENT_PHASE_PENDING for n in reply.nodes)
    return {n.node_id: n.deployments[0].command_id for n in reply.nodes}


async def rollback(stub: cmp_grpc.ComputePlaneServiceStub, node_id: str) -> str:
    reply = await stub.RollbackModel(cmp_pb2.RollbackModelRequest(node_id=node_id), timeout=5)
    return reply.node.deployments[0].command_id


async def node_status(stub: cmp_grpc.ComputePlaneServiceStub, node_id: str) -> cmp_pb2.NodeDeployments:
    reply = await stub.GetDeploymentStatus(cmp_pb2.GetDeploymentStatusRequest(node_id=node_id), timeout=5)
    return reply.nodes[0]


async def settled(stub: cmp_grpc.ComputePlaneServiceStub, node_id: str, command_id: str,
                  timeout_s: float = 60) -> common_pb2.DeploymentState:
    """The command's state once the node reports it SERVING or FAILED (through the core's status)."""
    async def final() -> common_pb2.DeploymentState | None:
        node = await node_status(stub, node_id)
        state = next((s for s in node.deployments if s.command_id == command_id), None)
        return state if state is not None and state.phase in FINAL else None

    return await eventually(final, f"command {command_id} on {node_id} to settle", timeout_s, poll_s=0.05)


class CuttingProxy:
    """Forwards loopback TCP to ``target``; drops the first connection that has sent ``cut_after``
    bytes downstream (as a flaky backhaul would), and counts every byte it delivered."""

    def __init__(self, target: str, cut_after: int) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.cut_after = cut_after
        self.cuts = 0
        self.downstream_bytes = 0
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        self._server.close()

    async def _connect(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        upstream_r, upstream_w = await asyncio.open_connection(*self.target)
        state = {"sent": 0}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, downstream: bool) -> None:
            while data := await src.read(1 << 16):
                if downstream:
                    if not self.cuts and state["sent"] + len(data) > self.cut_after:
                        self.cuts += 1
                        break  # drop the connection mid-transfer
                    state["sent"] += len(data)
                    self.downstream_bytes += len(data)
                dst.write(data)
                await dst.drain()

        tasks = [asyncio.ensure_future(pipe(client_r, upstream_w, False)),
                 asyncio.ensure_future(pipe(upstream_r, client_w, True))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for writer in (client_w, upstream_w):
                writer.transport.abort()
