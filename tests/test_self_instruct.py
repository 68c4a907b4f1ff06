"""Self-instruct: the filters on hand-written candidates, the edge builder's extra source, and one end-to-end
run on the tiny random-weight LLaMA for each task (plumbing: random weights may keep nothing)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from cli.main import main as cli_main
from edge_node.netmgmt.intent_line import Intent, parse_line
from netgpt.errors import InvalidArgument
from netgpt.training.dataset import read_jsonl
from tasks.intent import self_instruct as intent_si
from tasks.intent.baseline import extract
from tasks.intent.generator import generate
from tasks.prompt_completion import self_instruct as pc
from tasks.prompt_completion.build import build_edge_dataset
from tasks.prompt_completion.devset import DEV
from tasks.prompt_completion.heldout import HELD_OUT
from tasks.prompt_completion.templates import NEEDS_BY_NAME, render, templates_for
from tasks.self_instruct import REASONS, Job, Sieve, Unseen, clean, normalised, word_grams

SEAFOOD = NEEDS_BY_NAME["seafood"]
SHOTS = (("Any taxi stand around?", "Which taxi rank is closest to me?"),)


def _job(source: str, need: str = "seafood", kind: str = "find", name: str = "") -> Job:
    return Job(0, source, SHOTS, {"need": need, "kind": kind, "named": bool(name), "venue_name": name,
                                  "source_template": source})


@pytest.fixture(scope="module")
def pc_filters():
    return pc.filters()


@pytest.fixture(scope="module")
def intent_filters():
    return intent_si.filters()


# --- the question task's filters ----------------------------------------------------------------


@pytest.mark.parametrize(("text", "reason"), [
    ("Is there anywhere around here that serves fresh oysters?", None),
    ("Where can I find a place to eat?", "dropped_slot"),  # the need's words are gone: the label would lie
    ("Where can I find seafood or a taxi?", "label_changed"),  # another need's word
    ("A seafood restaurant is a whole different story.", "form"),
    ("Where can I find a seafood restaurant?", "copy"),  # the source itself
    ("Which taxi rank is closest to me?", "copy"),  # a shot
    ("Where can I find a fish restaurant?", "known"),  # an existing training phrasing
    ("Seafood?", "length"),
    ("", "empty"),
])
def test_question_filters_on_hand_written_candidates(pc_filters, text: str, reason: str | None) -> None:
    assert Sieve(pc_filters).offer(_job("Where can I find a seafood restaurant?"), text) == reason


def test_named_and_hours_questions_keep_the_venue_and_the_question(pc_filters) -> None:
    job = _job("When does Amber Fish House close?", kind="hours", name="Amber Fish House")
    sieve = Sieve(pc_filters)
    assert sieve.offer(job, "When does the fish place shut tonight?") == "dropped_slot"  # the name is gone
    assert sieve.offer(job, "Tell me where Amber Fish House is.") == "dropped_slot"  # no longer asks when
    assert sieve.offer(job, "Until what time is Amber Fish House serving?") is None
    assert pc_filters.key(job, "Until what time is amber fish house serving?") == "until what time is name serving"
    # the same question about another venue is a training phrasing: "{name}" stands for any venue
    assert sieve.offer(_job("When does Copper Oyster Bar close?", kind="hours", name="Copper Oyster Bar"),
                       "What are the opening hours of Copper Oyster Bar?") == "known"


def test_heldout_and_dev_questions_are_rejected_verbatim_or_by_any_shared_4_gram(pc_filters) -> None:
    sieve = Sieve(pc_filters)
    question = next(q.question for q in HELD_OUT if "oysters" in q.question)  # "I'm craving oysters and ..."
    assert sieve.offer(_job("Where can I find fresh seafood?"), question) == "heldout"
    borrowed = " ".join(question.split()[:5]) + " tonight?"  # the held-out question's opening words
    assert sieve.offer(_job("Where can I find fresh seafood?"), borrowed) == "heldout"
    guard = pc.unseen()
    assert all(guard.overlaps(q.question) for q in (*HELD_OUT, *DEV))
    # the same normalisation as the held-out tests: case and punctuation do not matter
    assert word_grams("Where's the FERRY, please?") == {("where", "s", "the", "ferry"), ("s", "the", "ferry", "please")}
    assert Unseen(["Where is the pier?"]).overlaps("where IS the pier") and not Unseen([]).overlaps("anything")
    assert normalised("Is the Café open?") == "is the cafe open"


def test_duplicates_collapse_and_the_tally_adds_up(pc_filters) -> None:
    sieve = Sieve(pc_filters)
    job = _job("Where can I find a seafood restaurant?")
    texts = ["Is there anywhere around here that serves fresh oysters?",
             "is there anywhere around here that serves fresh oysters",  # the same, normalised
             "Any spot near me with grilled fish on the menu?", "Where can I find a place to eat?"]
    reasons = [sieve.offer(job, t) for t in texts]
    assert reasons == [None, "duplicate", None, "dropped_slot"]
    tally = sieve.tally.as_dict()
    assert tally["generated"] == 4 and tally["kept"] == 2 and tally["rejected"] == {"dropped_slot": 1, "duplicate": 1}
    assert set(tally["rejected"]) <= set(REASONS)


def test_clean_takes_the_first_line_without_labels_or_quotes() -> None:
    assert clean('\n  Rewritten question: "Any fish place nearby?"\nAnother one') == "Any fish place nearby?"
    assert clean("Rewrite:   Where   is it?") == "Where is it?"


def test_training_phrasings_pass_the_question_checks() -> None:
    """The check is no stricter than the training data: every template's phrasing, asked as a rewrite of
    itself, keeps its label (needs, venue names, "hours" cues, openers)."""
    rng = random.Random(0)
    for need in NEEDS_BY_NAME.values():
        for template, kind in templates_for(need):
            for _ in range(3):
                text = render(template, need, rng, "Amber Fish House")
                name = "Amber Fish House" if "{name}" in template else ""
                assert pc.check(need, kind, text, text, name) is None, (need.name, text)


# --- the edge dataset's extra source ------------------------------------------------------------------


def _phrasings_file(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_edge_dataset_asks_a_share_of_questions_in_generated_words(tmp_path: Path) -> None:
    rows = [{"text": f"Any spot with {n} near me?", "template": f"Any spot with {n} near me?", "need": need,
             "kind": "find"} for need, n in (("seafood", "grilled fish"), ("coffee", "a flat white and cake"),
                                             ("taxi", "a cab rank"), ("bus", "a bus into town"))]
    rows.append({"text": "Until what time is X serving?", "template": "Until what time is {name} serving?",
                 "need": "seafood", "kind": "hours"})
    phrasings = pc.load_phrasings(_phrasings_file(tmp_path / "p.jsonl", rows))
    plain = build_edge_dataset(tmp_path / "plain.jsonl", seed=3, n=300).read_bytes()
    assert build_edge_dataset(tmp_path / "none.jsonl", seed=3, n=300, phrasings=None).read_bytes() == plain
    mixed = build_edge_dataset(tmp_path / "mixed.jsonl", seed=3, n=300, phrasings=phrasings, phrasings_share=0.5)
    again = build_edge_dataset(tmp_path / "again.jsonl", seed=3, n=300, phrasings=phrasings, phrasings_share=0.5)
    assert mixed.read_bytes() == again.read_bytes() != plain
    lines = [json.loads(line) for line in mixed.read_text(encoding="utf-8").splitlines()]
    generated = [r for r in lines if r["meta"].get("phrasing") == "self-instruct"]
    templates = {r["template"] for r in rows}
    assert generated and all(r["meta"]["template"] in templates for r in generated)
    for row in generated:  # the question is in the prompt, and the answer still fits the need
        assert f"User request: {row['meta']['request']}\n" in row["prompt"]
        assert row["meta"]["need"] in {r["need"] for r in rows}
    assert not [r for r in lines if "{name}" in r["prompt"]]
    assert len(read_jsonl(mixed)) == 300


def test_loading_phrasings_rechecks_the_heldout_set(tmp_path: Path) -> None:
    leak = {"text": HELD_OUT[0].question, "template": HELD_OUT[0].question, "need": "seafood", "kind": "find"}
    with pytest.raises(InvalidArgument, match="held-out"):
        pc.load_phrasings(_phrasings_file(tmp_path / "leak.jsonl", [leak]))
    with pytest.raises(InvalidArgument, match="unknown need"):
        pc.load_phrasings(_phrasings_file(tmp_path / "bad.jsonl", [{**leak, "need": "unicorns"}]))


# --- the intent task's filters -----------------------------------------------------------------------

SOURCE = "Please build a 10 Gbit/s link from Access 1 to Cloud 2 with latency below 5 ms, thanks"
TARGET = "act: create; src: Access 1; dst: Cloud 2; bw: 10 Gbps; lat: 5 ms"


def _intent_job() -> Job:
    return Job(0, SOURCE, (), {"target": TARGET})


@pytest.mark.parametrize(("text", "reason"), [
    ("We want a 10 Gbps connection between Access 1 and Cloud 2, latency under 5 ms", None),
    ("We want a 10 Gbps connection from Access 1, latency under 5 ms", "dropped_slot"),  # no destination
    ("We want a 10 Gbps connection between Access 1 and Cloud 2", "dropped_slot"),  # no latency
    ("We want a 10 Mbps connection between Access 1 and Cloud 2, latency under 5 ms", "label_changed"),
    ("We want a 10 Gbps connection between Cloud 2 and Access 1, latency under 5 ms", "label_changed"),
    ("Remove the 10 Gbps connection between Access 1 and Cloud 2, latency under 5 ms", "label_changed"),
    ("We want a 10 Gbps connection between Access 1 and Cloud 2, latency under 5 ms, slot 7", "label_changed"),
    ("Deploy a 10 Gbps lightpath between Access 1 and Cloud 2, latency under 5 ms", "heldout"),
    ("We want a 10 Gb/s connection between Access 1 and Cloud 2, latency under 5 ms", "heldout"),
])
def test_intent_filters_on_hand_written_candidates(intent_filters, text: str, reason: str | None) -> None:
    assert parse_line(TARGET).intent == extract(SOURCE)
    assert Sieve(intent_filters).offer(_intent_job(), text) == reason


def test_intent_heldout_words_never_occur_in_training_but_in_the_heldout_split() -> None:
    pieces = intent_si.heldout_pieces()
    assert {"lightpath", "decommission", "gb/s", "originating at"} <= set(pieces)
    training = " ".join(r.text for r in generate(2000, 2024)).lower()
    heldout = " ".join(r.text for r in generate(400, 7, heldout=True)).lower()
    assert not [p for p in pieces if intent_si._contains(training, p)]
    assert sum(intent_si._contains(heldout, p) for p in pieces) > len(pieces) // 2
    guard = intent_si.HeldOutGuard()
    assert all(guard.overlaps(r.text) for r in generate(50, 7, heldout=True))


def test_intent_sources_and_shots_are_training_requests_read_right() -> None:
    jobs = intent_si.jobs(5, seed=1)
    assert [j.source for j in jobs] == [j.source for j in intent_si.jobs(5, seed=1)]
    for job in jobs:
        intent = parse_line(job.fields["target"]).intent
        assert intent != Intent() and extract(job.source) == intent and len(job.shots) == 3
        assert all(extract(a).action == extract(b).action == intent.action for a, b in job.shots)


# --- end to end on the tiny random-weight LLaMA ----------------------------------------------------------


@pytest.mark.parametrize("task", [pc, intent_si], ids=["questions", "intent"])
def test_end_to_end_on_the_tiny_llama(tiny, tmp_path: Path, task, capsys) -> None:
    out, report = tmp_path / "out.jsonl", tmp_path / "report.json"
    assert task.main(["--out", str(out), "--n", "5", "--seed", "2", "--threads", "1", "--batch", "3",
                      "--max-new-tokens", "12", "--model", str(tiny.llama_dir), "--report", str(report)]) == 0
    tally = json.loads(report.read_text(encoding="utf-8"))
    assert '"generated": 5' in capsys.readouterr().out
    assert tally["generated"] == 5 and tally["kept"] + sum(tally["rejected"].values()) == 5
    assert set(tally["rejected"]) <= set(REASONS)
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == tally["kept"]
    for record in records:
        assert record["text"] and record["source"] and len(record["model_sha256"]) == 64 and record["seed"] == 2
        assert normalised(record["text"]) != normalised(record["source"])


def test_cli_builds_the_edge_dataset_with_phrasings(tmp_path: Path) -> None:
    rows = [{"text": "Any spot with grilled fish near me?", "template": "Any spot with grilled fish near me?",
             "need": "seafood", "kind": "find"}]
    source = _phrasings_file(tmp_path / "p.jsonl", rows)
    out = tmp_path / "edge.jsonl"
    assert cli_main(["data", "build", "edge", "--out", str(out), "--n", "40", "--seed", "1", "--phrasings",
                     str(source), "--phrasings-share", "1.0"]) == 0
    assert len(read_jsonl(out)) == 40
    assert cli_main(["data", "build", "cloud", "--out", str(out), "--n", "4", "--phrasings", str(source)]) == 2


def test_the_committed_phrasings_load_and_stay_apart_from_the_heldout_and_dev_questions() -> None:
    """``make self-instruct``'s committed output passes the loader's checks (known needs, no shared 4-gram
    with a held-out or dev question) and covers every need."""
    from tasks.prompt_completion.starter import SELF_INSTRUCT
    from tasks.prompt_completion.templates import NEEDS

    loaded = pc.load_phrasings(SELF_INSTRUCT)
    assert len(loaded) > 300
    assert {need for need, _kind in loaded.pools} == {need.name for need in NEEDS}
