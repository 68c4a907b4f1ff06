"""Compute plane proto <-> domain conversion, in one place: records (``cmp.records``, manifests,
fetch plans) to and from their protos. The commands built from them are ``cmp.commands``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from typing import Any, cast

from cmp.distribution import FetchPlan, Source, SourceTally
from cmp.manifest import Manifest
from cmp.nodes import ModelKey
from cmp.pieces import Pieces
from cmp.records import Job, NodeDeployments
from netgpt.node_status import serving_ref
from netgpt.v1 import blob_pb2, common_pb2, training_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.words import enum_word

_PREFIX = "MODEL_KIND_"


def kind_to_proto(kind: str) -> common_pb2.ModelKind:
    """``"onnx_edge"`` -> ``MODEL_KIND_ONNX_EDGE``; unknown kinds become UNSPECIFIED."""
    try:
        return cast(common_pb2.ModelKind, common_pb2.ModelKind.Value(_PREFIX + kind.upper()))
    except ValueError:
        return common_pb2.MODEL_KIND_UNSPECIFIED


def kind_from_proto(kind: int) -> str:
    """``MODEL_KIND_ONNX_EDGE`` -> ``"onnx_edge"``; UNSPECIFIED and unknown numbers give ``""`` (rejected later)."""
    if kind == common_pb2.MODEL_KIND_UNSPECIFIED or kind not in common_pb2.ModelKind.values():
        return ""
    return enum_word(common_pb2.ModelKind, kind)


def manifest_from_proto(message: cmp_pb2.ModelManifest) -> Manifest:
    """What a publisher claims; created_at is the store's to set, so it is dropped."""
    return Manifest(name=message.name, version=message.version, kind=kind_from_proto(message.kind),
                    size_bytes=message.size_bytes, sha256=message.sha256, base_model=message.base_model,
                    metadata=dict(message.metadata))


def manifest_to_proto(manifest: Manifest) -> cmp_pb2.ModelManifest:
    message = cmp_pb2.ModelManifest(name=manifest.name, version=manifest.version, kind=kind_to_proto(manifest.kind),
                                    base_model=manifest.base_model, size_bytes=manifest.size_bytes,
                                    sha256=manifest.sha256, metadata=dict(manifest.metadata))
    if manifest.created_at is not None:
        message.created_at.FromDatetime(manifest.created_at.astimezone(UTC))
    return message


def manifest_ref(manifest: Manifest) -> common_pb2.ModelRef:
    """The ModelRef a deploy names and a node reports once it serves this version; an adapter
    also names the base model it applies to."""
    return common_pb2.ModelRef(name=manifest.name, version=manifest.version, sha256=manifest.sha256,
                               kind=kind_to_proto(manifest.kind),
                               base_model=manifest.base_model if manifest.kind == "lora_adapter" else "")


def served_models_to_proto(groups: dict[ModelKey, list[str]]) -> list[cmp_pb2.ServedModel]:
    return [cmp_pb2.ServedModel(model=common_pb2.ModelRef(name=n, version=v, sha256=s, kind=k), node_ids=ids)
            for (n, v, s, k), ids in groups.items()]


def plan_to_proto(plan: FetchPlan) -> blob_pb2.FetchPlan:
    return blob_pb2.FetchPlan(
        sources=[blob_pb2.BlobSource(node_id=s.node_id, address=s.address, origin=s.origin) for s in plan.sources],
        piece_size_bytes=plan.pieces.piece_size, piece_sha256=plan.pieces.sha256, seed=plan.seed,
        size_bytes=plan.pieces.size_bytes)


def plan_from_proto(ref: common_pb2.ModelRef, message: blob_pb2.FetchPlan) -> FetchPlan | None:
    """The node's view of a deploy's plan; None when the command carries none (fetch from the core)."""
    if not message.piece_sha256 or not message.piece_size_bytes:
        return None
    pieces = Pieces(message.size_bytes, message.piece_size_bytes, tuple(message.piece_sha256))
    sources = tuple(Source(s.node_id, s.address, s.origin) for s in message.sources) or (Source(origin=True),)
    return FetchPlan(ref.sha256, pieces, sources, seed=message.seed)


