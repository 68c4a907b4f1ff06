"""The learned router: its features and weights file, its training, the frontier sweep, `netgpt eval routing`
on a small collected file, and an edge that routes with it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import concise, generate, new_session

from cli.main import main
from edge_node.daemon import learned_router
from edge_node.serving.learned_router import (
    FEATURES,
    LearnedRouter,
    ProbedAnswer,
    RouterFileError,
    routing_features,
)
from netgpt.config import EdgeConfig
from netgpt.errors import StartupError
from netgpt.v1 import common_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from tasks.routing.collect import Answer, Collected, Record
from tasks.routing.evaluate import evaluate
from tasks.routing.frontier import best_at, frontier, random_router, routed, sweep
from tasks.routing.labels import by_cloud, by_rule
from tasks.routing.questions import HELDOUT, TRAIN, questions_by_split
from tasks.routing.train import fit

FACTS = ("Harbour Fish Market (restaurant): seafood on the quay, open 11:00-22:00",
         "Quayside Noodle Bar (restaurant): noodles and dumplings")
VENUES = ("Harbour Fish Market", "Quayside Noodle Bar", "Maritime Museum")


def record(split: str, confident: float, edge_ok: bool, cloud_ok: bool = True, bytes_: int = 400) -> Record:
    """A collected question whose edge probe had mean log-probability ``confident`` and named a listed venue
    exactly when the edge's answer is right."""
    features = dict.fromkeys(FEATURES, 0.0) | {"probe_mean_logprob": confident, "probe_min_logprob": confident * 2,
                                               "probe_names_listed_fact": float(edge_ok), "facts_listed": 2.0}
    text = "Try Harbour Fish Market." if edge_ok else "Try the Maritime Museum."
    return Record(split, f"q{confident}{edge_ok}", "cell-harbour-1", ("Harbour Fish Market",), VENUES, FACTS,
                  features, Answer(text, edge_ok, 10.0),
                  Answer("Try Harbour Fish Market: seafood.", cloud_ok, 900.0, bytes_))


def synthetic(n: int = 20) -> Collected:
    """Per split, n questions: the edge is right on 3 in 4 and the cloud on every one but the last."""
    records = [record(split, -0.1 * (i % 7) - (0.0 if i % 4 else 1.5), edge_ok=bool(i % 4), cloud_ok=i != n - 1)
               for split in (TRAIN, HELDOUT) for i in range(n)]
    return Collected("synthetic", 40, 12, tuple(records))


def test_features_are_what_the_edge_knows_when_it_routes():
    probe = ProbedAnswer(" Try Harbour Fish Market: sea", (-0.1, -0.5, -0.3))
    features = routing_features("Where can I eat fresh seafood?", FACTS, probe, cloud_queue=3, cell_load=0.7)
    assert set(features) == set(FEATURES)
    assert features["question_words"] == 6 and features["facts_listed"] == 2
    assert features["probe_mean_logprob"] == pytest.approx(-0.3) and features["probe_min_logprob"] == -0.5
    assert features["probe_names_top_fact"] == features["probe_names_listed_fact"] == 1.0
    assert 0 < features["retrieval_overlap"] <= 1
    assert features["cloud_queue"] == 3 and features["cell_load"] == 0.7
    empty = routing_features("?", (), ProbedAnswer("", ()))
    assert empty["probe_mean_logprob"] == -20.0 and empty["retrieval_overlap"] == 0 and empty["facts_listed"] == 0


def test_router_file_round_trip_and_clear_errors(tmp_path: Path):
    router = fit(synthetic().split(TRAIN), lambda r: r.edge.ok, probe_tokens=12)
    path = tmp_path / "router.json"
    path.write_text(json.dumps(router.to_json()))
    again = LearnedRouter.load(path)
    assert again == router
    features = synthetic().records[0].features
    assert again.p_good(features) == router.p_good(features)
    assert LearnedRouter.untrained().p_good(features) == 0.5
    assert LearnedRouter.load("packaged").features == FEATURES
    with pytest.raises(RouterFileError, match="unknown features"):
        LearnedRouter.from_json(router.to_json() | {"features": ["colour", *FEATURES[1:]]})
    with pytest.raises(RouterFileError, match="kind"):
        LearnedRouter.from_json({"kind": "forest"})
    with pytest.raises(RouterFileError, match="not a router weights file"):
        LearnedRouter.from_json({"kind": "logistic-regression", "weights": [1.0]})
    with pytest.raises(RouterFileError, match="router weights"):
        LearnedRouter.load(tmp_path / "missing.json")


