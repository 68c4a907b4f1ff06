"""Daemon configuration: defaults < TOML file section < NETGPT_<SECTION>_<KEY> env < command-line flags.

Each daemon's settings are one dataclass; its command-line flags are derived from the
fields (``max_concurrency`` → ``--max-concurrency``) so the file keys, env names and
flags can never drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from netgpt.errors import StartupError

T = TypeVar("T")


# the GPT-2 graphs an edge can serve and a training job can publish (edge_node.model.quantize makes them)
EDGE_QUANTIZATIONS = ("fp32", "int8", "int4")
AUTO_QUANTIZATION = "auto"  # int8 where it passes the quality gate, else fp32
EDGE_QUANTIZATION_CHOICES = (AUTO_QUANTIZATION, *EDGE_QUANTIZATIONS)


@dataclass
class DaemonSettings:
    """What every daemon has: its identity (PEM files from `netgpt pki`; plaintext only with ``insecure``
    on loopback) and its audit log."""

    tls_ca: str = ""  # CA certificate every peer must chain to
    tls_cert: str = ""  # this daemon's certificate (its CN is the node id, its OU the role)
    tls_key: str = ""  # this daemon's private key
    tls_crl: str = ""  # the CA's revocation list (`netgpt pki revoke`); the core re-reads it when it changes
    tls_reload_s: float = 5.0  # seconds between looks at tls_ca/tls_cert/tls_key for new files; 0: on SIGHUP only
    insecure: bool = False  # plaintext, no identities: loopback development only (logs a warning)
    metrics_listen: str = ""  # host:port of a Prometheus /metrics endpoint; empty: off
    audit_log: str = ""  # operator actions as JSON lines; empty: audit.jsonl in the store (core) or data dir (nodes)
    otlp_endpoint: str = ""  # host:port of an OpenTelemetry collector (OTLP/gRPC) to export spans to; empty: none
    token_listen: str = ""  # host:port of a second gRPC port, TLS without client certificates (UE tokens, probes)
    anonymous_health: bool = True  # on token_listen, health checks answer callers without a certificate or token
    anonymous_reflection: bool = False  # on token_listen, reflection answers them too


@dataclass
class CoreConfig(DaemonSettings):
    listen: str = "0.0.0.0:50051"
    heartbeat_interval_s: float = 2.0
    store_dir: str = ""  # model store; empty: $XDG_DATA_HOME/netgpt/store (~/.local/share/netgpt/store)
    # workflows, policy, sessions, training jobs: "" core.sqlite in store_dir; ":memory:" not kept;
    # "postgresql://user@host:port/db" PostgreSQL, which several core replicas may share
    state_db: str = ""
    lease_ttl_s: float = 0.0  # the lease of work one replica does at a time (PostgreSQL); 0: 3 × heartbeat_interval_s
    session_ttl_s: float = 3600.0  # a session not looked up for this long expires; 0: never
    node_lost_after_s: float = 30.0  # a node silent this long is lost: its training jobs move to another node; 0: never
    node_retention_s: float = 3600.0  # a node silent this long is dropped from the registry; 0: kept
    job_unplaced_timeout_s: float = 300.0  # a training job that finds no node to move to for this long fails
    train_checkpoint_every: int = 50  # steps between the checkpoints a job uploads to the store, if its spec sets none
    peer_sources: int = 8  # peers a deploy lists per node to fetch from; 0: every node fetches from the core
    cell_saturated_prb: float = 0.9  # placement avoids edges covering a cell at or above this PRB load; 0: off
    ue_token_key: str = ""  # ES256 key (PEM) UE tokens are signed with; empty: ue-token-key.pem in store_dir, made once
    ue_token_ttl_s: float = 3600.0  # lifetime of the UE tokens AttachUe and HandoverUe hand out (at most 86400)
    grace_s: float = 5.0
    log_level: str = "info"


@dataclass
class NodeConfig(DaemonSettings):
    """Settings every serving node (edge or cloud) shares."""

    node_id: str = ""  # empty: the core assigns one
    listen: str = "0.0.0.0:0"
    advertise: str = ""  # host:port the core hands out; empty: derived from listen
    core: str = "127.0.0.1:50051"  # the core; several replicas comma-separated (a,b,c): nodes fail over
    region: str = ""
    model: str = ""  # local Hugging Face folder, or "tiny" for the built-in seeded test model
    max_concurrency: int = 2
    max_queue: int = 16
    max_prompt_chars: int = 2000
    max_new_tokens: int = 256
    default_new_tokens: int = 48
    deploy_dir: str = ""  # deployed model versions; empty: $NETGPT_DATA_DIR/deployments/<node_id>
    upload_streams: int = 4  # verified blobs served to peers at once (BlobService); 0: serve none
    upload_peers: int = 1  # nodes served at once, each at full rate (they then serve others); 0: no limit
    upload_mib_s: float = 0.0  # MiB/s shared by those uploads; 0: unlimited
    train_threads: int = 1  # CPU threads of a fine-tuning job's worker when the job sets none; 0: torch's default
    grace_s: float = 5.0
    log_level: str = "info"


@dataclass
class CloudConfig(NodeConfig):
    listen: str = "0.0.0.0:50061"
    adapter: str = ""  # peft LoRA adapter folder; "none": no adapter; with model "pretrained": the shipped one
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    batching: bool = True  # requests share forward passes (continuous batching); false: one request per pass
    max_batch: int = 16  # requests decoding together when batching (replaces max_concurrency for the base model)
    max_batch_tokens: int = 256  # tokens in one forward pass: a token per decoding request + prompt chunks
    kv_cache_mb: float = 1024.0  # KV cache the running requests may reserve (prompt + max_new_tokens each)
    prefix_cache_mb: float = 64.0  # keys and values of prompt beginnings kept for later requests; 0: off
    torch_threads: int = 0  # CPU threads of the model's forward passes; 0: torch's default (one per core)


@dataclass
class EdgeConfig(NodeConfig):
    listen: str = "0.0.0.0:50071"
    cells: list[str] = field(default_factory=list)
    knowledge: str = ""  # TOML knowledge base; empty: the bundled example
    knowledge_db: str = ":memory:"  # SQLite file the knowledge base is loaded into
    fact_min_share: float = 0.5  # a listed fact's BM25 relevance is at least this share of the best one's; 0: any
    profiles_db: str = ""  # SQLite file of user profiles; empty: $NETGPT_DATA_DIR/profiles-<node_id>.sqlite
    profile_history_size: int = 10  # desensitised recent prompts kept per profile; 0: none
    profile_retention_s: float = 2592000.0  # prompts older, and profiles unused for longer, are erased; 0: kept
    allowed_cloud_regions: list[str] = field(default_factory=list)  # clouds requests may reach; empty: any region
    providers: str = "auto"  # auto | cpu | cuda (ONNX Runtime execution provider)
    quantization: str = "auto"  # auto (int8 if it passes the quality gate, else fp32) | fp32 | int8 | int4
    max_batch: int = 8  # concurrent decode steps run as one ONNX Runtime batch (CPU); 1 = no batching
    intra_op_threads: int = 0  # ONNX Runtime's CPU threads per forward pass; 0: its default (one per core)
    prefill_first: bool = True  # decode steps wait while a new request's prompt is prefilled (its first token sooner)
    prefix_cache_mb: float = 64.0  # keys/values of prompt beginnings the edge model reuses (the cloud's budget); 0: off
    intent_tokens: int = 12  # GPT-2 tokens spent reading the user's intent; 0 disables
    intent_from: str = "knowledge"  # knowledge (none when the KB decides, else the model) | model
    answer_start: str = "venue"  # venue: edge answers begin with a listed venue's name (template-less models) | free
    cloud_intent: bool = False  # read the intent for requests known to go to the cloud too (costs them its decode)
    edge_tasks: list[str] = field(default_factory=lambda: ["lookup"])  # task classes answered at the edge
    confidence_threshold: float = 0.0  # answer at the edge when its mean token log-prob >= this; 0: off
    confidence_probe_tokens: int = 8
    router: str = "rules"  # rules | learned (P(edge answer good) >= router_threshold ends it here) | shadow (log it)
    router_weights: str = "packaged"  # the learned router's weights JSON (tasks.routing trains it); packaged: shipped
    router_threshold: float = 0.5  # with router = learned: the P(edge answer good) the edge answers from
    max_cloud_queue: int = 0  # keep requests at the edge while the cloud queue is this long; 0: off
    cell_offload_prb: float = 0.0  # forward chat requests from a cell at or above this PRB load to the cloud; 0: off
    cloud_token_timeout_s: float = 10.0
    coalesce: bool = True  # identical in-flight cloud requests share one cloud call
    answer_cache_ttl_s: float = 60.0  # finished cloud answers reused for this long (0 disables)
    answer_cache_size: int = 1024  # most cached answers (0 disables)
    distill_samples: bool = False  # keep the cloud's answers to forwarded (desensitised) requests for the edge to learn
    distill_db: str = ""  # SQLite file of those samples; empty: $NETGPT_DATA_DIR/distill-<node_id>.sqlite
    distill_max_samples: int = 10000  # most samples kept (the oldest go first)
    session_cache_s: float = 10.0  # sessions and workflows looked up at the core are reused this long
    popularity_model: str = "packaged"  # GPT-2 of PredictPopularity: packaged | a folder | none
    intent_model: str = "packaged"  # InferIntent's model: packaged (GPT-2) | pretrained (SmolLM2+LoRA) | folder | none
    intent_topology: str = ""  # TOML of sites and links InferIntent checks intents against; empty: no check
    popularity_log: str = ""  # view log CSV (timestamp,title) PredictPopularity reads intervals from; empty: none
    popularity_interval_s: int = 21600  # length of one interval of the view log (the research: 6 h)
    openai_listen: str = ""  # host:port of the OpenAI-compatible HTTP API (HTTPS with the node's TLS); empty: off


SECTIONS: dict[str, type] = {"core": CoreConfig, "cloud": CloudConfig, "edge": EdgeConfig}


def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--flag`` per dataclass field, defaulting to None so only given flags override."""
    parser.add_argument("--config", type=Path, help="TOML file; its [section] holds these settings")
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = _field_type(f)
        metavar = "A,B" if kind is list else f.name.upper()
        if kind is bool:  # ``--insecure`` alone means true; ``--coalesce false`` still works
            parser.add_argument(flag, dest=f.name, default=None, type=_parser(kind), nargs="?", const=True,
                                metavar="BOOL", help=f"default: {_default(f)!r}")
            continue
        parser.add_argument(flag, dest=f.name, default=None, type=_parser(kind), metavar=metavar,
                            help=f"default: {_default(f)!r}")


