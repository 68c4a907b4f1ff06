"""The intent model's recipe: the starter GPT-2 fine-tuned (full) on generated operator requests.

1. The starter GPT-2's tokenizer gets the research's special tokens (``<|request|>``, ``<|intent|>``)
   and one token per keyword-line key; the embeddings are resized (new rows: the mean embedding).
2. The seeded generator's training split (:mod:`tasks.intent.dataset`) is written as JSONL.
3. The project's trainer (:func:`netgpt.training.trainer.train`, the code a compute-plane training
   job runs) fine-tunes every weight, seeded.
4. The result is saved as fp16 safetensors + tokenizer under ``netgpt/assets/netmgmt/intent`` with
   ``recipe.json`` (seed, dataset sha256, steps, losses, train time, machine, evaluation figures).

``python -m tasks.intent.recipe [--quick] [--threads N] [--out DIR]``; ``make netmgmt-models`` runs it.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import structlog
import torch
import transformers
from tokenizers import AddedToken
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from edge_node.netmgmt.intent_line import KEY_TOKENS
from edge_node.netmgmt.intent_request import SPECIAL_TOKENS
from netgpt.logs import configure_logging
from netgpt.training.dataset import file_sha256
from netgpt.training.trainer import TrainConfig, train
from tasks.intent.dataset import SEED, TRAIN_EXAMPLES, build_dataset
from tasks.prompt_completion.starter import _progress_logger, _replace, folder_bytes, save_fp16
from tasks.recipes import recipe_arguments

log = structlog.get_logger("netgpt.intent.recipe")

STARTER_GPT2 = Path(__file__).resolve().parents[2] / "netgpt" / "assets" / "starter" / "gpt2"
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "netgpt" / "assets" / "netmgmt" / "intent"
CONFIG = TrainConfig(method="full", max_steps=1150, batch_size=16, learning_rate=2e-3, warmup_steps=50,
                     weight_decay=0.01, seed=SEED, eval_fraction=0.02)
QUICK_STEPS, QUICK_EXAMPLES, QUICK_EVAL = 12, 200, 12
MAX_BYTES = int(4.6e6)


def intent_tokenizer(starter: Path = STARTER_GPT2) -> PreTrainedTokenizerFast:
    """The starter tokenizer plus the separators (special) and the keyword-line keys (plain added tokens)."""
    tokenizer = cast(PreTrainedTokenizerFast, AutoTokenizer.from_pretrained(starter))
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
                         special_tokens=True)
    tokenizer.add_tokens([AddedToken(t, normalized=False) for t in KEY_TOKENS])
    return tokenizer


def init_base(folder: Path, starter: Path = STARTER_GPT2) -> PreTrainedTokenizerFast:
    """The starter GPT-2 with the intent tokenizer and resized embeddings, float32: the trainer's base."""
    tokenizer = intent_tokenizer(starter)
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_pretrained(starter, dtype=torch.float32)
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return tokenizer


def build(out: Path = DEFAULT_OUT, quick: bool = False, threads: int = 0, evaluate_model: bool = True
          ) -> dict[str, Any]:
    """The whole recipe into ``out`` (replaced only at the end); returns what recipe.json records."""
    from tasks.intent.evaluate import evaluate  # the evaluation loads ONNX Runtime; only when asked

    started = time.perf_counter()
    config = TrainConfig(**{**asdict(CONFIG), "threads": threads})
    examples = TRAIN_EXAMPLES
    if quick:
        config = TrainConfig(**{**asdict(config), "max_steps": QUICK_STEPS, "warmup_steps": 2})
        examples = QUICK_EXAMPLES
    with tempfile.TemporaryDirectory(prefix="netgpt-intent-") as tmp:
        work = Path(tmp)
        staging = work / "intent"
        tokenizer = init_base(work / "base")
        dataset = build_dataset(work / "intent.jsonl", SEED, examples)
        result = train(work / "base", dataset, work / "run", config, progress=_progress_logger("intent"))
        save_fp16(result.output_dir, tokenizer, staging)
        record: dict[str, Any] = {
            "task": "intent", "seed": SEED, "base": "netgpt/assets/starter/gpt2", "quick": quick,
            "tokens_added": [*SPECIAL_TOKENS, *KEY_TOKENS], "vocab_size": len(tokenizer),
            "dataset": {"builder": "tasks.intent.dataset.build_dataset", "examples": examples,
                        "sha256": file_sha256(dataset)},
            "train": {k: v for k, v in asdict(config).items() if k != "threads"},
            "params": result.total_params, "steps": result.steps,
            "metrics": {k: round(v, 4) for k, v in result.metrics.items()},
            "train_seconds": round(result.metrics["train_seconds"], 1),
            "machine": f"{platform.machine()} CPU, {threads or torch.get_num_threads()} torch thread(s)",
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        }
        if evaluate_model:
            report = evaluate(staging, limit=QUICK_EVAL if quick else 0)
            record["evaluation"] = report.summary()
            log.info("intent.evaluation", table="\n" + report.table())
        record["wall_seconds"] = round(time.perf_counter() - started, 1)
        record["bytes"] = folder_bytes(staging)
        (staging / "recipe.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        record["bytes"] = folder_bytes(staging)
        if record["bytes"] > MAX_BYTES:
            raise SystemExit(f"the intent model takes {record['bytes']} bytes, more than {MAX_BYTES}")
        _replace(staging, out)
    return record


def main(argv: list[str] | None = None) -> int:
    args = recipe_arguments(__doc__, DEFAULT_OUT, argv)
    configure_logging(json=False, level="info")
    record = build(args.out, args.quick, args.threads, not args.no_eval)
    print(json.dumps({"metrics": record["metrics"], "evaluation": record.get("evaluation")}, indent=2))
    print(f"train {record['train_seconds']} s, wall {record['wall_seconds']} s, {record['bytes']} bytes in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
