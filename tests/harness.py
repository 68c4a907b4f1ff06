"""The test harness: an all-in-one cluster with per-test overrides, and one way to wait for a condition."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from pki import TEST_PKI, tls

from cli.all_in_one import Cluster, start_all_in_one
from netgpt.config import CloudConfig, CoreConfig, EdgeConfig
from netgpt.engine import LanguageModel

__all__ = ["Cluster", "eventually", "start_cluster"]


async def eventually(predicate: Callable[[], object], what: str, timeout_s: float = 10.0,
                     poll_s: float = 0.02) -> None:
    """Poll ``predicate`` until it is truthy; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(poll_s)


NO_TASK_MODELS = {"popularity_model": "none", "intent_model": "none"}  # tests of network management set them


async def start_cluster(gpt2: LanguageModel, llama: LanguageModel, heartbeat_interval_s: float = 0.5,
                        cloud: dict[str, Any] | None = None, edge: dict[str, Any] | None = None,
                        cloud_interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
                        core: dict[str, Any] | None = None) -> Cluster:
    """Core, cloud and edge on 127.0.0.1 with ephemeral ports and a fresh store; ``core``/``cloud``/``edge``
    override fields of CoreConfig/CloudConfig/EdgeConfig (e.g. store_dir, max_concurrency).

    Every daemon runs with mutual TLS on certificates of the suite's CA (``tests/pki.py``)."""
    store = Path(tempfile.mkdtemp(prefix="netgpt-test-store-"))
    core_config = CoreConfig(**{**tls("core", "core"), "listen": "127.0.0.1:0",
                                "heartbeat_interval_s": heartbeat_interval_s, "store_dir": str(store), **(core or {})})
    cloud_config = CloudConfig(**{"node_id": "cloud-1", "listen": "127.0.0.1:0", **(cloud or {})})
    edge_config = EdgeConfig(**{"node_id": "edge-1", "listen": "127.0.0.1:0", "profiles_db": ":memory:",
                                **NO_TASK_MODELS, **(edge or {})})
    cluster = await start_all_in_one(gpt2, llama, core_config, cloud_config, edge_config, cloud_interceptors,
                                     pki=TEST_PKI)
    cluster.scratch.append(store)
    return cluster
