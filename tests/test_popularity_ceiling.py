"""The Bayes ceiling of the popularity task (tasks/popularity/ceiling.py): it is the generator's
own probability, it is scored on evaluate's held-out windows, and it beats worse predictors."""

from __future__ import annotations

import numpy as np

from tasks.popularity import ceiling, synth
from tasks.popularity.intervals import chronological_split, windows


def test_replayed_rates_are_the_generators() -> None:
    """Continuing the replayed random stream with the Poisson draw gives the log's hourly views
    exactly, so the rates are the latent state the views were drawn from."""
    config = synth.SynthConfig(days=20, catalogue=40, new_releases=8)
    log = synth.generate(7, config)
    titles, rate = ceiling.hourly_rates(7, config)
    rng = np.random.default_rng(7)
    synth.title_names(len(titles), rng)
    synth.rates(config, rng)
    drawn = rng.poisson(rate)
    counts = np.zeros_like(drawn)
    np.add.at(counts, ((log.timestamps - config.start) // synth.HOUR_S, log.title_ids), 1)
    assert titles == log.titles
    assert np.array_equal(counts, drawn)
    known = ceiling.truth(7, config)
    view_log = log.view_log()
    assert known.expected.shape == (config.days * 4, len(titles))
    title = view_log.titles[int(np.argmax(view_log.counts.sum(axis=0)))]
    assert abs(known.expected[:, titles.index(title)].sum() - view_log.views(title).sum()) < 5 * np.sqrt(
        view_log.views(title).sum())


def test_ceiling_on_the_held_out_windows_beats_noisy_and_fitted_predictors() -> None:
    data = ceiling.held_out(synth.DEFAULT_SEED, logs=1, with_model=False)
    view_log = synth.generate(synth.DEFAULT_SEED).view_log()
    split = chronological_split(view_log.num_intervals)
    assert data.items == list(windows(view_log, split.test_targets))  # evaluate's windows, in its order
    # (its baseline rows: `python -m tasks.popularity.ceiling` prints evaluate's figures to the digit)
    assert len(data.items) == 720
    p, labels = data.scores[ceiling.BAYES].probability, data.labels
    assert abs(p.mean() - labels.mean()) < 3 * np.sqrt((p * (1 - p)).sum()) / p.size  # calibrated
    bayes, worse = data.metrics(ceiling.BAYES), data.metrics(ceiling.NOISY)
    fitted, history = data.metrics(ceiling.LOGISTIC), data.metrics(ceiling.HISTORY)
    assert bayes.accuracy > worse.accuracy + 0.01 and bayes.precision_at[10] > worse.precision_at[10]
    assert bayes.accuracy > fitted.accuracy and bayes.f1 > fitted.f1
    assert history.accuracy > fitted.accuracy
    expected = {name: ceiling.expected_metrics(p, data.scores[name], data.keys) for name in data.scores}
    for name, figures in expected.items():  # the 0.5 rule on the true P maximises expected accuracy
        assert expected[ceiling.BAYES]["accuracy"] >= figures["accuracy"] - 1e-12, name
    again = ceiling.held_out(synth.DEFAULT_SEED, logs=1, limit=3, with_model=False).scores
    assert all(np.array_equal(again[name].probability, data.scores[name].probability[:60]) for name in again)


def test_bootstrap_interval_of_an_f1_difference() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(2000) < 0.7
    good = np.where(rng.random(2000) < 0.9, labels, ~labels)
    bad = np.where(rng.random(2000) < 0.6, labels, ~labels)
    assert ceiling.bootstrap_f1_difference(labels, good, good, boot=200) == (0.0, 0.0, 0.0)
    point, low, high = ceiling.bootstrap_f1_difference(labels, good, bad, boot=500)
    assert 0 < low < point < high
    clusters = np.arange(2000) // 20
    _, c_low, c_high = ceiling.bootstrap_f1_difference(labels, good, bad, clusters, boot=500)
    assert c_low < point < c_high
    assert ceiling.f1_threshold(np.array([0.9, 0.8, 0.2])) > 0.2
