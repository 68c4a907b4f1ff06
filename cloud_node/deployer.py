"""Cloud deployments: a LoRA adapter artifact applied to this node's base checkpoint, hot-swapped in.

With batching (the default) a deployed adapter is loaded onto the base already in memory
(:meth:`~cloud_node.llama_engine.LlamaModel.adapter_view`): only its LoRA matrices are
read, every adapter kept (current, previous, and any a running request still pins) shares
the base weights, and requests for different adapters share forward passes; the per-request
adapter choice is why a swap never changes the adapter of a request already running.

Without batching (or when the serving model cannot take adapters on its base, e.g. a test
wrapper) each deployed adapter gets its own model object: base weights loaded again plus
the adapter through peft, unmerged, at the cost of one extra base in memory per version kept.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cloud_node.adapter_model import LlamaAdapter
from cloud_node.llama_engine import LlamaModel
from cmp.blob_cache import BlobCache
from cmp.deployer import Deployer, Loader
from netgpt.config import CloudConfig
from netgpt.engine import LanguageModel, ModelLoadError
from netgpt.model_slot import ModelSlot, Served
from netgpt.tls import Transport
from netgpt.v1 import common_pb2
from node.runtime import deploy_dir


def base_name(ref: common_pb2.ModelRef) -> str:
    """The base checkpoint a cloud serving ``ref`` runs: the adapter's base, or the checkpoint itself."""
    return ref.base_model or ref.name


def cloud_loader(base: LanguageModel, base_ref: common_pb2.ModelRef, share_base: bool = True) -> Loader:
    """Loads adapters onto ``base`` (``share_base``, when it supports it), or else onto a fresh load of the
    checkpoint ``base`` was loaded from, on the same device and dtype."""
    base_dir: Path | None = getattr(base, "base_dir", None)
    device, dtype = getattr(base, "device", "auto"), getattr(base, "dtype", "auto")
    name = base_name(base_ref)

    def load(folder: Path, ref: common_pb2.ModelRef) -> LanguageModel:
        if ref.base_model != name:
            raise ModelLoadError(f"adapter {ref.name} {ref.version} is for base model {ref.base_model!r}; "
                                 f"this node serves {name!r}")
        if base_dir is None:
            raise ModelLoadError("this cloud node was not started from a base checkpoint folder; "
                                 "adapters cannot be deployed to it")
        if share_base and isinstance(base, LlamaModel | LlamaAdapter):
            return base.adapter_view(folder, ref.name, ref.version)
        return LlamaModel.load(base_dir, adapter_dir=folder, device=device, dtype=dtype, name=ref.name,
                               version=ref.version)

    return load


def cloud_deployer(config: CloudConfig, node_id: str, slot: ModelSlot,
                   on_swap: Callable[[Served], None], blobs: BlobCache | None = None,
                   transport: Transport | None = None) -> Deployer:
    loader = cloud_loader(slot.current.model, slot.current.ref, share_base=config.batching)
    return Deployer(slot, common_pb2.MODEL_KIND_LORA_ADAPTER, loader, config.core, deploy_dir(config, node_id),
                    on_swap, blobs=blobs, node_id=node_id, transport=transport)
