"""The generated stubs match the protos, and every server answers health and reflection."""

from __future__ import annotations

import asyncio
import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from netgpt.channels import open_channel
from netgpt.server import Service, start_server
from netgpt.tls import PLAINTEXT
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc

ROOT = Path(__file__).resolve().parent.parent


def test_generated_stubs_are_fresh(tmp_path: Path):
    protos = sorted((ROOT / "protos" / "netgpt" / "v1").glob("*.proto"))
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "protos"), f"--python_out={tmp_path}",
                    f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", *map(str, protos)], check=True)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*_pb2*.py*"))
    committed = sorted(p.relative_to(ROOT) for p in (ROOT / "netgpt" / "v1").glob("*_pb2*.py*"))
    assert fresh == committed, "stub set differs: run `make protos`"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, ROOT / p, shallow=False)]
    assert not stale, f"stale generated stubs (run `make protos`): {stale}"


@pytest.mark.skipif(shutil.which("npx") is None or shutil.which("node") is None, reason="needs node and npx")
def test_buf_generate_runs_as_shipped(tmp_path: Path):
    """`npx buf generate --template buf.gen.yaml` works with only `npm install` (local plugins, no network)."""
    if not (ROOT / "node_modules" / ".bin" / "protoc-gen-es").exists():  # a fresh clone: what `make lint` runs
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=ROOT, check=True, timeout=600,
                       capture_output=True)
    done = subprocess.run(["npx", "buf", "generate", "--template", "buf.gen.yaml", "-o", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    protos = sorted(p.stem for p in (ROOT / "protos" / "netgpt" / "v1").glob("*.proto"))
    generated = tmp_path / "clients" / "ts" / "src" / "gen" / "netgpt" / "v1"
    assert sorted(p.name for p in generated.glob("*.ts")) == [f"{stem}_pb.ts" for stem in protos]
    user_plane = (generated / "user_plane_pb.ts").read_text()
    assert "export const UserPlaneService: GenService<" in user_plane
    assert "netgpt.v1.GenerateRequest" in user_plane
    tsc = ROOT / "node_modules" / ".bin" / "tsc"  # comes with the plugin; type-check against @bufbuild/protobuf
    if tsc.exists():
        os.symlink(ROOT / "node_modules", tmp_path / "node_modules")
        checked = subprocess.run([str(tsc), "--noEmit", "--strict", "--target", "es2022", "--module", "esnext",
                                  "--moduleResolution", "bundler", "--skipLibCheck",
                                  *map(str, sorted(generated.glob("*.ts")))],
                                 cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert checked.returncode == 0, checked.stdout + checked.stderr


async def _reflected_services(address: str) -> list[str]:
    async with open_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for reply in stub.ServerReflectionInfo(iter([request]), timeout=5):
            return sorted(s.name for s in reply.list_services_response.service)
    return []


@pytest.mark.parametrize("node, service", [
    ("core", "netgpt.v1.ControlPlaneService"),
    ("core", "netgpt.v1.ComputePlaneService"),
    ("edge", "netgpt.v1.UserPlaneService"),
    ("cloud", "netgpt.v1.UserPlaneService"),
])
async def test_health_and_reflection(cluster, node, service):
    address = getattr(cluster, node).address
    assert service in await _reflected_services(address)
    async with open_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                                 timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def _reflect(address: str, service: str, request) -> list:
    """One ServerReflectionInfo exchange under ``service`` (v1 or v1alpha; the messages are wire-identical)."""
    async with open_channel(address, PLAINTEXT) as channel:
        call = channel.stream_stream(f"/{service}/ServerReflectionInfo",
                                     request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                     response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        return [reply async for reply in call(iter([request]), timeout=5)]


class _SlowUserPlane(up_grpc.UserPlaneServiceServicer):
    """Generate sends one event, then holds the stream open until released: a call in flight."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def Generate(self, request, context):
        yield up_pb2.GenerateResponse()
        await self.release.wait()
        yield up_pb2.GenerateResponse()


@pytest.fixture
async def user_plane_server():
    """A bare server from the one server factory, serving a stub UserPlaneService (no cluster needed)."""
    servicer = _SlowUserPlane()
    handle = await start_server("127.0.0.1:0", [Service("netgpt.v1.UserPlaneService", servicer,
                                                        up_grpc.add_UserPlaneServiceServicer_to_server)])
    yield handle
    servicer.release.set()
    await handle.stop(0)


@pytest.mark.parametrize("reflection_service", ["grpc.reflection.v1.ServerReflection",
                                                "grpc.reflection.v1alpha.ServerReflection"])
async def test_reflection_v1_and_v1alpha(user_plane_server, reflection_service):
    """grpcurl and other current clients ask grpc.reflection.v1 first; v1alpha keeps working."""
    from google.protobuf import descriptor_pb2

    address = user_plane_server.address
    listing = await _reflect(address, reflection_service, reflection_pb2.ServerReflectionRequest(list_services=""))
    assert not listing[0].HasField("error_response"), listing[0].error_response
    names = {s.name for s in listing[0].list_services_response.service}
    assert {"netgpt.v1.UserPlaneService", "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= names

    # Every listed service can be described (a client then builds requests from the descriptors).
    for symbol in sorted(names):
        reply = (await _reflect(address, reflection_service,
                                reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)))[0]
        assert reply.HasField("file_descriptor_response"), (symbol, reply.error_response)
        files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
                 for raw in reply.file_descriptor_response.file_descriptor_proto]
        package, _, service_name = symbol.rpartition(".")
        assert any(f.package == package and service_name in {s.name for s in f.service} for f in files), symbol


async def test_health_check_reports_not_serving_while_draining():
    """During the grace period a load balancer's Health/Check must read NOT_SERVING (not a refused connection),
    new work is refused with UNAVAILABLE, and the call already in flight still completes."""
    slow = _SlowUserPlane()
    handle = await start_server("127.0.0.1:0", [Service("netgpt.v1.UserPlaneService", slow,
                                                        up_grpc.add_UserPlaneServiceServicer_to_server)])
    stopping = None
    try:
        async with open_channel(handle.address, PLAINTEXT) as channel:
            health_stub = health_pb2_grpc.HealthStub(channel)
            watch = health_stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            in_flight = up_grpc.UserPlaneServiceStub(channel).Generate(up_pb2.GenerateRequest(), timeout=30)
            await in_flight.read()  # the server is now inside Generate

            stopping = asyncio.create_task(handle.stop(grace_s=30))
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()

            for service in ("", "netgpt.v1.UserPlaneService"):
                reply = await health_stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING, service
            async with open_channel(handle.address, PLAINTEXT) as fresh:  # a prober that connects only now
                reply = await health_pb2_grpc.HealthStub(fresh).Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await anext(up_grpc.UserPlaneServiceStub(fresh).Generate(up_pb2.GenerateRequest(),
                                                                             timeout=5).__aiter__())
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert not stopping.done()

            slow.release.set()  # the in-flight call finishes inside the grace period ...
            assert await in_flight.read() == up_pb2.GenerateResponse()
            assert await in_flight.read() is grpc.aio.EOF
            assert await in_flight.code() == grpc.StatusCode.OK
        await asyncio.wait_for(stopping, timeout=30)  # ... and then the server stops without waiting out the grace
    finally:
        slow.release.set()
        if stopping is None:
            await handle.stop(0)
