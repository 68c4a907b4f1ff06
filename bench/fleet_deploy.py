"""Fleet deploy: one artifact to N edge nodes, node-to-node distribution vs core-only, same run.

    python -m bench.fleet_deploy [--nodes 4,8,16] [--size-mib 16] [--link-mib-s 8] [--repeats 3]
                                 [--simulate 1000] [--out bench/reports/fleet_deploy.json]

A real core and N real edge nodes (tiny GPT-2 on ONNX Runtime, each serving BlobService on
its own loopback port) in this process. Every uplink — the core's and each node's — is
limited to ``--link-mib-s`` by the upload budget (``upload_mib_s``; the core's through its
``UploadBudget``), so the fleet behaves like hosts with real links rather than one CPU
copying to itself. The artifact is a real edge export padded to ``--size-mib``. For each N,
both modes run on a fresh fleet (alternating which goes first): ``core_only`` (core
``peer_sources = 0``: every node fetches from the core) and ``peer`` (the default plan:
holders and earlier targets first, the core as the seed's source and the fallback).

Reported per run: wall time from DeployModel to the last node SERVING, per-node time
(command to serving, and the fetch phase alone), core egress bytes (what the core's
BlobService sent) as a multiple of the artifact, bytes nodes got from peers. Then a fluid
simulation of ``--simulate`` nodes on paper from the measured per-node costs (link rate
actually achieved, and the fixed per-node cost: command delivery, verify, load), checked
against the measured N first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.distribution import machine
from bench.fleet import deploy_to, padded_edge_artifact, settle_all, start_fleet_edge
from cmp.distribution import DeployTree, FetchPlan, Peer
from cmp.pieces import Pieces
from cmp.transfer_client import publish_file
from core.daemon import start_core
from edge_node.daemon import load_edge_model
from edge_node.model.artifact import build_edge_artifact
from netgpt.channels import open_channel, set_default_transport
from netgpt.config import CoreConfig, EdgeConfig
from netgpt.hashing import sha256_file
from netgpt.logs import configure_logging
from netgpt.tiny_models import ensure_tiny_models
from netgpt.tls import PLAINTEXT
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc

MiB = 1 << 20


async def deploy_once(n: int, mode: str, artifact: Path, model: object, args: argparse.Namespace,
                      workdir: Path) -> dict[str, Any]:
    """A fresh core and N fresh edges; publish, deploy to all, wait until every node settles."""
    root = Path(tempfile.mkdtemp(prefix=f"fleet-{mode}-{n}-", dir=workdir))
    core = await start_core(CoreConfig(insecure=True, listen="127.0.0.1:0", heartbeat_interval_s=args.heartbeat_s,
                                       store_dir=str(root / "store"), peer_sources=0 if mode == "core_only" else 8))
    core.uploads.rate_bytes_s = args.link_mib_s * MiB  # the core's uplink, like every node's
    nodes = [await start_fleet_edge(core.address, f"edge-{i:04d}", root, model, insecure=True,
                                    upload_mib_s=args.link_mib_s)
             for i in range(n)]
    try:
        async with open_channel(core.address) as channel:
            stub = cmp_grpc.ComputePlaneServiceStub(channel)
            size = artifact.stat().st_size
            manifest = cmp_pb2.ModelManifest(name="gpt2-edge", version="v2", kind=common_pb2.MODEL_KIND_ONNX_EDGE,
                                             size_bytes=size, sha256=sha256_file(artifact))
            await publish_file(stub, manifest, artifact)
            while len(core.registry.statuses()) < n:
                await asyncio.sleep(0.05)
            egress_before = core.uploads.bytes_served
            started = time.time()
            commands = await deploy_to(stub, "gpt2-edge", "v2", [f"edge-{i:04d}" for i in range(n)])
            states = await settle_all(stub, commands, timeout_s=600)
            wall = max(s.updated_at.ToNanoseconds() / 1e9 for s in states.values()) - started
    finally:
        for node in nodes:
            await node.stop(0)
        await core.stop(0)
    failed = [f"{k}: {s.error}" for k, s in states.items() if s.phase != common_pb2.DEPLOYMENT_PHASE_SERVING]
    records = [node.deployer.record(commands[node.agent.info.node_id]) for node in nodes]
    per_node = [s.updated_at.ToNanoseconds() / 1e9 - started for s in states.values()]
    fetch_s = [r.seconds.get("fetching", 0.0) for r in records if r is not None]
    fixed_s = [sum(v for k, v in r.seconds.items() if k != "fetching") for r in records if r is not None]
    egress = core.uploads.bytes_served - egress_before
    from_peers = sum(src.bytes for s in states.values() for src in s.sources if src.node_id)
    return {"n": n, "mode": mode, "wall_s": round(wall, 3), "failed": failed,
            "per_node_s": {"median": round(statistics.median(per_node), 3), "max": round(max(per_node), 3)},
            "fetch_s": {"median": round(statistics.median(fetch_s), 3), "min": round(min(fetch_s), 3)},
            "fixed_s_median": round(statistics.median(fixed_s), 3),
            "core_egress_bytes": egress, "core_egress_x_artifact": round(egress / size, 3),
            "peer_bytes": from_peers}


def simulate(n: int, size: float, link: float, fixed_s: float, mode: str, upload_peers: int = 1) -> float:
    """Wall time of one deploy to ``n`` nodes in a fluid model. Core-only: the core's uplink ``link``
    is shared by all, ``n * size / link``. Peer: the plans the core's planner makes; each holder
    splits ``link`` among the first ``upload_peers`` nodes asking it (in plan order), a node
    downloads from every holder among its sources that serves it (the seed from the core), then
    spends ``fixed_s`` (command delivery, verify, load) before it serves."""
    if mode == "core_only":
        return n * size / link + fixed_s
    tree = DeployTree([])
    pieces = Pieces(int(size), int(size), ("",))
    plans: list[FetchPlan] = [tree.plan(Peer(str(i), str(i)), "", pieces) for i in range(n)]
    got, ready = [0.0] * n, [math.inf] * n
    t, dt = 0.0, size / link / 20
    while math.inf in ready:
        takers: dict[int, list[int]] = {}  # uploader (-1: the core) -> downloaders, in plan order
        for i in range(n):
            if got[i] < size:
                ups = [-1] if plans[i].seed else [int(s.node_id) for s in plans[i].sources
                                                  if not s.origin and ready[int(s.node_id)] <= t]
                for up in ups:
                    takers.setdefault(up, []).append(i)
        for who in takers.values():
            served = who[:upload_peers] if upload_peers else who
            for i in served:
                got[i] = min(size, got[i] + link / len(served) * dt)
                if got[i] >= size:
                    ready[i] = t + dt + fixed_s
        t += dt
    return max(ready)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    configure_logging(json=True, level="error")
    workdir = Path(tempfile.mkdtemp(prefix="netgpt-fleet-", dir=args.dir))
    tiny = ensure_tiny_models()
    edge = build_edge_artifact(tiny.gpt2_dir, workdir / "edge.tar").path
    artifact = padded_edge_artifact(edge, workdir / "artifact.tar", args.size_mib * MiB)
    model = load_edge_model(EdgeConfig(model="tiny", providers="cpu"))
    runs = []
    for repeat in range(args.repeats):
        for n in args.nodes:
            modes = ["core_only", "peer"] if (repeat + n) % 2 else ["peer", "core_only"]
            for mode in modes:
                result = await deploy_once(n, mode, artifact, model, args, workdir)
                runs.append({"repeat": repeat, **result})
                print(json.dumps(runs[-1]), file=sys.stderr)
    size = artifact.stat().st_size
    table = []
    for n in args.nodes:
        row: dict[str, Any] = {"n": n}
        for mode in ("core_only", "peer"):
            mine = [r for r in runs if r["n"] == n and r["mode"] == mode]
            walls = [r["wall_s"] for r in mine]
            row[mode] = {"wall_s_median": statistics.median(walls), "wall_s_min": min(walls), "wall_s_max": max(walls),
                         "core_egress_x": max(r["core_egress_x_artifact"] for r in mine),
                         "per_node_s_median": statistics.median(r["per_node_s"]["median"] for r in mine),
                         "failed": sum(len(r["failed"]) for r in mine)}
        row["wall_peer_vs_core_only"] = round(row["peer"]["wall_s_median"] / row["core_only"]["wall_s_median"], 3)
        table.append(row)
    smallest = [r for r in runs if r["n"] == min(args.nodes)]
    link = size / statistics.median(r["fetch_s"]["min"] for r in smallest if r["mode"] == "core_only") * min(args.nodes)
    link = min(link, args.link_mib_s * MiB)  # the rate a core-only uplink actually delivered, capped by the budget
    fixed = statistics.median(r["fixed_s_median"] for r in runs) + args.heartbeat_s / 2
    sim = {f"n={n}": {mode: round(simulate(n, size, link, fixed, mode), 2) for mode in ("core_only", "peer")}
           for n in [*args.nodes, args.simulate]}
    return {"benchmark": "fleet_deploy", "artifact_bytes": size, "link_mib_s": args.link_mib_s,
            "heartbeat_s": args.heartbeat_s, "repeats": args.repeats, "table": table, "runs": runs,
            "simulation": {"link_bytes_s_measured": round(link), "fixed_s_per_node": round(fixed, 3),
                           "wall_s": sim,
                           "core_egress_x_artifact": {"core_only": args.simulate, "peer": 1}},
            "machine": machine(workdir)}


def main(argv: list[str] | None = None) -> None:
    set_default_transport(PLAINTEXT)  # loopback, plaintext: distribution alone (TLS costs: bench.security)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=lambda s: [int(x) for x in s.split(",")], default=[4, 8, 16])
    parser.add_argument("--size-mib", type=int, default=16)
    parser.add_argument("--link-mib-s", type=float, default=8.0)
    parser.add_argument("--heartbeat-s", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--simulate", type=int, default=1000)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/reports/fleet_deploy.json"))
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"table": report["table"], "simulation": report["simulation"]}, indent=1))


if __name__ == "__main__":
    main()
