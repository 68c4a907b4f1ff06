"""Causal-LM fine-tuning of a local Hugging Face folder: LoRA (peft) or full, seeded, checkpointed,
resumable and cancellable. Runs in the caller's process; :mod:`netgpt.training.worker` runs it in
a child process so a serving node is not starved.

Loss is on completion tokens only (prompt tokens are labelled -100) and each completion ends
with EOS, so the trained model stops where the dataset's completions stop.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from netgpt.engine import ModelLoadError, read_hf_config
from netgpt.errors import Aborted, Cancelled, InvalidArgument
from netgpt.training import checkpoints
from netgpt.training.adapters import count_params, resolve_targets
from netgpt.training.batches import Batch, Tokenised, batch_indices, collate, split_eval, tokenise
from netgpt.training.dataset import check_lengths, file_sha256, read_jsonl
from netgpt.training.guards import folder_lock

log = structlog.get_logger("netgpt.training")

METHODS = ("lora", "full")
RESULT_FILE = "training_result.json"
LOSS_WINDOW = 10  # steps averaged into the reported first / final train loss
MAX_GRAD_NORM = 1.0


class TrainingCancelled(Cancelled):
    pass


class TrainingFailed(Aborted):
    """Training could not finish for a reason that is not the caller's input (diverged, crashed)."""


@dataclass
class TrainConfig:
    method: str = "lora"  # "lora" | "full"
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: list[str] | None = None  # None: the architecture's attention projections
    max_steps: int = 100
    batch_size: int = 8
    learning_rate: float = 2e-4
    warmup_steps: int = 0
    weight_decay: float = 0.0
    seed: int = 0
    checkpoint_every: int = 0  # steps; 0 = no checkpoints
    eval_fraction: float = 0.0  # of the dataset held out for eval loss
    eval_every: int = 0  # steps; 0 = only at the end
    max_seq_len: int = 0  # 0 = the model's context
    threads: int = 0  # torch.set_num_threads budget; 0 = torch's default
    base_id: str = ""  # the base's identity for resuming (name@version#sha256); "": its folder's path

    def validate(self) -> None:
        checks = [
            (self.method in METHODS, f"method must be one of {', '.join(METHODS)}, not {self.method!r}"),
            (self.max_steps > 0, "max_steps must be positive"),
            (self.batch_size > 0, "batch_size must be positive"),
            (self.learning_rate > 0, "learning_rate must be positive"),
            (self.warmup_steps >= 0, "warmup_steps must not be negative"),
            (self.weight_decay >= 0, "weight_decay must not be negative"),
            (self.checkpoint_every >= 0, "checkpoint_every must not be negative"),
            (0 <= self.eval_fraction < 1, "eval_fraction must be in [0, 1)"),
            (self.eval_every >= 0, "eval_every must not be negative"),
            (self.max_seq_len >= 0, "max_seq_len must not be negative"),
            (self.threads >= 0, "threads must not be negative"),
            (self.method != "lora" or self.lora_rank > 0, "lora_rank must be positive"),
            (self.method != "lora" or self.lora_alpha > 0, "lora_alpha must be positive"),
            (0 <= self.lora_dropout < 1, "lora_dropout must be in [0, 1)"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidArgument(message)

    def fingerprint(self, base_dir: Path, dataset_sha256: str) -> str:
        """Identifies a run for resuming: what changes the trajectory (not threads or checkpoint cadence)."""
        fields = {k: v for k, v in asdict(self).items() if k not in ("threads", "checkpoint_every", "base_id")}
        base = self.base_id or str(base_dir.resolve())  # an id: another node's checkpoints of the job resume too
        key = json.dumps({"base": base, "dataset": dataset_sha256, **fields}, sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass
class Progress:
    state: str  # "loading" | "running" | "checkpoint" | "saving" | "done"
    step: int
    total_steps: int
    train_loss: float | None = None
    eval_loss: float | None = None
    tokens_per_s: float = 0.0
    eta_s: float | None = None


@dataclass
class TrainResult:
    output_dir: Path
    method: str
    metrics: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    trainable_params: int = 0
    total_params: int = 0

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "output_dir": str(self.output_dir)}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, output_dir: Path) -> TrainResult:
        data = json.loads(text)
        data["output_dir"] = output_dir
        return cls(**data)


def _ignore(_: Progress) -> None:
    return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def context_length(model_config: Any) -> int:
    for key in ("n_positions", "max_position_embeddings"):
        value = getattr(model_config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    raise InvalidArgument("the base model's config names no context length")


def load_base(base_dir: Path) -> tuple[str, Any, Any]:
    """(model_type, tokenizer, float32 model) of a local GPT-2 or LLaMA folder."""
    try:
        model_type = str(read_hf_config(base_dir, ("gpt2", "llama"))["model_type"])
    except ModelLoadError as exc:
        raise InvalidArgument(str(exc)) from None
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer.eos_token_id is None:
        raise InvalidArgument(f"the tokenizer of {base_dir} has no EOS token")
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    return model_type, tokenizer, model


def prepare_model(model: Any, model_type: str, config: TrainConfig) -> Any:
    """The model with only the weights this method trains left trainable (LoRA wraps it in peft)."""
    if config.method == "full":
        for param in model.parameters():
            param.requires_grad_(True)
        return model
    targets = resolve_targets(model, model_type, config.target_modules)
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM", fan_in_fan_out=model_type == "gpt2")
    return get_peft_model(model, lora)


def warmup_then_linear(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))
    return factor


def _forward_loss(model: Any, batch: Batch) -> torch.Tensor:
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels)
    loss: torch.Tensor = out.loss
    return loss


