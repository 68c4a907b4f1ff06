"""Edge node assembly: GPT-2 on ONNX Runtime, the knowledge base, routing and the cloud link."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import cast

import structlog

from cmp.deployer import Deployer
from cp.agent import ControlPlaneAgent
from cp.ue_tokens import decode_state
from edge_node.model.deployer import edge_deployer
from edge_node.model.ort_engine import OrtGpt2Model
from edge_node.model.router_deploy import router_deployer, starting_router
from edge_node.model.training import edge_trainer
from edge_node.netmgmt.servicer import NetworkManagementServicer
from edge_node.netmgmt.task_models import load_task_models, load_view_log, task_deployers, task_slots
from edge_node.netmgmt.topology import intent_topology
from edge_node.openai_api.access import HttpAccess
from edge_node.openai_api.app import OpenAiApi
from edge_node.openai_api.models import ModelCatalogue
from edge_node.openai_api.sessions import SessionBinder
from edge_node.serving.answer_cache import AnswerCache
from edge_node.serving.cell_loads import CellLoads
from edge_node.serving.cloud_calls import CloudGateway
from edge_node.serving.cloud_peers import CloudPeers
from edge_node.serving.data_policy import DataPolicy
from edge_node.serving.distill_samples import DistillSamples
from edge_node.serving.erasure import UserData
from edge_node.serving.generate_call import EdgeGenerate
from edge_node.serving.knowledge import KnowledgeBase
from edge_node.serving.learned_router import LearnedRouter, RouterFileError
from edge_node.serving.personalise import Personaliser
from edge_node.serving.pipeline import EdgePipeline, EdgeSettings
from edge_node.serving.profile_servicer import ProfileServicer
from edge_node.serving.profiles import ProfileStore, RetentionSweep
from edge_node.serving.routing import PerformancePolicy
from edge_node.serving.servicer import EdgeUserPlane
from edge_node.serving.sessions import session_directory, session_owner, workflow_directory
from netgpt.access_rules import edge_http_rules, edge_rules
from netgpt.channels import open_channel
from netgpt.config import EdgeConfig
from netgpt.crl import command_handler as crl_command_handler
from netgpt.errors import StartupError
from netgpt.http_server import HttpServer, TlsFiles, start_http_server
from netgpt.model_slot import ModelSlot, Served
from netgpt.server import Service, start_server
from netgpt.tls import Identity, Transport
from netgpt.ue_tokens import UeTokenVerifier
from netgpt.v1 import common_pb2, workflow_pb2_grpc
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import network_management_pb2_grpc as nm_grpc
from netgpt.v1 import profile_pb2_grpc as profile_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc
from node.commands import CommandDispatcher
from node.runtime import (
    NodeHandle,
    advertise_model,
    advertised_address,
    advertised_token_address,
    blob_sharing,
    data_dir,
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

ROUTERS = ("rules", "learned", "shadow")  # EdgeConfig.router


def load_edge_model(config: EdgeConfig) -> OrtGpt2Model:
    """Load (and export to ONNX on first use) the configured GPT-2 or LLaMA-family model; ModelLoadError on a bad
    folder. ``tiny``/``starter`` pick the GPT-2; a LLaMA folder (or ``pretrained``) is served the same way."""
    model_dir = model_folder(config.model, "edge (GPT-2 or LLaMA)", lambda tiny: tiny.gpt2_dir)
    return OrtGpt2Model.load(model_dir, providers=config.providers, quantization=config.quantization,
                             max_batch=config.max_batch, prefix_cache_mb=config.prefix_cache_mb,
                             intra_op_threads=config.intra_op_threads, prefill_first=config.prefill_first)


def load_knowledge(config: EdgeConfig) -> KnowledgeBase:
    if config.knowledge:
        return KnowledgeBase.load(Path(config.knowledge), config.knowledge_db, config.fact_min_share)
    with resources.as_file(resources.files("netgpt.assets") / "knowledge.toml") as bundled:
        return KnowledgeBase.load(bundled, config.knowledge_db, config.fact_min_share)


def profiles_path(config: EdgeConfig, node_id: str) -> str:
    """``profiles_db`` as given (``:memory:`` allowed), else a file per edge node under the data dir."""
    if config.profiles_db:
        return config.profiles_db
    folder = data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"profiles-{node_id}.sqlite")


def distill_samples(config: EdgeConfig, node_id: str) -> DistillSamples | None:
    """The cloud's answers kept for the edge to learn from (``distill_samples``); None when the operator has not
    turned it on. ``distill_db`` as given, else a file per edge node under the data dir."""
    if not config.distill_samples:
        return None
    return DistillSamples(config.distill_db or str(data_dir() / f"distill-{node_id}.sqlite"),
                          config.distill_max_samples)


def routing_policy(config: EdgeConfig, router: LearnedRouter | None = None,
                   cell_loads: CellLoads | None = None) -> PerformancePolicy:
    """The policy the edge's settings describe; ``router``: the learned router it starts with (None: rules)."""
    tasks: set[up_pb2.TaskClass] = set()
    for name in config.edge_tasks:
        key = f"TASK_CLASS_{name.upper()}"
        if key not in up_pb2.TaskClass.keys():
            raise StartupError(f"edge_tasks: unknown task class {name!r}; known: chat, lookup")
        tasks.add(cast(up_pb2.TaskClass, up_pb2.TaskClass.Value(key)))  # the stubs type Value() as int
    return PerformancePolicy(edge_tasks=frozenset(tasks),
                             confidence_threshold=config.confidence_threshold or None,
                             probe_tokens=config.confidence_probe_tokens, max_cloud_queue=config.max_cloud_queue,
                             router=router, router_threshold=config.router_threshold,
                             router_shadow=config.router == "shadow", cell_offload_prb=cell_offload_prb(config),
                             cell_loads=cell_loads or CellLoads(frozenset(config.cells)))


