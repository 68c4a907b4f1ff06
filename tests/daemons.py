"""Daemons as subprocesses for the end-to-end tier: `netgpt <role>` with its JSON log collected."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

from helpers import eventually
from throwaway_ca import TEST_PKI

NETGPT = [sys.executable, "-m", "cli"]
DAEMON_ROLES = ("core", "cloud", "edge")


def with_identity(args: tuple[str, ...]) -> list[str]:
    """A daemon's command line with its certificate: ``core``, or the node id given with ``--node-id``."""
    role = args[0] if args else ""
    if role not in DAEMON_ROLES or "--tls-cert" in args:  # a test that brings its own certificate files
        return list(args)
    name = "core" if role == "core" else (args[args.index("--node-id") + 1] if "--node-id" in args else f"{role}-1")
    files = TEST_PKI.settings(role, name)
    return [*args, "--tls-ca", files["tls_ca"], "--tls-cert", files["tls_cert"], "--tls-key", files["tls_key"]]


def client_env() -> dict[str, str]:
    """The environment of a subprocess: its client commands call as the suite's operator."""
    files = TEST_PKI.settings("operator", "operator")
    return {**os.environ, "NETGPT_TLS_CA": files["tls_ca"], "NETGPT_TLS_CERT": files["tls_cert"],
            "NETGPT_TLS_KEY": files["tls_key"]}


class Daemon:
    """A `netgpt <role>` subprocess whose JSON log lines are collected as they arrive."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([*NETGPT, *with_identity(args)], stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, text=True, env=client_env())
        self.events: list[dict] = []
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        for line in self.proc.stderr:
            try:
                self.events.append(json.loads(line))
            except json.JSONDecodeError:
                self.events.append({"event": "raw", "line": line})

    def wait_for(self, event: str, timeout_s: float = 120, where: Callable[[dict], bool] = lambda item: True) -> dict:
        """The first logged ``event`` that ``where`` accepts; an AssertionError as soon as the daemon exits."""
        def logged() -> dict | None:
            found = next((item for item in list(self.events) if item.get("event") == event and where(item)), None)
            assert found is not None or self.proc.poll() is None, \
                f"daemon exited {self.proc.returncode}: {self.events[-5:]}"
            return found

        return asyncio.run(eventually(logged, lambda: f"a {event!r} event; last: {self.events[-5:]}", timeout_s,
                                      poll_s=0.05))

    @property
    def address(self) -> str:
        return self.wait_for("server.started")["address"]

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def kill_all(daemons: list[Daemon]) -> None:
    """SIGKILL every daemon still running and reap it (a test's last word, whatever happened)."""
    for daemon in daemons:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            try:
                daemon.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*NETGPT, *with_identity(args)], capture_output=True, text=True, timeout=timeout,
                          env=client_env())


def node_daemons(core_address: str, tag: str, cells: str) -> tuple[Daemon, Daemon]:
    """A cloud (``cloud-<tag>``) and an edge (``edge-<tag>`` serving ``cells``) on tiny models."""
    cloud = Daemon("cloud", "--listen", "127.0.0.1:0", "--core", core_address, "--model", "tiny",
                   "--node-id", f"cloud-{tag}")
    edge = Daemon("edge", "--listen", "127.0.0.1:0", "--core", core_address, "--model", "tiny",
                  "--node-id", f"edge-{tag}", "--cells", cells)
    return cloud, edge
