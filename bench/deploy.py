"""Deploy speed: time from a DeployModel command to the new version serving on an edge node.

    python -m bench.deploy [--model gpt2-124m|tiny] [--repeats 5] [--heartbeat-s 0.5]
                           [--out bench/reports/deploy.json]

A real core (a child process, its own model store) and a real edge node (this process)
serving GPT-2 on ONNX Runtime. The artifact is what ``netgpt model export-edge`` makes of a
GPT-2 base shaped checkpoint (124M parameters, seeded random weights; export, parity and
greedy checks are outside the timing). Each repeat publishes it under a new version and
deploys it, measuring: command → node picks it up (waits for the next heartbeat),
fetch, verify + unpack, load + first forward pass, and command → new requests use it
(``slot.current`` observed in-process), and command → the core's status says SERVING.

The baseline, in the same run, is the unavoidable work done by hand: ``fetch_to_file`` of
the same version plus ``OrtGpt2Model.load_exported`` of the unpacked folder. The ratio
``node_work / baseline`` is the deployer's overhead (verify, staging, warm-up, swap);
``deploy_to_serving`` adds the heartbeat-driven command delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.distribution import machine
from bench.edge_generation import ensure_bench_model
from cmp.archive import unpack
from cmp.transfer_client import fetch_to_file, publish_file
from edge_node.daemon import load_knowledge, start_edge
from edge_node.model.artifact import build_edge_artifact
from edge_node.model.ort_engine import OrtGpt2Model
from netgpt.channels import open_channel, set_default_transport
from netgpt.config import EdgeConfig
from netgpt.logs import configure_logging
from netgpt.tiny_models import default_cache_root, ensure_tiny_models
from netgpt.tls import PLAINTEXT
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc


async def _serve(workdir: Path, heartbeat_s: float) -> None:
    """The child process: a core with its store under ``workdir``, until stdin closes."""
    from core.daemon import start_core
    from netgpt.config import CoreConfig

    configure_logging(json=True, level="warning")
    core = await start_core(CoreConfig(insecure=True, listen="127.0.0.1:0", heartbeat_interval_s=heartbeat_s,
                                       store_dir=str(workdir / "store")))
    print(json.dumps({"core": core.address}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await core.stop(0)


async def wait_for(predicate, timeout_s: float = 600, poll_s: float = 0.001) -> float:
    """``time.perf_counter()`` when ``predicate()`` first holds."""
    deadline = time.perf_counter() + timeout_s
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError("deploy did not finish")
        await asyncio.sleep(poll_s)
    return time.perf_counter()


async def measure(args: argparse.Namespace, workdir: Path, core: str, gpt2_dir: Path) -> dict:
    print("building the edge artifact (export, parity and greedy checks; not timed) ...", file=sys.stderr)
    artifact = await asyncio.to_thread(build_edge_artifact, gpt2_dir, workdir / "edge.tar")
    model = await asyncio.to_thread(OrtGpt2Model.load, gpt2_dir, None, "cpu")
    config = EdgeConfig(insecure=True, node_id="edge-bench", listen="127.0.0.1:0", core=core, profiles_db=":memory:",
                        deploy_dir=str(workdir / "deploy"), providers="cpu")
    knowledge = load_knowledge(config)
    config.cells = sorted(knowledge.cells)
    edge = await start_edge(config, model, knowledge)
    rows: dict[str, list[float]] = {k: [] for k in ("deploy_to_serving", "deploy_to_status", "delivery", "fetching",
                                                    "verifying", "loading", "node_work", "baseline_fetch",
                                                    "baseline_load", "baseline")}
    try:
        async with open_channel(core) as channel:
            stub = cmp_grpc.ComputePlaneServiceStub(channel)
            await asyncio.wait_for(edge.agent.registered.wait(), 30)
            for run in range(args.repeats):
                version = f"r{run}"
                manifest = cmp_pb2.ModelManifest(name="gpt2-bench", version=version,
                                                 kind=common_pb2.MODEL_KIND_ONNX_EDGE, metadata=artifact.metadata)
                await publish_file(stub, manifest, artifact.path)
                await asyncio.sleep(random.uniform(0, args.heartbeat_s))  # land anywhere in the heartbeat cycle

                started = time.perf_counter()
                reply = await stub.DeployModel(cmp_pb2.DeployModelRequest(name="gpt2-bench", version=version,
                                                                          node_ids=["edge-bench"]), timeout=10)
                command = reply.nodes[0].deployments[0].command_id
                serving = await wait_for(lambda: edge.slot.current.ref.version == version)  # noqa: B023 - awaited here
                status = await _status_serving(stub, command)
                record = edge.deployer.record(command)
                if record is None or record.error:
                    raise RuntimeError(f"deploy failed: {record.error if record else 'no record'}")
                node_work = sum(record.seconds.get(p, 0.0) for p in ("fetching", "verifying", "loading"))
                rows["deploy_to_serving"].append(serving - started)
                rows["deploy_to_status"].append(status - started)
                rows["delivery"].append(serving - started - node_work)
                rows["node_work"].append(node_work)
                for phase in ("fetching", "verifying", "loading"):
                    rows[phase].append(record.seconds.get(phase, 0.0))

                fetch_s, load_s = await baseline(stub, version, workdir / f"baseline-{run}")
                rows["baseline_fetch"].append(fetch_s)
                rows["baseline_load"].append(load_s)
                rows["baseline"].append(fetch_s + load_s)
                print(f"run {run}: deploy→serving {serving - started:.3f} s (node work {node_work:.3f} s), "
                      f"baseline fetch+load {fetch_s + load_s:.3f} s", file=sys.stderr)
    finally:
        await edge.stop(1.0)
    median = {name: round(statistics.median(values), 4) for name, values in rows.items()}
    return {
        "artifact_mib": round(artifact.size_bytes / (1 << 20), 1),
        "median_s": median,
        "ratio_node_work_vs_baseline": round(median["node_work"] / median["baseline"], 3),
        "ratio_deploy_to_serving_vs_baseline": round(median["deploy_to_serving"] / median["baseline"], 3),
        "seconds": {name: [round(v, 4) for v in values] for name, values in rows.items()},
    }


async def _status_serving(stub: cmp_grpc.ComputePlaneServiceStub, command: str) -> float:
    while True:
        reply = await stub.GetDeploymentStatus(cmp_pb2.GetDeploymentStatusRequest(node_id="edge-bench"), timeout=10)
        state = next((s for s in reply.nodes[0].deployments if s.command_id == command), None)
        if state is not None and state.phase == common_pb2.DEPLOYMENT_PHASE_SERVING:
            return time.perf_counter()
        await asyncio.sleep(0.01)


async def baseline(stub: cmp_grpc.ComputePlaneServiceStub, version: str, folder: Path) -> tuple[float, float]:
    """The same fetch through the client helper, then a plain load of the unpacked folder."""
    folder.mkdir(parents=True)
    started = time.perf_counter()
    await fetch_to_file(stub, "gpt2-bench", version, folder / "artifact.tar", resume=False)
    fetched = time.perf_counter()
    unpacked = await asyncio.to_thread(unpack, folder / "artifact.tar", folder / "unpacked")
    loading = time.perf_counter()
    await asyncio.to_thread(OrtGpt2Model.load_exported, unpacked, "cpu")
    return fetched - started, time.perf_counter() - loading


async def run(args: argparse.Namespace) -> dict:
    configure_logging(json=True, level="warning")
    random.seed(0)
    cache = default_cache_root()
    gpt2_dir = ensure_bench_model(cache) if args.model == "gpt2-124m" else ensure_tiny_models(cache).gpt2_dir
    workdir = Path(tempfile.mkdtemp(prefix="netgpt-bench-deploy-", dir=args.dir))
    child = subprocess.Popen([sys.executable, "-m", "bench.deploy", "--serve", str(workdir),
                              "--heartbeat-s", str(args.heartbeat_s)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        if not line:
            raise RuntimeError(f"the core process exited with status {child.wait()} before serving")
        results = await measure(args, workdir, json.loads(line)["core"], gpt2_dir)
    finally:
        child.stdin.close()
        child.wait(timeout=30)
        subprocess.run(["rm", "-rf", str(workdir)], check=False)
    return {"benchmark": "deploy", "model": args.model, "repeats": args.repeats, "heartbeat_s": args.heartbeat_s,
            **results, "machine": machine(Path(args.dir or tempfile.gettempdir()))}


def main(argv: list[str] | None = None) -> None:
    set_default_transport(PLAINTEXT)  # loopback, plaintext: the transfer path alone (TLS: bench.security)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["gpt2-124m", "tiny"], default="gpt2-124m")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--heartbeat-s", type=float, default=0.5, help="the core's heartbeat interval")
    parser.add_argument("--dir", default=None, help="where the store, artifacts and deployments go")
    parser.add_argument("--out", type=Path, default=Path("bench/reports/deploy.json"))
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args.serve, args.heartbeat_s))
        return
    report = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("artifact_mib", "median_s", "ratio_node_work_vs_baseline",
                                             "ratio_deploy_to_serving_vs_baseline")}))


if __name__ == "__main__":
    main()
