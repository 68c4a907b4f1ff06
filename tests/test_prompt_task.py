"""The concise → comprehensive prompt → answer task: datasets, held-out set, scorer, CLI, evaluation."""

from __future__ import annotations

import json
import random
import re
from dataclasses import replace
from pathlib import Path

import pytest

from cli.main import main
from edge_node.daemon import load_knowledge
from edge_node.serving.knowledge import Venue
from edge_node.serving.prompt_format import ANSWER_CUE, INTENT_CUE, MAX_FACTS, context_block
from netgpt.config import EdgeConfig
from netgpt.training.dataset import read_jsonl
from tasks.prompt_completion.build import Case, build_cloud_dataset, build_edge_dataset
from tasks.prompt_completion.devset import DEV
from tasks.prompt_completion.evaluate import (
    CLOUD_ONLY,
    EDGE_ONLY,
    NETGPT,
    RETRIEVAL,
    Outcome,
    Report,
    evaluate,
    retrieval_baseline,
    score_answer,
    score_prompt,
)
from tasks.prompt_completion.heldout import HELD_OUT
from tasks.prompt_completion.synth import build_world, real_cells
from tasks.prompt_completion.templates import NEEDS_BY_NAME, Phrasing, all_phrasings

N = 80
SEED = 7
_WORD = re.compile(r"[a-z0-9]+")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("prompt-task")
    return {"edge": build_edge_dataset(folder / "edge.jsonl", seed=SEED, n=N),
            "cloud": build_cloud_dataset(folder / "cloud.jsonl", seed=SEED, n=N)}


def _facts(prompt: str) -> list[str]:
    return [line[2:] for line in prompt.splitlines() if line.startswith("- ")]


def _name(fact: str) -> str:
    """The venue's name in a listed fact, ``"Name (category): description..."``."""
    return fact.split(" (", 1)[0]


def test_datasets_are_deterministic_for_a_seed_and_differ_across_seeds(datasets, tmp_path: Path) -> None:
    for name, builder in (("edge", build_edge_dataset), ("cloud", build_cloud_dataset)):
        again = builder(tmp_path / f"{name}-again.jsonl", seed=SEED, n=N).read_bytes()
        other = builder(tmp_path / f"{name}-other.jsonl", seed=8, n=N).read_bytes()
        assert again == datasets[name].read_bytes()
        assert other != again
        assert len(_rows(datasets[name])) == N


def test_every_line_has_the_runtime_prompt_shape(datasets) -> None:
    kinds = set()
    for name, path in datasets.items():
        assert len(read_jsonl(path)) == N  # the trainer's own reader accepts the file
        for row in _rows(path):
            prompt, completion, meta = row["prompt"], row["completion"], row["meta"]
            kinds.add((name, meta["kind"]))
            assert prompt.startswith("Location: ") and f"(cell {meta['cell_id']})." in prompt.splitlines()[0]
            assert f"\nUser request: {meta['request']}{INTENT_CUE}" in prompt
            if meta["kind"] == "intent":
                assert prompt.endswith(INTENT_CUE)
                assert completion.startswith(" ") and completion.endswith(".\n") and completion.count("\n") == 1
            else:
                assert prompt.endswith(ANSWER_CUE) and "\n" not in completion and completion.startswith(" ")
    assert kinds == {("edge", "intent"), ("edge", "answer"), ("cloud", "answer")}


def test_prompts_list_the_facts_the_edge_retrieves(datasets) -> None:
    """On the real knowledge base an edge prompt's block is exactly what a running edge would build; a
    cloud prompt lists the same facts plus its distractors, in any order."""
    knowledge, areas = load_knowledge(EdgeConfig()), {c: area for c, (area, _) in real_cells().items()}
    for name in ("edge", "cloud"):
        real = [row for row in _rows(datasets[name]) if row["meta"]["source"] == "real"]
        assert real, "some lines must use the real knowledge base"
        for row in real:
            meta = row["meta"]
            facts = knowledge.facts_for(meta["cell_id"], meta["request"], MAX_FACTS)
            listed = [f for f in _facts(row["prompt"]) if _name(f) not in meta.get("distractors", [])]
            assert sorted(listed) == sorted(facts)
            if name == "cloud":
                continue
            preferences = re.findall(r"^User preferences: (.*)\.$", row["prompt"], re.M)
            block = context_block(meta["request"], meta["cell_id"], areas[meta["cell_id"]], facts,
                                  preferences[0].split("; ") if preferences else [])
            assert row["prompt"].startswith(block + INTENT_CUE)


