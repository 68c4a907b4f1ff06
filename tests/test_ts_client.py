"""The TypeScript client (clients/ts) against real daemons: tsc type-checks the committed stubs and the
example against each other, then node's test runner runs clients/ts/test/ask.test.ts (EstablishSession
at the core, Generate streamed from the serving edge) against a cluster started here.

A proto change that breaks TypeScript users fails here. Skipped only where `node` is not installed;
the npm packages come from `npm install` at the repository root (`make test` runs it first).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

import pytest
from throwaway_ca import tls

ROOT = Path(__file__).resolve().parents[1]
TS_CLIENT = ROOT / "clients" / "ts"
NODE = shutil.which("node")
UE_ID = "ue-ts-1"
CLIENT_ENV_NAMES = ("NETGPT_TLS_CA", "NETGPT_TLS_CERT", "NETGPT_TLS_KEY", "NETGPT_INSECURE")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed: the TypeScript client cannot run")


def client_env(core_address: str) -> dict[str, str]:
    """The environment the TypeScript client runs in: the core's address, and mutual TLS as a UE with a
    certificate of the suite's CA (the client's one place to choose its identity)."""
    env = {name: value for name, value in os.environ.items() if name not in CLIENT_ENV_NAMES}
    files = tls("ue", UE_ID)
    env.update(NETGPT_CORE=core_address, NETGPT_TEST_UE=UE_ID, NETGPT_TLS_CA=files["tls_ca"],
               NETGPT_TLS_CERT=files["tls_cert"], NETGPT_TLS_KEY=files["tls_key"])
    return env


async def run(*command: str, env: dict[str, str] | None = None, timeout_s: float = 240) -> tuple[int, str]:
    """Run a command in clients/ts without blocking the event loop the daemons serve on."""
    process = await asyncio.create_subprocess_exec(*command, cwd=TS_CLIENT, env=env, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode or 0, output.decode(errors="replace")


async def build_client() -> None:
    if not (ROOT / "node_modules" / "@connectrpc" / "connect-node").is_dir():
        pytest.fail("the TypeScript client's npm packages are missing: run `npm install` at the repository root")
    status, output = await run("npm", "run", "--silent", "build")
    assert status == 0, f"tsc failed on clients/ts (stale stubs? run `make stubs`):\n{output}"


async def test_typescript_client_against_the_daemons(cluster) -> None:
    await build_client()
    status, output = await run(str(NODE), "--test", "--test-reporter=tap", "dist/test/ask.test.js",
                               env=client_env(cluster.core.address))
    assert status == 0, output
    assert "# fail 0" in output and re.search(r"^# skip(ped)? 0$", output, re.MULTILINE), output
