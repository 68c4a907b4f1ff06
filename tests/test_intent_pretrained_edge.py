"""An edge with ``intent_model = "pretrained"`` answers InferIntent over gRPC with base + adapter merged and
served through ONNX Runtime. The base here is the tiny LLaMA (the real SmolLM2 merge and export take minutes;
``netgpt eval intent --model pretrained`` runs those), with a LoRA adapter on it."""

from __future__ import annotations

import pytest
import torch
from harness import start_cluster
from throwaway_ca import identity

import edge_node.netmgmt.task_models as task_models
from edge_node.netmgmt.intent_reader import pretrained_intent_folder
from netgpt.channels import open_channel
from netgpt.v1 import network_management_pb2 as nm_pb2
from netgpt.v1 import network_management_pb2_grpc as nm_grpc

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def pretrained_edge(models, tiny, tmp_path_factory):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    adapter = tmp_path_factory.mktemp("intent-adapter")
    base = AutoModelForCausalLM.from_pretrained(tiny.llama_dir, dtype=torch.float32)
    get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    merged: list[object] = []

    def tiny_pretrained():
        merged.append(pretrained_intent_folder(adapter, base=tiny.llama_dir))
        return merged[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(task_models, "pretrained_intent_folder", tiny_pretrained)
        cluster = await start_cluster(*models, edge={"popularity_model": "none", "intent_model": "pretrained"})
    assert merged, "the edge did not build the pretrained intent model"
    yield cluster
    await cluster.stop()


async def test_the_pretrained_setting_serves_infer_intent(pretrained_edge) -> None:
    stub = nm_grpc.NetworkManagementServiceStub(open_channel(pretrained_edge.edge.address,
                                                             identity("operator", "operator")))
    text = "build a 10 Gbps connection from Access 1 to Cloud 2"
    reply = await stub.InferIntent(nm_pb2.InferIntentRequest(text=text), timeout=60)
    assert reply.model_version
    # an untrained adapter: whatever it reads, the names it returns are copied from the request
    for name in (reply.intent.source, reply.intent.destination):
        assert not name or name in text
    assert reply.needs_clarification or reply.intent.action