def test_training_is_deterministic_and_learns_the_signal():
    train = synthetic().split(TRAIN)
    first, second = (fit(train, lambda r: r.edge.ok, probe_tokens=12) for _ in range(2))
    assert first == second
    good = [first.p_good(r.features) for r in train if r.edge.ok]
    bad = [first.p_good(r.features) for r in train if not r.edge.ok]
    assert min(good) > 0.5 > max(bad)
    assert first.weights[FEATURES.index("cell_load")] == 0.0  # constant offline: no weight
    with pytest.raises(ValueError, match="no routing records"):
        fit([], lambda r: True, probe_tokens=12)


def test_rule_labels_need_no_answer_key():
    right, wrong = record(TRAIN, -0.1, True), record(TRAIN, -0.1, False)
    assert by_rule(right) and not by_rule(wrong)  # the museum is a venue of the cell, but not a listed one


def test_cloud_labels_take_the_clouds_answer_as_the_reference():
    agrees, differs = record(TRAIN, -0.1, True), record(TRAIN, -0.1, False)
    assert by_cloud(agrees) and not by_cloud(differs)  # the cloud named the fish market; the museum is not it
    cloud_wrong = replace(agrees, cloud=replace(agrees.cloud, text="Try the Maritime Museum."))
    assert not by_cloud(cloud_wrong)  # no key is read: the judge's mistake is the label's
    silent = replace(agrees, edge=replace(agrees.edge, text="Sorry, no idea."), cloud=replace(agrees.cloud, text=""))
    assert not by_cloud(silent)  # naming nothing, like the cloud, is not a good answer


def test_frontier_sweep_and_baselines():
    held_out = synthetic().split(HELDOUT)
    n = len(held_out)
    edge, cloud = routed(held_out, [True] * n, "edge"), routed(held_out, [False] * n, "cloud")
    assert (edge.edge_share, edge.quality, edge.cloud_calls, edge.cloud_bytes) == (1.0, 15 / 20, 0, 0)
    assert (cloud.edge_share, cloud.quality, cloud.cloud_calls, cloud.cloud_bytes) == (0.0, 19 / 20, 20, 8000)
    scores = [1.0 if r.edge.ok else 0.0 for r in held_out]  # a perfect router
    points = sweep(held_out, scores, "perfect")
    assert [p.edge_share for p in points] == [0.0, 15 / 20, 1.0]
    assert points[1].quality == 20 / 20 and points[1].cloud_calls == 5 and points[1].cloud_bytes == 2000
    assert best_at(points, 0.95 * cloud.quality) is points[1]
    assert random_router(held_out, 0.5).quality == pytest.approx(0.5 * 15 / 20 + 0.5 * 19 / 20)
    with pytest.raises(ValueError):
        routed(held_out, [True], "short")

    train = synthetic().split(TRAIN)
    result = frontier(train, held_out, fit(train, lambda r: r.edge.ok, probe_tokens=12), "key")
    assert result.goal["met"] and result.chosen.edge_share >= 15 / 20  # it may spend the 5 % quality slack too
    assert result.chosen.quality >= 0.95 * cloud.quality
    assert "MET" in result.table() and "always cloud" in result.table()
    assert json.loads(json.dumps(result.to_json()))["goal"]["met"] is True


def test_eval_routing_from_a_collected_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    data, out, router = tmp_path / "routing.json", tmp_path / "frontier.json", tmp_path / "router.json"
    synthetic().write(data)
    assert main(["eval", "routing", "--from", str(data), "--json", str(out), "--router-out", str(router)]) == 0
    printed = capsys.readouterr().out
    assert "learned router (chosen on train)" in printed and "random (same edge share)" in printed
    assert "goal: >= 60% of requests at the edge" in printed
    report = json.loads(out.read_text())
    assert report["goal"]["met"] and report["baselines"][1]["quality"] == 0.95
    assert LearnedRouter.load(router).metadata["recommended_threshold"] == report["chosen_threshold"]
    assert evaluate(Collected.read(data), "rule").label == "rule"
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(SystemExit, match="format"):
        main(["eval", "routing", "--from", str(bad)])


