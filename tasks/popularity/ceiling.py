"""The Bayes ceiling of the popularity task: what a predictor that knows the generator scores.

Why: on the held-out intervals the fine-tuned GPT-2 and the logistic regression tie (F1 0.884 vs
0.880) and ranking by recent counts caches as well as the model. Whether a better predictor (a
language model or anything else) could do clearly better is a question about the data, and on
the synthetic log it can be answered exactly: the generator (``synth.py``) draws the views of
title ``j`` in hour ``h`` as Poisson(``rate[h, j]``), independently, with every latent variable
(share, trend, release boost, daily buzz) fixed by the seed. Replaying the generator's random
stream up to the draw gives ``rate`` itself, so the views of a 6-hour interval are
Poisson(``mu``) with ``mu`` the sum of its six hourly rates, and

    P(appear) = 1 - exp(-mu)          (exact; no re-sampling needed)

The Bayes reference predicts "appear" iff that probability is >= 0.5 (the accuracy-optimal rule),
and ranks titles by it (P@k) or by ``mu`` (the cache). It knows more than any predictor that sees
only the history (the target day's buzz, the trend and release state exactly), so its scores are
an upper bound on what any predictor can reach on these windows — the headroom it shows is, if
anything, larger than the achievable one. :func:`history_bayes_scores` is the tighter bound for
predictors of the history: the generator's static state known exactly, the day's buzz inferred.

    python -m tasks.popularity.ceiling [--logs 3] [--seed 2024] [--no-model] [--boot 2000]

prints the ``netgpt eval popularity`` table (same held-out windows, same baselines, the model
through ONNX Runtime) with the ceiling rows added, the headroom (ceiling - logistic regression)
and paired bootstrap 95 % intervals on the F1 differences. The cache-bench column (expected-views
ranking) is in ``bench/popularity_cache.py``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from edge_node.netmgmt.popularity import (
    DEFAULT_INTERVAL_S,
    DEFAULT_TOP_K,
    load_predictor,
    packaged_model_dir,
)
from tasks.popularity import baselines, synth
from tasks.popularity.evaluate import (
    EVAL_LOGS,
    LOGISTIC,
    MODEL,
    Report,
    baseline_scores,
    held_out_logs,
    model_scores,
)
from tasks.popularity.intervals import LabelledWindow
from tasks.popularity.metrics import Metrics, classification, score

BAYES = "Bayes ceiling (generator's true P, >= 0.5)"
BAYES_F1 = "Bayes ceiling (F1-optimal threshold)"
NOISY = "Bayes ceiling + logit noise (sd 1.5)"
HISTORY = "Bayes, history only (true parameters)"


@dataclass(frozen=True)
class Truth:
    """Expected views ``expected[interval, title]`` of one seeded synthetic log."""

    titles: list[str]
    expected: np.ndarray
    interval_s: int
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({title: i for i, title in enumerate(self.titles)})

    def mean(self, title: str, interval: int) -> float:
        return float(self.expected[interval, self._index[title]])

    def p_appear(self, title: str, interval: int) -> float:
        """P(at least one view) = 1 - exp(-mu): the interval's views are Poisson(mu)."""
        return float(-np.expm1(-self.mean(title, interval)))

    def ranking(self, interval: int, top_k: int = DEFAULT_TOP_K) -> list[str]:
        """The ``top_k`` titles of the whole catalogue by expected views in ``interval``."""
        mu = self.expected[interval]
        return [self.titles[i] for i in np.argsort(-mu, kind="stable")[:top_k] if mu[i] > 0]


def hourly_rates(seed: int, config: synth.SynthConfig | None = None) -> tuple[list[str], np.ndarray]:
    """The generator's titles and Poisson rates ``rate[hour, title]``: ``synth.generate``'s random
    stream replayed up to (not including) the Poisson draw."""
    config = config or synth.SynthConfig()
    rng = np.random.default_rng(seed)
    titles = synth.title_names(config.catalogue + config.new_releases, rng)
    return titles, synth.rates(config, rng)


