"""Daemons as subprocesses for the end-to-end tier: `netgpt <role>` with its JSON log collected."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

NETGPT = [sys.executable, "-m", "cli"]


class Daemon:
    """A `netgpt <role>` subprocess whose JSON log lines are collected as they arrive."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([*NETGPT, *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                     env=os.environ.copy())
        self.events: list[dict] = []
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        for line in self.proc.stderr:
            try:
                self.events.append(json.loads(line))
            except json.JSONDecodeError:
                self.events.append({"event": "raw", "line": line})

    def wait_for(self, event: str, timeout_s: float = 120, where: Callable[[dict], bool] = lambda item: True) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for item in list(self.events):
                if item.get("event") == event and where(item):
                    return item
            assert self.proc.poll() is None, f"daemon exited {self.proc.returncode}: {self.events[-5:]}"
            time.sleep(0.05)
        raise AssertionError(f"no {event!r} event within {timeout_s} s: {self.events[-5:]}")

    @property
    def address(self) -> str:
        return self.wait_for("server.started")["address"]

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*NETGPT, *args], capture_output=True, text=True, timeout=timeout)


def node_daemons(core_address: str, tag: str, cells: str) -> tuple[Daemon, Daemon]:
    """A cloud (``cloud-<tag>``) and an edge (``edge-<tag>`` serving ``cells``) on tiny models."""
    cloud = Daemon("cloud", "--listen", "127.0.0.1:0", "--core", core_address, "--model", "tiny",
                   "--node-id", f"cloud-{tag}")
    edge = Daemon("edge", "--listen", "127.0.0.1:0", "--core", core_address, "--model", "tiny",
                  "--node-id", f"edge-{tag}", "--cells", cells)
    return cloud, edge