def tallies_to_proto(tallies: list[SourceTally]) -> list[common_pb2.TransferSource]:
    return [common_pb2.TransferSource(node_id=t.source.node_id, address=t.source.address, bytes=t.bytes,
                                      dropped=t.dropped, error=t.error) for t in tallies if t.bytes or t.dropped]


def node_deployments_to_proto(node: NodeDeployments) -> cmp_pb2.NodeDeployments:
    status = node.status
    return cmp_pb2.NodeDeployments(node_id=status.info.node_id, role=status.info.role, health=status.health,
                                   serving=serving_ref(status), deployments=node.deployments)


# --- training jobs ------------------------------------------------------------------------------

METHODS = {training_pb2.TRAINING_METHOD_LORA: "lora", training_pb2.TRAINING_METHOD_FULL: "full"}


def job_to_proto(job: Job) -> training_pb2.TrainingJob:
    """The core's view of a job: its spec and placement, with the latest state merged in."""
    r = job.report
    message = training_pb2.TrainingJob(
        id=job.id, spec=job.spec, node_id=job.node_id, state=r.state, step=r.step, total_steps=r.total_steps,
        train_loss=r.train_loss, eval_loss=r.eval_loss, tokens_per_second=r.tokens_per_second, eta_s=r.eta_s,
        error=r.error, error_code=r.error_code, result=r.result, base=job.base, dataset=job.dataset)
    message.created_at.FromNanoseconds(int(job.created_at * 1e9))
    message.updated_at.CopyFrom(r.updated_at if r.updated_at.seconds else message.created_at)
    return message


def job_from_proto(message: training_pb2.TrainingJob) -> Job:
    """A job kept by a core before it restarted."""
    report = common_pb2.TrainingJobState(
        job_id=message.id, state=message.state, step=message.step, total_steps=message.total_steps,
        train_loss=message.train_loss, eval_loss=message.eval_loss, tokens_per_second=message.tokens_per_second,
        eta_s=message.eta_s, error=message.error, error_code=message.error_code, result=message.result,
        updated_at=message.updated_at)
    return Job(id=message.id, spec=message.spec, node_id=message.node_id, base=message.base,
               dataset=message.dataset, created_at=message.created_at.ToNanoseconds() / 1e9, report=report)


_HYPER = ("max_steps", "batch_size", "learning_rate", "warmup_steps", "weight_decay", "max_seq_len",
          "checkpoint_every", "eval_fraction", "eval_every", "threads")


def train_settings(spec: training_pb2.TrainingJobSpec) -> dict[str, object]:
    """The trainer's settings a spec sets (``netgpt.training.trainer.TrainConfig`` field names);
    zeros and empty lists are left out, so the trainer's defaults apply."""
    hp, lora = spec.hyper_parameters, spec.lora
    settings: dict[str, object] = {"method": METHODS.get(spec.method, ""), "seed": spec.seed}
    for name in _HYPER:
        value = getattr(hp, name)
        if value:
            settings[name] = value
    if spec.method == training_pb2.TRAINING_METHOD_LORA:
        for name, value in (("lora_rank", lora.rank), ("lora_alpha", lora.alpha), ("lora_dropout", lora.dropout),
                            ("target_modules", list(lora.target_modules))):
            if value:
                settings[name] = value
    return settings


def spec_from_settings(settings: Mapping[str, Any]) -> training_pb2.TrainingJobSpec:
    """The spec part (method, seed, LoRA, hyper-parameters) that trains with these ``TrainConfig``
    settings (``dataclasses.asdict(config)``): :func:`train_settings` reads them back."""
    method = {word: code for code, word in METHODS.items()}[settings.get("method", "lora")]
    hyper = {name: settings[name] for name in _HYPER if settings.get(name)}
    lora = training_pb2.LoraSettings(rank=settings.get("lora_rank") or 0, alpha=settings.get("lora_alpha") or 0,
                                     dropout=settings.get("lora_dropout") or 0,
                                     target_modules=settings.get("target_modules") or [])
    return training_pb2.TrainingJobSpec(method=method, seed=settings.get("seed") or 0, lora=lora,
                                        hyper_parameters=training_pb2.HyperParameters(**hyper))
