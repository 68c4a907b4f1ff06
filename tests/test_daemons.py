"""Daemons as real processes: start from the CLI, serve, answer `netgpt ask`, survive a core restart,
stop on SIGTERM with exit 0, and refuse to start on a bad model folder."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from daemons import Daemon, cli, node_daemons
from helpers import eventually

pytestmark = pytest.mark.e2e


def wait_for_output(args: list[str], needles: list[str], timeout_s: float = 30) -> str:
    """What ``netgpt ARGS`` prints once it names every needle."""
    def output() -> str | None:
        out = cli(*args).stdout
        return out if all(n in out for n in needles) else None

    return asyncio.run(eventually(output, lambda: f"`netgpt {' '.join(args)}` to name {needles}; last:\n"
                                                  f"{cli(*args).stdout}", timeout_s, poll_s=0.2))


def test_daemons_end_to_end_with_core_restart(tiny):
    core = Daemon("core", "--listen", "127.0.0.1:0", "--heartbeat-interval-s", "0.5")
    core_address = core.address
    cloud, edge = node_daemons(core_address, "p", "cell-harbour-1,cell-campus-2")
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
    ("edge", "", "no edge (GPT-2 or LLaMA) model given"),
])
def test_invalid_model_folder_refuses_to_start(tmp_path: Path, tiny, role, folder, needle):
    paths = {"missing": tmp_path / "nope", "no-config": tmp_path, "gpt2": tiny.gpt2_dir, "": ""}
    result = cli(role, "--listen", "127.0.0.1:0", "--core", "127.0.0.1:1", "--cells", "c1",
                 "--model", str(paths[folder]), timeout=120) if role == "edge" else \
        cli(role, "--listen", "127.0.0.1:0", "--core", "127.0.0.1:1", "--model", str(paths[folder]), timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith(f"netgpt {role}: error:"), result.stderr
