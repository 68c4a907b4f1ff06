"""The edge serves LLaMA-family models too: the tiny LLaMA (GQA: 4 query heads over 2 KV heads) exported to
ONNX with its KV cache, checked against torch, quantised behind the gate, batched, packed, and served by an
edge on loopback (prompt completion and the network-management tasks)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from decode_helpers import step_together
from harness import start_cluster
from helpers import cli, concise, generate, kinds, new_session
from throwaway_ca import identity
from transformers import LlamaForCausalLM

from cloud_node.daemon import load_cloud_model
from cmp.archive import unpack
from edge_node.daemon import load_edge_model
from edge_node.model.architecture import read_edge_config
from edge_node.model.artifact import build_edge_artifact
from edge_node.model.decode_batch import DecodeBatcher
from edge_node.model.onnx_export import check_parity, ensure_onnx_export, export_key, past_names
from edge_node.model.ort_engine import OrtGpt2Model
from edge_node.model.quantize import QualityGateFailed, ensure_quantized_export
from netgpt.channels import open_channel
from netgpt.config import CloudConfig, EdgeConfig
from netgpt.engine import ModelLoadError
from netgpt.generation import SamplingParams, generate_tokens
from netgpt.tiny_models import TinyModels
from netgpt.torch_decode import TorchDecodeSession
from netgpt.v1 import network_management_pb2 as nm_pb2
from netgpt.v1 import network_management_pb2_grpc as nm_grpc

TOL = 1e-4
PROMPTS = ["the quick brown fox", "radio access network", "hello"]


@pytest.fixture(scope="module")
def llama_dir(tiny: TinyModels) -> Path:
    return tiny.llama_dir


@pytest.fixture(scope="module")
def onnx_path(llama_dir: Path) -> Path:
    return ensure_onnx_export(llama_dir)


@pytest.fixture(scope="module")
def torch_model(llama_dir: Path) -> LlamaForCausalLM:
    return LlamaForCausalLM.from_pretrained(llama_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def edge_model(llama_dir: Path, onnx_path: Path) -> OrtGpt2Model:
    return OrtGpt2Model.load(llama_dir, providers="cpu")


def test_graph_keeps_the_kv_heads_not_the_query_heads(onnx_path: Path, torch_model: LlamaForCausalLM) -> None:
    config = torch_model.config
    assert config.num_key_value_heads < config.num_attention_heads  # the tiny LLaMA is GQA
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    inputs = {i.name: i.shape for i in session.get_inputs()}
    assert list(inputs) == ["input_ids", "attention_mask", "position_ids", *past_names(config.num_hidden_layers)]
    head_dim = config.hidden_size // config.num_attention_heads
    assert inputs["past_key_values.0.key"][1:] == [config.num_key_value_heads, "past", head_dim]
    meta = json.loads((onnx_path.parent / "export.json").read_text())
    assert (meta["model_type"], meta["kv_heads"]) == ("llama", config.num_key_value_heads)


def test_export_is_cached_by_content(llama_dir: Path, onnx_path: Path, tiny: TinyModels) -> None:
    assert ensure_onnx_export(llama_dir) == onnx_path
    assert export_key(llama_dir) != export_key(tiny.gpt2_dir)


def test_logits_match_torch_prefill_and_decode(llama_dir: Path, onnx_path: Path) -> None:
    assert check_parity(llama_dir, onnx_path, prompt_lengths=(1, 5, 17), batch_sizes=(1, 2)) < TOL


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_tokens_identical_to_torch(edge_model: OrtGpt2Model, torch_model: LlamaForCausalLM,
                                          prompt: str) -> None:
    ids = edge_model.tokenizer.encode(prompt, add_special_tokens=False)
    params = SamplingParams(max_new_tokens=24)
    ours = [p.token_id for p in generate_tokens(edge_model.new_session(), edge_model.tokenizer, ids, params)]
    reference = TorchDecodeSession(torch_model, torch.device("cpu"))
    theirs = [p.token_id for p in generate_tokens(reference, edge_model.tokenizer, ids, params)]
    assert ours == theirs and len(ours) > 0


def test_batched_decode_steps_equal_single_steps(edge_model: OrtGpt2Model, llama_dir: Path,
                                                 torch_model: LlamaForCausalLM) -> None:
    """Sessions at different lengths step as one ORT run (left-padded GQA caches) and give the logits that
    the unbatched io-binding decoder and torch give."""
    assert edge_model.batcher is not None  # fp32 LLaMA graphs are batch-invariant, so the engine batches
    batcher = DecodeBatcher(edge_model.session, edge_model.spec.n_layer, max_batch=4, gather_s=30.0)
    batched = OrtGpt2Model(edge_model.session, edge_model.tokenizer, edge_model.identity,
                           read_edge_config(llama_dir)[0], edge_model.onnx_path, max_batch=1)
    batched.batcher = batcher  # a gather window long enough that all three always meet
    single = OrtGpt2Model.load(llama_dir, providers="cpu", max_batch=1)
    assert single.batcher is None
    prompts = [[3, 9, 27], [5] * 11, [7, 8]]
    tokens = [[5, 17, 200, 4], [1, 2, 3, 4], [40, 41, 42, 43]]
    ours = [batched.new_session() for _ in prompts]
    alone = [single.new_session() for _ in prompts]
    refs = [TorchDecodeSession(torch_model, torch.device("cpu")) for _ in prompts]
    for session, one, ref, ids in zip(ours, alone, refs, prompts, strict=True):
        np.testing.assert_allclose(session.prefill(ids), one.prefill(ids), rtol=0, atol=TOL)
        ref.prefill(ids)
    got = step_together(ours, tokens)
    assert batcher.steps == 12 and batcher.runs == 4  # every step of the three ran as one batch
    for i in range(len(prompts)):
        for token, logits in zip(tokens[i], got[i], strict=True):
            np.testing.assert_allclose(logits, alone[i].advance(token), rtol=0, atol=TOL)
            np.testing.assert_allclose(logits, refs[i].advance(token), rtol=0, atol=TOL)


def test_int8_goes_through_the_quality_gate(llama_dir: Path) -> None:
    """The gate's held-out texts are built with the LLaMA's own tokenizer; random weights may pass or fail it,
    but either way the figures are measured (a failure names them and caches nothing)."""
    try:
        path = ensure_quantized_export(llama_dir, "int8")
    except QualityGateFailed as exc:
        assert "perplexity" in str(exc) or "greedy tokens" in str(exc)
        return
    quality = json.loads((path.parent / "export.json").read_text())["quality"]
    assert quality["quantization"] == "int8" and quality["answers"]["positions"] > 0
    model = OrtGpt2Model.load(llama_dir, providers="cpu", quantization="int8")
    assert model.quantization == "int8" and model.batcher is None  # int8 rows are not batch-invariant


def _copy(folder: Path, to: Path, **config_changes: object) -> Path:
    shutil.copytree(folder, to)
    config = json.loads((to / "config.json").read_text()) | config_changes
    (to / "config.json").write_text(json.dumps(config))
    return to


def test_a_llama_the_exporter_cannot_handle_is_a_load_error_naming_it(llama_dir: Path, tmp_path: Path) -> None:
    dynamic = _copy(llama_dir, tmp_path / "dynamic-rope",
                    rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0})
    with pytest.raises(ModelLoadError, match=r"dynamic-rope.*RoPE scaling 'dynamic'"):
        ensure_onnx_export(dynamic)
    odd = _copy(llama_dir, tmp_path / "odd-heads", num_key_value_heads=3)
    with pytest.raises(ModelLoadError, match="odd-heads"):
        OrtGpt2Model.load(odd, providers="cpu")


def test_edge_artifact_packs_a_llama(llama_dir: Path, tmp_path: Path) -> None:
    artifact = build_edge_artifact(llama_dir, tmp_path / "edge.tar", quantization="fp32")
    assert artifact.metadata["model_type"] == "llama" and float(artifact.metadata["parity_max_abs_diff"]) < TOL
    served = OrtGpt2Model.load_exported(unpack(artifact.path, tmp_path / "unpacked"), providers="cpu")
    assert served.spec == read_edge_config(llama_dir)[1]


async def test_cli_export_edge_packs_a_llama_folder(llama_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "llama-edge.tar"
    assert await cli("model", "export-edge", str(llama_dir), "--out", str(out), "--quantization", "fp32") == 0
    assert "greedy tokens identical" in capsys.readouterr().out
    assert OrtGpt2Model.load_exported(unpack(out, tmp_path / "unpacked"), providers="cpu").spec.model_type == "llama"


@pytest.mark.e2e
async def test_an_edge_serves_a_llama_on_loopback(llama_dir: Path) -> None:
    """``--model DIR`` of a LLaMA folder: prompt completion, PredictPopularity and InferIntent all answer."""
    edge = load_edge_model(EdgeConfig(model=str(llama_dir), providers="cpu"))
    assert edge.spec.model_type == "llama"
    cloud = load_cloud_model(CloudConfig(model="tiny"))
    cluster = await start_cluster(edge, cloud, edge={"popularity_model": str(llama_dir),
                                                     "intent_model": str(llama_dir)})
    try:
        session = await new_session(cluster.core.address)
        events = await generate(cluster.edge.address, concise(session, "where can I eat?"))
        assert "summary" in kinds(events)
        stub = nm_grpc.NetworkManagementServiceStub(open_channel(cluster.edge.address, identity("operator",
                                                                                                 "operator")))
        window = nm_pb2.HistoryWindow(first_interval=1, titles=[nm_pb2.TitleHistory(title="a", views=[1, 2, 3])])
        reply = await stub.PredictPopularity(nm_pb2.PredictPopularityRequest(history=window), timeout=60)
        assert [t.title for t in reply.titles] == ["a"] and 0.0 <= reply.titles[0].probability <= 1.0
        intent = await stub.InferIntent(nm_pb2.InferIntentRequest(text="delete link 4"), timeout=60)
        assert intent.model_version
    finally:
        await cluster.stop()
