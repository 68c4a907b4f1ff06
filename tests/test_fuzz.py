"""Fuzzing every RPC of every service of a real cluster (core, cloud, edge on tiny models).

Each method gets a few hundred request bodies, seeded: random bytes, random messages built from
the request type's descriptor (unknown enum values, huge and odd strings, boundary numbers),
valid requests with one field replaced, and byte mutations of all of these (flipped, cut,
spliced bytes). They go out as raw bytes through a generic channel call, so undecodable bodies
go out too; client-streaming and bidi methods get streams of them; callers are the operator, a
node and a UE. No answer may be INTERNAL or UNKNOWN (a user mistake is never the server's
fault) or hang past its deadline, and every server must still be SERVING afterwards.

A second, exhaustive pass sends the field extremes (:mod:`field_extremes`) of every numeric field of
every request message of every method: 0, max, min and max+1 of every integer type, NaN and the
infinities of every float field, each added to a valid request. Integers get no INTERNAL, UNKNOWN or
hang either; a non-finite float gets INVALID_ARGUMENT naming its field.
``NETGPT_FUZZ_BODIES`` sets the bodies per method (default 200), ``NETGPT_FUZZ_SEED`` the seed.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from field_extremes import extremes
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers import captured_events, concise, new_session
from throwaway_ca import identity, operator

from netgpt.channels import open_channel
from netgpt.tls import Transport
from netgpt.v1 import blob_pb2, common_pb2, profile_pb2, ran_pb2, workflow_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import network_management_pb2 as nm_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "workflow.toml"
BODIES = int(os.environ.get("NETGPT_FUZZ_BODIES", "200"))
SEED = int(os.environ.get("NETGPT_FUZZ_SEED", "1123"))
CONCURRENCY = 16
CALL_TIMEOUT_S = 15.0
MAX_REPLIES = 32  # of a streamed answer; the rest is cancelled
NEVER = {"INTERNAL", "UNKNOWN", "DEADLINE_EXCEEDED"}  # a server fault, or a hang
NODE_ONLY = {"RegisterNode", "Heartbeat"}  # a node calls these only as itself
# grpc-python aio's client, not the server: when the server ends a client stream (here: rejects a
# body) while the client still writes, the failed write overwrites the server's status with this
# (grpc/grpc#36066). The server's side is checked apart: it logs every INTERNAL it answers.
CLIENT_WRITE_RACE = "Internal error from Core"

STRINGS = ["", "edge-1", "cloud-1", "edge-fuzz", "ue-fuzz", "cell-harbour-1", "v1", "sess-000000000000",
           "0" * 64, "a" * 129, "x" * 5000, "../../etc/passwd", "ü\x00\n\t'\"", "%s%n{}", "[workflow]\nname='x'",
           "[" * 300, "lora_adapter", "onnx_edge", "q_proj", " ", "-1", "1e309"]
FLOATS = [0.0, 0.5, 1.0, 1.5, 5.1, -1.0, 1e30, -1e-30, math.nan, math.inf, -math.inf]


def _ints(field: FieldDescriptor) -> list[int]:
    unsigned = field.type in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED32,
                              FieldDescriptor.TYPE_FIXED64)
    wide = field.type in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
                          FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64)
    bits = 64 if wide else 32
    values = [0, 1, 2, 3, 15, 16, 99, 256, 4096, 1 << 20, (1 << (bits - 1)) - 1]
    if unsigned:
        values.append((1 << bits) - 1)
    else:
        values += [-1, -(1 << (bits - 1))]
    return values


class BodyMaker:
    """Seeded request bodies for one method: random bytes, descriptor-built messages, valid
    requests (``seeds``) with one field replaced, and byte mutations of all of them."""

    def __init__(self, rng: random.Random, descriptor: Descriptor, seeds: list[list[Message]],
                 streaming: bool, strings: list[str]) -> None:
        self.rng, self.descriptor, self.seeds, self.streaming = rng, descriptor, seeds, streaming
        self.strings = strings

    def bodies(self) -> list[bytes]:
        """One request (a stream of 1..3 messages for a client-streaming method)."""
        if self.seeds and self.rng.random() < 0.45:
            messages: list[Message] = []
            for message in self.rng.choice(self.seeds):
                clone = type(message)()
                clone.CopyFrom(message)
                messages.append(clone)
            index = self.rng.randrange(len(messages))
            if self.rng.random() < 0.6:
                self.tweak(messages[index])
                return [m.SerializeToString() for m in messages]
            raw = [m.SerializeToString() for m in messages]
            raw[index] = self.mutate(raw[index])
            return raw
        count = self.rng.choice([1, 1, 2, 3]) if self.streaming else 1
        return [self.body() for _ in range(count)]

    def tweak(self, message: Message) -> None:
        """One field of ``message`` (or of a message field inside it) replaced by a random value."""
        nested = [f for f, _ in message.ListFields() if f.message_type is not None and not f.is_repeated]
        if nested and self.rng.random() < 0.4:
            message = getattr(message, self.rng.choice(nested).name)
        field = self.rng.choice(message.DESCRIPTOR.fields)
        message.ClearField(field.name)
        self.fill(message, field, depth=1)

    def body(self) -> bytes:
        roll = self.rng.random()
        if roll < 0.15:
            return self.rng.randbytes(self.rng.choice([0, 1, 2, 5, 17, 64, 600]))
        built = self.message(self.descriptor, depth=0).SerializeToString()
        return built if roll < 0.55 else self.mutate(built)

    def message(self, descriptor: Descriptor, depth: int) -> Message:
        message = message_factory.GetMessageClass(descriptor)()
        for field in descriptor.fields:
            if self.rng.random() < 0.4:
                self.fill(message, field, depth)
        return message

    def fill(self, message: Message, field: FieldDescriptor, depth: int) -> None:
        target = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field, value_field = (field.message_type.fields_by_name[k] for k in ("key", "value"))
            for _ in range(self.rng.randint(0, 2)):
                key = self.scalar(key_field)
                if value_field.message_type is not None:
                    if depth < 3:
                        target[key].CopyFrom(self.message(value_field.message_type, depth + 1))
                else:
                    target[key] = self.scalar(value_field)
            return
        if field.is_repeated:
            for _ in range(self.rng.choice([0, 1, 2, 3, 40])):
                if field.message_type is not None:
                    if depth < 3:
                        target.add().CopyFrom(self.message(field.message_type, depth + 1))
                else:
                    target.append(self.scalar(field))
            return
        if field.message_type is not None:
            if depth < 3:
                target.CopyFrom(self.message(field.message_type, depth + 1))
            return
        setattr(message, field.name, self.scalar(field))

    def scalar(self, field: FieldDescriptor) -> object:
        rng = self.rng
        if field.type == FieldDescriptor.TYPE_STRING:
            return rng.choice(self.strings)
        if field.type == FieldDescriptor.TYPE_BYTES:
            return rng.randbytes(rng.choice([0, 1, 16, 1000]))
        if field.type == FieldDescriptor.TYPE_BOOL:
            return rng.random() < 0.5
        if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return rng.choice(FLOATS)
        if field.type == FieldDescriptor.TYPE_ENUM:
            known = [v.number for v in field.enum_type.values]
            return rng.choice(known) if rng.random() < 0.7 else rng.choice([-7, -1, 9, 42, 99, 1 << 20])
        return rng.choice(_ints(field))

    def mutate(self, data: bytes) -> bytes:
        raw = bytearray(data)
        for _ in range(self.rng.randint(1, 3)):
            op = self.rng.randrange(5)
            where = self.rng.randint(0, len(raw))
            if op == 0 and raw:
                raw[min(where, len(raw) - 1)] ^= 1 << self.rng.randrange(8)
            elif op == 1:
                del raw[where:]
            elif op == 2:
                raw[where:where] = self.rng.randbytes(self.rng.randint(1, 8))
            elif op == 3 and raw:
                start = self.rng.randrange(len(raw))
                raw[where:where] = raw[start:start + self.rng.randint(1, 32)]
            else:  # a field of any number and wire type, possibly unterminated
                raw += bytes([self.rng.randrange(256)]) + self.rng.randbytes(self.rng.randint(0, 6))
        return bytes(raw)


def seeds(session: cp_pb2.AiSession, spare: cp_pb2.AiSession) -> dict[str, list[list[Message]]]:
    """Valid requests per method (``Service.Method``): the fuzzer replaces one field at a time, so
    it reaches the checks behind the first one."""
    data = b"fuzz"
    manifest = cmp_pb2.ModelManifest(name="fuzz", version="v1", kind=common_pb2.MODEL_KIND_ONNX_EDGE,
                                     size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    node = common_pb2.NodeInfo(node_id="edge-fuzz", role=common_pb2.NODE_ROLE_EDGE, address="127.0.0.1:9",
                               cell_ids=["cell-fuzz"])
    spec = workflow_pb2.WorkflowSpec(name="fuzz-flow", latency_budget_ms=5000, priority=3, steps=[
        workflow_pb2.WorkflowStep(id="p", function="personalise"),
        workflow_pb2.WorkflowStep(id="g", function="generate_edge", after=["p"])])
    generate = concise(session, "Where can I eat?", max_new_tokens=4)
    cloud = up_pb2.GenerateRequest(session_id=session.session_id, kind=up_pb2.PROMPT_KIND_COMPREHENSIVE,
                                   prompt="Harbour Fish Market is open. Where can I eat?",
                                   params=up_pb2.GenerationParams(max_new_tokens=4))
    one = {
        "ControlPlaneService.RegisterNode": cp_pb2.RegisterNodeRequest(node=node),
        "ControlPlaneService.Heartbeat": cp_pb2.HeartbeatRequest(node_id="edge-fuzz", sequence=1),
        "ControlPlaneService.EstablishSession": cp_pb2.EstablishSessionRequest(
            ue_id=session.ue_id, cell_id=session.cell_id, qos=common_pb2.QoS(priority=2, latency_budget_ms=900)),
        "ControlPlaneService.GetSession": cp_pb2.GetSessionRequest(session_id=session.session_id),
        "ControlPlaneService.ReleaseSession": cp_pb2.ReleaseSessionRequest(session_id=spare.session_id),
        "ControlPlaneService.ListNodes": cp_pb2.ListNodesRequest(role=common_pb2.NODE_ROLE_EDGE),
        "ControlPlaneService.SetRoutingPolicy": cp_pb2.SetRoutingPolicyRequest(
            policy=cp_pb2.RoutingPolicy(edge_tasks=[up_pb2.TASK_CLASS_LOOKUP], max_cloud_queue=4)),
        "ComputePlaneService.DescribeModelVersion": cmp_pb2.DescribeModelVersionRequest(name="fuzz", version="v1"),
        "ComputePlaneService.FetchModel": cmp_pb2.FetchModelRequest(name="fuzz", version="v1"),
        "ComputePlaneService.DeployModel": cmp_pb2.DeployModelRequest(name="fuzz", version="v1", node_ids=["edge-1"]),
        "ComputePlaneService.GetDeploymentStatus": cmp_pb2.GetDeploymentStatusRequest(node_id="edge-1"),
        "BlobService.FetchBlob": blob_pb2.FetchBlobRequest(sha256=manifest.sha256, node_id="edge-fuzz"),
        "WorkflowService.ApplyWorkflow": workflow_pb2.ApplyWorkflowRequest(spec=spec),
        "WorkflowService.GetWorkflow": workflow_pb2.GetWorkflowRequest(name="fuzz-flow"),
        "UserPlaneService.Generate": generate,
        "ProfileService.UpdateProfile": profile_pb2.UpdateProfileRequest(user_id=session.ue_id,
                                                                          preferences=["seafood"]),
        "ProfileService.GetProfile": profile_pb2.GetProfileRequest(user_id=session.ue_id),
        "NetworkManagementService.PredictPopularity": nm_pb2.PredictPopularityRequest(
            history=nm_pb2.HistoryWindow(first_interval=40, titles=[
                nm_pb2.TitleHistory(title="Iron Man 2", views=[3, 0, 5, 1]),
                nm_pb2.TitleHistory(title="Night Ferry", views=[0, 0, 1, 0])]), top_k=2),
        "NetworkManagementService.InferIntent": nm_pb2.InferIntentRequest(
            text="Please build a 10 Gbit/s connection from Access 1 to Cloud 2",
            document_format=nm_pb2.INTENT_DOCUMENT_FORMAT_3GPP_TS28312),
        "RanService.AttachUe": ran_pb2.AttachUeRequest(ue_id="ue-fuzz-ran", cell_id="cell-harbour-1", five_qi=9),
        "RanService.ReportCellLoad": ran_pb2.ReportCellLoadRequest(cells=[
            ran_pb2.CellLoad(cell_id="cell-harbour-1", prb_utilization=0.5, connected_ues=3)]),
    }
    found: dict[str, list[list[Message]]] = {name: [[message]] for name, message in one.items()}
    found["UserPlaneService.Generate"].append([cloud])
    found["WorkflowService.ApplyWorkflow"].append([workflow_pb2.ApplyWorkflowRequest(spec_toml=EXAMPLE.read_text())])
    found["ComputePlaneService.PublishModel"] = [[
        cmp_pb2.PublishModelRequest(manifest=manifest),
        cmp_pb2.PublishModelRequest(chunk=cmp_pb2.ModelChunk(offset=0, data=data))]]
    return found


@dataclass
class Target:
    name: str
    address: str
    services: list[str]


async def _stream(bodies: list[bytes]) -> AsyncIterator[bytes]:
    for body in bodies:
        yield body


async def call(channel: grpc.aio.Channel, method: MethodDescriptor, bodies: list[bytes]) -> tuple[str, str]:
    """One raw call: the status it ended with (OK when it answered, or was cut after MAX_REPLIES), and its
    details; ``CLIENT_WRITE_RACE`` for the client library's own INTERNAL on a stream the server ended."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    streaming = method.client_streaming, method.server_streaming
    kind = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
            (True, False): channel.stream_unary, (True, True): channel.stream_stream}[streaming]
    request = _stream(bodies) if method.client_streaming else bodies[0]
    rpc = kind(path)(request, timeout=CALL_TIMEOUT_S)  # no serializers: the bodies go out as they are
    try:
        if method.server_streaming:
            replies = 0
            async for _ in rpc:
                replies += 1
                if replies >= MAX_REPLIES:
                    rpc.cancel()
                    break
        else:
            await rpc
    except grpc.aio.AioRpcError as exc:
        if method.client_streaming and exc.code() == grpc.StatusCode.INTERNAL and exc.details() == CLIENT_WRITE_RACE:
            return "CLIENT_WRITE_RACE", CLIENT_WRITE_RACE
        return exc.code().name, exc.details() or ""
    except asyncio.CancelledError:
        return "CANCELLED", ""
    return "OK", ""


