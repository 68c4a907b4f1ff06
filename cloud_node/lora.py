"""LoRA adapters for the cloud LLaMA: validate and attach one (peft), or make one for tests/demo.

An adapter folder is what ``PeftModel.save_pretrained`` writes: ``adapter_config.json``
plus ``adapter_model.safetensors``. Pickled ``adapter_model.bin`` is refused (unpickling
runs code). Before peft sees the folder we check that every LoRA tensor lands on a
module of the base with matching shapes, so a wrong adapter fails with one clear line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors import safe_open
from transformers import AutoModelForCausalLM, PreTrainedModel

from netgpt.engine import ModelLoadError
from netgpt.errors import one_line

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PICKLED_WEIGHTS = "adapter_model.bin"
_PEFT_PREFIX = "base_model.model."


def adapter_weights_file(adapter_dir: Path) -> Path:
    """Validate an adapter folder's layout; return its safetensors weights file."""
    if not adapter_dir.is_dir():
        raise ModelLoadError(f"LoRA adapter folder {adapter_dir} does not exist or is not a directory")
    config_path = adapter_dir / ADAPTER_CONFIG
    if not config_path.is_file():
        raise ModelLoadError(f"LoRA adapter folder {adapter_dir} has no {ADAPTER_CONFIG}")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"LoRA adapter {config_path} is not valid JSON: {one_line(exc)}") from exc
    peft_type = config.get("peft_type") if isinstance(config, dict) else None
    if peft_type != "LORA":
        raise ModelLoadError(f"LoRA adapter folder {adapter_dir} holds peft_type {peft_type!r}; expected 'LORA'")
    weights = adapter_dir / ADAPTER_WEIGHTS
    if not weights.is_file():
        if (adapter_dir / PICKLED_WEIGHTS).is_file():
            raise ModelLoadError(
                f"LoRA adapter folder {adapter_dir} has only pickled {PICKLED_WEIGHTS}; "
                f"safetensors only ({ADAPTER_WEIGHTS}) — re-save with safe_serialization=True"
            )
        raise ModelLoadError(f"LoRA adapter folder {adapter_dir} has no {ADAPTER_WEIGHTS}")
    return weights


def check_adapter_fits(base: PreTrainedModel, weights: Path) -> None:
    """Raise ModelLoadError unless every LoRA tensor targets an existing base module with matching shapes."""
    modules = dict(base.named_modules())
    try:
        with safe_open(str(weights), framework="pt") as handle:
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as exc:  # safetensors raises its own error type for corrupt headers
        raise ModelLoadError(f"LoRA adapter weights {weights} are unreadable: {one_line(exc)}") from exc
    if not any(".lora_" in key for key in shapes):
        raise ModelLoadError(f"LoRA adapter weights {weights} hold no lora_A/lora_B tensors")
    for key, shape in sorted(shapes.items()):
        if ".lora_" not in key:
            continue
        module_name, _, tail = key.removeprefix(_PEFT_PREFIX).partition(".lora_")
        target = modules.get(module_name)
        if target is None:
            raise ModelLoadError(f"LoRA adapter does not fit the base model: no module {module_name!r} for {key}")
        if not isinstance(target, torch.nn.Linear) or len(shape) != 2:
            continue  # embeddings/convs etc.: leave the detailed check to peft
        expected = None
        if tail.startswith("A."):
            expected, got, what = target.in_features, shape[1], "input"
        elif tail.startswith("B."):
            expected, got, what = target.out_features, shape[0], "output"
        if expected is not None and expected != got:
            raise ModelLoadError(
                f"LoRA adapter does not fit the base model: {module_name} has {what} size {expected}, "
                f"adapter tensor {key} has shape {list(shape)}"
            )


def attach_lora_adapter(base: PreTrainedModel, adapter_dir: Path) -> PeftModel:
    """Validate ``adapter_dir`` against ``base`` and load it (unmerged) with peft."""
    weights = adapter_weights_file(adapter_dir)
    check_adapter_fits(base, weights)
    try:
        model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
    except Exception as exc:  # peft: RuntimeError (shapes), NoMatchingPeftModuleError, ValueError, ...
        raise ModelLoadError(f"LoRA adapter {adapter_dir} does not fit the base model: {one_line(exc)}") from exc
    return model.eval()


def make_lora_adapter(
    base_dir: Path,
    out_dir: Path,
    r: int = 4,
    seed: int = 0,
    target_modules: Sequence[str] = ("q_proj", "v_proj"),
    scale: float = 0.5,
) -> Path:
    """Write a seeded random LoRA adapter for the HF model in ``base_dir`` to ``out_dir``.

    ``lora_B`` is normally zero-initialised (a no-op adapter); here it is drawn from
    N(0, scale²) so the adapter visibly changes the base model's outputs. No training.
    """
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(
        r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=list(target_modules), task_type="CAUSAL_LM"
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # lora_A init uses the global RNG
        model = get_peft_model(base, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    model.save_pretrained(str(out_dir), safe_serialization=True)  # peft types the folder as str
    return out_dir
