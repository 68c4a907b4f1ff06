"""What edge and cloud daemons share: limits, the serving address, load reports, a stop handle."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from cmp.blob_cache import BlobCache
from cmp.blob_servicer import blob_service
from cmp.deployer import Deployer
from cmp.upload_budget import UploadBudget
from cp.agent import ControlPlaneAgent
from netgpt.access import AuditLog, Rule
from netgpt.checkpoint.importer import import_checkpoint
from netgpt.checkpoint.pretrained import PRETRAINED, pretrained_base
from netgpt.config import NodeConfig
from netgpt.engine import ModelLoadError
from netgpt.errors import StartupError
from netgpt.http_server import HttpServer
from netgpt.metrics import DaemonMetrics, node_load_metrics
from netgpt.model_slot import ModelSlot, Served
from netgpt.server import NetGptServer, Security, Service, daemon_security
from netgpt.tiny_models import TinyModels, ensure_tiny_models
from netgpt.tls import Identity, Transport, daemon_transport
from netgpt.ue_tokens import UeTokenVerifier
from netgpt.v1 import common_pb2
from up.limits import Limits
from up.runner import GenerationRunner


def starter_models() -> TinyModels:
    """The trained starter models shipped in the package (``netgpt/assets/starter``, built by
    ``make starter-models``), in the same shape as the tiny ones."""
    root = Path(str(resources.files("netgpt.assets").joinpath("starter")))
    if not (root / "recipe.json").is_file():
        raise ModelLoadError(f"the starter models are missing from {root}: run `make starter-models`")
    return TinyModels(root / "tokenizer", root / "gpt2", root / "llama")


def model_folder(value: str, what: str, pick_tiny: Callable[[TinyModels], Path]) -> Path:
    """``--model`` → folder: a path as given (a ``.gguf`` file is imported first), ``starter`` for the trained
    models shipped in the package, ``pretrained`` for the pinned pretrained base (SmolLM2-135M-Instruct,
    imported from its package on first use), or ``tiny`` for the seeded random-weight model (built once, cached)."""
    if not value:
        raise ModelLoadError(f"no {what} model given: pass --model PATH (a local Hugging Face folder or a .gguf "
                             "file), --model starter, --model pretrained or --model tiny")
    if value == "tiny":
        return pick_tiny(ensure_tiny_models())
    if value == "starter":
        return pick_tiny(starter_models())
    if value == PRETRAINED:
        return pretrained_base().folder
    path = Path(value).expanduser()
    if path.suffix.lower() == ".gguf":  # converted once, then found in the cache by its sha256
        return import_checkpoint(path).folder
    return path


def node_id_for(config: NodeConfig, role: str) -> str:
    """The configured id, or a fresh one; it is kept across re-registrations either way."""
    return config.node_id or f"{role}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class NodeIdentity:
    """Who a node is: its transport (certificate, or loopback plaintext) and its node id.

    With a certificate the node id *is* the certificate's name: the core accepts registrations,
    heartbeats and answers from a node only under the id its certificate carries.
    """

    transport: Transport
    node_id: str

    def security(self, config: NodeConfig, rules: dict[str, Rule], tokens: UeTokenVerifier | None = None) -> Security:
        """``tokens``: the UE tokens the node takes instead of a client certificate (None: none)."""
        audit = Path(config.audit_log).expanduser() if config.audit_log else data_dir() / f"audit-{self.node_id}.jsonl"
        return daemon_security(config, self.transport, rules, AuditLog(audit), tokens)


def node_metrics(config: NodeConfig) -> DaemonMetrics | None:
    """The node's Prometheus registry when ``metrics_listen`` is set (pass it to start_server)."""
    return DaemonMetrics() if config.metrics_listen else None


def serve_node_metrics(server: NetGptServer, config: NodeConfig, agent: ControlPlaneAgent) -> None:
    """Expose the node's load report (the heartbeat's figures) next to the per-RPC metrics, and serve."""
    if server.metrics is not None:
        server.metrics.add(lambda: node_load_metrics(agent.current_load, agent.node_id))
        server.serve_metrics(config.metrics_listen)


def node_identity(config: NodeConfig, role: str) -> NodeIdentity:
    transport = daemon_transport(config, f"{role} node", role)
    if not isinstance(transport, Identity):
        return NodeIdentity(transport, node_id_for(config, role))
    if config.node_id and config.node_id != transport.name:
        raise StartupError(f"node_id {config.node_id!r} differs from the certificate's name {transport.name!r}; "
                           "a node runs under the id its certificate was issued for (leave node_id empty)")
    return NodeIdentity(transport, transport.name)


def data_dir() -> Path:
    """Where nodes keep data that is not cache: ``$NETGPT_DATA_DIR``, else ``~/.local/share/netgpt``."""
    return Path(os.environ.get("NETGPT_DATA_DIR") or Path.home() / ".local" / "share" / "netgpt")


