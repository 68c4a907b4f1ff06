"""Certificates rotate without a restart: every daemon of a running cluster reads its certificate, key and
CA bundle again (SIGHUP's handler, or the file poll), under load, with no failed request; new connections
get the new certificate; bad new files are refused and the old ones stay. And a daemon's channels check
the server's certificate against the revocation list (a revoked server gets no call)."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from daemons import Daemon
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from harness import start_cluster
from helpers import captured_events, concise, eventually, new_session
from throwaway_ca import TEST_PKI, identity, operator

from netgpt.channels import open_channel
from netgpt.config import CoreConfig
from netgpt.crl import CRL_FILE, revoke
from netgpt.pki import init_ca, issue, serial_of
from netgpt.server import Security, on_sighup, start_server
from netgpt.server_check import served_serial
from netgpt.tls import Identity, daemon_transport, load_identity
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import user_plane_pb2_grpc as up_grpc

DAEMONS = {"core": "core", "cloud": "cloud-1", "edge": "edge-1"}  # cluster part -> certificate name


def _issue_all(ca_dir: Path, folder: Path) -> dict[str, int]:
    """Certificates from ``ca_dir`` for every daemon, written over ``folder/NAME.crt|key``; their serials."""
    serials = {}
    for role, name in DAEMONS.items():
        issued = issue(ca_dir, role, name, out=folder)
        serials[role] = serial_of(issued.cert.read_bytes())
    return serials


def _settings(folder: Path, poll_s: float) -> dict[str, dict[str, object]]:
    return {role: {"tls_ca": str(folder / "bundle.crt"), "tls_cert": str(folder / f"{name}.crt"),
                   "tls_key": str(folder / f"{name}.key"), "tls_reload_s": poll_s}
            for role, name in DAEMONS.items()}


def _client(ca_dir: Path, folder: Path, bundle: bytes) -> Identity:
    """An operator of ``ca_dir`` that trusts ``bundle``."""
    issued = issue(ca_dir, "operator", "rotation-operator", out=folder)
    return dataclasses.replace(load_identity(str(issued.ca), str(issued.cert), str(issued.key)), ca=bundle)


class Load:
    """Requests running all along: ListNodes and Generate, each on a new connection (so each checks the
    certificates of the moment), and Generate on one connection opened before the rotation."""

    def __init__(self, cluster: object, session: cp_pb2.AiSession, client: Callable[[], Identity]) -> None:
        self.cluster, self.session, self.client = cluster, session, client
        self.failures: list[str] = []
        self.done = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, kept: grpc.aio.Channel) -> None:
        self._tasks = [asyncio.create_task(self._loop(self._list_nodes)), asyncio.create_task(self._loop(self._fresh)),
                       asyncio.create_task(self._loop(lambda: self._generate(kept)))]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _loop(self, call: Callable[[], object]) -> None:
        while not self._stop.is_set():
            try:
                await call()  # type: ignore[misc]
                self.done += 1
            except grpc.aio.AioRpcError as exc:
                self.failures.append(f"{exc.code().name}: {exc.details()}")

    async def _list_nodes(self) -> None:
        async with open_channel(self.cluster.core.address, self.client()) as channel:  # type: ignore[attr-defined]
            await cp_grpc.ControlPlaneServiceStub(channel).ListNodes(cp_pb2.ListNodesRequest(), timeout=10)

    async def _fresh(self) -> None:
        async with open_channel(self.cluster.edge.address, self.client()) as channel:  # type: ignore[attr-defined]
            await self._generate(channel)

    async def _generate(self, channel: grpc.aio.Channel) -> None:
        stub = up_grpc.UserPlaneServiceStub(channel)
        events = [event async for event in stub.Generate(concise(self.session, "Seafood near the harbour?",
                                                                 max_new_tokens=4), timeout=30)]
        assert events

    async def more(self, count: int = 6) -> None:
        """Wait until ``count`` more requests succeeded (or failed: the test then says which)."""
        target = self.done + count
        await eventually(lambda: self.done >= target or self.failures, f"{count} more requests", timeout_s=60)


async def _served(cluster: object, client: Identity) -> dict[str, int | None]:
    return {role: await served_serial(getattr(cluster, role).server.address, client) for role in DAEMONS}


def _registrations(cluster: object) -> tuple[int, int]:
    return cluster.edge.agent.registrations, cluster.cloud.agent.registrations  # type: ignore[attr-defined]


async def test_every_certificate_rotates_under_load_and_bad_files_are_refused(tiny_models, tmp_path):
    ca_dir = TEST_PKI.folder
    shutil.copy(ca_dir / "ca.crt", tmp_path / "bundle.crt")
    first = _issue_all(ca_dir, tmp_path)
    settings = _settings(tmp_path, poll_s=0)  # reloads come from the SIGHUP handler here
    settings["edge"]["openai_listen"] = "127.0.0.1:0"  # the edge's HTTPS API follows too
    cluster = await start_cluster(*tiny_models, heartbeat_interval_s=0.3, **settings)
    load = None
    try:
        assert await _served(cluster, operator()) == first
        session = await new_session(cluster.core.address)
        kept = open_channel(cluster.edge.address, operator())
        load = Load(cluster, session, operator)
        load.start(kept)
        await load.more()
        registered = _registrations(cluster)

        second = _issue_all(ca_dir, tmp_path)
        with captured_events() as events:
            on_sighup()
        assert sorted(e["serial"] for e in events if e["event"] == "tls.reloaded") == sorted(second.values())
        assert all(getattr(cluster, role).server.identity.source.generation == 1 for role in DAEMONS)
        await load.more()
        assert await _served(cluster, operator()) == second  # new connections: the new certificates
        assert await served_serial(cluster.edge.http.address, operator()) == second["edge"]
        # the nodes' own channels (to the core, edge to cloud) now dial with the new certificates
        edge_now = cluster.edge.server.identity.live()
        assert serial_of(edge_now.cert) == second["edge"]
        # the old edge certificate revoked: the edge's channels kept from before (to the core, to the cloud)
        # must now call with the new one, else its requests fail; its heartbeat stream, opened with the old
        # one, ends at its next beat and the agent registers again on a new connection
        revoke(ca_dir, [first["edge"]])
        for role in ("core", "cloud"):
            assert getattr(cluster, role).server.revoked.install((ca_dir / CRL_FILE).read_bytes(), "test")
        await eventually(lambda: _registrations(cluster)[0] > registered[0], "the edge registered again",
                         timeout_s=20)
        await load.more()
        assert _registrations(cluster)[1] == registered[1]  # the cloud's stream rode through the rotation

        # bad new files: a half-written certificate, then a certificate without its key
        edge_cert = tmp_path / "edge-1.crt"
        whole = edge_cert.read_bytes()
        edge_cert.write_bytes(whole[: len(whole) // 2])
        with captured_events() as half_written:
            on_sighup()
        issue(ca_dir, "edge", "edge-1", out=tmp_path / "other")
        shutil.copy(tmp_path / "other" / "edge-1.crt", edge_cert)
        with captured_events() as without_key:
            on_sighup()
        # every live holder of the edge's files refuses them (how many there are, e.g. a channel the agent made
        # again that the collector has not yet dropped, is not what this checks), and none takes them
        for events, why in ((half_written, "not a PEM certificate"), (without_key, "the key does not belong")):
            failed = [e["error"] for e in events if e["event"] == "tls.reload_failed"]
            assert failed and all(why in error for error in failed), failed
            assert not [e for e in events if e["event"] == "tls.reloaded"]
        assert cluster.edge.server.identity.source.generation == 1
        assert (await _served(cluster, operator()))["edge"] == second["edge"]  # the old files stay in use
        await load.more()
        await load.stop()
        assert load.failures == []
        await kept.close()
    finally:
        if load is not None and not load._stop.is_set():
            await load.stop()
        await cluster.stop()


async def test_a_new_ca_is_rolled_in_by_bundle_and_polled_files_with_no_failed_request(tiny_models, tmp_path):
    old_ca, new_ca = TEST_PKI.folder, tmp_path / "new-ca"
    init_ca(new_ca, name="netgpt-ca-2")
    old_pem, new_pem = (old_ca / "ca.crt").read_bytes(), (new_ca / "ca.crt").read_bytes()
    both = old_pem + new_pem
    files = tmp_path / "daemons"
    files.mkdir()
    (files / "bundle.crt").write_bytes(old_pem)
    _issue_all(old_ca, files)
    cluster = await start_cluster(*tiny_models, heartbeat_interval_s=0.3, **_settings(files, poll_s=0.2))
    clients = {"old": _client(old_ca, tmp_path / "old-client", both),
               "new": _client(new_ca, tmp_path / "new-client", both)}
    client = ["old"]
    load = Load(cluster, await new_session(cluster.core.address), lambda: clients[client[0]])
    kept = open_channel(cluster.edge.address, operator())
    load.start(kept)
    registered = _registrations(cluster)

    async def reloaded(generation: int) -> None:
        await eventually(lambda: all(getattr(cluster, role).server.identity.source.generation >= generation
                                     for role in DAEMONS), f"every daemon at generation {generation}", timeout_s=20)
        await load.more()

    try:
        await load.more()
        (files / "bundle.crt").write_bytes(both)  # 1. trust both CAs everywhere
        await reloaded(1)
        new = _issue_all(new_ca, files)  # 2. certificates of the new CA (written in place: key, then cert)
        client[0] = "new"
        await reloaded(2)
        assert await _served(cluster, clients["new"]) == new
        (files / "bundle.crt").write_bytes(new_pem)  # 3. the old CA is no longer trusted
        await reloaded(3)
        await load.stop()
        assert load.failures == []
        # a caller with a certificate of the old CA is refused now, at the handshake of a new connection
        async with open_channel(cluster.core.address, clients["old"]) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await cp_grpc.ControlPlaneServiceStub(channel).ListNodes(cp_pb2.ListNodesRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert _registrations(cluster) == registered  # the heartbeat streams opened before all rode through
    finally:
        if not load._stop.is_set():
            await load.stop()
        await kept.close()
        await cluster.stop()


async def test_a_daemon_does_not_call_a_server_whose_certificate_is_revoked(tmp_path):
    rogue_name, honest_name = "edge-revoked-server", "edge-honest-server"
    servers = [await start_server("127.0.0.1:0", [], security=Security(identity("edge", name)))
               for name in (rogue_name, honest_name)]
    transport = daemon_transport(CoreConfig(**TEST_PKI.settings("core", "core"), tls_reload_s=0), "core", "core")
    assert isinstance(transport, Identity) and transport.revoked is not None
    channels = [open_channel(server.address, transport) for server in servers]
    check = health_pb2.HealthCheckRequest()
    try:
        for channel in channels:  # no list yet: both answer
            await health_pb2_grpc.HealthStub(channel).Check(check, timeout=5)
        revoke(TEST_PKI.folder, [serial_of(identity("edge", rogue_name).cert)])
        assert transport.revoked.install((TEST_PKI.folder / CRL_FILE).read_bytes(), "test")
        with pytest.raises(grpc.aio.AioRpcError) as refused:  # the connection opened before: no new call
            await health_pb2_grpc.HealthStub(channels[0]).Check(check, timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE and "revoked" in refused.value.details()
        async with open_channel(servers[0].address, transport) as fresh:  # nor on a new one
            with pytest.raises(grpc.aio.AioRpcError, match="revoked"):
                await health_pb2_grpc.HealthStub(fresh).Check(check, timeout=5)
        await health_pb2_grpc.HealthStub(channels[1]).Check(check, timeout=5)  # others are not affected
    finally:
        for channel in channels:
            await channel.close()
        for server in servers:
            await server.stop(0)


def test_sighup_makes_a_daemon_process_serve_its_new_certificate(tmp_path):
    ca_dir = TEST_PKI.folder
    issued = issue(ca_dir, "core", "core", out=tmp_path)
    core = Daemon("core", "--listen", "127.0.0.1:0", "--store-dir", str(tmp_path / "store"), "--tls-ca", str(issued.ca),
                  "--tls-cert", str(issued.cert), "--tls-key", str(issued.key), "--tls-reload-s", "0")
    try:
        address = core.address
        assert asyncio.run(served_serial(address, operator())) == serial_of(issued.cert.read_bytes())
        renewed = serial_of(issue(ca_dir, "core", "core", out=tmp_path).cert.read_bytes())
        core.proc.send_signal(signal.SIGHUP)
        core.wait_for("tls.reloaded", 30)
        assert asyncio.run(served_serial(address, operator())) == renewed
        assert core.terminate() == 0
    finally:
        if core.proc.poll() is None:
            core.proc.kill()


async def test_grpcio_still_asks_no_certificate_where_it_does_not_require_one():
    """Why ``token_listen`` is a second port (netgpt.server.Security): grpcio's TLS either requires a
    client certificate or does not ask for one (its ``require_client_auth`` / ``require_client_authentication``
    choose between those two of gRPC core's five modes), also with the dynamic credentials a daemon serves
    with. A caller presenting a certificate there arrives as nobody: the day this fails, one port can ask
    without requiring, and the two ports can become one."""
    transport = daemon_transport(CoreConfig(**TEST_PKI.settings("core", "core"), tls_reload_s=0), "core", "core")
    server = await start_server("127.0.0.1:0", [], security=Security(transport, token_listen="127.0.0.1:0"))
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    try:
        async with open_channel(server.token_address, operator()) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as nobody:
                async for _reply in reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                        iter([request]), timeout=5):
                    pass
        assert nobody.value.code() == grpc.StatusCode.UNAUTHENTICATED  # the access check, not the handshake
        assert "no client certificate and no UE token" in nobody.value.details()
        async with open_channel(server.address, operator()) as channel:  # the mutual-TLS port: it arrives
            replies = [reply async for reply in reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([request]), timeout=5)]
        assert replies[0].list_services_response.service
    finally:
        await server.stop(0)


def test_a_reload_takes_a_ca_bundle_and_refuses_another_name(tmp_path):
    issued = issue(TEST_PKI.folder, "core", "core", out=tmp_path)
    config = CoreConfig(tls_ca=str(issued.ca), tls_cert=str(issued.cert), tls_key=str(issued.key), tls_reload_s=0)
    transport = daemon_transport(config, "core", "core")
    assert isinstance(transport, Identity) and transport.source is not None and transport.revoked is not None
    source = transport.source
    assert not source.reload("test")  # the same files: nothing new

    other = issue(TEST_PKI.folder, "core", "core-b", out=tmp_path / "b")  # a good pair, for another name
    shutil.copy(other.key, issued.key)
    shutil.copy(other.cert, issued.cert)
    assert not source.reload("test") and source.generation == 0 and transport.live().name == "core"

    new_ca = tmp_path / "new-ca"
    init_ca(new_ca, name="netgpt-ca-2")
    issue(TEST_PKI.folder, "core", "core", out=tmp_path)  # back to a certificate for this name
    issued.ca.write_bytes((TEST_PKI.folder / "ca.crt").read_bytes() + (new_ca / "ca.crt").read_bytes())
    assert source.reload("test") and source.generation == 1
    assert transport.live().ca == issued.ca.read_bytes() and transport.live().source is source
    revoke(new_ca, [42])  # a list of the new CA is taken once the bundle holds it
    assert transport.revoked.install((new_ca / CRL_FILE).read_bytes(), "test") and transport.revoked.revoked(42)