def methods_of(service: str) -> list[MethodDescriptor]:
    return list(descriptor_pool.Default().FindServiceByName(service).methods)


@pytest.fixture(scope="module")
async def fuzz_cluster(tiny_models):
    from harness import start_cluster

    small = {"max_new_tokens": 16, "default_new_tokens": 8}  # bodies that generate stay cheap
    netmgmt = {"popularity_model": "packaged", "intent_model": "packaged"}  # so their checks are reached
    running = await start_cluster(*tiny_models, heartbeat_interval_s=0.3, cloud=small, edge={**small, **netmgmt})
    yield running
    await running.stop()


async def _serving(address: str, services: list[str]) -> dict[str, str]:
    async with open_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return {name: health_pb2.HealthCheckResponse.ServingStatus.Name(
            (await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)).status)
            for name in ["", *services]}


def _targets(cluster) -> list[Target]:
    return [Target("core", cluster.core.address, cluster.core.server.services),
            Target("edge", cluster.edge.address, cluster.edge.server.services),
            Target("cloud", cluster.cloud.address, cluster.cloud.server.services)]


def _callers(session: cp_pb2.AiSession) -> dict[str, Transport]:
    return {"operator": operator(), "node": identity("edge", "edge-fuzz"), "ue": identity("ue", session.ue_id)}


