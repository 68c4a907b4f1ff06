"""Compute plane proto <-> domain conversion, in one place."""

from __future__ import annotations

from datetime import UTC

from cmp.manifest import Manifest
from netgpt.words import enum_word
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2

_PREFIX = "MODEL_KIND_"


def kind_to_proto(kind: str) -> int:
    """``"onnx_edge"`` -> ``MODEL_KIND_ONNX_EDGE``; unknown kinds become UNSPECIFIED."""
    try:
        return common_pb2.ModelKind.Value(_PREFIX + kind.upper())
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


def model_ref(manifest: cmp_pb2.ModelManifest) -> common_pb2.ModelRef:
    """The ModelRef a node reports once it serves this version (and a deploy names)."""
    return common_pb2.ModelRef(name=manifest.name, version=manifest.version, sha256=manifest.sha256,
                               kind=manifest.kind)
