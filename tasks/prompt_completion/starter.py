"""The starter models' recipe: a byte-level BPE tokenizer on the task's corpus, a small GPT-2 (edge)
and a small LLaMA (cloud) trained FULL from scratch on the seeded edge and cloud datasets with the
project's own trainer (:mod:`netgpt.training`), saved as fp16 safetensors under
``netgpt/assets/starter/{tokenizer,gpt2,llama}`` with ``recipe.json`` (times, losses, sizes).

``make starter-models`` (``python -m tasks.prompt_completion.starter``) rebuilds them; same seed,
same datasets, same tokenizer. ``--quick`` shrinks every run for a smoke test of the recipe.
``--phrasings FILE`` asks a share of the edge's questions in self-instruct phrasings
(:mod:`tasks.prompt_completion.self_instruct`; ``SELF_INSTRUCT`` is the committed file of ``make self-instruct``).
Not the default: on the dev set it did not help the edge (README, *Self-instruct for the edge*). ``--models gpt2``
retrains that model only and keeps the others (the tokenizer must come out the same, or all are rebuilt).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import structlog
import tokenizers
import torch
import transformers
from tokenizers import Tokenizer as RawTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from netgpt.errors import InvalidArgument
from netgpt.logs import configure_logging
from netgpt.training.dataset import file_sha256
from netgpt.training.trainer import Progress, TrainConfig, TrainResult, train
from tasks.prompt_completion.build import build_cloud_dataset, build_edge_dataset, corpus_texts

log = structlog.get_logger("netgpt.starter")

SEED = 2024
EOS = "<|endoftext|>"
VOCAB_SIZE = 3072
CONTEXT = 512
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "netgpt" / "assets" / "starter"
# the pretrained base's rephrasings of the needs' questions (make self-instruct), asked in a share of the edge's data
SELF_INSTRUCT = Path(__file__).resolve().parent / "data" / "self_instruct_phrasings.jsonl"


@dataclass(frozen=True)
class Recipe:
    """One starter model: its dataset, its architecture and how long it trains."""

    name: str  # folder under the output: gpt2 | llama
    examples: int
    config: TrainConfig


RECIPES = (
    Recipe("gpt2", 8000, TrainConfig(method="full", max_steps=700, batch_size=16, learning_rate=2e-3,
                                     warmup_steps=40, weight_decay=0.01, seed=SEED, eval_fraction=0.03)),
    Recipe("llama", 8000, TrainConfig(method="full", max_steps=900, batch_size=16, learning_rate=2e-3,
                                      warmup_steps=40, weight_decay=0.01, seed=SEED, eval_fraction=0.03)),
)
DATASETS: dict[str, Callable[..., Path]] = {"gpt2": build_edge_dataset, "llama": build_cloud_dataset}


def train_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """GPT-2-style byte-level BPE (EOS = pad = unk) trained on ``texts``; deterministic for the same texts."""
    raw = RawTokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=raw, bos_token=EOS, eos_token=EOS, unk_token=EOS,
                                   pad_token=EOS, model_max_length=CONTEXT)


def architecture(name: str, vocab_size: int, eos_id: int) -> GPT2Config | LlamaConfig:
    """Small enough for a 2-core CPU and < 20 MB in fp16 together; no dropout (the data is plentiful)."""
    if name == "gpt2":
        return GPT2Config(vocab_size=vocab_size, n_positions=CONTEXT, n_embd=192, n_layer=4, n_head=6,
                          resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                          bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id)
    return LlamaConfig(vocab_size=vocab_size, hidden_size=256, intermediate_size=688, num_hidden_layers=6,
                       num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=CONTEXT,
                       tie_word_embeddings=True, bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id)


def init_base(name: str, tokenizer: PreTrainedTokenizerFast, folder: Path) -> Path:
    """A seeded random-weight checkpoint of the architecture: the trainer's base folder."""
    eos_id = int(tokenizer.convert_tokens_to_ids(EOS))  # type: ignore[arg-type]  # one token in, one id out
    torch.manual_seed(SEED)
    config = architecture(name, len(tokenizer), eos_id)
    model: PreTrainedModel = GPT2LMHeadModel(config) if isinstance(config, GPT2Config) else LlamaForCausalLM(config)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def save_fp16(trained: Path, tokenizer: PreTrainedTokenizerFast, folder: Path) -> None:
    """The trained float32 folder as fp16 safetensors (the nodes load it back as float32)."""
    model = AutoModelForCausalLM.from_pretrained(trained, dtype=torch.float32).half()
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def _progress_logger(name: str) -> Callable[[Progress], None]:
    def report(p: Progress) -> None:
        if p.state == "running" and (p.step % 50 == 0 or p.step == p.total_steps):
            log.info("starter.progress", model=name, step=p.step, total=p.total_steps,
                     loss=round(p.train_loss or 0.0, 4), tokens_per_s=round(p.tokens_per_s),
                     eta_s=round(p.eta_s or 0.0))
    return report