def test_eval_routing_draws_the_frontier(tmp_path: Path):
    pytest.importorskip("matplotlib")
    data, png = tmp_path / "routing.json", tmp_path / "frontier.png"
    synthetic().write(data)
    assert main(["eval", "routing", "--from", str(data), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_questions_never_include_held_out_ones():
    splits = questions_by_split()
    assert not {q.question for q in splits[TRAIN]} & {q.question for q in splits[HELDOUT]}
    assert len(splits[TRAIN]) == 34 + 80 and questions_by_split() == splits  # seeded


@pytest.mark.parametrize("settings, match", [
    ({"router": "forest"}, "unknown 'forest'"),
    ({"router": "learned", "router_threshold": 1.5}, "within 0..1"),
    ({"router": "learned", "router_weights": "/nonexistent/router.json"}, "router weights"),
])
def test_bad_router_settings_stop_the_edge(settings, match):
    with pytest.raises(StartupError, match=match):
        learned_router(EdgeConfig(**settings))


def _length_router(path: Path) -> Path:
    """A router that trusts the edge on questions of more than five words, and only those."""
    weights = [10.0 if name == "question_words" else 0.0 for name in FEATURES]
    means = [5.5 if name == "question_words" else 0.0 for name in FEATURES]
    router = LearnedRouter(FEATURES, tuple(weights), 0.0, tuple(means), (1.0,) * len(FEATURES), 6, "length-test")
    path.write_text(json.dumps(router.to_json()))
    return path


@pytest.fixture(scope="module")
async def learned_cluster(models, tmp_path_factory: pytest.TempPathFactory):
    from harness import start_cluster

    weights = _length_router(tmp_path_factory.mktemp("router") / "router.json")
    running = await start_cluster(*models, heartbeat_interval_s=0.3,
                                  edge={"router": "learned", "router_weights": str(weights), "router_threshold": 0.5})
    yield running
    await running.stop()


async def test_the_edge_routes_with_the_learned_router(learned_cluster):
    session = await new_session(learned_cluster.core.address, "cell-harbour-1")
    long = (await generate(learned_cluster.edge.address,
                           concise(session, "Where can I eat fresh seafood tonight?")))[-1].summary
    assert long.terminated_at == common_pb2.NODE_ROLE_EDGE
    assert long.reason == up_pb2.ROUTE_REASON_EDGE_CONFIDENT and "learned router length-test" in long.reason_detail
    assert float(long.routing_inputs["router_p_good"]) > 0.99
    assert float(long.routing_inputs["router.question_words"]) == 7.0 and long.bytes_edge_to_cloud == 0

    short = (await generate(learned_cluster.edge.address, concise(session, "Where can I eat?")))[-1].summary
    assert short.reason == up_pb2.ROUTE_REASON_CLOUD_FORWARDED and short.bytes_edge_to_cloud > 0
    assert float(short.routing_inputs["router_p_good"]) < 0.01

    client_edge = concise(session, "Where can I eat?", route=up_pb2.ROUTE_PREFERENCE_EDGE)
    summary = (await generate(learned_cluster.edge.address, client_edge))[-1].summary
    assert summary.reason == up_pb2.ROUTE_REASON_CLIENT_PREFERENCE and "router_p_good" not in summary.routing_inputs


def test_the_packaged_router_is_the_one_the_committed_routing_data_trains():
    data = Path(__file__).parent.parent / "tasks" / "prompt_completion" / "data" / "routing_data_pretrained.json"
    result = evaluate(Collected.read(data), "key")
    packaged = LearnedRouter.load("packaged")
    assert packaged.weights == pytest.approx(result.router.weights)
    assert packaged.bias == pytest.approx(result.router.bias)
    assert packaged.metadata["recommended_threshold"] == result.chosen_threshold
    assert result.goal["met"]  # >= 60 % ended at the edge at >= 95 % of always-cloud quality, on held-out


def test_eval_routing_collects_through_a_live_cluster(tmp_path: Path):
    data = tmp_path / "routing.json"
    assert main(["eval", "routing", "--collect", str(data), "--cloud-model", "starter", "--limit", "2"]) == 0
    collected = Collected.read(data)
    assert [r.split for r in collected.records] == [TRAIN, TRAIN, HELDOUT, HELDOUT]
    for r in collected.records:
        assert set(r.features) == set(FEATURES) and r.facts and r.cloud.bytes_edge_to_cloud > 0
        assert r.features["facts_listed"] == len(r.facts) and r.edge.text and r.cloud.text