async def _every_method(targets: list[Target], callers: dict[str, Transport]) \
        -> AsyncIterator[tuple[Target, MethodDescriptor, dict[str, grpc.aio.Channel]]]:
    """Each method of each service of each target, with a channel per caller to its daemon."""
    for target in targets:
        channels = {who: open_channel(target.address, transport) for who, transport in callers.items()}
        try:
            for service in target.services:
                for method in methods_of(service):
                    yield target, method, channels
        finally:
            for channel in channels.values():
                await channel.close()


async def _check_nothing_failed_inside(logs: list[dict], failures: list[str], targets: list[Target],
                                       shown: int = 20) -> None:
    """No call logged an INTERNAL fault, none answered a NEVER code, and every daemon still serves."""
    internal = [f"{e.get('method')}: {str(e.get('exception', ''))[-600:]}" for e in logs if e["event"] == "rpc.failed"]
    assert not internal, "\n".join(internal[:5])
    assert not failures, "\n".join(failures[:shown])
    for target in targets:
        statuses = await _serving(target.address, target.services)
        assert set(statuses.values()) == {"SERVING"}, (target.name, statuses)


async def test_every_rpc_survives_random_and_mutated_bodies(fuzz_cluster):
    session = await new_session(fuzz_cluster.core.address)
    valid = seeds(session, await new_session(fuzz_cluster.core.address))
    strings = [*STRINGS, session.session_id, session.ue_id, session.ai_flow_id]
    targets = _targets(fuzz_cluster)
    rng = random.Random(SEED)
    seen: Counter[tuple[str, str]] = Counter()
    failures: list[str] = []
    with captured_events() as logs:
        async with aclosing(_every_method(targets, _callers(session))) as methods:
            async for target, method, channels in methods:
                found = valid.get(f"{method.containing_service.name}.{method.name}", [])
                maker = BodyMaker(random.Random(rng.random()), method.input_type, found, method.client_streaming,
                                  strings)
                await _fuzz_method(target, method, maker, channels, rng, seen, failures)
    by_code = Counter[str]()
    for (code, _), n in seen.items():
        by_code[code] += n
    print(f"fuzzed {len(fuzzed := {m for _, m in seen})} methods, {sum(seen.values())} calls: {dict(by_code)}")
    await _check_nothing_failed_inside(logs, failures, targets)
    assert len(fuzzed) >= 30, sorted(fuzzed)  # every method of every service got its bodies