def test_only_cloud_prompts_list_distractors_and_none_fits_the_need(datasets) -> None:
    cloud, cells = _rows(datasets["cloud"]), build_world(SEED).cells
    assert not any("distractors" in row["meta"] for row in _rows(datasets["edge"]))
    with_distractors = [row for row in cloud if "distractors" in row["meta"]]
    assert 0 < len(with_distractors) < len(cloud)
    for row in with_distractors:
        meta, need = row["meta"], NEEDS_BY_NAME[row["meta"]["need"]]
        listed = [_name(fact) for fact in _facts(row["prompt"])]
        assert len(listed) <= MAX_FACTS
        assert meta["venue"] not in meta["distractors"]
        for name in meta["distractors"]:
            assert name in listed
            venue = next(v for v in cells[meta["cell_id"]][1] if v.name == name)
            assert not need.fits(venue), f"{name} fits {need.name}: not a distractor"


def test_misread_intents_are_another_needs_and_the_answer_still_fits_the_request(datasets, tmp_path: Path) -> None:
    """The adapter's data: some cloud prompts carry an intent line the edge got wrong; their answer follows the
    request. Without ``misread_share`` the lines are those of before, draw for draw."""
    cloud = _rows(build_cloud_dataset(tmp_path / "misread.jsonl", seed=SEED, n=N, misread_share=0.2))
    misread = [row for row in cloud if row["meta"].get("misread_intent")]
    assert 0 < len(misread) < len(cloud) / 2
    assert not any(row["meta"].get("misread_intent") for name in ("edge", "cloud") for row in _rows(datasets[name]))
    assert build_cloud_dataset(tmp_path / "none.jsonl", seed=SEED, n=N, misread_share=0.0).read_bytes() == \
        datasets["cloud"].read_bytes()
    for row in misread:
        need = NEEDS_BY_NAME[row["meta"]["need"]]
        intent = re.search(r"\nIntent: The user wants (.*)\.\nAnswer:$", row["prompt"]).group(1)
        assert intent not in need.intents
        assert any(intent in other.intents for other in NEEDS_BY_NAME.values())
        assert row["meta"]["venue"] in row["completion"]


def test_distractors_never_fit_the_need_and_the_answer_follows_the_order() -> None:
    fish, grill, bus, museum = (Venue("c", "Fish House", "restaurant", "seafood restaurant"),
                                Venue("c", "Seafood Grill", "restaurant", "oysters and grilled fish"),
                                Venue("c", "Bus Stop", "transport", "bus line 3"),
                                Venue("c", "Museum", "culture", "local history"))
    case = Case("c", "synthetic", "Old town", [], NEEDS_BY_NAME["seafood"],
                Phrasing("Where can I eat seafood?", "t", "find", named=False), [fish], fish, " to eat seafood.")
    for seed in range(50):
        shown = case.with_distractors(random.Random(seed), [fish, grill, bus, museum])
        assert grill not in shown.facts and fish in shown.facts and len(shown.facts) <= MAX_FACTS
        assert shown.target == fish and set(shown.distractors) == {v.name for v in shown.facts} - {"Fish House"}
    two = replace(case, facts=[fish, grill])
    targets = {two.with_distractors(random.Random(seed), [fish, grill, bus]).target.name for seed in range(50)}
    assert targets == {"Fish House", "Seafood Grill"}  # the first listed of the fitting ones


def test_cloud_completions_name_a_listed_venue_that_fits(datasets) -> None:
    for row in _rows(datasets["cloud"]):
        venue, facts = row["meta"]["venue"], _facts(row["prompt"])
        assert venue in row["completion"]
        listed = [fact for fact in facts if fact.startswith(f"{venue} (")]
        assert listed, f"{venue} is not among the listed facts"
        hours = re.search(r", open ([^,]+)$", listed[0])
        if hours:
            assert hours.group(1) in row["completion"]
        need = NEEDS_BY_NAME[row["meta"]["need"]]
        assert need.categories and listed[0].split("(", 1)[1].split(")")[0] in need.categories


def _grams(text: str, n: int = 4) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_heldout_and_dev_questions_share_no_phrasing_with_the_templates_or_each_other() -> None:
    cells = real_cells()
    names = [v.name for _, venues in cells.values() for v in venues]
    training = set()
    phrasings = {p.lower() for p in all_phrasings(names)}
    for text in phrasings:
        training |= _grams(text)
    heldout = set().union(*(_grams(q.question) for q in HELD_OUT))
    assert 60 <= len(HELD_OUT) <= 100 and 30 <= len(DEV) < len(HELD_OUT)
    for questions, apart in ((HELD_OUT, training), (DEV, training | heldout)):
        assert {q.cell_id for q in questions} == set(cells)
        for q in questions:
            assert q.question.lower() not in phrasings
            assert not _grams(q.question) & apart, q.question
            cell_names = {v.name for v in cells[q.cell_id][1]}
            assert q.expected and set(q.expected) <= cell_names, q


