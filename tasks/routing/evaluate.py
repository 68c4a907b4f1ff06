"""``netgpt eval routing``: train the router on the collected training split, sweep it on held-out."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

from tasks.routing.collect import Collected
from tasks.routing.frontier import Frontier, frontier
from tasks.routing.labels import LABELS
from tasks.routing.questions import HELDOUT, TRAIN
from tasks.routing.train import fit


def evaluate(collected: Collected, label: str = "key") -> Frontier:
    """The router trained on ``collected``'s training split with ``label``'s labels, and its held-out frontier."""
    if label not in LABELS:
        raise ValueError(f"label source {label!r}: known {sorted(LABELS)}")
    train, held_out = collected.split(TRAIN), collected.split(HELDOUT)
    if not train or not held_out:
        raise ValueError(f"routing data needs both splits; it has {len(train)} training and {len(held_out)} "
                         "held-out records")
    digest = hashlib.sha256(json.dumps([r.question for r in train]).encode()).hexdigest()[:8]
    router = fit(train, LABELS[label], collected.probe_tokens, version=f"lr-{label}-{digest}")
    result = frontier(train, held_out, router, label)
    metadata = dict(router.metadata) | {
        "trained_on": f"{len(train)} training-split questions (dev set + self-instruct phrasings), "
                      f"never the held-out set; labels: {label}",
        "models": collected.models, "recommended_threshold": result.chosen_threshold,
        "held_out": {"edge_share": result.chosen.edge_share, "quality": result.chosen.quality,
                     "always_cloud_quality": result.baselines[1].quality}}
    result.router = replace(router, metadata=metadata)
    return result


def write_router(result: Frontier, out: Path) -> None:
    """The trained router's weights file, as the edge loads it (``router_weights``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result.router.to_json(), indent=1) + "\n", encoding="utf-8")