def _scaled(recipe: Recipe, quick: bool) -> Recipe:
    if not quick:
        return recipe
    config = TrainConfig(**{**asdict(recipe.config), "max_steps": 20, "warmup_steps": 2})
    return Recipe(recipe.name, 200, config)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _dataset(recipe: Recipe, work: Path, phrasings: Path | None) -> tuple[Path, dict[str, Any]]:
    """The recipe's dataset file and how it was built (the self-instruct file and its share for the edge)."""
    if recipe.name != "gpt2" or phrasings is None:
        return DATASETS[recipe.name](work / f"{recipe.name}.jsonl", SEED, recipe.examples), {}
    from tasks.prompt_completion.build import PHRASINGS_SHARE
    from tasks.prompt_completion.self_instruct import load_phrasings
    loaded = load_phrasings(phrasings)
    dataset = build_edge_dataset(work / "gpt2.jsonl", SEED, recipe.examples, phrasings=loaded)
    return dataset, {"phrasings": {"file": phrasings.name, "sha256": file_sha256(phrasings), "templates": len(loaded),
                                   "share": PHRASINGS_SHARE}}


def _train_one(recipe: Recipe, work: Path, staging: Path, threads: int,
               phrasings: Path | None = None) -> dict[str, Any]:
    """One model of the recipe, trained on its dataset and saved into ``staging``; what recipe.json records."""
    configure_logging(json=False, level="info")  # a worker process starts with no logging set up
    tokenizer = PreTrainedTokenizerFast.from_pretrained(staging / "tokenizer")
    dataset, built = _dataset(recipe, work, phrasings)
    base = init_base(recipe.name, tokenizer, work / f"base-{recipe.name}")
    config = TrainConfig(**{**asdict(recipe.config), "threads": threads})
    result: TrainResult = train(base, dataset, work / f"run-{recipe.name}", config,
                                progress=_progress_logger(recipe.name))
    save_fp16(result.output_dir, tokenizer, staging / recipe.name)
    return {
        "dataset": {"builder": DATASETS[recipe.name].__name__, "examples": recipe.examples,
                    "sha256": file_sha256(dataset), **built},
        "architecture": architecture(recipe.name, len(tokenizer), 0).to_diff_dict() | {"model_type": recipe.name},
        "train": {k: v for k, v in asdict(config).items() if k != "threads"},
        "params": result.total_params, "steps": result.steps,
        "metrics": {k: round(v, 4) for k, v in result.metrics.items()},
        "bytes": folder_bytes(staging / recipe.name),
    }


