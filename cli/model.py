"""``netgpt model ...``: the model lifecycle from the command line, through the compute plane.

export-edge (GPT-2 or LLaMA folder → parity-checked ONNX artifact, optionally published), import (GGUF
file or Hugging Face folder → checkpoint, cached, published with its lineage), publish,
list, show, fetch, deploy, rollback, status. Transfers show a progress bar (tqdm, on
stderr); sizes are printed human-readable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tarfile
import tempfile
import time
from pathlib import Path
from typing import TypeVar

import grpc

from cli.common import DEFAULT_TIMEOUT_S, Subparsers, core_actions, enum_choices
from cli.model_import import add_import_arguments, run_import
from cli.transfers import human_size, kind_word, progress_bar, publish_with_progress, stub_call
from netgpt.config import EDGE_QUANTIZATION_CHOICES
from netgpt.errors import StartupError
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc
from netgpt.words import enum_word

KINDS = enum_choices(common_pb2.ModelKind)
# "auto": every node of the version's role; the core is not a node models deploy to.
ROLES = enum_choices(common_pb2.NodeRole, unspecified="auto", exclude={"core"})
FINAL_PHASES = {common_pb2.DEPLOYMENT_PHASE_SERVING, common_pb2.DEPLOYMENT_PHASE_FAILED,
                common_pb2.DEPLOYMENT_PHASE_ROLLED_BACK, common_pb2.DEPLOYMENT_PHASE_SUPERSEDED}

T = TypeVar("T")


def phase_word(phase: int) -> str:
    return enum_word(common_pb2.DeploymentPhase, phase, sep="-")


def add_commands(sub: Subparsers) -> None:
    action = core_actions(sub, "model", "publish, deploy and roll back model versions")

    export = action("export-edge", _run_export_edge,
                    "export a GPT-2 or LLaMA folder to the edge's ONNX artifact (parity-checked), optionally "
                    "publish it")
    export.add_argument("model_dir", type=Path, help="Hugging Face GPT-2 or LLaMA-family folder (safetensors), e.g. "
                                                     "an imported checkpoint")
    export.add_argument("--out", type=Path, required=True, help="artifact file to write (a tar)")
    export.add_argument("--publish", action="store_true", help="also publish it to the core's model store")
    export.add_argument("--name", help="model name in the store (with --publish)")
    export.add_argument("--version", help="version in the store (with --publish)")
    export.add_argument("--base-model", default="", help="what it was made from (default: the folder's name)")
    export.add_argument("--quantization", choices=EDGE_QUANTIZATION_CHOICES, default="auto",
                        help="graph to pack: auto (default: int8 where it passes the quality gate, else fp32), fp32, "
                             "int8 or int4; a quantised one only if it passes the quality gate (perplexity within "
                             "5 %% of fp32, greedy tokens agreeing on 90 %%)")

    imports = action("import", run_import, "convert a GGUF file or Hugging Face folder to a checkpoint (cached) and "
                                           "publish it with its lineage")
    add_import_arguments(imports)

    publish = action("publish", _run_publish, "publish a file or folder (packed as a tar) to the model store; with "
                                               "--kind router, a learned router's weights JSON, checked and packed")
    publish.add_argument("path", type=Path)
    publish.add_argument("--name", required=True)
    publish.add_argument("--version", required=True)
    publish.add_argument("--kind", choices=KINDS, required=True)
    publish.add_argument("--base-model", default="", help="the checkpoint an adapter applies to (required for "
                                                          "lora-adapter: the cloud's base model name)")
    publish.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="manifest metadata")

    listing = action("list", _run_list, "model versions in the store")
    listing.add_argument("--name", default="", help="only this model")

    show = action("show", _run_show, "one version's manifest")
    show.add_argument("name")
    show.add_argument("version")

    fetch = action("fetch", _run_fetch, "download a version (resumes a partial download)")
    fetch.add_argument("name")
    fetch.add_argument("version")
    fetch.add_argument("--out", type=Path, required=True)

    deploy = action("deploy", _run_deploy, "deploy a version to nodes (default: every node of its role)")
    deploy.add_argument("name")
    deploy.add_argument("version")
    deploy.add_argument("--node", action="append", default=[], help="node id (repeatable)")
    deploy.add_argument("--role", choices=ROLES, default="auto", help="with no --node: every node of this role")
    _wait_flags(deploy)

    rollback = action("rollback", _run_rollback, "switch a node back to the version it served before")
    rollback.add_argument("node")
    _wait_flags(rollback)

    status = action("status", _run_status, "what nodes serve and how their recent deployments went")
    status.add_argument("--node", default="", help="only this node")


def _wait_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true", help="follow until every node serves it or fails")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait with --wait")


# --- export and publish ---------------------------------------------------------------


def _run_export_edge(args: argparse.Namespace) -> int:
    if args.publish and not (args.name and args.version):
        raise StartupError("--publish needs --name and --version")
    from edge_node.model.artifact import build_edge_artifact  # torch + onnx: only for this command

    print(f"exporting {args.model_dir} to ONNX and checking it against torch ...")
    artifact = build_edge_artifact(args.model_dir, args.out, quantization=args.quantization)
    print(f"{artifact.path}: {human_size(artifact.size_bytes)}, sha256 {artifact.sha256}, "
          f"parity max |diff| {artifact.metadata['parity_max_abs_diff']}, greedy tokens identical")
    if args.publish:
        base = args.base_model or args.model_dir.resolve().name
        manifest = cmp_pb2.ModelManifest(name=args.name, version=args.version, kind=common_pb2.MODEL_KIND_ONNX_EDGE,
                                         base_model=base, size_bytes=artifact.size_bytes, sha256=artifact.sha256,
                                         metadata=artifact.metadata)
        publish_with_progress(args.core, manifest, artifact.path)
    return 0


def _run_publish(args: argparse.Namespace) -> int:
    from cmp.archive import pack_folder, refuse_pickles  # numpy via the model loader: only here

    metadata = dict(item.split("=", 1) for item in args.meta if "=" in item)
    manifest = cmp_pb2.ModelManifest(name=args.name, version=args.version, kind=KINDS[args.kind],
                                     base_model=args.base_model, metadata=metadata)
    path: Path = args.path
    if args.kind == "router":
        return _publish_router(args, manifest)
    if path.is_dir():
        with tempfile.TemporaryDirectory(prefix="netgpt-publish-") as tmp:
            manifest.metadata.update(_folder_metadata(path, args.kind))
            publish_with_progress(args.core, manifest, pack_folder(path, Path(tmp) / f"{args.name}-{args.version}.tar"))
        return 0
    if not path.is_file():
        raise StartupError(f"{path} does not exist")
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            refuse_pickles(tar.getnames(), str(path))
    else:
        refuse_pickles([path.name], str(path))
    publish_with_progress(args.core, manifest, path)
    return 0


def _publish_router(args: argparse.Namespace, manifest: cmp_pb2.ModelManifest) -> int:
    """A learned router's weights JSON, checked as the edge will check it, packed as the tar edges unpack."""
    from cmp.archive import pack
    from edge_node.model.router_deploy import WEIGHTS_FILE
    from edge_node.serving.learned_router import LearnedRouter, RouterFileError

    path: Path = args.path
    try:
        router = LearnedRouter.load(path)
        router.check()
    except RouterFileError as exc:
        raise StartupError(f"{path} is not a router weights file the edge can use: {exc}") from exc
    manifest.metadata.update({"router_version": router.version, "probe_tokens": str(router.probe_tokens),
                              "features": ",".join(router.features), "format": "tar"})
    with tempfile.TemporaryDirectory(prefix="netgpt-publish-") as tmp:
        publish_with_progress(args.core, manifest, pack({WEIGHTS_FILE: path}, Path(tmp) / f"{args.name}.tar"))
    return 0


