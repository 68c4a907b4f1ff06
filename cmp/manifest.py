"""Model manifests: what the store knows about one immutable model version, and its validation.

Names and versions become path components of the store, so they are checked against a
strict pattern here, before anything touches the disk (no ``/``, no leading ``.``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from netgpt.errors import InvalidArgument

KINDS = ("onnx_edge", "lora_adapter", "checkpoint", "dataset", "router")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
MAX_METADATA_ENTRIES = 64
MAX_METADATA_CHARS = 4096  # per key + value: manifests stay small and readable


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    kind: str  # one of KINDS
    size_bytes: int
    sha256: str
    base_model: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None  # set by the store on registration

    def same_content(self, other: Manifest) -> bool:
        """Equal in everything a publisher chooses (created_at is the store's)."""
        return replace(self, created_at=None) == replace(other, created_at=None)

    def to_json(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in ("name", "version", "kind", "size_bytes", "sha256", "base_model")}
        data["metadata"] = dict(self.metadata)
        data["created_at"] = self.created_at.isoformat() if self.created_at else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        created = data.get("created_at")
        return cls(name=data["name"], version=data["version"], kind=data["kind"], size_bytes=int(data["size_bytes"]),
                   sha256=data["sha256"], base_model=data.get("base_model", ""),
                   metadata=dict(data.get("metadata", {})),
                   created_at=datetime.fromisoformat(created) if created else None)


def check_name(what: str, value: str) -> str:
    """``value`` if it is a safe path component, else INVALID_ARGUMENT naming the rule."""
    if not NAME_RE.fullmatch(value):
        raise InvalidArgument(f"{what} {value!r} must match {NAME_RE.pattern} (letters, digits, '.', '_', '-')")
    return value


def validate(manifest: Manifest) -> Manifest:
    """Everything a publisher must get right before a byte is accepted."""
    check_name("model name", manifest.name)
    check_name("model version", manifest.version)
    if manifest.kind not in KINDS:
        raise InvalidArgument(f"model kind must be one of {', '.join(KINDS)}, got {manifest.kind or 'unspecified'!r}")
    if manifest.kind == "lora_adapter" and not manifest.base_model:
        raise InvalidArgument("a lora_adapter manifest needs base_model (the checkpoint it applies to)")
    if manifest.base_model:
        check_name("base_model", manifest.base_model)
    if manifest.size_bytes < 1:
        raise InvalidArgument(f"size_bytes must be at least 1, got {manifest.size_bytes}")
    if not SHA256_RE.fullmatch(manifest.sha256):
        raise InvalidArgument(f"sha256 must be 64 lower-case hex characters, got {manifest.sha256[:80]!r}")
    if len(manifest.metadata) > MAX_METADATA_ENTRIES:
        raise InvalidArgument(f"metadata has {len(manifest.metadata)} entries; at most {MAX_METADATA_ENTRIES}")
    for key, value in manifest.metadata.items():
        if not key or len(key) + len(value) > MAX_METADATA_CHARS:
            raise InvalidArgument(f"metadata key {key[:40]!r}: keys must be non-empty and key + value "
                                  f"at most {MAX_METADATA_CHARS} characters")
    return manifest
