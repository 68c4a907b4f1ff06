"""Cloud fine-tuning: LoRA on the cloud's LLaMA becomes a deployable ``lora_adapter`` version.

The role-specific half of :class:`cmp.training_agent.TrainingAgent`: the trainable base (the
checkpoint the node serves) and the packager, which packs the adapter folder as one tar, as
``netgpt model publish --kind lora-adapter`` does, with ``base_model`` the cloud's base name so
``DeployModel`` accepts it for this cloud.
"""

from __future__ import annotations

import json
from pathlib import Path

from cloud_node.deployer import base_name
from cloud_node.lora import ADAPTER_CONFIG, adapter_weights_file
from cmp.archive import pack_folder
from cmp.training_agent import BaseModel, Package, PackageRequest, TrainingAgent
from netgpt.config import CloudConfig
from netgpt.errors import FailedPrecondition
from netgpt.model_slot import ModelSlot
from netgpt.tls import Transport
from netgpt.v1 import common_pb2
from node.runtime import deploy_dir


def adapter_metadata(folder: Path) -> dict[str, str]:
    """Manifest facts of an adapter folder (refuses pickled weights)."""
    adapter_weights_file(folder)
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    return {"format": "tar", "peft_type": str(config.get("peft_type")), "r": str(config.get("r")),
            "target_modules": ",".join(sorted(config.get("target_modules") or []))}


def package_cloud(request: PackageRequest) -> Package:
    """The trained adapter folder as a tar, for the base it was trained on."""
    if request.method != "lora":
        raise FailedPrecondition("cloud nodes publish LoRA adapters; full fine-tuning runs on edge nodes")
    metadata = adapter_metadata(request.trained)
    path = pack_folder(request.trained, request.out_dir / "adapter.tar")
    return Package(path, common_pb2.MODEL_KIND_LORA_ADAPTER, request.base.name, metadata)


def cloud_trainer(config: CloudConfig, node_id: str, slot: ModelSlot,
                  transport: Transport | None = None) -> TrainingAgent:
    """The cloud's training agent; "the serving model" is the base checkpoint the node loaded."""
    base = slot.current
    folder: Path | None = getattr(base.model, "base_dir", None)

    def serving_base() -> BaseModel:
        if folder is None:
            raise FailedPrecondition("this cloud node was not started from a base checkpoint folder; train a base "
                                     "version from the model store instead")
        return BaseModel(folder, base_name(base.ref), base.ref.version, base.ref.sha256)

    return TrainingAgent(config.core, deploy_dir(config, node_id), package_cloud, serving_base,
                         threads=config.train_threads, transport=transport)
