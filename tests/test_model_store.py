"""The core's model store through a real core on loopback: publish, list, describe, fetch, resume, restart."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import grpc
import pytest
from helpers import eventually
from throwaway_ca import tls

from cmp.blobio import HashingWriter
from cmp.manifest import Manifest
from cmp.servicer import ComputePlaneServicer
from cmp.store import ModelStore
from cmp.transfer_client import fetch_to_file, publish_file, publish_messages
from cmp.transfer_io import MANIFEST_ACCEPTED, TransferStub
from cmp.transfer_server import receive_publish
from core.daemon import CoreHandle, start_core
from netgpt.channels import open_channel
from netgpt.config import CoreConfig
from netgpt.errors import DataLoss, InvalidArgument
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc

MiB = 1 << 20
SIZE = 3 * MiB + 12_345  # several chunks, the last one short
ERR = grpc.aio.AioRpcError


def random_bytes(size: int = SIZE, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def claim(data: bytes, name: str = "gpt2-edge", version: str = "v1", **fields) -> cmp_pb2.ModelManifest:
    values = dict(name=name, version=version, kind=common_pb2.MODEL_KIND_ONNX_EDGE, size_bytes=len(data),
                  sha256=sha(data), metadata={"opset": "18"})
    values.update(fields)
    return cmp_pb2.ModelManifest(**values)


def upload_messages(manifest: cmp_pb2.ModelManifest, data: bytes,
                    chunk: int = MiB) -> list[cmp_pb2.PublishModelRequest]:
    chunks = [cmp_pb2.PublishModelRequest(chunk=cmp_pb2.ModelChunk(offset=o, data=data[o:o + chunk]))
              for o in range(0, len(data), chunk)]
    return [cmp_pb2.PublishModelRequest(manifest=manifest), *chunks]


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


async def start(store_dir: Path) -> CoreHandle:
    return await start_core(CoreConfig(**tls("core", "core"), listen="127.0.0.1:0", store_dir=str(store_dir)))


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
async def core(store_dir: Path):
    handle = await start(store_dir)
    yield handle
    await handle.stop(0)


@pytest.fixture
async def stub(core):
    async with open_channel(core.address) as channel:
        yield TransferStub(channel)  # the generated stub, FetchModel's chunks decoded without copies


async def publish(stub, messages: list[cmp_pb2.PublishModelRequest]) -> cmp_pb2.PublishModelResponse:
    return await publish_messages(stub, messages, timeout_s=30)


async def fetch(stub, **request) -> list[cmp_pb2.FetchModelResponse]:
    return [r async for r in stub.FetchModel(cmp_pb2.FetchModelRequest(**request), timeout=30)]


async def versions(stub, name: str = "") -> list[tuple[str, str]]:
    reply = await stub.ListModelVersions(cmp_pb2.ListModelVersionsRequest(name=name), timeout=5)
    return [(m.name, m.version) for m in reply.manifests]


async def assert_nothing_stored(stub, store_dir: Path) -> None:
    assert await versions(stub) == []
    assert files_under(store_dir / "blobs") == [] and files_under(store_dir / "manifests") == []
    assert files_under(store_dir / "staging") == []


async def test_publish_describe_list_fetch_round_trip(stub, store_dir: Path, tmp_path: Path):
    data = random_bytes()
    source = tmp_path / "model.onnx"
    source.write_bytes(data)
    seen: list[int] = []
    manifest = cmp_pb2.ModelManifest(name="gpt2-edge", version="v1", kind=common_pb2.MODEL_KIND_ONNX_EDGE,
                                     base_model="gpt2", metadata={"opset": "18", "tokenizer_sha256": "ab" * 32})
    reply = await publish_file(stub, manifest, source, progress=lambda done, total: seen.append(done))
    assert not reply.deduplicated
    assert reply.manifest.sha256 == sha(data) and reply.manifest.size_bytes == len(data)
    assert reply.manifest.created_at.seconds > 0 and reply.manifest.metadata["opset"] == "18"
    assert seen == [min(o + MiB, len(data)) for o in range(0, len(data), MiB)]

    described = await stub.DescribeModelVersion(cmp_pb2.DescribeModelVersionRequest(name="gpt2-edge", version="v1"),
                                                timeout=5)
    assert described.manifest == reply.manifest
    assert await versions(stub) == [("gpt2-edge", "v1")]
    assert await versions(stub, "gpt2-edge") == [("gpt2-edge", "v1")]
    assert await versions(stub, "llama") == []
    assert files_under(store_dir / "blobs") == [store_dir / "blobs" / "sha256" / sha(data)]
    assert files_under(store_dir / "staging") == []

    responses = await fetch(stub, name="gpt2-edge", version="v1")
    assert responses[0].manifest == reply.manifest
    chunks = [r.chunk for r in responses[1:-1]]
    assert all(r.HasField("chunk") for r in responses[1:-1]) and len(chunks) == 4
    assert [c.offset for c in chunks] == list(range(0, len(data), MiB)) and max(len(c.data) for c in chunks) <= MiB
    assert b"".join(c.data for c in chunks) == data
    assert responses[-1].trailer == cmp_pb2.FetchModelTrailer(sha256=sha(data), size_bytes=len(data))

    dest = tmp_path / "fetched.onnx"
    fetched = await fetch_to_file(stub, "gpt2-edge", "v1", dest)
    assert dest.read_bytes() == data and fetched.sha256 == sha(data)
    assert not dest.with_name("fetched.onnx.part").exists()


async def test_byte_flipped_in_transit_is_data_loss_and_nothing_registered(stub, store_dir: Path):
    data = random_bytes()
    damaged = bytearray(data)
    damaged[MiB + 17] ^= 0x01
    with pytest.raises(ERR) as err:
        await publish(stub, upload_messages(claim(data), bytes(damaged)))
    assert err.value.code() == grpc.StatusCode.DATA_LOSS
    assert "sha256 mismatch" in err.value.details() and "nothing registered" in err.value.details()
    await assert_nothing_stored(stub, store_dir)


async def test_truncated_upload_is_data_loss_and_staging_is_cleaned(stub, store_dir: Path):
    data = random_bytes()
    with pytest.raises(ERR) as err:
        await publish(stub, upload_messages(claim(data), data)[:3])  # manifest + 2 of 4 chunks
    assert err.value.code() == grpc.StatusCode.DATA_LOSS
    assert f"after {2 * MiB} of {len(data)} bytes" in err.value.details()
    await assert_nothing_stored(stub, store_dir)


@pytest.mark.parametrize("claimed_size, needle", [(SIZE - 1, "more than the declared size"),
                                                  (SIZE + 1, "ended after")])
async def test_lying_size_is_data_loss(stub, store_dir: Path, claimed_size, needle):
    data = random_bytes()
    with pytest.raises(ERR) as err:
        await publish(stub, upload_messages(claim(data, size_bytes=claimed_size), data))
    assert err.value.code() == grpc.StatusCode.DATA_LOSS and needle in err.value.details()
    await assert_nothing_stored(stub, store_dir)


async def test_gap_between_chunks_is_data_loss(stub, store_dir: Path):
    data = random_bytes()
    messages = upload_messages(claim(data), data)
    del messages[2]  # the chunk at 1 MiB went missing
    with pytest.raises(ERR) as err:
        await publish(stub, messages)
    assert err.value.code() == grpc.StatusCode.DATA_LOSS and f"expected {MiB}" in err.value.details()
    await assert_nothing_stored(stub, store_dir)


@pytest.mark.parametrize("fields, needle", [
    ({"name": ""}, "model name"),
    ({"version": ""}, "model version"),
    ({"name": "../../etc"}, "model name"),
    ({"version": "v1/evil"}, "model version"),
    ({"size_bytes": 0}, "size_bytes"),
    ({"sha256": "abc"}, "sha256"),
    ({"sha256": "AB" * 32}, "sha256"),
    ({"kind": common_pb2.MODEL_KIND_UNSPECIFIED}, "kind"),
    ({"kind": common_pb2.MODEL_KIND_LORA_ADAPTER}, "base_model"),
    ({"metadata": {"": "x"}}, "metadata"),
])
async def test_invalid_manifest_is_invalid_argument(stub, store_dir: Path, fields, needle):
    data = random_bytes(1000)
    with pytest.raises(ERR) as err:
        await publish(stub, upload_messages(claim(data, **fields), data))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in err.value.details()
    await assert_nothing_stored(stub, store_dir)


async def test_malformed_streams_are_invalid_argument(stub, store_dir: Path):
    data = random_bytes(2 * MiB + 2)
    cases = [
        (upload_messages(claim(data), data, chunk=MiB + 1), "at most 1048576 bytes"),
        (upload_messages(claim(data), data)[1:], "first PublishModel message must carry the manifest"),
        ([], "first PublishModel message must carry the manifest"),
        (upload_messages(claim(data), data) + [cmp_pb2.PublishModelRequest(manifest=claim(data))], "only the first"),
    ]
    for messages, needle in cases:
        with pytest.raises(ERR) as err:
            await publish(stub, messages)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, needle
        assert needle in err.value.details()
    await assert_nothing_stored(stub, store_dir)


async def test_same_content_under_a_new_version_is_stored_once(stub, store_dir: Path):
    data = random_bytes()
    first = await publish(stub, upload_messages(claim(data, version="v1"), data))
    second = await publish(stub, upload_messages(claim(data, version="v2"), data))
    again = await publish(stub, upload_messages(claim(data, version="v1"), data))  # an idempotent retry
    assert (first.deduplicated, second.deduplicated, again.deduplicated) == (False, True, True)
    assert again.manifest == first.manifest
    assert files_under(store_dir / "blobs") == [store_dir / "blobs" / "sha256" / sha(data)]
    assert await versions(stub) == [("gpt2-edge", "v1"), ("gpt2-edge", "v2")]
    for version in ("v1", "v2"):
        chunks = (await fetch(stub, name="gpt2-edge", version=version))[1:-1]
        assert b"".join(r.chunk.data for r in chunks) == data


async def test_same_version_with_other_content_is_already_exists(stub, store_dir: Path):
    data, other = random_bytes(seed=1), random_bytes(seed=2)
    await publish(stub, upload_messages(claim(data), data))
    for manifest, payload in ((claim(other), other), (claim(data, base_model="gpt2-medium"), data)):
        with pytest.raises(ERR) as err:
            await publish(stub, upload_messages(manifest, payload))
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS and "immutable" in err.value.details()
    described = await stub.DescribeModelVersion(cmp_pb2.DescribeModelVersionRequest(name="gpt2-edge", version="v1"),
                                                timeout=5)
    assert described.manifest.sha256 == sha(data)
    assert len(files_under(store_dir / "blobs")) == 1 and files_under(store_dir / "staging") == []


async def test_a_rejected_manifest_is_its_status_every_time(stub):
    """The chunks wait for the server's go-ahead, so no send is in flight when it rejects the manifest
    (streaming straight away, grpc's client now and then reports that send as INTERNAL)."""
    data, other = random_bytes(seed=1), random_bytes(seed=2)
    await publish(stub, upload_messages(claim(data), data))
    codes = []
    for _ in range(40):
        with pytest.raises(ERR) as err:
            await publish(stub, upload_messages(claim(other), other))
        codes.append(err.value.code())
    assert set(codes) == {grpc.StatusCode.ALREADY_EXISTS}


async def test_a_core_without_the_go_ahead_still_takes_the_upload(tmp_path: Path):
    """A core from before the go-ahead header: after the wait the chunks go anyway."""

    class CoreBeforeTheGoAhead(ComputePlaneServicer):
        async def PublishModel(self, request_iterator, context):
            return await receive_publish(self.store, request_iterator)

    server = grpc.aio.server()
    cmp_grpc.add_ComputePlaneServiceServicer_to_server(CoreBeforeTheGoAhead({}, ModelStore(tmp_path / "store")),
                                                       server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            data = random_bytes(seed=4)
            stub = cmp_grpc.ComputePlaneServiceStub(channel)
            reply = await publish_messages(stub, upload_messages(claim(data), data), timeout_s=30, go_ahead_s=0.2)
        assert reply.manifest.sha256 == sha(data)
    finally:
        await server.stop(0)


async def test_the_server_accepts_a_manifest_with_a_response_header(stub):
    """The go-ahead that other languages' clients wait for (protos: PublishModel)."""
    data = random_bytes(seed=3)
    call = stub.PublishModel(timeout=30)
    await call.write(cmp_pb2.PublishModelRequest(manifest=claim(data)))
    assert tuple(await call.initial_metadata()) == MANIFEST_ACCEPTED
    for message in upload_messages(claim(data), data)[1:]:
        await call.write(message)
    await call.done_writing()
    assert (await call).manifest.sha256 == sha(data)


async def test_unknown_version_is_not_found_and_bad_names_invalid(stub):
    await publish(stub, upload_messages(claim(b"x"), b"x"))
    for name, version in (("gpt2-edge", "v9"), ("llama", "v1")):
        with pytest.raises(ERR) as err:
            await stub.DescribeModelVersion(cmp_pb2.DescribeModelVersionRequest(name=name, version=version), timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and version in err.value.details()
        with pytest.raises(ERR) as err:
            await fetch(stub, name=name, version=version)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(ERR) as err:
        await fetch(stub, name="..", version="v1")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_fetch_from_an_offset_returns_exactly_the_tail(stub):
    data = random_bytes()
    await publish(stub, upload_messages(claim(data), data))
    for offset in (1, MiB, MiB + 7, len(data) - 1, len(data)):
        responses = await fetch(stub, name="gpt2-edge", version="v1", offset=offset)
        chunks = [r.chunk for r in responses[1:-1]]
        assert responses[0].manifest.size_bytes == len(data)
        assert b"".join(c.data for c in chunks) == data[offset:]
        assert [c.offset for c in chunks][:1] == ([offset] if offset < len(data) else [])
        assert responses[-1].trailer.sha256 == sha(data)
    with pytest.raises(ERR) as err:
        await fetch(stub, name="gpt2-edge", version="v1", offset=len(data) + 1)
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
    with pytest.raises(ERR) as err:
        await fetch(stub, name="gpt2-edge", version="v1", sha256=sha(b"other"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


class Interrupt(Exception):
    pass


def interrupt_after(chunks: int):
    def progress(done: int, total: int) -> None:
        if done >= chunks * MiB:
            raise Interrupt
    return progress


async def test_interrupted_fetch_resumes_from_the_partial_file(stub, tmp_path: Path):
    data = random_bytes()
    await publish(stub, upload_messages(claim(data), data))
    dest = tmp_path / "model.onnx"
    part = tmp_path / "model.onnx.part"
    with pytest.raises(Interrupt):
        await fetch_to_file(stub, "gpt2-edge", "v1", dest, progress=interrupt_after(2))
    assert not dest.exists() and part.read_bytes() == data[:2 * MiB]

    seen: list[int] = []
    manifest = await fetch_to_file(stub, "gpt2-edge", "v1", dest, resume=True,
                                   progress=lambda done, total: seen.append(done))
    assert seen[0] == 3 * MiB  # resumed: the first chunk received continues the partial file
    assert dest.read_bytes() == data and manifest.sha256 == sha(data) and not part.exists()


async def test_damaged_partial_file_is_data_loss_then_a_retry_succeeds(stub, tmp_path: Path):
    data = random_bytes()
    await publish(stub, upload_messages(claim(data), data))
    dest = tmp_path / "model.onnx"
    part = tmp_path / "model.onnx.part"
    part.write_bytes(b"\0" + data[1:MiB])
    with pytest.raises(DataLoss, match="sha256"):
        await fetch_to_file(stub, "gpt2-edge", "v1", dest)
    assert not dest.exists() and not part.exists()
    await fetch_to_file(stub, "gpt2-edge", "v1", dest)
    assert dest.read_bytes() == data

    part.write_bytes(data + b"trailing junk")  # longer than the artifact: restarts from zero
    await fetch_to_file(stub, "gpt2-edge", "v1", dest)
    assert dest.read_bytes() == data and not part.exists()


async def test_cancelled_upload_leaves_nothing(core, stub, store_dir: Path):
    data = random_bytes()
    call = stub.PublishModel(timeout=30)
    for message in upload_messages(claim(data), data)[:3]:
        await call.write(message)
    await eventually(lambda: core.store.staging.exists() and files_under(core.store.staging) != [],
                     "the upload to be staged")
    call.cancel()
    await eventually(lambda: files_under(core.store.staging) == [], "the staging file to be removed", timeout_s=10)
    await assert_nothing_stored(stub, store_dir)


async def test_versions_survive_a_core_restart(store_dir: Path, tmp_path: Path):
    data, other = random_bytes(seed=1), random_bytes(MiB // 2, seed=2)
    core = await start(store_dir)
    async with open_channel(core.address) as channel:
        stub = cmp_grpc.ComputePlaneServiceStub(channel)
        await publish(stub, upload_messages(claim(data, version="v1"), data))
        await publish(stub, upload_messages(claim(other, name="lora-city", version="2024-06-01", base_model="llama",
                                                  kind=common_pb2.MODEL_KIND_LORA_ADAPTER), other))
        before = (await stub.ListModelVersions(cmp_pb2.ListModelVersionsRequest(), timeout=5)).manifests
    await core.stop(0)
    (store_dir / "staging" / "crashed-upload.part").write_bytes(b"half")

    core = await start(store_dir)
    try:
        async with open_channel(core.address) as channel:
            stub = cmp_grpc.ComputePlaneServiceStub(channel)
            after = (await stub.ListModelVersions(cmp_pb2.ListModelVersionsRequest(), timeout=5)).manifests
            assert list(after) == list(before) and [m.name for m in after] == ["gpt2-edge", "lora-city"]
            assert after[1].kind == common_pb2.MODEL_KIND_LORA_ADAPTER and after[1].base_model == "llama"
            await fetch_to_file(stub, "lora-city", "2024-06-01", tmp_path / "adapter.safetensors")
            assert (tmp_path / "adapter.safetensors").read_bytes() == other
        assert files_under(store_dir / "staging") == []
    finally:
        await core.stop(0)


def test_store_skips_damaged_entries_on_open(tmp_path: Path):
    """A manifest whose blob is gone or damaged is not served (fetching it could only fail)."""
    store = ModelStore(tmp_path)
    for version, payload in (("v1", b"one"), ("v2", b"two"), ("v3", b"three")):
        manifest = Manifest(name="m", version=version, kind="checkpoint", size_bytes=len(payload), sha256=sha(payload))
        with store.begin_upload(manifest) as upload:
            upload.write(0, payload)
            upload.commit()
    (tmp_path / "blobs" / "sha256" / sha(b"two")).unlink()
    (tmp_path / "manifests" / "m" / "v3.json").write_text("{not json")
    moved = json.loads((tmp_path / "manifests" / "m" / "v1.json").read_text())
    (tmp_path / "manifests" / "m" / "v9.json").write_text(json.dumps(moved))  # file name disagrees with content
    assert [m.version for m in ModelStore(tmp_path).versions()] == ["v1"]
    with pytest.raises(InvalidArgument):
        store.versions("a/b")


@pytest.mark.parametrize("flush_every", [1, 5000, 1 << 40])
def test_hashing_writer_resumes_and_flushes_while_writing(tmp_path: Path, flush_every: int):
    data = random_bytes(50_000)
    path = tmp_path / "blob.part"
    writer = HashingWriter(path, limit=len(data), flush_every=flush_every)
    for offset in range(0, 20_000, 4096):
        writer.write(offset, data[offset:min(offset + 4096, 20_000)])
    writer.close()
    resumed = HashingWriter(path, limit=len(data), resume=True, flush_every=flush_every)
    assert resumed.size == 20_000
    with pytest.raises(DataLoss, match="expected 20000"):
        resumed.write(20_001, data[20_001:20_002])
    for offset in range(20_000, len(data), 7000):
        resumed.write(offset, data[offset:offset + 7000])
    with pytest.raises(DataLoss, match="more than the declared size"):
        resumed.write(len(data), b"x")
    resumed.close(fsync=True)
    assert path.read_bytes() == data and resumed.hexdigest() == sha(data)


def test_chunks_decoded_by_hand_match_protobuf_and_anything_else_falls_back():
    import os

    from cmp.transfer_io import chunk_message, decode_chunk

    for offset, size in [(0, 0), (0, 5), (123_456_789, 1 << 20), (1, 1)]:
        data = os.urandom(size)
        view = decode_chunk(chunk_message(cmp_pb2.PublishModelRequest, offset, data).SerializeToString(), 2)
        assert view is not None and (view.offset, bytes(view.data)) == (offset, data)
    manifest = cmp_pb2.PublishModelRequest(manifest=cmp_pb2.ModelManifest(name="m")).SerializeToString()
    assert decode_chunk(manifest, 2) is None and decode_chunk(b"\x12\x05\x08", 2) is None


def test_fetch_responses_decode_chunks_as_views_and_the_rest_as_protobuf():
    from cmp.transfer_io import ChunkView, chunk_message, decode_fetch_response

    chunk = decode_fetch_response(chunk_message(cmp_pb2.FetchModelResponse, 7, b"abc").SerializeToString())
    assert isinstance(chunk, ChunkView) and (chunk.WhichOneof("part"), chunk.chunk.offset) == ("chunk", 7)
    assert bytes(chunk.chunk.data) == b"abc"
    trailer = cmp_pb2.FetchModelResponse(trailer=cmp_pb2.FetchModelTrailer(size_bytes=3, sha256="ab"))
    decoded = decode_fetch_response(trailer.SerializeToString())
    assert isinstance(decoded, cmp_pb2.FetchModelResponse) and decoded.trailer.size_bytes == 3



# --- core replicas sharing one store directory ------------------------------------------------------


async def test_replicas_sharing_a_directory_serve_what_either_published(store_dir: Path, tmp_path: Path):
    """A version published at one replica is listed, described and fetched at the other, which opened the
    directory before it was published; neither wipes the other's uploads in flight."""
    first, second = await start(store_dir), await start(store_dir)
    try:
        assert first.store.staging != second.store.staging
        data = random_bytes(seed=7)
        async with open_channel(first.address) as channel:
            await publish(cmp_grpc.ComputePlaneServiceStub(channel), upload_messages(claim(data, version="v9"), data))
        async with open_channel(second.address) as channel:
            stub = cmp_grpc.ComputePlaneServiceStub(channel)
            assert await versions(stub) == [("gpt2-edge", "v9")]
            await fetch_to_file(stub, "gpt2-edge", "v9", tmp_path / "fetched.tar")
        assert (tmp_path / "fetched.tar").read_bytes() == data
        assert second.store.blob(sha(data))[1] == len(data)
    finally:
        await first.stop(0)
        await second.stop(0)


def test_a_store_removes_the_staging_left_by_gone_processes_only(store_dir: Path):
    import socket
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    staging = store_dir / "staging"
    left = staging / f"{socket.gethostname()}-{gone.stdout.strip()}-abc123"
    live = staging / f"{socket.gethostname()}-1-def456"  # pid 1 lives
    elsewhere = staging / "other-host-42-0a0b0c"
    for folder in (left, live, elsewhere):
        folder.mkdir(parents=True)
        (folder / "upload.part").write_bytes(b"half")
    ModelStore(store_dir)
    assert not left.exists() and live.exists() and elsewhere.exists()
