"""Model distribution speed: PublishModel / FetchModel over loopback vs a raw TCP copy, same run.

    python -m bench.distribution [--size-mib 256] [--repeats 3] [--dir DIR]
                                 [--out bench/reports/distribution.json]

One random artifact is published to and fetched from a real core (a child process, as
in production the core and the node are separate processes) through the client helpers
nodes use (``publish_file``, ``fetch_to_file``): 1 MiB chunks, sha256 verified on
arrival, fsync before the file counts as stored. The baseline is the same child serving
a plain TCP socket: the client ``sendfile``s the artifact up, or receives it down, and
the receiving side writes it to a file and fsyncs, with no framing and no hashing. Runs
alternate gRPC/raw so machine noise hits both; medians are reported, and the ratios
gRPC/raw (the target is >= 0.8); ``fetch_protobuf`` is the same download through the generated stub
(protobuf parses each chunk: two more copies), the baseline of the zero-copy ``TransferStub``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

from cmp.transfer_client import fetch_to_file, publish_file
from cmp.transfer_io import TransferStub
from netgpt.channels import open_channel, set_default_transport
from netgpt.hashing import CHUNK_SIZE, sha256_file
from netgpt.logs import configure_logging
from netgpt.tls import PLAINTEXT
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc

_LEN = struct.Struct("!Q")


# --- the child process: a core and a raw TCP peer ---------------------------------------


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        more = conn.recv(size - len(data))
        if not more:
            raise ConnectionError("peer closed early")
        data += more
    return data


def receive_to_file(conn: socket.socket, path: Path) -> int:
    """Length-prefixed bytes from ``conn`` into ``path``, fsynced: the raw baseline's receiving side."""
    size = _LEN.unpack(_recv_exact(conn, _LEN.size))[0]
    buffer = memoryview(bytearray(CHUNK_SIZE))
    left = size
    with open(path, "wb") as handle:
        while left:
            got = conn.recv_into(buffer, min(left, CHUNK_SIZE))
            if not got:
                raise ConnectionError("peer closed early")
            handle.write(buffer[:got])
            left -= got
        handle.flush()
        os.fsync(handle.fileno())
    return size


def send_file(conn: socket.socket, path: Path) -> None:
    """Length prefix, then the file with ``sendfile`` (no copy through Python): the raw sending side."""
    conn.sendall(_LEN.pack(path.stat().st_size))
    with open(path, "rb") as handle:
        conn.sendfile(handle)


def _raw_peer(listener: socket.socket, workdir: Path) -> None:
    """``P`` + bytes: store as workdir/raw.bin; ``G``: send workdir/raw.bin back."""
    while True:
        conn, _ = listener.accept()
        with conn:
            command = _recv_exact(conn, 1)
            if command == b"P":
                receive_to_file(conn, workdir / "raw.bin")
                conn.sendall(b"K")
            else:
                send_file(conn, workdir / "raw.bin")


async def _serve(workdir: Path) -> None:
    from core.daemon import start_core
    from netgpt.config import CoreConfig

    configure_logging(json=True, level="warning")
    core = await start_core(CoreConfig(insecure=True, listen="127.0.0.1:0", store_dir=str(workdir / "store")))
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=_raw_peer, args=(listener, workdir), daemon=True).start()
    print(json.dumps({"core": core.address, "raw": listener.getsockname()[1]}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await core.stop(0)


# --- the parent: the client side --------------------------------------------------------


def raw_put(port: int, path: Path) -> None:
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"P")
        send_file(conn, path)
        if _recv_exact(conn, 1) != b"K":
            raise ConnectionError("raw peer did not acknowledge")


def raw_get(port: int, dest: Path) -> None:
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"G")
        receive_to_file(conn, dest)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def timed(fn: Callable[[], Awaitable[object]], server_pid: int) -> tuple[float, float, float]:
    """(wall s, client CPU s, server CPU s) of one transfer: CPU is what a 2-core box runs out of."""
    wall, client, server = time.perf_counter(), time.process_time(), cpu_seconds(server_pid)
    await fn()
    return (time.perf_counter() - wall, time.process_time() - client, cpu_seconds(server_pid) - server)


