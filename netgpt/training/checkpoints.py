"""Training checkpoints: ``checkpoints/step-N/`` folders written to a temp name and renamed when
complete, so a node killed mid-write resumes from the previous one; the last ``KEEP`` are kept.

A checkpoint holds the trainable weights (``weights.safetensors``: the LoRA adapter, or the whole
model), the optimizer, scheduler and torch RNG (``optimizer.pt``, loaded with ``weights_only``,
so no pickled code runs) and the step, data-order position, python/numpy RNG, loss history and a
fingerprint of the run (``state.json``).
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from netgpt.errors import FailedPrecondition

KEEP = 2
WEIGHTS, OPTIMIZER, STATE = "weights.safetensors", "optimizer.pt", "state.json"


@dataclass
class Snapshot:
    """What a resumed run needs besides the weights and the optimizer."""

    step: int
    fingerprint: str
    losses: list[float]
    train_seconds: float
    train_tokens: int
    eval_loss: float | None = None


def _step_of(folder: Path) -> int:
    try:
        return int(folder.name.removeprefix("step-"))
    except ValueError:
        return -1


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first (temp folders are never named ``step-N``)."""
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step-*") if _step_of(p) >= 0 and all((p / f).is_file()
                                                                        for f in (WEIGHTS, OPTIMIZER, STATE))]
    return sorted(found, key=_step_of)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().contiguous().clone() for name, p in model.named_parameters() if p.requires_grad}


def save(root: Path, snapshot: Snapshot, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
         scheduler: torch.optim.lr_scheduler.LRScheduler) -> Path:
    """Write ``step-N`` atomically, then drop all but the newest ``KEEP``."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{snapshot.step}"
    tmp = root / f".tmp-step-{snapshot.step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(trainable_state(model), str(tmp / WEIGHTS))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state()}, tmp / OPTIMIZER)
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {**snapshot.__dict__, "python_rng": random.getstate(),
             "numpy_rng": [name, np.asarray(keys).tolist(), pos, has_gauss, cached]}
    (tmp / STATE).write_text(json.dumps(state))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in complete_checkpoints(root)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_latest(root: Path, fingerprint: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler) -> Snapshot | None:
    """Restore the newest complete checkpoint into model/optimizer/scheduler/RNGs; None if there is none.

    FailedPrecondition when it belongs to another run (other base, dataset or hyper-parameters).
    """
    found = complete_checkpoints(root)
    if not found:
        return None
    folder = found[-1]
    state: dict[str, Any] = json.loads((folder / STATE).read_text())
    if state["fingerprint"] != fingerprint:
        raise FailedPrecondition(f"{root} holds checkpoints of another training run (different base model, "
                                 "dataset or hyper-parameters); use a fresh work directory")
    weights = load_file(str(folder / WEIGHTS))
    expected = {name for name, p in model.named_parameters() if p.requires_grad}
    if set(weights) != expected:
        raise FailedPrecondition(f"checkpoint {folder} does not match the model's trainable weights")
    model.load_state_dict(weights, strict=False)
    saved = torch.load(folder / OPTIMIZER, weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["torch_rng"])
    version, internal, gauss = state["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy_rng"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    return Snapshot(step=state["step"], fingerprint=fingerprint, losses=list(state["losses"]),
                    train_seconds=float(state["train_seconds"]), train_tokens=int(state["train_tokens"]),
                    eval_loss=state.get("eval_loss"))


def clear(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