def truth(seed: int, config: synth.SynthConfig | None = None, interval_s: int = DEFAULT_INTERVAL_S) -> Truth:
    """Expected views per interval; the log's interval 0 starts at ``config.start`` (a midnight UTC)."""
    config = config or synth.SynthConfig()
    if interval_s % synth.HOUR_S or config.start % synth.DAY_S:
        raise ValueError("intervals must be whole hours and the log must start at a midnight UTC")
    titles, rate = hourly_rates(seed, config)
    per = interval_s // synth.HOUR_S
    hours = rate.shape[0] - rate.shape[0] % per
    expected = rate[:hours].reshape(hours // per, per, rate.shape[1]).sum(axis=1)
    return Truth(titles, expected, interval_s)


def bayes_scores(known: Truth, items: Sequence[LabelledWindow]) -> baselines.Scores:
    p = np.asarray([known.p_appear(item.title, item.target) for item in items], dtype=np.float64)
    return baselines.Scores(p, p)


def history_bayes_scores(seed: int, items: Sequence[LabelledWindow], config: synth.SynthConfig | None = None,
                         interval_s: int = DEFAULT_INTERVAL_S, grid: int = 201) -> baselines.Scores:
    """P(appear | the window's views, the generator's static state): a predictor that knows every
    title's share, trend and release boost exactly but, like any predictor of the history, not the
    target day's buzz; it infers the buzz (LogNormal(0, buzz_sd), one per title and day) from the
    same day's earlier intervals in the window (exact posterior, quadrature on ``grid`` points of
    log buzz). A tighter upper bound on history-only predictors than :func:`bayes_scores`."""
    config = config or synth.SynthConfig()
    calm = truth(seed, replace(config, buzz_sd=0.0), interval_s)  # buzz is the generator's last draw
    if config.buzz_sd <= 0:
        return bayes_scores(calm, items)
    per_day = synth.DAY_S // interval_s
    z = np.linspace(-5 * config.buzz_sd, 5 * config.buzz_sd, grid)  # log buzz
    prior = -0.5 * (z / config.buzz_sd) ** 2
    p = np.zeros(len(items))
    for row, item in enumerate(items):
        log_weight = prior.copy()
        for back in range(1, min(item.target % per_day, len(item.views)) + 1):  # same day, before the target
            log_weight += item.views[-back] * z - calm.mean(item.title, item.target - back) * np.exp(z)
        weight = np.exp(log_weight - log_weight.max())
        p[row] = 1.0 - float(weight @ np.exp(-calm.mean(item.title, item.target) * np.exp(z)) / weight.sum())
    return baselines.Scores(p, p)


def noisy(scores: baselines.Scores, sd: float, seed: int = 0) -> baselines.Scores:
    """The same probabilities with Gaussian noise on the logit (a worse predictor, for the test)."""
    p = np.clip(scores.probability, 1e-9, 1 - 1e-9)
    logit = np.log(p / (1 - p)) + np.random.default_rng(seed).normal(0.0, sd, p.size)
    q = 1.0 / (1.0 + np.exp(-logit))
    return baselines.Scores(q, q)


def f1_threshold(p: np.ndarray) -> float:
    """The threshold maximising the plug-in expected F1 (2 E[TP] / (E[predicted] + E[positives]))
    of probabilities ``p`` taken as true; uses no labels."""
    order = np.sort(p)[::-1]
    expected_tp = np.cumsum(order)
    f1 = 2 * expected_tp / (np.arange(1, p.size + 1) + p.sum())
    return float(order[int(np.argmax(f1))])


def expected_metrics(p: np.ndarray, scores: baselines.Scores, keys: Sequence[Hashable],
                     k: int = 10) -> dict[str, float]:
    """A method's accuracy, F1 and P@k in expectation over the target intervals' draws, given the
    histories: the target's views are independent of the history once the generator's state is
    fixed, so label ``i`` is Bernoulli(``p[i]``) whatever a method saw. Removes the label noise
    from a comparison of methods (F1: the plug-in ratio 2 E[TP] / (E[predicted] + E[positives]))."""
    predicted = scores.probability >= 0.5
    groups: dict[Hashable, list[int]] = {}
    for row, key in enumerate(keys):
        groups.setdefault(key, []).append(row)
    top = [float(np.mean([p[r] for r in sorted(rows, key=lambda r: -scores.rank_score[r])[:k]]))
           for rows in groups.values()]
    return {"accuracy": float(np.where(predicted, p, 1 - p).mean()),
            "f1": float(2 * p[predicted].sum() / (predicted.sum() + p.sum())), f"p@{k}": float(np.mean(top))}


def bootstrap_f1_difference(labels: np.ndarray, a: np.ndarray, b: np.ndarray, clusters: np.ndarray | None = None,
                            boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """F1(a) - F1(b) (predictions ``a``, ``b`` as booleans) and its paired bootstrap 95 % interval:
    windows resampled with replacement, or whole ``clusters`` (e.g. intervals) when given."""
    labels, a, b = labels.astype(bool), a.astype(bool), b.astype(bool)
    rng = np.random.default_rng(seed)
    if clusters is None:
        weights = rng.multinomial(labels.size, np.full(labels.size, 1 / labels.size), boot).astype(np.float64)
    else:
        ids, member = np.unique(clusters, return_inverse=True)
        weights = rng.multinomial(ids.size, np.full(ids.size, 1 / ids.size), boot)[:, member].astype(np.float64)
    positives = weights @ labels

    def f1(predicted: np.ndarray) -> np.ndarray:
        tp = weights @ (labels & predicted)
        result: np.ndarray = 2 * tp / np.maximum(weights @ predicted + positives, 1e-12)
        return result

    difference = f1(a) - f1(b)
    point = classification(labels, a)[3] - classification(labels, b)[3]
    low, high = np.percentile(difference, [2.5, 97.5])
    return point, float(low), float(high)


@dataclass
class HeldOut:
    """The held-out windows of ``netgpt eval popularity`` and every method's scores on them."""

    items: list[LabelledWindow]
    keys: list[tuple[int, int]]  # (log, target interval) of each window
    scores: dict[str, baselines.Scores]

    @property
    def labels(self) -> np.ndarray:
        return np.asarray([item.label for item in self.items], dtype=bool)

    def metrics(self, name: str) -> Metrics:
        s = self.scores[name]
        return score(self.items, s.probability, s.rank_score, keys=self.keys)


def held_out(seed: int = synth.DEFAULT_SEED, logs: int = EVAL_LOGS, limit: int = 0,
             with_model: bool = True) -> HeldOut:
    """The windows and methods of ``tasks.popularity.evaluate.evaluate`` (same logs, split, lags,
    top-k, baselines; the model through ONNX Runtime when ``with_model``), plus the ceiling."""
    predictor = load_predictor(packaged_model_dir()) if with_model else None
    items: list[LabelledWindow] = []
    keys: list[tuple[int, int]] = []
    parts: dict[str, list[baselines.Scores]] = {}
    for log in held_out_logs(seed, logs, limit):
        log_seed, interval_s, test = seed + log.offset, log.view_log.interval_s, log.test
        bayes = bayes_scores(truth(log_seed, interval_s=interval_s), test)
        scored = {BAYES: bayes, HISTORY: history_bayes_scores(log_seed, test, interval_s=interval_s),
                  NOISY: noisy(bayes, 1.5, log_seed)}
        if predictor is not None:
            model = model_scores(predictor, test)
            scored[MODEL] = baselines.Scores(model, model)
        scored.update(baseline_scores(log))
        for name, s in scored.items():
            parts.setdefault(name, []).append(s)
        items.extend(test)
        keys.extend((log.offset, w.target) for w in test)
    scores = {name: baselines.Scores(np.concatenate([s.probability for s in group]),
                                     np.concatenate([s.rank_score for s in group])) for name, group in parts.items()}
    return HeldOut(items, keys, scores)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The Bayes ceiling of the popularity task on the held-out windows.")
    parser.add_argument("--seed", type=int, default=synth.DEFAULT_SEED)
    parser.add_argument("--logs", type=int, default=EVAL_LOGS)
    parser.add_argument("--no-model", action="store_true", help="skip the GPT-2 (no ONNX Runtime run)")
    parser.add_argument("--boot", type=int, default=2000, help="bootstrap resamples")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    data = held_out(args.seed, args.logs, with_model=not args.no_model)
    labels, bayes_p = data.labels, data.scores[BAYES].probability
    threshold = f1_threshold(bayes_p)
    rows = {BAYES: data.metrics(BAYES)}
    accuracy, precision, recall, f1 = classification(labels, bayes_p >= threshold)
    rows[BAYES_F1] = Metrics(accuracy, precision, recall, f1, rows[BAYES].precision_at)
    rows.update({name: data.metrics(name) for name in data.scores if name != BAYES})
    report = Report(rows, {"examples": len(data.items), "intervals": len(set(data.keys)), "logs": args.logs,
                           "seeds": [args.seed + i for i in range(args.logs)], "top_k": DEFAULT_TOP_K,
                           "positive_rate": float(labels.mean()), "model_version": "packaged",
                           "seconds": time.perf_counter() - started})
    print(report.table())
    width = max(len(name) for name in rows) + 2
    print(f"F1-optimal threshold on the true P: {threshold:.3f}")
    print("\nin expectation over the target intervals' draws (histories as observed; labels ~ Bernoulli(true P)):")
    print(f"{'method':<{width}}{'accuracy':>10}{'F1':>10}{'P@10':>10}")
    for name in rows:
        if name == BAYES_F1:
            continue
        e = expected_metrics(bayes_p, data.scores[name], data.keys)
        print(f"{name:<{width}}{e['accuracy']:>10.3f}{e['f1']:>10.3f}{e['p@10']:>10.3f}")
    clusters = np.asarray([log * 100_000 + target for log, target in data.keys])
    compared = [(BAYES, LOGISTIC), (BAYES_F1, LOGISTIC), (HISTORY, LOGISTIC)]
    if MODEL in data.scores:
        compared += [(MODEL, LOGISTIC), (BAYES, MODEL)]
    print(f"F1 differences, paired bootstrap 95 % intervals ({args.boot} resamples; windows | whole intervals):")
    for a, b in compared:
        pa = bayes_p >= threshold if a == BAYES_F1 else data.scores[a].probability >= 0.5
        pb = data.scores[b].probability >= 0.5
        point, low, high = bootstrap_f1_difference(labels, pa, pb, boot=args.boot)
        _, c_low, c_high = bootstrap_f1_difference(labels, pa, pb, clusters, boot=args.boot)
        print(f"  {a} - {b}: {point:+.4f}  [{low:+.4f}, {high:+.4f}] | [{c_low:+.4f}, {c_high:+.4f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