@torch.no_grad()
def evaluate(model: Any, items: list[Tokenised], batch_size: int, pad_id: int) -> float | None:
    """Mean loss per completion token over ``items`` (None without items)."""
    if not items:
        return None
    model.eval()
    total = weight = 0.0
    for start in range(0, len(items), batch_size):
        chunk = items[start: start + batch_size]
        tokens = sum(item.trained_tokens for item in chunk)
        total += float(_forward_loss(model, collate(chunk, pad_id))) * tokens
        weight += tokens
    return total / weight


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


class TrainingRun:
    """One training run's moving parts (model, data, optimizer); ``train`` drives it, benchmarks inspect it."""

    def __init__(self, base_dir: Path, dataset: Path, work_dir: Path, config: TrainConfig) -> None:
        self.config = config
        self.work_dir = work_dir
        self.dataset_sha256 = file_sha256(dataset) if dataset.is_file() else ""
        examples = read_jsonl(dataset)
        self.model_type, self.tokenizer, model = load_base(base_dir)
        context = context_length(model.config)
        max_len = config.max_seq_len or context
        if max_len > context:
            raise InvalidArgument(f"max_seq_len {max_len} exceeds the model's context of {context}")
        check_lengths(examples, self.tokenizer, max_len, source=str(dataset))
        seed_everything(config.seed)  # LoRA's initial A matrices come from torch's RNG
        self.model = prepare_model(model, self.model_type, config)
        self.pad_id = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None
                          else self.tokenizer.eos_token_id)
        items = tokenise(examples, self.tokenizer, int(self.tokenizer.eos_token_id))
        self.train_items, self.eval_items = split_eval(items, config.eval_fraction, config.seed)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_then_linear(config.warmup_steps, config.max_steps))
        self.snapshot = checkpoints.Snapshot(step=0, fingerprint=config.fingerprint(base_dir, self.dataset_sha256),
                                             losses=[], train_seconds=0.0, train_tokens=0)

    @property
    def checkpoint_root(self) -> Path:
        return self.work_dir / "checkpoints"

    def resume(self) -> None:
        restored = checkpoints.load_latest(self.checkpoint_root, self.snapshot.fingerprint, self.model,
                                           self.optimizer, self.scheduler)
        if restored is not None:
            self.snapshot = restored
            log.info("training.resumed", step=restored.step, work_dir=str(self.work_dir))

    def step(self, step: int) -> tuple[float, int]:
        """One optimizer step; (loss, real tokens processed)."""
        indices = batch_indices(len(self.train_items), self.config.batch_size, self.config.seed, step)
        batch = collate([self.train_items[i] for i in indices], self.pad_id)
        self.model.train()
        loss = _forward_loss(self.model, batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingFailed(f"training loss became {value} at step {step + 1}; lower the learning rate")
        torch.autograd.backward(loss)
        torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], MAX_GRAD_NORM)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return value, batch.tokens

    def evaluate(self) -> float | None:
        return evaluate(self.model, self.eval_items, self.config.batch_size, self.pad_id)

    def save_output(self, output: Path, result: TrainResult) -> None:
        """Adapter or full folder, written aside and renamed: ``output`` exists only when complete."""
        tmp = output.with_name(f".tmp-{output.name}")
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save_pretrained(tmp, safe_serialization=True)
        if self.config.method == "full":
            self.tokenizer.save_pretrained(tmp)
        (tmp / RESULT_FILE).write_text(result.to_json())
        tmp.rename(output)


