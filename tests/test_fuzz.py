"""Fuzzing every RPC of every service of a real cluster (core, cloud, edge on tiny models).

Each method gets a few hundred request bodies, seeded: random bytes, random messages built from
the request type's descriptor (unknown enum values, huge and odd strings, boundary numbers), and
mutations of both (flipped, cut, spliced bytes), as raw bytes through a generic channel call, so
undecodable bodies go out too; client-streaming and bidi methods get streams of them. No answer
may be INTERNAL or UNKNOWN (a user mistake is never the server's fault), and every server must
still be SERVING afterwards. ``NETGPT_FUZZ_BODIES`` sets the bodies per method (default 200).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers import captured_events, new_session
from pki import identity, operator

from netgpt.channels import open_channel

BODIES = int(os.environ.get("NETGPT_FUZZ_BODIES", "200"))
SEED = int(os.environ.get("NETGPT_FUZZ_SEED", "1123"))
CONCURRENCY = 16
CALL_TIMEOUT_S = 15.0
MAX_REPLIES = 32  # of a streamed answer; the rest is cancelled
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
NODE_ONLY = {"RegisterNode", "Heartbeat"}  # a node calls these only as itself

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
    """Seeded request bodies for one message type: random, descriptor-built, and mutated."""

    def __init__(self, rng: random.Random, descriptor: Descriptor) -> None:
        self.rng, self.descriptor = rng, descriptor
        self.cls = message_factory.GetMessageClass(descriptor)

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
            return rng.choice(STRINGS)
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


@dataclass
class Target:
    name: str
    address: str
    services: list[str]


async def _stream(bodies: list[bytes]) -> AsyncIterator[bytes]:
    for body in bodies:
        yield body


async def call(channel: grpc.aio.Channel, method: MethodDescriptor, bodies: list[bytes]) -> grpc.StatusCode:
    """One raw call: the status it ended with (OK when it answered, or was cut after MAX_REPLIES)."""
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
        return exc.code()
    except asyncio.CancelledError:
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.OK


def methods_of(service: str) -> list[MethodDescriptor]:
    return list(descriptor_pool.Default().FindServiceByName(service).methods)


@pytest.fixture(scope="module")
async def fuzz_cluster(tiny_models):
    from harness import start_cluster

    running = await start_cluster(*tiny_models, heartbeat_interval_s=0.3)
    yield running
    await running.stop()


async def _serving(address: str, services: list[str]) -> dict[str, str]:
    async with open_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return {name: health_pb2.HealthCheckResponse.ServingStatus.Name(
            (await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)).status)
            for name in ["", *services]}


async def test_every_rpc_survives_random_and_mutated_bodies(fuzz_cluster):
    session = await new_session(fuzz_cluster.core.address)
    STRINGS.extend([session.session_id, session.ue_id, session.ai_flow_id])
    targets = [Target("core", fuzz_cluster.core.address, fuzz_cluster.core.server.services),
               Target("edge", fuzz_cluster.edge.address, fuzz_cluster.edge.server.services),
               Target("cloud", fuzz_cluster.cloud.address, fuzz_cluster.cloud.server.services)]
    callers = {"operator": operator(), "node": identity("edge", "edge-fuzz"), "ue": identity("ue", session.ue_id)}
    rng = random.Random(SEED)
    seen: Counter[tuple[str, str]] = Counter()
    failures: list[str] = []
    with captured_events() as logs:
        for target in targets:
            channels = {who: open_channel(target.address, transport) for who, transport in callers.items()}
            try:
                for service in target.services:
                    for method in methods_of(service):
                        await _fuzz_method(target, method, channels, rng, seen, failures)
            finally:
                for channel in channels.values():
                    await channel.close()
    by_code = Counter[str]()
    for (code, _), n in seen.items():
        by_code[code] += n
    print(f"fuzzed {len(fuzzed := {m for _, m in seen})} methods, {sum(seen.values())} calls: {dict(by_code)}")
    assert not failures, "\n".join(failures[:20])
    assert not [e for e in logs if e["event"] == "rpc.failed"], "a request was answered INTERNAL"
    assert len(fuzzed) >= 30, sorted(fuzzed)  # every method of every service got its bodies
    for target in targets:
        statuses = await _serving(target.address, target.services)
        assert set(statuses.values()) == {"SERVING"}, (target.name, statuses)


async def _fuzz_method(target: Target, method: MethodDescriptor, channels: dict[str, grpc.aio.Channel],
                       rng: random.Random, seen: Counter[tuple[str, str]], failures: list[str]) -> None:
    maker = BodyMaker(random.Random(rng.random()), method.input_type)
    pending: list[tuple[str, list[bytes]]] = []
    for _ in range(BODIES):
        who = "node" if method.name in NODE_ONLY else rng.choices(["operator", "node", "ue"], [6, 2, 2])[0]
        count = rng.choice([1, 1, 2, 3]) if method.client_streaming else 1
        pending.append((who, [maker.body() for _ in range(count)]))
    for start in range(0, len(pending), CONCURRENCY):
        batch = pending[start:start + CONCURRENCY]
        codes = await asyncio.gather(*(call(channels[who], method, bodies) for who, bodies in batch))
        for (who, bodies), code in zip(batch, codes, strict=True):
            seen[code.name, method.name] += 1
            if code in NEVER or code == grpc.StatusCode.DEADLINE_EXCEEDED:
                failures.append(f"{target.name} {method.full_name} as {who}: {code.name} for "
                                f"{[b[:80] for b in bodies]!r}")