async def measure(args: argparse.Namespace, workdir: Path, artifact: Path, peer: dict) -> dict:
    size = artifact.stat().st_size
    start = time.perf_counter()
    digest = sha256_file(artifact)
    sha_s = time.perf_counter() - start
    times: dict[str, list[tuple[float, float, float]]] = {"publish": [], "fetch": [], "fetch_protobuf": [],
                                                          "raw_put": [], "raw_get": []}
    fetched = workdir / "fetched.bin"
    async with open_channel(peer["core"]) as channel:
        stub = TransferStub(channel)
        plain = cmp_grpc.ComputePlaneServiceStub(channel)  # FetchModel's chunks parsed by protobuf (copies)
        for run in range(args.repeats):
            manifest = cmp_pb2.ModelManifest(name="bench-artifact", version=f"r{run}", size_bytes=size,
                                             sha256=digest, kind=common_pb2.MODEL_KIND_CHECKPOINT)
            steps = [("publish", lambda: publish_file(stub, manifest, artifact)),  # noqa: B023 - run in this iteration
                     ("raw_put", lambda: asyncio.to_thread(raw_put, peer["raw"], artifact)),
                     ("fetch", lambda: fetch_to_file(stub, "bench-artifact", f"r{run}", fetched,  # noqa: B023
                                                     resume=False)),
                     ("raw_get", lambda: asyncio.to_thread(raw_get, peer["raw"], workdir / "raw-fetched.bin")),
                     ("fetch_protobuf", lambda: fetch_to_file(plain, "bench-artifact", f"r{run}", fetched,  # noqa: B023
                                                              resume=False))]
            if run % 2:  # raw first on odd runs; a fetch always follows its publish
                steps = [steps[1], steps[0], steps[4], steps[3], steps[2]]
            for name, step in steps:
                wall, client_cpu, server_cpu = await timed(step, peer["pid"])
                times[name].append((wall, client_cpu, server_cpu))
                print(f"run {run} {name:8s} {size / (1 << 20) / wall:8.1f} MiB/s  CPU s: client {client_cpu:.2f} "
                      f"server {server_cpu:.2f}", file=sys.stderr)
    if sha256_file(fetched) != digest or (workdir / "raw-fetched.bin").stat().st_size != size:
        raise RuntimeError("a transfer delivered different bytes")
    mib = size / (1 << 20)
    speed = {name: mib / statistics.median(v[0] for v in values) for name, values in times.items()}
    gib = size / (1 << 30)
    return {
        "mib_per_s": {name: round(value, 1) for name, value in speed.items()},
        "ratio_publish_vs_raw": round(speed["publish"] / speed["raw_put"], 3),
        "ratio_fetch_vs_raw": round(speed["fetch"] / speed["raw_get"], 3),
        "ratio_fetch_protobuf_vs_raw": round(speed["fetch_protobuf"] / speed["raw_get"], 3),
        "seconds": {name: [round(v[0], 4) for v in values] for name, values in times.items()},
        "cpu_s_per_gib": {name: {"client": round(statistics.median(v[1] for v in values) / gib, 2),
                                 "server": round(statistics.median(v[2] for v in values) / gib, 2)}
                          for name, values in times.items()},
        "client_sha256_mib_per_s": round(mib / sha_s, 1),
    }


def machine(workdir: Path) -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    fs = ""
    try:
        fs = subprocess.run(["df", "--output=fstype", str(workdir)], capture_output=True, text=True).stdout.split()[-1]
    except (OSError, IndexError):
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "grpcio": grpc.__version__, "filesystem": fs}


async def run(args: argparse.Namespace) -> dict:
    configure_logging(json=True, level="warning")
    workdir = Path(tempfile.mkdtemp(prefix="netgpt-bench-", dir=args.dir))
    artifact = workdir / "artifact.bin"
    with open(artifact, "wb") as handle:
        for _ in range(args.size_mib):
            handle.write(os.urandom(CHUNK_SIZE))
    child = subprocess.Popen([sys.executable, "-m", "bench.distribution", "--serve", str(workdir)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        if not line:
            raise RuntimeError(f"the server process exited with status {child.wait()} before serving")
        peer = {**json.loads(line), "pid": child.pid}
        results = await measure(args, workdir, artifact, peer)
    finally:
        child.stdin.close()
        child.wait(timeout=30)
        subprocess.run(["rm", "-rf", str(workdir)], check=False)
    return {"benchmark": "distribution", "size_mib": args.size_mib, "repeats": args.repeats,
            "chunk_bytes": CHUNK_SIZE, **results, "machine": machine(Path(args.dir or tempfile.gettempdir()))}


def main(argv: list[str] | None = None) -> None:
    set_default_transport(PLAINTEXT)  # compared with a plaintext TCP copy; TLS costs: bench.security
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None,
                        help="where the artifact, the store and the copies go (default: $TMPDIR)")
    parser.add_argument("--out", type=Path, default=Path("bench/reports/distribution.json"))
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args.serve))
        return
    report = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("mib_per_s", "ratio_publish_vs_raw", "ratio_fetch_vs_raw",
                                             "ratio_fetch_protobuf_vs_raw")}))


if __name__ == "__main__":
    main()
