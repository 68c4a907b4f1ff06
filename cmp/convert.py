"""Compute plane proto <-> domain conversion, in one place."""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, cast

from cmp.manifest import Manifest
from cmp.nodes import ModelKey
from netgpt.node_status import serving_ref
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.words import enum_word

if TYPE_CHECKING:  # type only: cmp.deployments imports this module
    from cmp.deployments import NodeDeployments

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


def deploy_command(command_id: str, ref: common_pb2.ModelRef) -> cp_pb2.NodeCommand:
    return cp_pb2.NodeCommand(command_id=command_id, deploy=cp_pb2.DeployCommand(model=ref))


def rollback_command(command_id: str) -> cp_pb2.NodeCommand:
    return cp_pb2.NodeCommand(command_id=command_id, rollback=cp_pb2.RollbackCommand())


def pending_state(command: cp_pb2.NodeCommand, at_s: float) -> common_pb2.DeploymentState:
    """How a queued command shows until its node reports on it."""
    ref = command.deploy.model if command.HasField("deploy") else common_pb2.ModelRef()
    state = common_pb2.DeploymentState(command_id=command.command_id, model=ref,
                                       phase=common_pb2.DEPLOYMENT_PHASE_PENDING,
                                       rollback=command.HasField("rollback"))
    state.started_at.FromNanoseconds(int(at_s * 1e9))
    state.updated_at.CopyFrom(state.started_at)
    return state


def node_deployments_to_proto(node: NodeDeployments) -> cmp_pb2.NodeDeployments:
    status = node.status
    return cmp_pb2.NodeDeployments(node_id=status.info.node_id, role=status.info.role, health=status.health,
                                   serving=serving_ref(status), deployments=node.deployments)