def test_scorer_scores_hand_made_transcripts() -> None:
    prompt = ("Location: Harbour district (cell cell-harbour-1).\nLocal information:\n"
              "- Harbour Fish Market (restaurant): seafood restaurant, open 11:00-22:00\n"
              "- Quayside Noodle Bar (restaurant): noodles\nUser request: fish?\nIntent: The user wants fish.\nAnswer:")
    expected, others = ("Harbour Fish Market",), ["Harbour Fish Market", "Quayside Noodle Bar", "Maritime Museum"]
    assert score_prompt(prompt, "cell-harbour-1", expected)
    assert not score_prompt(prompt, "cell-campus-2", expected)  # wrong cell
    assert not score_prompt(prompt, "cell-harbour-1", ("Maritime Museum",))  # fitting venue not listed
    assert not score_prompt(prompt.replace("- Harbour Fish Market", "Harbour Fish Market"), "cell-harbour-1",
                            expected)  # named in the request, not as a fact
    assert score_answer(" Try harbour fish market: seafood, open 11:00-22:00.", expected, others)
    assert not score_answer(" Harbour Fish Market or Quayside Noodle Bar.", expected, others)  # hedges
    assert not score_answer(" Quayside Noodle Bar, open 12:00-23:00.", expected, others)
    assert not score_answer(" Harbour Fish Marketplace", expected, others)  # not the venue's name
    assert not score_answer("", expected, others)


def test_data_build_cli_writes_the_file(tmp_path: Path, capsys) -> None:
    out = tmp_path / "sub" / "cloud.jsonl"
    assert main(["data", "build", "cloud", "--out", str(out), "--seed", "3", "--n", "12"]) == 0
    assert len(_rows(out)) == 12
    assert main(["data", "check", str(out)]) == 0
    assert "12 examples OK" in capsys.readouterr().out
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x"}\n', encoding="utf-8")
    assert main(["data", "check", str(tmp_path / "bad.jsonl")]) == 2
    assert "completion" in capsys.readouterr().err


def test_retrieval_baseline_scores_every_question() -> None:
    rows = retrieval_baseline(HELD_OUT).rows()
    assert [(r.system, r.n) for r in rows] == [(RETRIEVAL, len(HELD_OUT))]
    assert 0.5 < rows[0].answer_ok <= rows[0].prompt_ok <= 1.0


@pytest.mark.e2e
def test_evaluate_end_to_end_with_tiny_models(tiny) -> None:
    questions = HELD_OUT[:3]
    report = evaluate("tiny", "tiny", questions, max_new_tokens=8)
    rows = {row.system: row for row in report.rows()}
    assert set(rows) == {EDGE_ONLY, NETGPT, CLOUD_ONLY}
    assert all(row.n == 3 and row.models == "tiny" for row in rows.values())
    assert rows[EDGE_ONLY].prompt_ok == rows[NETGPT].prompt_ok == 1.0  # the edge retrieves a fitting fact
    assert rows[CLOUD_ONLY].prompt_ok is None
    terminated = {(o.system, o.terminated_at) for o in report.outcomes}
    assert terminated == {(EDGE_ONLY, "edge"), (NETGPT, "cloud"), (CLOUD_ONLY, "cloud")}
    assert "NetGPT edge+cloud" in report.table() and json.dumps(report.to_json())


def test_a_row_scores_answers_where_the_prompt_listed_the_fitting_fact() -> None:
    """The cloud's own share: a miss whose prompt lacked the fact counts against the edge, not the answer."""
    def outcome(prompt_ok: bool | None, answer_ok: bool) -> Outcome:
        return Outcome(NETGPT, "m", "q", "cell", ("V",), "p", "a", prompt_ok, answer_ok, 1.0)

    row = Report([outcome(True, True), outcome(True, False), outcome(False, False), outcome(True, True)]).rows()[0]
    assert (row.prompt_ok, row.answer_ok, row.answer_ok_fact_listed) == (0.75, 0.5, 2 / 3)
    assert Report([outcome(None, True)]).rows()[0].answer_ok_fact_listed is None
    assert Report([outcome(False, False)]).rows()[0].answer_ok_fact_listed is None