async def _fuzz_method(target: Target, method: MethodDescriptor, maker: BodyMaker,
                       channels: dict[str, grpc.aio.Channel], rng: random.Random,
                       seen: Counter[tuple[str, str]], failures: list[str]) -> None:
    started = time.monotonic()
    pending: list[tuple[str, list[bytes]]] = []
    for _ in range(BODIES):
        who = "node" if method.name in NODE_ONLY else rng.choices(["operator", "node", "ue"], [6, 2, 2])[0]
        pending.append((who, maker.bodies()))
    for start in range(0, len(pending), CONCURRENCY):
        batch = pending[start:start + CONCURRENCY]
        results = await asyncio.gather(*(call(channels[who], method, bodies) for who, bodies in batch))
        for (who, bodies), (code, details) in zip(batch, results, strict=True):
            seen[code, method.name] += 1
            if code in NEVER:
                failures.append(f"{target.name} {method.full_name} as {who}: {code} {details[:200]!r} for "
                                f"{[b[:80] for b in bodies]!r}")
    print(f"fuzz {target.name} {method.full_name}: {time.monotonic() - started:.1f} s")


async def test_field_extremes_of_every_request_message(fuzz_cluster):
    """0 / max / min / max+1 of every integer field and NaN / inf of every float field, at any depth, of
    every method on every daemon, as every caller: never INTERNAL, UNKNOWN or a hang, and a non-finite
    float is INVALID_ARGUMENT naming the field."""
    session = await new_session(fuzz_cluster.core.address)
    valid = seeds(session, await new_session(fuzz_cluster.core.address))
    targets, callers = _targets(fuzz_cluster), _callers(session)
    failures: list[str] = []
    sent: Counter[str] = Counter()
    refused: dict[str, set[str]] = {}  # per non-finite extreme: the answers that named its field
    accepted: list[str] = []
    with captured_events() as logs:
        async with aclosing(_every_method(targets, callers)) as methods:
            async for target, method, channels in methods:
                name = f"{method.containing_service.name}.{method.name}"
                streams = valid.get(name) or [[message_factory.GetMessageClass(method.input_type)()]]
                pending: list[tuple[str, str, bool, list[bytes]]] = []
                for stream in streams:
                    for index, message in enumerate(stream):
                        for extreme in extremes(message.DESCRIPTOR):
                            raw = [m.SerializeToString() for m in stream]
                            raw[index] += extreme.raw
                            who_all = ["node"] if method.name in NODE_ONLY else list(callers)
                            pending += [(who, f"{extreme.path}={extreme.label}", extreme.non_finite, raw)
                                        for who in who_all]
                for start in range(0, len(pending), CONCURRENCY):
                    batch = pending[start:start + CONCURRENCY]
                    results = await asyncio.gather(*(call(channels[who], method, raw) for who, _, _, raw in batch))
                    for (who, what, non_finite, _), (code, details) in zip(batch, results, strict=True):
                        sent[code] += 1
                        key = f"{target.name} {method.full_name} {what}"
                        field = what.split("=")[0].rsplit(".", 1)[-1]
                        if non_finite:  # refused by the access check, or as bad input naming the field
                            named = code == "INVALID_ARGUMENT" and field in details
                            refused.setdefault(key, set()).update({who} if named else set())
                            if not named and code != "PERMISSION_DENIED":
                                failures.append(f"{key} as {who}: {code} {details[:160]!r}")
                        if code == "OK":
                            accepted.append(f"{key} as {who}")
                        if code in NEVER:
                            failures.append(f"{key} as {who}: {code} {details[:160]!r}")
    print(f"field extremes: {sum(sent.values())} calls: {dict(sent)}; accepted:", *accepted, sep="\n  ")
    failures += [f"{key}: no caller was told the field is not finite" for key, named in refused.items() if not named]
    await _check_nothing_failed_inside(logs, failures, targets, shown=30)