def train(base_dir: Path, dataset: Path, work_dir: Path, config: TrainConfig,
          progress: Callable[[Progress], None] = _ignore,
          cancelled: Callable[[], bool] = lambda: False) -> TrainResult:
    """Fine-tune ``base_dir`` on the JSONL ``dataset``; resumes from ``work_dir/checkpoints`` when a
    previous run of the same job left one, and returns the finished result if ``work_dir/output``
    is already complete. Raises InvalidArgument for bad input, TrainingCancelled when ``cancelled()``
    turns true (checkpoints are kept, no output is written), TrainingFailed if training diverges.
    ``work_dir`` is locked while it runs: FailedPrecondition when another trainer is writing it."""
    config.validate()
    with folder_lock(work_dir):
        return _train(base_dir, dataset, work_dir, config, progress, cancelled)


def _train(base_dir: Path, dataset: Path, work_dir: Path, config: TrainConfig,
           progress: Callable[[Progress], None], cancelled: Callable[[], bool]) -> TrainResult:
    output = work_dir / "output"
    if (output / RESULT_FILE).is_file():
        return TrainResult.from_json((output / RESULT_FILE).read_text(), output)
    if config.threads:
        torch.set_num_threads(config.threads)
    progress(Progress("loading", 0, config.max_steps))
    run = TrainingRun(base_dir, dataset, work_dir, config)
    run.resume()
    trainable, total = count_params(run.model)
    snap = run.snapshot
    log.info("training.started", method=config.method, base=str(base_dir), dataset_sha256=run.dataset_sha256,
             start_step=snap.step, max_steps=config.max_steps, trainable_params=trainable, total_params=total,
             train_examples=len(run.train_items), eval_examples=len(run.eval_items))
    session_start, session_tokens, first_step = time.perf_counter(), 0, snap.step
    for step in range(snap.step, config.max_steps):
        if cancelled():
            log.info("training.cancelled", step=step)
            raise TrainingCancelled(f"training cancelled at step {step} of {config.max_steps}")
        started = time.perf_counter()
        loss, tokens = run.step(step)
        snap.step, snap.train_seconds = step + 1, snap.train_seconds + time.perf_counter() - started
        snap.losses.append(loss)
        snap.train_tokens += tokens
        session_tokens += tokens
        done = snap.step == config.max_steps
        if config.eval_every and snap.step % config.eval_every == 0 and not done:
            snap.eval_loss = run.evaluate()
        elapsed = time.perf_counter() - session_start
        rate = session_tokens / elapsed if elapsed > 0 else 0.0
        eta = elapsed / (snap.step - first_step) * (config.max_steps - snap.step)
        progress(Progress("running", snap.step, config.max_steps, loss, snap.eval_loss, rate, eta))
        if config.checkpoint_every and snap.step % config.checkpoint_every == 0 and not done:
            folder = checkpoints.save(run.checkpoint_root, snap, run.model, run.optimizer, run.scheduler)
            log.info("training.checkpoint", step=snap.step, path=str(folder))
            progress(Progress("checkpoint", snap.step, config.max_steps, loss, snap.eval_loss, rate, eta))
    if cancelled():
        raise TrainingCancelled(f"training cancelled at step {snap.step} of {config.max_steps}")
    progress(Progress("saving", snap.step, config.max_steps, _mean(snap.losses[-1:]), snap.eval_loss))
    snap.eval_loss = run.evaluate()
    metrics = {
        "initial_train_loss": _mean(snap.losses[:LOSS_WINDOW]),
        "train_loss": _mean(snap.losses[-LOSS_WINDOW:]),
        "train_seconds": snap.train_seconds,
        "train_tokens": float(snap.train_tokens),
        "tokens_per_s": snap.train_tokens / snap.train_seconds if snap.train_seconds else 0.0,
    }
    if snap.eval_loss is not None:
        metrics["eval_loss"] = snap.eval_loss
    result = TrainResult(output, config.method, metrics, snap.step, trainable, total)
    run.save_output(output, result)
    checkpoints.clear(run.checkpoint_root)
    log.info("training.done", output=str(output), steps=snap.step, **metrics)
    progress(Progress("done", snap.step, config.max_steps, metrics["train_loss"], snap.eval_loss,
                      metrics["tokens_per_s"], 0.0))
    return result
