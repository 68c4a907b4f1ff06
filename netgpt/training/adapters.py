"""Which weights train: LoRA adapters on named modules (peft) or the whole model."""

from __future__ import annotations

from torch import nn

from netgpt.errors import InvalidArgument

# per architecture (config.model_type): the attention projections, as in the LoRA paper
DEFAULT_TARGETS: dict[str, list[str]] = {
    "gpt2": ["c_attn", "c_proj"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
}


def adaptable_modules(model: nn.Module) -> list[str]:
    """Short names (last path component) of the modules peft's LoRA can wrap: linear layers and
    GPT-2's Conv1D."""
    names = set()
    for path, module in model.named_modules():
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
            names.add(path.rsplit(".", 1)[-1])
    return sorted(names)


def resolve_targets(model: nn.Module, model_type: str, requested: list[str] | None) -> list[str]:
    """The requested target modules, checked against the model, or the architecture's defaults."""
    available = adaptable_modules(model)
    if requested is None:
        if model_type not in DEFAULT_TARGETS:
            raise InvalidArgument(f"no default LoRA target modules for a {model_type!r} model; pass target "
                                  f"modules, one or more of: {', '.join(available)}")
        return list(DEFAULT_TARGETS[model_type])
    if not requested:
        raise InvalidArgument(f"LoRA needs at least one target module; this model has: {', '.join(available)}")
    unknown = [name for name in requested if name not in available]
    if unknown:
        raise InvalidArgument(f"target modules {', '.join(repr(n) for n in unknown)} are not in this "
                              f"{model_type} model; modules that fit: {', '.join(available)}")
    return list(requested)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied weights counted once."""
    trainable = total = 0
    for param in model.parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return trainable, total
