"""What the benches share: timing a call, percentiles, the machine, daemons as child processes
(``netgpt core|cloud|edge`` with their JSON logs collected) and what /proc says of a process."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from netgpt.tls import LocalPki
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc

T = TypeVar("T")
Item = TypeVar("Item")
R = TypeVar("R")
ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """(seconds ``fn()`` took, what it returned)."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    except OSError:
        pass
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cpus": os.cpu_count(), "load_average_at_start": list(os.getloadavg())}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14 and 15 of stat(5)


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` now (VmRSS in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Process:
    """A child process whose stderr lines (a daemon's JSON log) are collected as they arrive."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path = ROOT,
                 cpus: set[int] | None = None) -> None:
        """``cpus``: the only CPUs it may run on (as if it had a host of its own); None: any."""
        self.name = name
        pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus is not None else None
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, env=env, cwd=cwd, preexec_fn=pin)
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                item = None
            self.events.append(item if isinstance(item, dict) else {"event": "raw", "line": line.rstrip()})

    async def wait_for(self, event: str, timeout_s: float = 300.0) -> dict[str, Any]:
        """The first logged ``event``; an error as soon as the process exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = next((e for e in list(self.events) if e.get("event") == event), None)
            if found is not None:
                return found
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}: {self.events[-8:]}")
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{self.name}: no {event!r} in {timeout_s:g} s; last: {self.events[-8:]}")

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e.get("event") == event]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)


def daemon_argv(role: str, pki: LocalPki, name: str, *flags: str, log_level: str = "info") -> list[str]:
    """``python -m cli ROLE FLAGS`` running as ``name`` with its certificate from ``pki``."""
    tls = pki.settings(role, name)
    return [sys.executable, "-m", "cli", role, *flags, "--tls-ca", tls["tls_ca"], "--tls-cert", tls["tls_cert"],
            "--tls-key", tls["tls_key"], "--log-level", log_level]


async def generate_timed(stub: up_grpc.UserPlaneServiceStub, request: up_pb2.GenerateRequest) -> tuple[float, float]:
    """ms to the first ``tokens`` event of a ``Generate`` stream and to its end."""
    start = time.perf_counter()
    first = None
    async for event in stub.Generate(request, timeout=120):
        if first is None and event.WhichOneof("event") == "tokens":
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    return (first if first is not None else total) * 1000, total * 1000


def first_last_summary(samples: list[tuple[float, float]]) -> dict[str, float]:
    first, total = np.array([s[0] for s in samples]), np.array([s[1] for s in samples])
    return {"first_token_ms_p50": float(np.median(first)), "first_token_ms_p95": float(np.percentile(first, 95)),
            "total_ms_p50": float(np.median(total)), "total_ms_p95": float(np.percentile(total, 95))}


def write_report(path: Path, report: dict[str, Any]) -> None:
    """The bench's JSON report at ``path`` (its folder made if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


async def run_concurrently(items: Sequence[Item], concurrency: int,
                           send: Callable[[Item], Awaitable[R]]) -> tuple[list[R], int]:
    """``send`` every item, ``concurrency`` at a time; (the results, how many raised). A benchmark run
    does not stop on one failed request: failures are counted and reported."""
    results: list[R] = []
    failures = 0
    queue: asyncio.Queue[Item] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def worker() -> None:
        nonlocal failures
        while not queue.empty():
            item = queue.get_nowait()
            try:
                results.append(await send(item))
            except Exception:
                failures += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results, failures
