"""The generated stubs match the protos, and every server answers health and reflection."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from netgpt.channels import open_channel

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
