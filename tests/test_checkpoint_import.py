"""``netgpt model import``: GGUF files and Hugging Face folders into the store's checkpoint format.

A tiny LLaMA written as a GGUF the way llama.cpp writes one (q/k permuted, tokenizer in the metadata)
must come back with identical logits and token ids, be converted once and then found in the cache,
be served by the cloud's engine, and publish with its lineage through a real core. Bad files get one
clear error naming the file. The pinned pretrained base (SmolLM2-135M-Instruct) is imported for real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from gguf_files import CHAT_TEMPLATE, write_gguf
from helpers import cli
from transformers import AutoModelForCausalLM, AutoTokenizer

from cloud_node.daemon import startup_adapter
from cloud_node.llama_engine import LlamaModel
from netgpt.channels import open_channel
from netgpt.chat_format import as_model_prompt
from netgpt.checkpoint.importer import LINEAGE_FILE, import_checkpoint
from netgpt.checkpoint.pretrained import (
    GGUF_SHA256,
    PRETRAINED,
    PRETRAINED_NAME,
    pretrained_base,
    pretrained_gguf,
    shipped_adapter,
)
from netgpt.config import CloudConfig
from netgpt.engine import ModelLoadError
from netgpt.generation import SamplingParams, generate_tokens
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc
from node.runtime import model_folder

TEXT = "Where can I eat fresh seafood tonight?"


@pytest.fixture(scope="module")
def gguf_file(tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf(tiny.llama_dir, tmp_path_factory.mktemp("gguf") / "tiny-llama.F32.gguf",
                      chat_template=CHAT_TEMPLATE)


def test_a_gguf_imports_to_the_same_model_and_tokenizer(tiny, gguf_file: Path, tmp_path: Path):
    imported = import_checkpoint(gguf_file, cache_root=tmp_path)
    assert imported.converted
    names = {p.name for p in imported.folder.iterdir()}
    assert {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", LINEAGE_FILE} <= names
    assert any(name.endswith(".safetensors") for name in names) and not any(name.endswith(".bin") for name in names)
    source = AutoModelForCausalLM.from_pretrained(tiny.llama_dir)
    converted = AutoModelForCausalLM.from_pretrained(imported.folder)
    ids = AutoTokenizer.from_pretrained(tiny.llama_dir).encode(TEXT)
    assert AutoTokenizer.from_pretrained(imported.folder).encode(TEXT, add_special_tokens=False) == ids
    with torch.no_grad():
        expected, got = (m(torch.tensor([ids])).logits for m in (source, converted))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    lineage = json.loads((imported.folder / LINEAGE_FILE).read_text())
    assert lineage["source_file"] == gguf_file.name and lineage["source_format"] == "gguf"
    assert lineage["quantization"] == "F32" and lineage["license"] == "apache-2.0"
    assert len(lineage["source_sha256"]) == 64


def test_the_conversion_is_cached_by_content(gguf_file: Path, tmp_path: Path):
    first = import_checkpoint(gguf_file, cache_root=tmp_path)
    copy = tmp_path / "renamed.gguf"
    copy.write_bytes(gguf_file.read_bytes())
    again = import_checkpoint(copy, cache_root=tmp_path)
    assert first.converted and not again.converted
    assert again.folder == first.folder


def test_a_node_started_on_a_gguf_serves_the_converted_folder(gguf_file: Path, tiny):
    folder = model_folder(str(gguf_file), "cloud", lambda t: t.llama_dir)
    assert folder == model_folder(str(gguf_file), "cloud", lambda t: t.llama_dir)  # second start: from the cache
    imported, source = LlamaModel.load(folder, device="cpu"), LlamaModel.load(tiny.llama_dir, device="cpu")
    prompt = imported.tokenizer.encode(TEXT, add_special_tokens=False)
    params = SamplingParams(max_new_tokens=8)
    assert [p.token_id for p in generate_tokens(imported.new_session(), imported.tokenizer, prompt, params)] == \
        [p.token_id for p in generate_tokens(source.new_session(), source.tokenizer, prompt, params)]


def test_the_chat_template_wraps_the_prompt_verbatim(gguf_file: Path, tmp_path: Path):
    tokenizer = AutoTokenizer.from_pretrained(import_checkpoint(gguf_file, cache_root=tmp_path).folder)
    assert as_model_prompt(tokenizer, TEXT) == f"<|user|>{TEXT}\n<|assistant|>"
    tokenizer.chat_template = None
    assert as_model_prompt(tokenizer, TEXT) == TEXT


def test_a_truncated_gguf_is_refused_naming_the_file(gguf_file: Path, tmp_path: Path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf_file.read_bytes()[: gguf_file.stat().st_size * 2 // 3])
    with pytest.raises(ModelLoadError, match=r"cut\.gguf.*truncated"):
        import_checkpoint(cut, cache_root=tmp_path)
    assert not (tmp_path / "imported").exists() or not any((tmp_path / "imported").iterdir())


def test_a_gguf_of_another_architecture_is_refused(tiny, tmp_path: Path):
    other = write_gguf(tiny.llama_dir, tmp_path / "other.gguf", architecture="mamba")
    with pytest.raises(ModelLoadError, match=r"other\.gguf holds a 'mamba' model; the cloud serves llama"):
        import_checkpoint(other, cache_root=tmp_path)


def test_a_gguf_without_a_tokenizer_is_refused(tiny, tmp_path: Path):
    bare = write_gguf(tiny.llama_dir, tmp_path / "bare.gguf", tokenizer=False)
    with pytest.raises(ModelLoadError, match=r"bare\.gguf carries no tokenizer"):
        import_checkpoint(bare, cache_root=tmp_path)


def test_not_a_gguf_and_a_missing_path(tmp_path: Path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all" * 10)
    with pytest.raises(ModelLoadError, match=r"junk\.gguf is not a readable GGUF file"):
        import_checkpoint(junk, cache_root=tmp_path)
    with pytest.raises(ModelLoadError, match=r"missing\.gguf does not exist"):
        import_checkpoint(tmp_path / "missing.gguf", cache_root=tmp_path)


async def test_model_import_publishes_a_checkpoint_with_its_lineage(core, gguf_file: Path):
    assert await cli("model", "import", str(gguf_file), "--core", core.address, "--name", "tiny-llama",
                     "--version", "v1") == 0
    async with open_channel(core.address) as channel:
        reply = await cmp_grpc.ComputePlaneServiceStub(channel).DescribeModelVersion(
            cmp_pb2.DescribeModelVersionRequest(name="tiny-llama", version="v1"), timeout=10)
    metadata = reply.manifest.metadata
    assert metadata["source_file"] == gguf_file.name and metadata["quantization"] == "F32"
    assert metadata["license"] == "apache-2.0" and metadata["format"] == "tar"


def test_the_pinned_pretrained_base_is_served_with_gqa_and_tied_embeddings():
    """SmolLM2-135M-Instruct from the installed package: 9 query heads over 3 KV heads, a tied head; the
    packed (batching) engine's greedy tokens equal the HF forward's, batched or alone."""
    gguf = pretrained_gguf()
    imported = pretrained_base()
    assert imported.lineage["source_sha256"] == GGUF_SHA256 and imported.lineage["quantization"] == "Q4_1"
    assert imported.lineage["license"] == "apache-2.0" and gguf.name in imported.lineage["source_file"]
    model = LlamaModel.load(imported.folder, device="cpu", dtype="float32")
    config = model.model.config
    assert (config.num_attention_heads, config.num_key_value_heads, config.tie_word_embeddings) == (9, 3, True)
    prompt = model.tokenizer.encode(as_model_prompt(model.tokenizer, "What is the capital of France?"),
                                    add_special_tokens=False)
    params = SamplingParams(max_new_tokens=8)
    packed = [p.token_id for p in generate_tokens(model.new_packed_session(), model.tokenizer, prompt, params)]
    reference = [p.token_id for p in generate_tokens(model.new_session(), model.tokenizer, prompt, params)]
    assert packed == reference
    assert "Paris" in model.tokenizer.decode(packed)


def test_the_pretrained_cloud_starts_with_the_shipped_adapter_unless_told_otherwise(tmp_path: Path):
    shipped = shipped_adapter()
    assert shipped is not None and (shipped / "adapter_config.json").is_file()  # committed, rebuilt by make
    config = json.loads((shipped / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == PRETRAINED_NAME and config["r"] == 16
    assert startup_adapter(CloudConfig(model=PRETRAINED)) == shipped
    assert startup_adapter(CloudConfig(model=PRETRAINED, adapter="none")) is None
    assert startup_adapter(CloudConfig(model=PRETRAINED, adapter=str(tmp_path))) == tmp_path
    assert startup_adapter(CloudConfig(model="starter")) is None