def _folder_metadata(folder: Path, kind: str) -> dict[str, str]:
    """Checks a folder before packing it, and returns facts worth recording in the manifest."""
    metadata = {"format": "tar"}
    if kind == "lora-adapter":
        from cloud_node.lora import ADAPTER_CONFIG, adapter_weights_file  # refuses pickled adapters

        adapter_weights_file(folder)
        config = json.loads((folder / ADAPTER_CONFIG).read_text())
        metadata.update({"peft_type": str(config.get("peft_type")), "r": str(config.get("r")),
                         "target_modules": ",".join(sorted(config.get("target_modules") or []))})
    return metadata


# --- store queries ----------------------------------------------------------------------


def _run_list(args: argparse.Namespace) -> int:
    reply = stub_call(args.core, lambda stub: stub.ListModelVersions(
        cmp_pb2.ListModelVersionsRequest(name=args.name), timeout=DEFAULT_TIMEOUT_S))
    print(f"{'NAME':<24} {'VERSION':<16} {'KIND':<13} {'SIZE':>10}  {'SHA256':<12}  {'BASE':<16} CREATED")
    for m in reply.manifests:
        created = m.created_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S") if m.created_at.seconds else "-"
        print(f"{m.name:<24} {m.version:<16} {kind_word(m.kind):<13} {human_size(m.size_bytes):>10}  "
              f"{m.sha256[:12]:<12}  {m.base_model or '-':<16} {created}")
    return 0


def _run_show(args: argparse.Namespace) -> int:
    reply = stub_call(args.core, lambda stub: stub.DescribeModelVersion(
        cmp_pb2.DescribeModelVersionRequest(name=args.name, version=args.version), timeout=DEFAULT_TIMEOUT_S))
    m = reply.manifest
    print(f"name:       {m.name}\nversion:    {m.version}\nkind:       {kind_word(m.kind)}\n"
          f"base model: {m.base_model or '-'}\nsize:       {human_size(m.size_bytes)} ({m.size_bytes} bytes)\n"
          f"sha256:     {m.sha256}\ncreated:    {m.created_at.ToDatetime().isoformat()}Z")
    for key, value in sorted(m.metadata.items()):
        print(f"  {key}: {value}")
    return 0


