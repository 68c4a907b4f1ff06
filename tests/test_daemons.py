"""Daemons as real processes: start from the CLI, serve, answer `netgpt ask`, survive a core restart,
stop on SIGTERM with exit 0, and refuse to start on a bad model folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

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


def wait_for_output(args: list[str], needles: list[str], timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        out = cli(*args).stdout
        if all(n in out for n in needles) or time.monotonic() > deadline:
            return out
        time.sleep(0.2)


def test_daemons_end_to_end_with_core_restart(tiny):
    core = Daemon("core", "--listen", "127.0.0.1:0", "--heartbeat-interval-s", "0.5")
    core_address = core.address
    cloud = Daemon("cloud", "--listen", "127.0.0.1:0", "--core", core_address, "--model", "tiny",
                   "--node-id", "cloud-p")
    edge = Daemon("edge", "--listen", "127.0.0.1:0", "--core", core_address, "--model", "tiny",
                  "--node-id", "edge-p", "--cells", "cell-harbour-1,cell-campus-2")
    daemons = [core, cloud, edge]
    try:
        cloud.wait_for("cp.registered")
        edge.wait_for("cp.registered")
        nodes = wait_for_output(["nodes", "--core", core_address], ["cloud-p", "edge-p"])
        assert "cloud-p" in nodes and "edge-p" in nodes and "cell-harbour-1" in nodes

        edge.wait_for("edge.peers", where=lambda item: "cloud-p" in item["clouds"])  # not an earlier empty list
        answer = cli("ask", "--core", core_address, "--cell", "cell-harbour-1", "--max-new-tokens", "8",
                     "Where can I eat seafood?")
        assert answer.returncode == 0, answer.stderr
        assert "Harbour Fish Market" in answer.stdout and "[done]  terminated at cloud" in answer.stdout

        assert core.terminate() == 0  # the core restarts on the same address; nodes come back
        core = daemons[0] = Daemon("core", "--listen", core_address, "--heartbeat-interval-s", "0.5")
        core.wait_for("server.started")
        nodes = wait_for_output(["nodes", "--core", core_address], ["cloud-p", "edge-p"])
        assert "cloud-p" in nodes and "edge-p" in nodes

        for daemon in (edge, cloud, core):
            assert daemon.terminate() == 0
            assert daemon.wait_for("server.draining", 5) and daemon.wait_for("server.stopped", 5)
    finally:
        for daemon in daemons:
            if daemon.proc.poll() is None:
                daemon.proc.kill()


@pytest.mark.parametrize("role, folder, needle", [
    ("edge", "missing", "does not exist"),
    ("edge", "no-config", "has no config.json"),
    ("cloud", "gpt2", "expected llama"),
    ("edge", "", "no edge (GPT-2) model given"),
])
def test_invalid_model_folder_refuses_to_start(tmp_path: Path, tiny, role, folder, needle):
    paths = {"missing": tmp_path / "nope", "no-config": tmp_path, "gpt2": tiny.gpt2_dir, "": ""}
    result = cli(role, "--listen", "127.0.0.1:0", "--core", "127.0.0.1:1", "--cells", "c1",
                 "--model", str(paths[folder]), timeout=120) if role == "edge" else \
        cli(role, "--listen", "127.0.0.1:0", "--core", "127.0.0.1:1", "--model", str(paths[folder]), timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith(f"netgpt {role}: error:"), result.stderr