def deploy_dir(config: NodeConfig, node_id: str) -> Path:
    """``deploy_dir`` as given, else one folder per node under the data dir (two nodes never share one)."""
    return Path(config.deploy_dir).expanduser() if config.deploy_dir else data_dir() / "deployments" / node_id


class BlobSharing(NamedTuple):
    shelf: BlobCache  # verified blobs this node holds
    service: Service  # the BlobService serving them to peers
    uploads: UploadBudget  # what those uploads may use, and the bytes they sent


def blob_sharing(config: NodeConfig, node_id: str) -> BlobSharing:
    """The node's shelf of verified blobs and the BlobService that serves it to peers within
    ``upload_streams`` / ``upload_peers`` / ``upload_mib_s``."""
    shelf = BlobCache(deploy_dir(config, node_id) / "blobs")
    budget = UploadBudget(config.upload_streams, config.upload_mib_s * (1 << 20), max_peers=config.upload_peers)
    return BlobSharing(shelf, blob_service(shelf, budget), budget)


def transfer_counters(uploads: UploadBudget, *deployers: Deployer[Any]) -> dict[str, int]:
    """Artifact bytes this node sent to peers and fetched for its deployments (load report counters)."""
    return {"blob_bytes_served": uploads.bytes_served,
            "artifact_bytes_fetched": sum(d.fetcher.bytes_fetched for d in deployers)}


def advertise_model(info: common_pb2.NodeInfo, served: Served,
                    models: Sequence[common_pb2.ModelRef] = ()) -> None:
    """After a swap: what the node tells the core when it (re-)registers. ``served`` is its main
    model; ``models`` every model it serves, the main one first (default: the main one only)."""
    del info.capabilities.models[:]
    info.capabilities.models.extend(models or [served.ref])
    info.capabilities.max_context_tokens = served.model.max_context


def limits_from(config: NodeConfig) -> Limits:
    return Limits(max_prompt_chars=config.max_prompt_chars, max_new_tokens=config.max_new_tokens,
                  default_new_tokens=config.default_new_tokens)


def advertised_address(config: NodeConfig, server: NetGptServer) -> str:
    """The address other nodes should dial: --advertise, else the bound host (wildcard → hostname)."""
    if config.advertise:
        return config.advertise
    host = server.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    return f"{host}:{server.port}"


def advertised_token_address(config: NodeConfig, server: NetGptServer) -> str:
    """Where callers without a certificate dial (the advertised host, the token port); "" without one."""
    if not server.token_port:
        return ""
    return f"{advertised_address(config, server).rpartition(':')[0]}:{server.token_port}"


def load_report(runner: GenerationRunner, models: list[common_pb2.ModelRef],
                counters: dict[str, int] | None = None,
                deployments: list[common_pb2.DeploymentState] | None = None,
                training: list[common_pb2.TrainingJobState] | None = None,
                blobs: list[str] | None = None) -> common_pb2.NodeLoad:
    return common_pb2.NodeLoad(
        blobs=blobs or [],
        deployments=deployments or [],
        training=training or [],
        queue_depth=runner.queued,
        active_requests=runner.active,
        tokens_per_second=runner.tokens_per_second,
        models_served=models,
        p50_first_token_ms=runner.p50_first_token_ms,
        counters={"generations_completed": runner.completed, "generations_cancelled": runner.cancelled,
                  **(counters or {})},
    )


class Closable(Protocol):
    """One of a node's :attr:`NodeHandle.extras`: closed when the node stops."""

    def close(self) -> Awaitable[object]: ...


@dataclass
class NodeHandle:
    """A running edge or cloud node: its server, its control-plane agent, its generation runner."""

    server: NetGptServer
    agent: ControlPlaneAgent
    runner: GenerationRunner
    peers: object | None = None  # the edge's CloudPeers
    gateway: object | None = None  # the edge's CloudGateway (de-duplication counters)
    pipeline: object | None = None  # the edge's EdgePipeline (current routing policy)
    extras: list[Closable] = field(default_factory=list)  # objects with an async close()
    slot: ModelSlot | None = None  # the model served now (and the previous one, for rollback)
    deployer: Deployer | None = None  # deploy/rollback commands from the core
    http: HttpServer | None = None  # the edge's OpenAI-compatible HTTP API, when openai_listen is set

    @property
    def address(self) -> str:
        return self.server.address

    async def stop(self, grace_s: float = 5.0) -> None:
        """NOT_SERVING and drain first, so in-flight streams finish; then leave the core."""
        await self.server.stop(grace_s)  # its drain gate holds HTTP requests too: new ones get 503 from here on
        if self.http is not None:
            await self.http.close()
        await self.agent.stop()
        if self.deployer is not None:
            await self.deployer.close()
        for extra in self.extras:
            await extra.close()
        self.runner.shutdown()
