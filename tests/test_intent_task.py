"""Intent inference: generator, keyword line, baseline, scoring, dataset, and the committed model."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from edge_node.netmgmt.intent_line import NOTHING, Intent, parse_line, parse_target, to_target
from edge_node.netmgmt.intent_reader import IntentReader, load_reader, packaged_model_dir
from edge_node.netmgmt.intent_request import MAX_TEXT_CHARS, normalise, prompt_text, ungrounded_fields
from netgpt.errors import InvalidArgument
from netgpt.training.dataset import read_jsonl
from tasks.intent import vocabulary as v
from tasks.intent.baseline import extract
from tasks.intent.dataset import build_dataset, read_labelled
from tasks.intent.evaluate import evaluation_sets
from tasks.intent.generator import generate
from tasks.intent.scoring import score

FULL = Intent("create", "Access 1", "Cloud 2", 10_000.0, 5.0, True, "urllc", 82, "22:00-06:00")


# --- generator ------------------------------------------------------------------------------


def test_generator_is_deterministic_and_splits_differ() -> None:
    first, again = generate(60, 3), generate(60, 3)
    assert [(r.text, r.intent) for r in first] == [(r.text, r.intent) for r in again]
    assert [r.text for r in generate(60, 4)] != [r.text for r in first]
    heldout = generate(60, 3, heldout=True)
    assert {r.text for r in heldout}.isdisjoint(r.text for r in first)


def test_training_split_never_uses_heldout_only_words() -> None:
    train = " ".join(r.text for r in generate(4000, 2024))
    heldout_only = ["Gateway ", "PoP ", "Hub-", "Campus ", "lightpath", "decommission", "spin up", " msec",
                    "Gb/s", "megabit/s", "as source and", "originating at", "\u2192", "mMTC", "5QI value",
                    "Amsterdam", "Stockholm", "no longer needed"]
    assert [word for word in heldout_only if word in train] == []


def test_generator_covers_every_field_and_round_trips() -> None:
    requests = generate(4000, 2024)
    assert len(requests) == 4000
    for name in ("action", "source", "destination", "bandwidth_mbps", "latency_ms", "protection", "slice",
                 "five_qi", "time_window"):
        assert sum(name in r.intent.stated() for r in requests) > 100, name
    assert sum(r.target == NOTHING for r in requests) > 100  # texts with no request
    assert all(parse_target(r.target) == r.intent for r in requests)
    assert all(len(r.text) <= MAX_TEXT_CHARS and r.text == normalise(r.text) for r in requests)


def test_heldout_endpoint_kinds_appear_in_the_test_split() -> None:
    text = " ".join(r.text for r in generate(300, 7, heldout=True))
    for kind in v.ENDPOINT_KINDS.heldout:
        assert kind.split("{")[0] in text


# --- keyword line ---------------------------------------------------------------------------


def test_keyword_line_round_trip() -> None:
    line = to_target(FULL)
    assert line == ("act: create; src: Access 1; dst: Cloud 2; bw: 10 Gbps; lat: 5 ms; prot: yes; "
                    "slice: urllc; 5qi: 82; time: 22:00-06:00")
    assert parse_target(line) == FULL
    assert to_target(Intent()) == NOTHING and parse_target(NOTHING) == Intent()
    assert to_target(Intent("delete", "Metro-7", "DC Frankfurt")) == "act: delete; src: Metro-7; dst: DC Frankfurt"
    assert to_target(Intent(bandwidth_mbps=500)) == "bw: 500 Mbps"
    assert to_target(Intent(bandwidth_mbps=2500)) == "bw: 2.5 Gbps"
    assert to_target(Intent(bandwidth_mbps=0.5)) == "bw: 500 Kbps"


def test_malformed_pieces_are_dropped_and_reported() -> None:
    parsed = parse_line("act: explode; src: Access 1; bw: ten Gbps; lat: 5 ms; lat: 6 ms; zz: 1; junk; "
                        "time: 25:00-01:00\nact: delete")
    assert parsed.intent == Intent(source="Access 1")
    assert set(parsed.dropped) == {"action", "bandwidth_mbps", "latency_ms", "time_window"}
    assert len(parsed.problems) == 6
    rng = random.Random(0)
    for _ in range(300):  # never an exception, whatever the model emits
        parse_target("".join(rng.choice("act:src;dst bw=5 Gbps\n\x00é") for _ in range(rng.randint(0, 40))))


def test_values_in_the_requests_own_spelling_are_read_by_the_unit_libraries() -> None:
    parsed = parse_line("act: create; src: Hub-1; dst: PoP Leeds; bw: 10 Mb/s; lat: 5 msec; time: 22h30\u201306h")
    assert parsed.problems == []
    assert parsed.intent == Intent("create", "Hub-1", "PoP Leeds", 10.0, 5.0, time_window="22:30-06:00")
    assert parse_target("bw: 2.5 Gb/s; lat: 3 millis; time: 5pm-8 pm") == Intent(
        bandwidth_mbps=2500.0, latency_ms=3.0, time_window="17:00-20:00")
    assert parse_target("bw: 500 kbit/s; time: 10:30am to 5 pm") == Intent(bandwidth_mbps=0.5,
                                                                             time_window="10:30-17:00")


def test_values_no_unit_library_reads_as_that_field_are_dropped() -> None:
    parsed = parse_line("bw: 10 gig; lat: 10 Mbps; time: 22-06")  # 22 alone is a day of the month to dateutil
    assert parsed.intent == Intent() and set(parsed.dropped) == {"bandwidth_mbps", "latency_ms", "time_window"}
    for wrong in ("bw: 10 Hz", "bw: 10 ms", "bw: -5 Mb/s", "lat: 5 kg", "time: monday 5pm-6pm", "time: 5pm"):
        assert parse_line(wrong).intent == Intent(), wrong


def test_normalise_matches_training() -> None:
    assert normalise("  build\ta  link\x00from A\u00a0to B \n") == "build a link from A to B"
    assert prompt_text("x") == "<|request|>x<|intent|>"


# --- baseline and scoring -------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("build a 10 Gbit/s connection from Access 1 to Cloud 2 with traffic protection",
     Intent("create", "Access 1", "Cloud 2", 10_000.0, protection=True)),
    ("Urgent: To PE4 from DC Bergen: configure a 500 Mbps link on the URLLC slice between 10pm and 6am",
     Intent("create", "DC Bergen", "PE4", 500.0, slice="urllc", time_window="22:00-06:00")),
    ("Tear down the tunnel Metro-7 -> Core Router 3 (ticket 4821)", Intent("delete", "Metro-7", "Core Router 3")),
    ("Raise the link gNB-2 to Edge 5 to 2.5 gigabits per second with latency below 5 ms, 5QI 82",
     Intent("modify", "gNB-2", "Edge 5", 2500.0, 5.0, five_qi=82)),
])
def test_baseline_on_known_cases(text: str, expected: Intent) -> None:
    assert extract(text) == expected


def test_baseline_is_near_perfect_on_training_phrasings() -> None:
    requests = generate(500, 11)
    result = score([extract(r.text) for r in requests], [r.intent for r in requests])
    assert result.exact_rate() > 0.97


def test_scoring_counts() -> None:
    truth = [Intent("create", "A", "B", 100.0), Intent("delete", "C", "D")]
    predicted = [Intent("create", "A", "X", 100.0, protection=True), Intent("delete", "C", "D")]
    result = score(predicted, truth)
    assert result.exact == 1
    dst, prot = result.per_field["destination"], result.per_field["protection"]
    assert (dst.tp, dst.fp, dst.fn) == (1, 1, 1) and (prot.tp, prot.fp, prot.fn) == (0, 1, 0)
    assert result.field_f1()["latency_ms"] is None
    assert result.micro_f1() == pytest.approx(2 * 6 / (2 * 6 + 2 + 1))  # 6 right, 2 wrong or extra, 1 missed


# --- dataset --------------------------------------------------------------------------------


def test_dataset_is_trainer_jsonl(tmp_path: Path) -> None:
    examples = read_jsonl(build_dataset(tmp_path / "d.jsonl", seed=5, n=50))
    assert len(examples) == 50
    assert all(e.prompt.startswith("<|request|>") and e.prompt.endswith("<|intent|>") for e in examples)
    assert all(parse_line(e.completion).problems == [] for e in examples)


def test_labelled_requests(tmp_path: Path) -> None:
    good = tmp_path / "mine.jsonl"
    good.write_text(json.dumps({"text": "drop the link A1 to B2", "target": "act: delete; src: A1; dst: B2"}) + "\n"
                    + json.dumps({"text": "x", "intent": {"action": "create", "bandwidth_mbps": 100}}) + "\n")
    requests = read_labelled(good)
    assert requests[0].intent == Intent("delete", "A1", "B2") and requests[1].intent.bandwidth_mbps == 100
    for bad in ({"text": "x", "target": "act: fly"}, {"text": "x", "intent": {"colour": "red"}},
                {"text": "", "target": "none"}, {"text": "x"}):
        path = tmp_path / "bad.jsonl"
        path.write_text(json.dumps(bad) + "\n")
        with pytest.raises(InvalidArgument, match="bad.jsonl:1"):
            read_labelled(path)


# --- the reader -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reader(netgpt_cache: Path) -> IntentReader:
    return load_reader(packaged_model_dir(), cache_root=netgpt_cache)


def test_confidence_and_clarification_from_a_line(reader: IntentReader) -> None:
    line = "act: create; src: Access 1; dst: Cloud 2"
    probs = [(i, i + 1, 0.2 if 19 <= i < 25 else 0.9) for i in range(len(line))]  # unsure of "Access"
    reading = reader.interpret(line, probs, "build a link from Access 1 to Cloud 2")
    assert reading.confidence["source"] == pytest.approx(0.2) and reading.confidence["action"] == 0.9
    assert reading.intent == Intent("create", destination="Cloud 2")
    assert reading.ambiguous_fields == ["source"] and reading.missing_fields == ["bandwidth_mbps"]
    assert reading.needs_clarification and "source" in reading.clarification and "Access 1" in reading.clarification
    assert ungrounded_fields(Intent(source="Gateway 9", bandwidth_mbps=10_000), "from gateway 9 at 10G") == []
    assert ungrounded_fields(Intent(source="Cloud 7", latency_ms=3), "to Cloud 2 under 5 ms") == ["source",
                                                                                                  "latency_ms"]


def test_reader_reads_the_research_example(reader: IntentReader) -> None:
    """Every field is either read right or named as ambiguous (asked about), never read wrong."""
    truth = Intent("create", "Access 1", "Cloud 2", 10_000.0, protection=True)
    reading = reader.read("build a 10 Gbit/s connection from Access 1 to Cloud 2 with traffic protection")
    assert set(reading.confidence) == set(truth.stated())
    right = [name for name in truth.stated() if getattr(reading.intent, name) == getattr(truth, name)]
    assert sorted(right + reading.ambiguous_fields) == sorted(truth.stated())
    assert len(right) >= 4
    assert all(reading.confidence[name] >= reader.min_confidence for name in right)
    assert reading.needs_clarification == bool(set(reading.ambiguous_fields) & {"action", "source", "destination",
                                                                                 "bandwidth_mbps"})


@pytest.mark.parametrize("text", ["", "   \n\t", "x" * (MAX_TEXT_CHARS + 1)])
def test_reader_refuses_empty_or_long_text(reader: IntentReader, text: str) -> None:
    with pytest.raises(InvalidArgument, match="empty|at most 1000"):
        reader.read(text)


@pytest.mark.parametrize("text", ["Wie geht es dir heute, mein Freund?", "qwpo zzkx vnnm aa", "東京" * 300,
                                  "What time does the bakery open?", "build a link"])
def test_reader_asks_instead_of_guessing(reader: IntentReader, text: str) -> None:
    reading = reader.read(text)
    assert reading.needs_clarification and reading.clarification
    assert reading.missing_fields or reading.ambiguous_fields


def test_model_beats_a_trivial_rule_on_heldout_requests(reader: IntentReader) -> None:
    requests = evaluation_sets(limit=40)["held-out"]
    truth = [r.intent for r in requests]
    model = score([parse_target(reader.read(r.text).keyword_line) for r in requests], truth)
    trivial = score([Intent("create") for _ in requests], truth)  # the commonest action, nothing else
    assert model.micro_f1() > trivial.micro_f1() + 0.2
    assert model.exact_rate() > trivial.exact_rate()


def test_quick_recipe_builds_a_loadable_model(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from tasks.intent.recipe import MAX_BYTES, build

    record = build(tmp_path / "intent", quick=True, threads=1, evaluate_model=False)
    folder = tmp_path / "intent"
    saved = json.loads((folder / "recipe.json").read_text())
    assert saved["steps"] == record["steps"] > 0 and len(saved["dataset"]["sha256"]) == 64
    assert 0 < saved["bytes"] <= MAX_BYTES
    tokenizer = AutoTokenizer.from_pretrained(folder)
    pieces = tokenizer.convert_ids_to_tokens(tokenizer.encode("<|request|>x<|intent|>act: delete; src: A"))
    assert {"<|request|>", "<|intent|>", "act:", "; src:"} <= set(pieces)  # one token each
