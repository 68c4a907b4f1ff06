"""Cloud node assembly: LLaMA (+LoRA) on torch behind the user plane, registered with the core."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc
import structlog
import torch

from cloud_node.batching_runner import BatchingRunner
from cloud_node.deployer import cloud_deployer
from cloud_node.generator import CloudGenerator
from cloud_node.llama_engine import LlamaModel
from cloud_node.scheduler import BatchScheduler
from cloud_node.servicer import CloudUserPlane
from cloud_node.training import cloud_trainer
from cp.agent import ControlPlaneAgent
from netgpt.access_rules import cloud_rules
from netgpt.checkpoint.pretrained import PRETRAINED, PRETRAINED_NAME, shipped_adapter
from netgpt.config import CloudConfig
from netgpt.crl import command_handler as crl_command_handler
from netgpt.errors import StartupError
from netgpt.model_slot import ModelSlot, Served
from netgpt.server import Service, start_server
from netgpt.v1 import common_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc
from node.commands import CommandDispatcher
from node.runtime import (
    NodeHandle,
    advertise_model,
    advertised_address,
    advertised_token_address,
    blob_sharing,
    limits_from,
    load_report,
    model_folder,
    node_identity,
    node_metrics,
    serve_node_metrics,
    transfer_counters,
)
from up.convert import model_ref
from up.runner import GenerationRunner

log = structlog.get_logger(__name__)


def load_cloud_model(config: CloudConfig) -> LlamaModel:
    """Load the configured checkpoint (raises ModelLoadError with a one-line reason)."""
    use_threads(config.torch_threads)
    model_dir = model_folder(config.model, "cloud (LLaMA)", lambda tiny: tiny.llama_dir)
    return LlamaModel.load(model_dir, adapter_dir=startup_adapter(config), device=config.device, dtype=config.dtype,
                           name=PRETRAINED_NAME if config.model == PRETRAINED else None)


def use_threads(threads: int) -> None:
    """``torch_threads`` for this process (0: torch's default, one per core): a cloud sharing its host with
    other daemons can leave them cores."""
    if threads < 0:
        raise StartupError(f"[cloud] torch_threads must be 0 (torch's default) or more, got {threads}")
    if threads:
        torch.set_num_threads(threads)
        log.info("cloud.threads", torch_threads=threads)


def startup_adapter(config: CloudConfig) -> Path | None:
    """The adapter a cloud starts with: ``adapter`` as given (``none``: the bare base), or for the pretrained
    base the LoRA adapter shipped in the package (``make pretrained-adapter``), when it is there."""
    if config.adapter == "none":
        return None
    if config.adapter:
        return Path(config.adapter).expanduser()
    return shipped_adapter() if config.model == PRETRAINED else None


def cloud_runner(config: CloudConfig, model: object) -> GenerationRunner:
    """The batching runner on the model's base weights, or (``batching = false``, or a model that cannot
    be batched) one decode loop per request on a worker thread."""
    packed = getattr(model, "packed", None) if config.batching else None
    if packed is None:
        return GenerationRunner(config.max_concurrency, config.max_queue)
    getattr(model, "lora", None)  # a startup adapter's matrices load now: a bad adapter fails the start
    scheduler = BatchScheduler(packed, config.max_batch, config.max_batch_tokens, config.kv_cache_mb,
                               config.max_queue, prefix_cache_mb=config.prefix_cache_mb)
    return BatchingRunner(scheduler, config.max_concurrency, config.max_queue)


async def start_cloud(config: CloudConfig, model: LlamaModel,
                      interceptors: Sequence[grpc.aio.ServerInterceptor] = ()) -> NodeHandle:
    runner = cloud_runner(config, model)
    slots = config.max_batch if isinstance(runner, BatchingRunner) else config.max_concurrency
    slot: ModelSlot = ModelSlot(Served(model, model_ref(model.identity, common_pb2.MODEL_KIND_CHECKPOINT)))
    servicer = CloudUserPlane(slot, CloudGenerator(runner), limits_from(config))
    who = node_identity(config, "cloud")
    node_id = who.node_id
    shelf, blobs, uploads = blob_sharing(config, node_id)
    server = await start_server(config.listen, [
        blobs,
        Service("netgpt.v1.UserPlaneService", servicer, up_grpc.add_UserPlaneServiceServicer_to_server),
    ], interceptors, security=who.security(config, cloud_rules()), metrics=node_metrics(config))
    info = common_pb2.NodeInfo(
        node_id=node_id, role=common_pb2.NODE_ROLE_CLOUD,
        address=advertised_address(config, server), token_address=advertised_token_address(config, server),
        region=config.region,
        capabilities=common_pb2.Capabilities(
            accelerator=model.device, runtime=f"torch/{model.dtype}", max_concurrency=slots,
            max_context_tokens=model.max_context, models=[slot.current.ref]),
    )
    deployer = cloud_deployer(config, info.node_id, slot, lambda served: advertise_model(info, served), shelf,
                              who.transport)
    trainer = cloud_trainer(config, info.node_id, slot, who.transport)
    agent = ControlPlaneAgent(config.core, info,
                              lambda: load_report(runner, [slot.current.ref], transfer_counters(uploads, deployer),
                                                  deployer.states(), trainer.states(), shelf.held()),
                              CommandDispatcher().on("deploy", deployer.handle).on("rollback", deployer.handle)
                              .on("start_training", trainer.handle).on("cancel_training", trainer.handle)
                              .on("certificate_revocations", crl_command_handler(server.revoked)),
                              who.transport)
    agent.start()
    serve_node_metrics(server, config, agent)
    trainer.resume()  # jobs a previous run of this node left in progress continue from their checkpoints
    return NodeHandle(server, agent, runner, slot=slot, deployer=deployer, extras=[trainer])
