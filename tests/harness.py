"""The test harness: an all-in-one cluster with per-test overrides."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from throwaway_ca import TEST_PKI, tls

from appkit.all_in_one import Cluster, start_all_in_one
from netgpt.config import CloudConfig, CoreConfig, EdgeConfig
from netgpt.engine import LanguageModel

__all__ = ["Cluster", "start_cluster"]


NO_TASK_MODELS = {"popularity_model": "none", "intent_model": "none"}  # tests of network management set them


async def start_cluster(gpt2: LanguageModel, llama: LanguageModel, heartbeat_interval_s: float = 0.5,
                        cloud: dict[str, Any] | None = None, edge: dict[str, Any] | None = None,
                        cloud_interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
                        core: dict[str, Any] | None = None) -> Cluster:
    """Core, cloud and edge on 127.0.0.1 with ephemeral ports and a fresh store; ``core``/``cloud``/``edge``
    override fields of CoreConfig/CloudConfig/EdgeConfig (e.g. store_dir, max_concurrency).

    Every daemon runs with mutual TLS on certificates of the suite's CA (``tests/throwaway_ca.py``)."""
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