def load(cls: type[T], section: str, args: argparse.Namespace | None = None,
         env: Mapping[str, str] | None = None) -> T:
    """Build ``cls`` from defaults, the --config file's [section], env, then flags."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = getattr(args, "config", None) if args is not None else None
    if path is not None:
        values.update(_file_section(Path(path), section))
    names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # cls is a config dataclass
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise StartupError(f"{path}: unknown key(s) in [{section}]: {', '.join(unknown)}")
    for name, f in names.items():
        key = f"NETGPT_{section.upper()}_{name.upper()}"
        if key in env:
            values[name] = _parser(_field_type(f))(env[key])
        if args is not None and getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    for name, value in values.items():
        values[name] = _coerce(names[name], value, section)
    return cls(**values)


def _file_section(path: Path, section: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise StartupError(f"config file {path}: {exc}") from exc
    return dict(data.get(section, {}))


def _field_type(f: dataclasses.Field[Any]) -> type:
    text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return {"int": int, "float": float, "str": str, "bool": bool}.get(text, list if text.startswith("list") else str)


def _parser(kind: type) -> Callable[[str], Any]:
    if kind is list:
        return lambda text: [item.strip() for item in text.split(",") if item.strip()]
    if kind is bool:
        return lambda text: text.lower() in ("1", "true", "yes", "on")
    return kind


def _coerce(f: dataclasses.Field[Any], value: Any, section: str) -> Any:
    kind = _field_type(f)
    if kind is list:
        if isinstance(value, str):
            return _parser(list)(value)
        if isinstance(value, list):
            return [str(v) for v in value]
    elif kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    elif isinstance(value, kind):
        return value
    raise StartupError(f"[{section}] {f.name} must be {kind.__name__}, got {value!r}")


def _default(f: dataclasses.Field[Any]) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