def cell_offload_prb(config: EdgeConfig) -> float:
    if not 0.0 <= config.cell_offload_prb <= 1.0:
        raise StartupError(f"cell_offload_prb is a PRB utilisation and must be within 0..1 (0: off); "
                           f"got {config.cell_offload_prb}")
    return config.cell_offload_prb


def learned_router(config: EdgeConfig) -> Served[LearnedRouter] | None:
    """The learned router the edge's ``router`` setting asks for, as the version it advertises (None: today's
    rules; such an edge serves no router, and the core deploys none to it)."""
    if config.router not in ROUTERS:
        raise StartupError(f"router: unknown {config.router!r}; known: {', '.join(ROUTERS)}")
    if not 0.0 <= config.router_threshold <= 1.0:
        raise StartupError(f"router_threshold is a probability and must be within 0..1; got {config.router_threshold}")
    if config.router == "rules":
        return None
    try:
        return starting_router(config.router_weights)
    except RouterFileError as e:
        raise StartupError(str(e)) from e


async def start_edge(config: EdgeConfig, model: OrtGpt2Model, knowledge: KnowledgeBase) -> NodeHandle:
    if not config.cells:
        raise StartupError("an edge node must serve at least one cell: pass --cells CELL[,CELL...]")
    router = learned_router(config)
    topology = await asyncio.to_thread(intent_topology, config)  # a bad file stops the edge before it opens anything
    cell_loads = CellLoads(frozenset(config.cells))
    policy = routing_policy(config, router.model if router else None, cell_loads)
    runner = GenerationRunner(config.max_concurrency, config.max_queue)
    who = node_identity(config, "edge")
    peers = CloudPeers(who.transport)
    core_channel = open_channel(config.core, who.transport)
    settings = EdgeSettings(node_id=who.node_id, cells=frozenset(config.cells), answer_start=config.answer_start)
    cache = AnswerCache(ttl_s=config.answer_cache_ttl_s, max_entries=config.answer_cache_size)
    gateway = CloudGateway(peers, config.cloud_token_timeout_s, cache, coalesce=config.coalesce,
                           samples=distill_samples(config, settings.node_id))
    profiles = ProfileStore(profiles_path(config, settings.node_id), config.profile_history_size,
                            config.profile_retention_s)
    sweep = RetentionSweep(profiles)  # retention holds on an idle edge too
    slot: ModelSlot = ModelSlot(Served(model, model_ref(model.identity, common_pb2.MODEL_KIND_ONNX_EDGE)))
    personaliser = Personaliser(knowledge, profiles, runner, intent_tokens=config.intent_tokens,
                                intent_from=config.intent_from, cloud_intent=config.cloud_intent)
    pipeline = EdgePipeline(settings, runner, personaliser, policy, gateway,
                            DataPolicy.from_settings(config.allowed_cloud_regions))
    sessions = session_directory(cp_grpc.ControlPlaneServiceStub(core_channel), config.session_cache_s)
    workflows = workflow_directory(workflow_pb2_grpc.WorkflowServiceStub(core_channel), config.session_cache_s)
    shelf, blobs, uploads = blob_sharing(config, settings.node_id)
    tasks = task_slots(await asyncio.to_thread(load_task_models, config))
    view_log = await asyncio.to_thread(load_view_log, config)
    generate = EdgeGenerate(pipeline, slot, limits_from(config), sessions, workflows)
    tokens = UeTokenVerifier()  # UEs call with a token instead of a certificate; keys and revocations from the core
    server = await start_server(config.listen, [
        blobs,
        Service("netgpt.v1.UserPlaneService", EdgeUserPlane(generate), up_grpc.add_UserPlaneServiceServicer_to_server),
        Service("netgpt.v1.ProfileService", ProfileServicer(profiles, UserData(profiles, gateway)),
                profile_grpc.add_ProfileServiceServicer_to_server),
        Service("netgpt.v1.NetworkManagementService", NetworkManagementServicer(tasks, runner, view_log, topology),
                nm_grpc.add_NetworkManagementServiceServicer_to_server),
    ], security=who.security(config, edge_rules(session_owner(sessions)), tokens), metrics=node_metrics(config))
    info = common_pb2.NodeInfo(
        node_id=settings.node_id, role=common_pb2.NODE_ROLE_EDGE, address=advertised_address(config, server),
        token_address=advertised_token_address(config, server), region=config.region, cell_ids=config.cells,
        capabilities=common_pb2.Capabilities(
            accelerator=model.provider, runtime="onnxruntime", max_concurrency=config.max_concurrency),
    )
    deployer = edge_deployer(config, settings.node_id, slot,
                             lambda served: advertise_model(info, served, deployers.served()), shelf,
                             who.transport)
    deployers = task_deployers(config, settings.node_id, deployer, tasks, who.transport, info,
                               router_deployer_of(config, settings.node_id, router, pipeline, who.transport,
                                                  lambda: advertise_model(info, slot.current, deployers.served())))
    advertise_model(info, slot.current, deployers.served())  # its models (main first) and context length
    trainer = edge_trainer(config, settings.node_id, slot.current.ref, who.transport)

    def report() -> common_pb2.NodeLoad:
        counters = gateway.counters() | transfer_counters(uploads, deployer, *deployers.others())
        return load_report(runner, deployers.served(), counters, deployers.states(), trainer.states(), shelf.held())

    binder = SessionBinder(cp_grpc.ControlPlaneServiceStub(core_channel), sessions)
    access = HttpAccess(edge_http_rules(session_owner(sessions)), secure=isinstance(who.transport, Identity),
                        tokens=tokens, revoked=server.revoked)
    try:
        http = await start_openai_api(config, who.transport, OpenAiApi(
            generate, ModelCatalogue(settings.node_id, slot, peers), binder, access, server.gate, settings.cells))
    except BaseException:  # e.g. its port is taken: the gRPC server must not outlive the failed start
        await server.stop(0)
        await core_channel.close()
        raise

    agent = ControlPlaneAgent(
        config.core, info, report,
        CommandDispatcher().on("peers_update", peers.apply)
        .on("routing_policy", lambda command: pipeline.apply_policy(command.routing_policy))
        .on("cell_loads", cell_loads.apply)
        .on("sessions_moved", lambda command: sessions.forget(command.sessions_moved.session_ids))
        .on("ue_tokens", lambda command: tokens.apply(decode_state(command.ue_tokens)))
        .on("certificate_revocations", crl_command_handler(server.revoked))
        .on("deploy", deployers.handle).on("rollback", deployers.handle)
        .on("start_training", trainer.handle).on("cancel_training", trainer.handle), who.transport)
    agent.start()
    serve_node_metrics(server, config, agent)
    sweep.start()
    trainer.resume()  # jobs a previous run of this node left in progress continue from their checkpoints
    return NodeHandle(server, agent, runner, peers=peers, gateway=gateway, pipeline=pipeline,
                      extras=[peers, core_channel, trainer, sweep, deployers], slot=slot, deployer=deployer, http=http)


