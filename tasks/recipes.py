"""What every task model's recipe shares on its command line (``python -m tasks.<task>.recipe``)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from safetensors.torch import load_file, save_file

from netgpt.checkpoint.pretrained import PRETRAINED_NAME


def recipe_arguments(doc: str | None, default_out: Path, argv: Sequence[str] | None = None,
                     seed: int | None = None) -> argparse.Namespace:
    """``--out``, ``--quick``, ``--threads``, ``--no-eval`` (and ``--seed`` when the recipe has one); a quick build,
    or one with another seed, must not replace the shipped model."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--out", type=Path, default=default_out, help="where the model goes")
    parser.add_argument("--quick", action="store_true", help="a few steps only: checks the recipe, not the model")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation recorded in recipe.json")
    if seed is not None:
        parser.add_argument("--seed", type=int, default=seed, help=f"the recipe's seed (default {seed}; another one "
                                                                   "measures the spread)")
    args = parser.parse_args(argv)
    shipped = args.out.resolve() == default_out.resolve()
    if args.quick and shipped:
        parser.error("--quick builds a throw-away model: pass --out DIR so the shipped one is kept")
    if seed is not None and args.seed != seed and shipped:
        parser.error("another --seed builds a model to compare: pass --out DIR so the shipped one is kept")
    return args


def save_adapter_fp16(trained: Path, out: Path) -> int:
    """The trained adapter's weights halved (the cloud loads them in its own dtype) and its config naming the
    base by name, not by this machine's cache path; the run's other files stay behind (recipe.json has them)."""
    out.mkdir(parents=True, exist_ok=True)
    weights = load_file(str(trained / "adapter_model.safetensors"))
    save_file({k: v.half().contiguous() for k, v in weights.items()}, str(out / "adapter_model.safetensors"))
    config = json.loads((trained / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = PRETRAINED_NAME
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return sum(tensor.numel() for tensor in weights.values())
