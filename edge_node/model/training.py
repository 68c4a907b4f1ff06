"""Edge fine-tuning: GPT-2 trained on the node becomes the edge's deployable artifact.

The role-specific half of :class:`cmp.training_agent.TrainingAgent`: the trainable base (the
GPT-2 folder the node was started from, ``--model``) and the packager, which turns a trained
model into the parity-checked ONNX artifact (:func:`edge_node.model.artifact.build_edge_artifact`);
a LoRA adapter is merged into its base first (peft ``merge_and_unload``), since the edge
serves a plain GPT-2 graph.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from cmp.archive import is_pickle
from cmp.training_agent import BaseModel, Package, PackageRequest, TrainingAgent
from edge_node.model.artifact import build_edge_artifact
from netgpt.config import EdgeConfig
from netgpt.engine import ModelLoadError
from netgpt.errors import FailedPrecondition
from netgpt.tls import Transport
from netgpt.v1 import common_pb2
from node.runtime import deploy_dir, model_folder

MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json")


def merge_lora(base_dir: Path, adapter_dir: Path, out: Path) -> Path:
    """The base with the adapter merged into its weights (safetensors), plus the base's tokenizer files."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    for path in Path(base_dir).iterdir():  # tokenizer and friends; never the base's weights
        if (path.is_file() and path.name not in MODEL_FILES and not path.name.endswith(".safetensors")
                and not is_pickle(path.name) and not (out / path.name).exists()):
            shutil.copy2(path, out / path.name)
    return out


def edge_packager(default_quantization: str = "fp32") -> Callable[[PackageRequest], Package]:
    """Trained GPT-2 (full folder, or adapter + base) → ONNX artifact with KV cache, checked against torch;
    quantised as the job asks, else as the node serves (``default_quantization``), behind the quality gate."""

    def package_edge(request: PackageRequest) -> Package:
        folder = request.trained
        if request.method == "lora":
            folder = merge_lora(request.base.folder, request.trained, request.out_dir / "merged")
        quantization = request.quantization or default_quantization
        try:
            artifact = build_edge_artifact(folder, request.out_dir / "edge.tar", quantization=quantization)
        except ModelLoadError as exc:  # the quality gate's refusal too
            raise FailedPrecondition(f"the trained model does not export to the {quantization} edge artifact: "
                                     f"{exc}") from exc
        return Package(artifact.path, common_pb2.MODEL_KIND_ONNX_EDGE, request.base.name, artifact.metadata)

    return package_edge


def edge_trainer(config: EdgeConfig, node_id: str, serving: common_pb2.ModelRef,
                 transport: Transport | None = None) -> TrainingAgent:
    """The edge's training agent; "the serving model" is the GPT-2 folder given as ``--model``."""

    def serving_base() -> BaseModel:
        if not config.model:
            raise FailedPrecondition("this edge node was not started from a GPT-2 folder (--model); train a base "
                                     "version from the model store instead")
        folder = model_folder(config.model, "edge (GPT-2)", lambda tiny: tiny.gpt2_dir)
        return BaseModel(folder, serving.name, serving.version, serving.sha256)

    return TrainingAgent(config.core, deploy_dir(config, node_id), edge_packager(config.quantization), serving_base,
                         threads=config.train_threads, transport=transport)