def router_deployer_of(config: EdgeConfig, node_id: str, router: Served[LearnedRouter] | None, pipeline: EdgePipeline,
                       transport: Transport, advertise: Callable[[], None]) -> Deployer[LearnedRouter] | None:
    """The learned router's deployer (None on an edge that routes by rules): a swap or rollback hands the router
    to the pipeline's policy, which requests read once when they start."""
    if router is None:
        return None

    def swapped(served: Served[LearnedRouter]) -> None:
        if isinstance(pipeline.policy, PerformancePolicy):
            pipeline.policy = pipeline.policy.with_router(served.model)
        log.info("edge.router", router=str(served.model), name=served.ref.name, version=served.ref.version)
        advertise()

    return router_deployer(config, node_id, ModelSlot(router), swapped, transport)


async def start_openai_api(config: EdgeConfig, transport: Transport, api: OpenAiApi) -> HttpServer | None:
    """The OpenAI-compatible HTTP API on ``openai_listen`` (None when it is empty): HTTPS with the node's own
    certificate and key, asking callers for theirs; plaintext only for an insecure (loopback) edge."""
    if not config.openai_listen:
        return None
    tls = None
    if isinstance(transport, Identity):
        tls = TlsFiles(*(str(Path(p).expanduser()) for p in (config.tls_ca, config.tls_cert, config.tls_key)))
    http = await start_http_server(config.openai_listen, api.app(), tls, grace_s=config.grace_s)
    if isinstance(transport, Identity) and transport.source is not None:
        transport.source.on_reload(http.use_identity)  # renewed certificate files: HTTPS takes them too
    return http
