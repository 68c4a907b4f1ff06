"""Edge deployments: an ONNX export artifact becomes a new ONNX Runtime session, hot-swapped in."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cmp.blob_cache import BlobCache
from cmp.deployer import Deployer, Loader
from edge_node.model.ort_engine import OrtGpt2Model
from netgpt.config import EdgeConfig
from netgpt.model_slot import ModelSlot, Served
from netgpt.tls import Transport
from netgpt.v1 import common_pb2
from node.runtime import deploy_dir


def edge_loader(providers: str, check: Callable[[OrtGpt2Model], object] | None = None,
                prefix_cache_mb: float = 0.0, intra_op_threads: int = 0, prefill_first: bool = False) -> Loader:
    """``check(model)`` raises when the loaded model cannot do the slot's job (a task model's reader)."""
    def load(folder: Path, ref: common_pb2.ModelRef) -> OrtGpt2Model:
        model = OrtGpt2Model.load_exported(folder, providers=providers, name=ref.name, version=ref.version,
                                           sha256=ref.sha256, prefix_cache_mb=prefix_cache_mb,
                                           intra_op_threads=intra_op_threads, prefill_first=prefill_first)
        if check is not None:
            check(model)
        return model

    return load


def edge_deployer(config: EdgeConfig, node_id: str, slot: ModelSlot, on_swap: Callable[[Served], None],
                  blobs: BlobCache | None = None, transport: Transport | None = None, sub_dir: str = "",
                  check: Callable[[OrtGpt2Model], object] | None = None) -> Deployer:
    """``sub_dir``: a folder of its own under the node's deploy dir (a task model's deployer)."""
    folder = deploy_dir(config, node_id) / sub_dir if sub_dir else deploy_dir(config, node_id)
    prefix_mb = 0.0 if sub_dir else config.prefix_cache_mb  # task models read one short prompt each
    loader = edge_loader(config.providers, check, prefix_mb, config.intra_op_threads,
                         config.prefill_first and not sub_dir)
    return Deployer(slot, common_pb2.MODEL_KIND_ONNX_EDGE, loader, config.core,
                    folder, on_swap, blobs=blobs, node_id=node_id,
                    transport=transport)
