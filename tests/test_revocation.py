"""Certificates that can be revoked: `netgpt pki revoke` writes the CA's revocation list, the core
re-reads it (its tls_crl) within a heartbeat interval and hands it to every node, and every daemon
then refuses the revoked certificate with UNAUTHENTICATED: on new calls, on new calls over a
connection opened before, and on streams in flight (a heartbeat stream ends at its next beat)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import grpc
import pytest
from harness import start_cluster
from helpers import cli, eventually
from throwaway_ca import TEST_PKI, identity, operator

from netgpt.channels import open_channel
from netgpt.crl import CRL_FILE, RevokedCertificates, crl_number, read_crl, revoke, serials_of
from netgpt.errors import InvalidArgument
from netgpt.pki import init_ca, issue, serial_of
from netgpt.v1 import blob_pb2, common_pb2
from netgpt.v1 import blob_pb2_grpc as blob_grpc
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


def test_revoke_writes_a_signed_list_with_a_rising_number(tmp_path):
    init_ca(tmp_path)
    first = serial_of(issue(tmp_path, "edge", "edge-a").cert.read_bytes())
    issue(tmp_path, "edge", "edge-b")
    again = issue(tmp_path, "edge", "edge-a")  # a second certificate for the same name (the file is replaced)
    wanted = {first, serial_of(again.cert.read_bytes())}
    assert set(serials_of(tmp_path, "edge-a")) == wanted
    made = revoke(tmp_path, serials_of(tmp_path, "edge-a"))
    assert made.number == 1 and set(made.serials) == wanted and made.total == 2
    more = revoke(tmp_path, [*wanted, 12345])
    assert more.number == 2 and more.serials == (12345,) and more.total == 3
    crl = read_crl((tmp_path / CRL_FILE).read_bytes())
    assert crl_number(crl) == 2 and {r.serial_number for r in crl} == {*wanted, 12345}

    held = RevokedCertificates((tmp_path / "ca.crt").read_bytes())
    assert held.install((tmp_path / CRL_FILE).read_bytes(), "test") and all(held.revoked(s) for s in wanted)
    assert not held.install(held.der, "test")  # not newer: nothing changes
    assert not held.revoked(serial_of((tmp_path / "edge-b.crt").read_bytes()))


def test_a_list_from_another_ca_or_an_older_one_is_not_installed(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    init_ca(ours)
    init_ca(theirs, name="netgpt-ca")  # the same subject as a default CA: only the signature tells
    revoke(ours, [7])
    old = (ours / CRL_FILE).read_bytes()
    revoke(ours, [8])
    revoke(theirs, [9, 10, 11])
    held = RevokedCertificates((ours / "ca.crt").read_bytes())
    with pytest.raises(InvalidArgument, match="not signed by this deployment's CA"):
        held.install((theirs / CRL_FILE).read_bytes(), "a forger")
    assert held.install((ours / CRL_FILE).read_bytes(), "test") and held.revoked(8)
    assert not held.install(old, "a replay") and held.revoked(8)  # an older list cannot un-revoke
    with pytest.raises(InvalidArgument, match="not a certificate revocation list"):
        held.install(b"garbage", "test")


def test_revoke_by_an_unknown_name_is_a_clear_error(tmp_path, capsys):
    init_ca(tmp_path)
    from cli.main import main

    assert main(["pki", "revoke", "--ca", str(tmp_path), "--name", "nobody"]) == 2
    assert "no certificate issued to 'nobody'" in capsys.readouterr().err


async def _beats(node_id: str) -> AsyncIterator[cp_pb2.HeartbeatRequest]:
    sequence = 0
    while True:
        sequence += 1
        yield cp_pb2.HeartbeatRequest(node_id=node_id, sequence=sequence)
        await asyncio.sleep(0.1)


async def test_a_revoked_certificate_is_refused_by_every_daemon_within_a_heartbeat(tiny_models):
    folder = TEST_PKI.folder
    revoke(folder, [])  # the list the core starts with (whatever earlier tests of this run revoked)
    rogue = identity("edge", "edge-rogue")
    cluster = await start_cluster(*tiny_models, heartbeat_interval_s=0.3, core={"tls_crl": str(folder / CRL_FILE)})
    try:
        core_channel = open_channel(cluster.core.address, rogue)
        edge_channel = open_channel(cluster.edge.address, rogue)
        core = cp_grpc.ControlPlaneServiceStub(core_channel)
        info = common_pb2.NodeInfo(node_id="edge-rogue", role=common_pb2.NODE_ROLE_EDGE, address="127.0.0.1:9",
                                   cell_ids=["cell-rogue"])
        await core.RegisterNode(cp_pb2.RegisterNodeRequest(node=info), timeout=5)
        beats = core.Heartbeat(_beats("edge-rogue"), timeout=60)
        await beats.read()  # the stream is up, over the connection opened before the revocation
        fetch = blob_pb2.FetchBlobRequest(sha256="0" * 64, node_id="edge-rogue")
        with pytest.raises(grpc.aio.AioRpcError) as before:
            await blob_grpc.BlobServiceStub(edge_channel).FetchBlob(fetch, timeout=5).read()
        assert before.value.code() != UNAUTHENTICATED  # the edge takes its calls (NOT_FOUND: no such blob)

        held = cluster.edge.server.revoked
        number = held.number
        assert await cli("pki", "revoke", "--ca", str(folder), "--name", "edge-rogue") == 0

        # the stream in flight ends at its next beat
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            while True:
                await asyncio.wait_for(beats.read(), timeout=10)
        assert ended.value.code() == UNAUTHENTICATED and "revoked" in ended.value.details()
        # a new call over the connection opened before: refused by the core
        with pytest.raises(grpc.aio.AioRpcError) as again:
            await core.RegisterNode(cp_pb2.RegisterNodeRequest(node=info), timeout=5)
        assert again.value.code() == UNAUTHENTICATED and "edge:edge-rogue" in again.value.details()
        # every node holds the list within a heartbeat, and refuses the certificate too
        await eventually(lambda: held.number > number and cluster.cloud.server.revoked.number > number,
                         "the list at the edge and the cloud", timeout_s=10)
        with pytest.raises(grpc.aio.AioRpcError) as at_edge:
            await blob_grpc.BlobServiceStub(edge_channel).FetchBlob(fetch, timeout=5).read()
        assert at_edge.value.code() == UNAUTHENTICATED
        async with open_channel(cluster.cloud.address, rogue) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as at_cloud:
                await blob_grpc.BlobServiceStub(channel).FetchBlob(fetch, timeout=5).read()
        assert at_cloud.value.code() == UNAUTHENTICATED
        # others are not affected
        async with open_channel(cluster.core.address, operator()) as channel:
            await cp_grpc.ControlPlaneServiceStub(channel).ListNodes(cp_pb2.ListNodesRequest(), timeout=5)
        for channel in (core_channel, edge_channel):
            await channel.close()
    finally:
        await cluster.stop()


def test_daemons_with_a_list_that_is_not_the_cas_refuse_to_start(tmp_path):
    from netgpt.config import CoreConfig
    from netgpt.errors import StartupError
    from netgpt.server import revoked_certificates
    from netgpt.tls import daemon_transport

    other = tmp_path / "other"
    init_ca(other)
    revoke(other, [5], now=dt.datetime.now(dt.UTC))
    config = CoreConfig(**TEST_PKI.settings("core", "core"), tls_crl=str(other / CRL_FILE))
    with pytest.raises(StartupError, match="not signed by this deployment's CA"):
        revoked_certificates(config, daemon_transport(config, "core", "core"))