def _run_fetch(args: argparse.Namespace) -> int:
    from cmp.transfer_client import fetch_to_file

    async def download(stub: cmp_grpc.ComputePlaneServiceStub) -> cmp_pb2.ModelManifest:
        with progress_bar(f"fetch {args.name} {args.version}") as progress:
            return await fetch_to_file(stub, args.name, args.version, args.out, progress=progress)

    manifest = stub_call(args.core, download)
    print(f"{args.out}: {human_size(manifest.size_bytes)}, sha256 {manifest.sha256} verified")
    return 0


# --- deployments ------------------------------------------------------------------------


def describe_state(state: common_pb2.DeploymentState) -> str:
    what = "rollback" if state.rollback else "deploy"
    model = f"{state.model.name} {state.model.version}" if state.model.name else "(previous version)"
    text = f"{what} {model}: {phase_word(state.phase)}"
    if state.phase == common_pb2.DEPLOYMENT_PHASE_FETCHING and state.bytes_total:
        text += f" {human_size(state.bytes_done)} of {human_size(state.bytes_total)}"
    if state.sources:  # where the bytes came from: "from edge-b 12 MiB, core 4 MiB, edge-c dropped (DATA_LOSS)"
        text += " from " + ", ".join(f"{s.node_id or 'core'} {human_size(s.bytes)}"
                                     + (f" dropped ({s.error.split(':')[0]})" if s.dropped else "")
                                     for s in state.sources)
    if state.error:
        code = state.error_code
        text += f" - {_code_name(code)}: {state.error}"
    return text


def _code_name(code: int) -> str:
    return next((c.name for c in grpc.StatusCode if c.value[0] == code), str(code))


def format_status(nodes: list[cmp_pb2.NodeDeployments], recent: int = 3) -> str:
    lines = []
    for node in nodes:
        role = enum_word(common_pb2.NodeRole, node.role)
        serving = f"{node.serving.name} {node.serving.version}" if node.serving.name else "-"
        lines.append(f"{node.node_id} ({role}) serves {serving}")
        lines.extend(f"  {describe_state(s)}" for s in node.deployments[:recent])
    return "\n".join(lines)


def _run_deploy(args: argparse.Namespace) -> int:
    request = cmp_pb2.DeployModelRequest(name=args.name, version=args.version, node_ids=args.node,
                                         role=ROLES[args.role])
    reply = stub_call(args.core, lambda stub: stub.DeployModel(request, timeout=DEFAULT_TIMEOUT_S))
    commands = {n.node_id: n.deployments[0].command_id for n in reply.nodes}
    print(f"deploy {args.name} {args.version} queued for {', '.join(commands)}")
    return _follow(args, commands) if args.wait else 0


def _run_rollback(args: argparse.Namespace) -> int:
    reply = stub_call(args.core, lambda stub: stub.RollbackModel(
        cmp_pb2.RollbackModelRequest(node_id=args.node), timeout=DEFAULT_TIMEOUT_S))
    print(f"rollback queued for {args.node}")
    return _follow(args, {args.node: reply.node.deployments[0].command_id}) if args.wait else 0


def _run_status(args: argparse.Namespace) -> int:
    reply = stub_call(args.core, lambda stub: stub.GetDeploymentStatus(
        cmp_pb2.GetDeploymentStatusRequest(node_id=args.node), timeout=DEFAULT_TIMEOUT_S))
    print(format_status(list(reply.nodes)) or "no nodes registered")
    return 0


def _follow(args: argparse.Namespace, commands: dict[str, str]) -> int:
    """Print each node's phase changes until every command is final; 1 if any failed."""

    async def follow(stub: cmp_grpc.ComputePlaneServiceStub) -> int:
        seen: dict[str, int] = {}
        final: dict[str, common_pb2.DeploymentState] = {}
        deadline = time.monotonic() + args.timeout
        while len(final) < len(commands):
            if time.monotonic() > deadline:
                print(f"gave up waiting after {args.timeout:g} s; see `netgpt model status`")
                return 1
            reply = await stub.GetDeploymentStatus(cmp_pb2.GetDeploymentStatusRequest(), timeout=DEFAULT_TIMEOUT_S)
            for node in reply.nodes:
                state = next((s for s in node.deployments if s.command_id == commands.get(node.node_id)), None)
                if state is None or node.node_id in final:
                    continue
                if seen.get(node.node_id) != state.phase:
                    seen[node.node_id] = state.phase
                    print(f"{node.node_id}: {describe_state(state)}")
                if state.phase in FINAL_PHASES:
                    final[node.node_id] = state
            await asyncio.sleep(0.3)
        return int(any(s.phase == common_pb2.DEPLOYMENT_PHASE_FAILED for s in final.values()))

    return stub_call(args.core, follow)
