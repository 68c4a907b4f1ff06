"""The learned router: P(the edge's own answer is good enough) from what the edge knows when it routes.

Features (``routing_features``) come from the request (its length, how many knowledge-base facts the
comprehensive prompt lists, how much of the question the top fact covers), from the edge model's
own greedy first answer tokens (a probe: their mean and lowest log-probability, whether they
already name a listed venue) and from the load (the cloud's queue, the cell's PRB utilisation).
The router itself is a logistic regression over standardised features, stored as a small JSON
file of weights (``netgpt/assets/router/learned_router.json``, trained by ``tasks.routing``); the
edge only evaluates it, with numpy-free arithmetic.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from edge_node.serving.knowledge import fact_name, query_terms

FEATURES: tuple[str, ...] = (
    "question_words", "facts_listed", "retrieval_overlap", "probe_mean_logprob", "probe_min_logprob",
    "probe_names_top_fact", "probe_names_listed_fact", "cloud_queue", "cell_load",
)
LOGPROB_FLOOR = -20.0  # an empty probe (or a -inf token) counts as this: features stay finite
PACKAGED = "packaged"
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class ProbedAnswer:
    """The edge model's greedy first answer tokens to the prompt being routed, with their log-probabilities."""

    text: str
    logprobs: tuple[float, ...]

    @property
    def mean_logprob(self) -> float:
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else float("-inf")

    @property
    def min_logprob(self) -> float:
        return min(self.logprobs) if self.logprobs else float("-inf")


def normalised(text: str) -> str:
    """Lower case words joined by single spaces, padded so that ``f" {name} " in`` finds whole names."""
    return " " + " ".join(_WORD.findall(text.lower())) + " "


def names(text: str, venue: str) -> bool:
    return bool(venue.strip()) and normalised(venue) in normalised(text)


def routing_features(question: str, facts: Sequence[str], answer: ProbedAnswer, cloud_queue: int = 0,
                     cell_load: float = 0.0) -> dict[str, float]:
    """The learned router's inputs, as the edge computes them at routing time (and the collection reads back)."""
    terms = query_terms(question)
    top_words = set(_WORD.findall(facts[0].lower())) if facts else set()
    listed = [fact_name(fact) for fact in facts]
    return {
        "question_words": float(len(_WORD.findall(question.lower()))),
        "facts_listed": float(len(facts)),
        "retrieval_overlap": sum(t in top_words for t in terms) / len(terms) if terms else 0.0,
        "probe_mean_logprob": max(answer.mean_logprob, LOGPROB_FLOOR),
        "probe_min_logprob": max(answer.min_logprob, LOGPROB_FLOOR),
        "probe_names_top_fact": float(bool(listed) and names(answer.text, listed[0])),
        "probe_names_listed_fact": float(any(names(answer.text, venue) for venue in listed)),
        "cloud_queue": float(cloud_queue),
        "cell_load": float(cell_load),
    }


class RouterFileError(ValueError):
    """A router weights file that cannot be used, with what is wrong in it."""


@dataclass(frozen=True)
class LearnedRouter:
    """Logistic regression: P(good) = sigmoid(bias + sum(weight * (feature - mean) / scale))."""

    features: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float
    means: tuple[float, ...]
    scales: tuple[float, ...]
    probe_tokens: int  # the probe length the features were collected with: serving must use the same
    version: str = "untrained"
    metadata: Mapping[str, Any] = field(default_factory=dict)  # how it was trained (data, seed, figures)

    def __post_init__(self) -> None:
        lengths = {len(self.features), len(self.weights), len(self.means), len(self.scales)}
        if len(lengths) != 1:
            raise RouterFileError(f"router {self.version}: features, weights, means and scales differ in length")
        if unknown := sorted(set(self.features) - set(FEATURES)):
            raise RouterFileError(f"router {self.version}: unknown features {unknown}; known: {list(FEATURES)}")
        if self.probe_tokens < 1:
            raise RouterFileError(f"router {self.version}: probe_tokens must be >= 1, got {self.probe_tokens}")
        if any(s <= 0 for s in self.scales) or not all(map(math.isfinite, (*self.weights, *self.means, self.bias))):
            raise RouterFileError(f"router {self.version}: scales must be > 0 and every number finite")

    def __str__(self) -> str:  # what the edge logs with its policy: not every weight
        return f"learned router {self.version} ({len(self.features)} features, {self.probe_tokens}-token probe)"

    @classmethod
    def untrained(cls, probe_tokens: int = 12) -> LearnedRouter:
        """P = 0.5 for every request: what a deployment runs in shadow mode while it collects routing data."""
        n = len(FEATURES)
        return cls(FEATURES, (0.0,) * n, 0.0, (0.0,) * n, (1.0,) * n, probe_tokens)

    def logit(self, features: Mapping[str, float]) -> float:
        missing = [name for name in self.features if name not in features]
        if missing:
            raise KeyError(f"router {self.version}: features missing: {missing}")
        return self.bias + sum(w * (features[name] - m) / s
                               for name, w, m, s in zip(self.features, self.weights, self.means, self.scales,
                                                        strict=True))

    def p_good(self, features: Mapping[str, float]) -> float:
        z = self.logit(features)
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    def to_json(self) -> dict[str, Any]:
        return {"kind": "logistic-regression", "version": self.version, "probe_tokens": self.probe_tokens,
                "features": list(self.features), "weights": list(self.weights), "bias": self.bias,
                "means": list(self.means), "scales": list(self.scales), "metadata": dict(self.metadata)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "router") -> LearnedRouter:
        if data.get("kind") != "logistic-regression":
            raise RouterFileError(f"{source}: kind must be 'logistic-regression', got {data.get('kind')!r}")
        try:
            return cls(tuple(data["features"]), tuple(map(float, data["weights"])), float(data["bias"]),
                       tuple(map(float, data["means"])), tuple(map(float, data["scales"])), int(data["probe_tokens"]),
                       str(data.get("version", "unnamed")), dict(data.get("metadata", {})))
        except (KeyError, TypeError, ValueError) as e:
            raise RouterFileError(f"{source}: not a router weights file ({type(e).__name__}: {e})") from e

    @classmethod
    def parse(cls, text: str, source: str = "router") -> LearnedRouter:
        """A router from the text of its weights file; RouterFileError saying what is wrong with it."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise RouterFileError(f"{source}: not JSON ({e})") from e
        if not isinstance(data, dict):
            raise RouterFileError(f"{source}: a router weights file is a JSON object, got {type(data).__name__}")
        return cls.from_json(data, source)

    @classmethod
    def load(cls, path: str | Path = PACKAGED) -> LearnedRouter:
        """A router weights file; ``packaged``: the one shipped in ``netgpt/assets/router``."""
        return cls.parse(weights_text(path), "packaged router" if is_packaged(path) else str(path))

    def check(self) -> float:
        """P(good) of an all-zero feature vector: raises unless the router evaluates to a probability."""
        p = self.p_good(dict.fromkeys(self.features, 0.0))
        if not 0.0 <= p <= 1.0:
            raise RouterFileError(f"router {self.version}: P(good) {p} is not a probability")
        return p


def is_packaged(path: str | Path) -> bool:
    return str(path) in (PACKAGED, "")


def weights_text(path: str | Path = PACKAGED) -> str:
    """The text of a router weights file (``packaged``: the shipped one); RouterFileError if unreadable."""
    if is_packaged(path):
        return resources.files("netgpt.assets").joinpath("router/learned_router.json").read_text("utf-8")
    try:
        return Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RouterFileError(f"router weights {path}: {e}") from e
