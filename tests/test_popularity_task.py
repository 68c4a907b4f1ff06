"""Popularity prediction: synthetic log, view log and importers, prompt format, baselines, metrics,
the content cache, the recipe's quick run, and the committed model on held-out intervals."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bench.content_cache import ContentCache
from edge_node.netmgmt.popularity import (
    DEFAULT_LAGS,
    LABELS,
    MAX_TITLES,
    SPECIAL_TOKENS,
    PopularityPredictor,
    ViewLog,
    load_predictor,
    packaged_model_dir,
    render_prompt,
    views_bucket,
)
from netgpt.errors import FailedPrecondition, InvalidArgument
from tasks.popularity import baselines
from tasks.popularity.dataset import record, write_dataset
from tasks.popularity.importers import movielens_views, netflix_views
from tasks.popularity.intervals import LabelledWindow, chronological_split, windows
from tasks.popularity.metrics import classification, precision_at_k, score
from tasks.popularity.synth import START, SynthConfig, generate

SMALL = SynthConfig(days=21, catalogue=80, new_releases=10)
HOUR = 3600


def _log(rows: list[tuple[int, str]], interval_s: int = 6 * HOUR) -> ViewLog:
    return ViewLog.from_events([t for t, _ in rows], [title for _, title in rows], interval_s)


# --- synthetic log, view log, CSV --------------------------------------------------------------


def test_synthetic_log_is_deterministic_and_seeded() -> None:
    a, b, c = generate(3, SMALL), generate(3, SMALL), generate(4, SMALL)
    assert a.titles == b.titles and np.array_equal(a.timestamps, b.timestamps)
    assert np.array_equal(a.title_ids, b.title_ids)
    assert len(a) != len(c) or not np.array_equal(a.timestamps, c.timestamps)
    assert np.all(np.diff(a.timestamps) >= 0) and a.timestamps[0] >= START


def test_appear_label_is_a_healthy_mix_with_a_day_night_cycle() -> None:
    log = generate(2024, replace(SynthConfig(), days=28)).view_log()
    items = list(windows(log, range(DEFAULT_LAGS, log.num_intervals)))
    rate = np.mean([w.label for w in items])
    by_part = [np.mean([w.label for w in items if w.target % 4 == part]) for part in range(4)]
    assert 0.5 < rate < 0.85
    assert by_part[0] < 0.5 < 0.9 < by_part[3]  # quiet nights miss titles, evenings do not


def test_csv_round_trip(tmp_path: Path) -> None:
    synthetic = generate(5, SMALL)
    path = tmp_path / "views.csv"
    assert synthetic.write_csv(path) == len(synthetic)
    from_csv, direct = ViewLog.from_csv(path), synthetic.view_log()
    assert from_csv.titles == direct.titles and np.array_equal(from_csv.counts, direct.counts)
    assert from_csv.origin == START and from_csv.num_intervals == SMALL.days * 4


def test_view_log_window_picks_top_titles_before_the_target() -> None:
    day = START
    rows = [(day + 1, "A"), (day + 2, "A"), (day + 3, "B"), (day + 7 * HOUR, "B"), (day + 7 * HOUR, "C"),
            (day + 13 * HOUR, "A"), (day + 19 * HOUR, "D")]
    log = _log(rows)
    assert log.num_intervals == 4 and log.intervals_per_day == 4
    first, history = log.window(3, lags=2, top_k=2)
    assert first == 1 and history == {"A": [0, 1], "B": [1, 0]}  # B before C: more views before the window
    first, history = log.window(4, lags=12, top_k=20)  # the next interval; a short window at the start
    assert first == 0 and history["A"] == [2, 0, 1, 0] and len(history) == 4
    with pytest.raises(InvalidArgument, match="no earlier interval"):
        log.window(0, 2)
    with pytest.raises(InvalidArgument, match="beyond the view log"):
        log.window(5, 2)
    sparse = _log([(day, "A"), (day + 3 * 86400, "A")])
    with pytest.raises(FailedPrecondition, match="no views"):
        sparse.window(10, 2)


@pytest.mark.parametrize(("text", "expected"), [
    ("time,name\n1,A\n", "header must name"),
    ("timestamp,title\n1,A\nsoon,B\n", r"views.csv:3: timestamp 'soon'"),
    ("timestamp,title\n1,A\n2,\n", r"views.csv:3: a title is empty"),
    ("timestamp,title\n1,<|appear|>\n", r"views.csv:2: .*reserved"),
    ("timestamp,title\n", "no views"),
])
def test_view_log_csv_errors_name_the_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "views.csv"
    path.write_text(text)
    with pytest.raises(InvalidArgument, match=expected):
        ViewLog.from_csv(path)


def test_extra_columns_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "views.csv"
    path.write_text('user,title,timestamp\nu1,"Up, Up and Away",1704067200\nu2,B,1704090000\n')
    log = ViewLog.from_csv(path)
    assert log.titles == ["B", "Up, Up and Away"] and log.counts.sum() == 2


# --- importers ----------------------------------------------------------------------------------


def test_movielens_importer(tmp_path: Path) -> None:
    ratings, movies = tmp_path / "ratings.csv", tmp_path / "movies.csv"
    ratings.write_text("userId,movieId,rating,timestamp\n1,10,4.0,1704070000\n2,20,3.5,1704060000\n3,30,5,1704080000\n")
    movies.write_text('movieId,title,genres\n10,"Heat, Again (1995)",Action\n20,Toy Story (1995)|Comedy\n')
    assert movielens_views(ratings, movies) == [(1704060000, "Toy Story (1995)|Comedy"),
                                                (1704070000, "Heat, Again (1995)"), (1704080000, "movie 30")]
    ratings.write_text("userId,movieId,rating,timestamp\n1,10,4.0,yesterday\n")
    with pytest.raises(InvalidArgument, match="ratings.csv:2"):
        movielens_views(ratings)


def test_netflix_importer(tmp_path: Path) -> None:
    folder = tmp_path / "training_set"
    folder.mkdir()
    (folder / "mv_0000001.txt").write_text("1:\n11,3,2005-09-06\n12,5,2005-09-05\n")
    (folder / "mv_0000002.txt").write_text("2:\n13,4,2005-09-06\n")
    titles = tmp_path / "movie_titles.csv"
    titles.write_bytes("1,2003,Dinosaur Planet\n2,2004,Isle of Man, TT 2004 Review\n".encode("latin-1"))
    noon_5th = 1125878400 + 43200  # 2005-09-05 12:00 UTC
    views = netflix_views(folder, titles)
    assert views == [(noon_5th, "Dinosaur Planet"), (noon_5th + 86400, "Dinosaur Planet"),
                     (noon_5th + 86400, "Isle of Man, TT 2004 Review")]
    spread = netflix_views(folder, titles, spread_seed=1)
    assert spread == netflix_views(folder, titles, spread_seed=1)
    assert all(v[0] // 86400 == s[0] // 86400 for v, s in zip(sorted(views, key=lambda v: (v[1], v[0])),
                                                              sorted(spread, key=lambda v: (v[1], v[0])), strict=True))
    (folder / "mv_0000003.txt").write_text("3:\n14,4,06/09/2005\n")
    with pytest.raises(InvalidArgument, match="mv_0000003.txt:2"):
        netflix_views(folder)


# --- prompt format and dataset ------------------------------------------------------------------


def test_prompt_format_and_dataset_record_agree() -> None:
    prompt = render_prompt("Iron Man 2", [0, 1, 5], 3)
    assert prompt == ("<|movie|>Iron Man 2<|interval|>3<|evening|><|appear|>0<|views|>0"
                      "<|interval|>4<|night|><|appear|>1<|views|>1<|interval|>5<|morning|><|appear|>1<|views|>3"
                      "<|interval|>6<|afternoon|><|appear|>")
    window = LabelledWindow("Iron Man 2", 3, (0, 1, 5), 6, 2)
    row = record(window)
    assert row["prompt"] + row["completion"] == prompt + LABELS[True]
    assert [views_bucket(v) for v in (0, 1, 2, 3, 4, 255, 256, 10**6)] == [0, 1, 2, 2, 3, 8, 9, 9]


def test_dataset_is_jsonl_the_trainer_reads(tmp_path: Path) -> None:
    from netgpt.training.dataset import read_jsonl

    log = generate(6, SMALL).view_log()
    split = chronological_split(log.num_intervals)
    assert split.split_at == 80 and split.test_targets == range(80, 84)
    count = write_dataset(tmp_path / "d.jsonl", windows(log, split.train_targets[:3]))
    examples = read_jsonl(tmp_path / "d.jsonl")
    assert len(examples) == count == 60
    assert all(e.completion[-1] in "01" and e.prompt.startswith("<|movie|>") for e in examples)


# --- baselines and metrics on constructed cases -------------------------------------------------


def _periodic_log(days: int = 10) -> ViewLog:
    """'Evening' is watched only 18-24 UTC, 'Always' every interval."""
    rows = []
    for d in range(days):
        for part in range(4):
            rows.append((START + d * 86400 + part * 6 * HOUR + 60, "Always"))
            if part == 3:
                rows += [(START + d * 86400 + part * 6 * HOUR + 120, "Evening")] * 3
    return _log(rows)


def test_baselines_on_a_known_pattern() -> None:
    log = _periodic_log()
    items = list(windows(log, range(DEFAULT_LAGS, log.num_intervals), top_k=2))
    labels = np.asarray([w.label for w in items])
    same_time = baselines.same_time_of_day(log, items)
    assert np.array_equal(same_time.probability >= 0.5, labels)  # perfect on a daily pattern
    persist = baselines.persistence(items)
    evening = [i for i, w in enumerate(items) if w.title == "Evening"]
    assert not np.any((persist.probability >= 0.5)[evening] & labels[evening])  # always one interval late
    lr = baselines.logistic_regression(items, items, log.intervals_per_day)
    assert np.array_equal(lr.probability >= 0.5, labels)


def test_metrics_on_known_values() -> None:
    assert classification(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])) == (0.5, 0.5, 0.5, 0.5)
    items = [LabelledWindow(t, 0, (1,), target, v) for target, t, v in
             [(1, "a", 1), (1, "b", 0), (1, "c", 1), (2, "a", 0), (2, "b", 1)]]
    ranking = np.array([3.0, 2.0, 1.0, 1.0, 0.0])
    assert precision_at_k(items, ranking, 1) == pytest.approx(0.5)  # 'a' appears in 1, not in 2
    assert precision_at_k(items, ranking, 2) == pytest.approx(0.5)  # {a, b}: 1/2 and 1/2
    metrics = score(items, np.array([0.9, 0.1, 0.9, 0.1, 0.9]), ranking)
    assert metrics.accuracy == 1.0 and metrics.f1 == 1.0


# --- content cache ------------------------------------------------------------------------------


def test_lru_evicts_the_least_recently_used() -> None:
    cache = ContentCache(2)
    assert [cache.request(t) for t in ("a", "b", "a", "c", "b", "a")] == [False, False, True, False, False, False]
    assert cache.stats.hit_rate == pytest.approx(1 / 6) and "c" not in cache


def test_popularity_policy_pins_the_predicted_titles() -> None:
    cache = ContentCache(3, "popularity", pin_k=2)
    assert cache.start_interval(["hot", "warm", "cold"]) == 2 and cache.pinned == {"hot", "warm"}
    for title in ("x", "y", "z"):  # a burst of one-off requests cannot push the pinned titles out
        cache.request(title)
    assert cache.request("hot") and cache.request("warm") and len(cache) == 3
    assert cache.start_interval(["warm", "new"]) == 1 and cache.stats.prefetched == 3
    with pytest.raises(InvalidArgument, match="pin_k"):
        ContentCache(3, "popularity", pin_k=3)
    with pytest.raises(InvalidArgument, match="policy"):
        ContentCache(3, "lfu")


# --- the recipe and the committed model ---------------------------------------------------------


def test_recipe_quick_run_builds_a_loadable_model(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from tasks.popularity.recipe import build_model

    record_ = build_model(tmp_path / "popularity", quick=True, threads=1)
    assert record_["steps"] == 12 and record_["quick"] and record_["data"]["sha256"]
    saved = json.loads((tmp_path / "popularity" / "recipe.json").read_text())
    assert saved["data"]["examples"] == record_["data"]["examples"]
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "popularity")
    assert all(len(tokenizer.encode(t, add_special_tokens=False)) == 1 for t in SPECIAL_TOKENS)


@pytest.fixture(scope="module")
def predictor() -> PopularityPredictor:
    return load_predictor(packaged_model_dir())


def test_committed_model_beats_trivial_rules_on_held_out_intervals(predictor: PopularityPredictor) -> None:
    from tasks.popularity.evaluate import model_scores

    items = []
    for seed in (2031, 2032):  # logs the model never saw: their held-out tails, 1,440 windows
        log = generate(seed).view_log()
        items += windows(log, chronological_split(log.num_intervals).test_targets)
    model = model_scores(predictor, items)
    labels = np.asarray([w.label for w in items])
    model_accuracy = float(((model >= 0.5) == labels).mean())
    persistence_accuracy = float(((baselines.persistence(items).probability >= 0.5) == labels).mean())
    assert model_accuracy > max(labels.mean(), 1 - labels.mean(), persistence_accuracy)


def test_predictor_ranks_and_validates(predictor: PopularityPredictor) -> None:
    night_quiet = {"Busy": [40, 20, 30, 60] * 3, "Evening only": [0, 0, 0, 2] * 3}
    ranked = predictor.rank(night_quiet, 9)  # predicting interval 21, a morning: 'Evening only' is unlikely
    assert [t for t, _ in ranked] == ["Busy", "Evening only"] and ranked[0][1] > 0.5 > ranked[1][1]
    assert len(predictor.rank(night_quiet, 8, top_k=1)) == 1 and predictor.version
    cases = [
        ({}, "names no titles"),
        ({f"t{i}": [1] for i in range(MAX_TITLES + 1)}, "at most 256"),
        ({"a": [1, 2], "b": [1]}, "same window"),
        ({"": [1]}, "empty"),
        ({"a": []}, "window is empty"),
        ({"a": [-1]}, "view count"),
        ({"a<|views|>": [1]}, "reserved"),
        ({"a": [1] * 200}, "context"),
    ]
    for history, message in cases:
        with pytest.raises(InvalidArgument, match=message):
            predictor.probabilities(history, 0)
    with pytest.raises(InvalidArgument, match="first_interval"):
        predictor.probabilities({"a": [1]}, -1)


async def test_cli_writes_view_logs_and_training_datasets(tmp_path: Path, capsys) -> None:
    from helpers import cli

    from edge_node.netmgmt.popularity import ViewLog
    from netgpt.training.dataset import read_jsonl

    views = tmp_path / "views.csv"
    assert await cli("popularity", "synth", "--out", str(views), "--days", "10", "--seed", "5") == 0
    assert ViewLog.from_csv(views).num_intervals == 40
    data = tmp_path / "popularity.jsonl"
    assert await cli("data", "build", "popularity", "--log", str(views), "--out", str(data), "--n", "40") == 0
    examples = read_jsonl(data)
    assert len(examples) == 40 and all(e.prompt.startswith("<|movie|>") for e in examples)
    assert all(e.completion.endswith(("<|appear|>0", "<|appear|>1")) for e in examples)
    short = tmp_path / "short.csv"
    assert await cli("popularity", "synth", "--out", str(short), "--days", "6") == 0
    assert await cli("data", "build", "popularity", "--log", str(short), "--out", str(data)) == 2
    assert "too short" in capsys.readouterr().err
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("userId,movieId,rating,timestamp\n1,10,4.0,1700000000\n2,10,3.5,1700000100\n3,11,5,oops\n")
    assert await cli("popularity", "import", "movielens", str(ratings), "--out", str(tmp_path / "ml.csv")) == 2
    assert f"{ratings}:4" in capsys.readouterr().err  # the bad line is named
    intents = tmp_path / "intent.jsonl"
    assert await cli("data", "build", "intent", "--out", str(intents), "--n", "25", "--seed", "3") == 0
    assert len(read_jsonl(intents)) == 25
