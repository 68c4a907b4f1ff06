"""Training the learned router: L2-regularised logistic regression by Newton's method (deterministic: no
sampling, no initialisation to seed), on standardised features, in numpy."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from edge_node.serving.learned_router import FEATURES, LearnedRouter
from tasks.routing.collect import Record

L2 = 1.0  # on the standardised weights; the bias gets a hundredth of it (finite even when every label agrees)
NEWTON_STEPS = 50


def fit(records: Sequence[Record], label: Callable[[Record], bool], probe_tokens: int,
        features: Sequence[str] = FEATURES, l2: float = L2, version: str = "trained") -> LearnedRouter:
    """A router predicting ``label`` from the records' features (ValueError without records)."""
    if not records:
        raise ValueError("no routing records to train the router on")
    x = np.array([[r.features[name] for name in features] for r in records], dtype=np.float64)
    y = np.array([1.0 if label(r) else 0.0 for r in records])
    means = x.mean(axis=0)
    spread = x.std(axis=0)
    scales = np.where(spread > 1e-12, spread, 1.0)  # a constant feature (cell load offline) keeps weight 0
    design = np.hstack([(x - means) / scales, np.ones((len(records), 1))])
    penalty = np.diag([l2] * len(features) + [l2 / 100])
    theta = np.zeros(len(features) + 1)
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-design @ theta))
        gradient = design.T @ (p - y) + penalty @ theta
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + penalty
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if float(np.abs(step).max()) < 1e-10:
            break
    return LearnedRouter(tuple(features), tuple(float(w) for w in theta[:-1]), float(theta[-1]),
                         tuple(float(m) for m in means), tuple(float(s) for s in scales), probe_tokens, version,
                         {"records": len(records), "positives": int(y.sum()), "l2": l2})