def _kept(out: Path, staging: Path, models: Sequence[str]) -> dict[str, Any]:
    """Copy the models NOT retrained from ``out`` into ``staging``; their recipe.json entries.
    InvalidArgument when they were trained with another tokenizer than the one just built."""
    if not models:
        return {}
    old = out / "recipe.json"
    same = old.exists() and (out / "tokenizer" / "tokenizer.json").read_bytes() == \
        (staging / "tokenizer" / "tokenizer.json").read_bytes()
    if not same:
        raise InvalidArgument(f"the tokenizer built now differs from the one in {out}: rebuild every model "
                              f"(leave out --models)")
    entries: dict[str, Any] = json.loads(old.read_text())["models"]
    kept = [r.name for r in RECIPES if r.name not in models]
    for name in kept:
        shutil.copytree(out / name, staging / name)
    return {name: entries[name] for name in kept}


def build_starter(out: Path = DEFAULT_OUT, quick: bool = False, threads: int = 0, jobs: int = 1,
                  models: Sequence[str] = (), phrasings: Path | None = None) -> dict[str, Any]:
    """Run the recipe into ``out`` (replaced only at the end); returns what recipe.json records.
    ``models``: only these (the others are kept from ``out``); ``phrasings``: the edge's self-instruct file."""
    started = time.perf_counter()
    unknown = set(models) - {r.name for r in RECIPES}
    if unknown:
        raise InvalidArgument(f"unknown starter model(s) {sorted(unknown)}: choose from {[r.name for r in RECIPES]}")
    with tempfile.TemporaryDirectory(prefix="netgpt-starter-") as tmp:
        work = Path(tmp)
        staging = work / "starter"
        tokenizer = train_tokenizer(corpus_texts(SEED))
        tokenizer.save_pretrained(staging / "tokenizer")
        log.info("starter.tokenizer", vocab_size=len(tokenizer))
        record: dict[str, Any] = {"seed": SEED, "vocab_size": len(tokenizer), "context": CONTEXT,
                                  "models": _kept(out, staging, models),
                                  "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                               "tokenizers": tokenizers.__version__},
                                  "machine": f"{platform.machine()} CPU, {threads or torch.get_num_threads()} "
                                             f"torch thread(s) per model, {max(jobs, 1)} model(s) at a time"}
        recipes = [_scaled(r, quick) for r in RECIPES if not models or r.name in models]
        train_one = partial(_train_one, work=work, staging=staging, threads=threads, phrasings=phrasings)
        if jobs > 1:  # one process per model, each with its own ``threads``: same weights, less wall time
            with ProcessPoolExecutor(min(jobs, len(recipes)), mp_context=multiprocessing.get_context("spawn")) as pool:
                done = list(pool.map(train_one, recipes))
        else:
            done = [train_one(recipe) for recipe in recipes]
        record["models"].update(zip((r.name for r in recipes), done, strict=True))
        record["wall_seconds"] = round(time.perf_counter() - started, 1)
        record["total_bytes"] = folder_bytes(staging)
        (staging / "recipe.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        _replace(staging, out)
    return record


def _replace(staging: Path, out: Path) -> None:
    """Swap the new models in; keep the package's ``__init__.py`` (if any) out of the way of the rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    old = out.with_name(f".old-{out.name}")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    shutil.copytree(staging, out)
    shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the starter models go")
    parser.add_argument("--quick", action="store_true", help="a few steps only: checks the recipe, not the models")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per model (0 = torch's default)")
    parser.add_argument("--jobs", type=int, default=1, help="models trained at once, each in its own process")
    parser.add_argument("--models", default="", help="comma-separated: retrain only these (gpt2, llama), keep the rest")
    parser.add_argument("--phrasings", default="none",
                        help=f"the edge's self-instruct phrasings, JSONL, e.g. {SELF_INSTRUCT.relative_to(ROOT)} "
                             "(default: none, the templates only)")
    args = parser.parse_args(argv)
    configure_logging(json=False, level="info")
    phrasings = None if args.phrasings == "none" else Path(args.phrasings)
    models = [m for m in args.models.split(",") if m]
    record = build_starter(args.out, args.quick, args.threads, args.jobs, models, phrasings)
    print(json.dumps({name: m["metrics"] for name, m in record["models"].items()}, indent=2))
    print(f"wall {record['wall_seconds']} s, {record['total_bytes'] / 2**20:.1f} MiB in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
