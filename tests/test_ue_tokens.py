"""UE tokens from the RAN (issue 28): the RAN attaches a UE and gets a signed token; the UE calls the
core's and the edge's ``token_listen`` ports (TLS without a client certificate) and the edge's HTTP API
with it instead of a certificate; expired, foreign, altered and revoked tokens are UNAUTHENTICATED /
401; a detach revokes at the edge within one heartbeat; and a call without a certificate or token
reaches the access check (UNAUTHENTICATED) while health answers anonymously."""

from __future__ import annotations

import base64
import json
import ssl
import time
from pathlib import Path
from types import SimpleNamespace

import grpc
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from harness import start_cluster
from helpers import cli, concise, eventually
from throwaway_ca import TEST_PKI, identity, tls

from core.daemon import start_core
from cp.registry import NodeRegistry
from cp.ue_tokens import UeTokenAuthority, decode_state, encode_state
from netgpt.access import ProbeAccess
from netgpt.access_rules import core_rules, edge_rules
from netgpt.channels import open_channel
from netgpt.config import CoreConfig
from netgpt.errors import InvalidArgument, StartupError, Unauthenticated, Unavailable
from netgpt.server import Security, start_server
from netgpt.tls import PLAINTEXT, Bearer
from netgpt.ue_tokens import KEY_FILE, MAX_TTL_S, Revocations, TokenState, UeClaims, UeTokenSigner, UeTokenVerifier
from netgpt.v1 import (
    blob_pb2,
    common_pb2,
    compute_plane_pb2,
    control_plane_pb2,
    network_management_pb2,
    profile_pb2,
    ran_pb2,
    ran_pb2_grpc,
    training_pb2,
    user_plane_pb2,
    workflow_pb2,
)
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import profile_pb2_grpc as profile_grpc
from netgpt.v1 import user_plane_pb2_grpc as up_grpc

CELL = "cell-harbour-1"
RAN = identity("ran", "ran-tokens")
CA = TEST_PKI.identity("operator", "operator").ca
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture(scope="module")
async def cluster(tiny_models):
    running = await start_cluster(*tiny_models, heartbeat_interval_s=0.3, core={"token_listen": "127.0.0.1:0"},
                                  edge={"token_listen": "127.0.0.1:0", "openai_listen": "127.0.0.1:0"})
    yield running
    await running.stop()


async def attach(cluster, ue: str, cell: str = CELL, slice_id: str = "1-000001") -> ran_pb2.AttachUeResponse:
    async with open_channel(cluster.core.address, RAN) as channel:
        return await ran_pb2_grpc.RanServiceStub(channel).AttachUe(
            ran_pb2.AttachUeRequest(ue_id=ue, cell_id=cell, slice_id=slice_id), timeout=5)


async def detach(cluster, ue: str) -> None:
    async with open_channel(cluster.core.address, RAN) as channel:
        await ran_pb2_grpc.RanServiceStub(channel).DetachUe(ran_pb2.DetachUeRequest(ue_id=ue), timeout=5)


async def session_with(cluster, token: str, ue: str) -> cp_pb2.AiSession:
    """EstablishSession at the core's token port, with the token alone."""
    async with open_channel(cluster.core.server.token_address, Bearer(CA, token)) as channel:
        request = cp_pb2.EstablishSessionRequest(ue_id=ue, cell_id=CELL)
        return (await cp_grpc.ControlPlaneServiceStub(channel).EstablishSession(request, timeout=10)).session


async def generate_with(address: str, token: str, session: cp_pb2.AiSession) -> list[user_plane_pb2.GenerateResponse]:
    async with open_channel(address, Bearer(CA, token)) as channel:
        stub = up_grpc.UserPlaneServiceStub(channel)
        return [e async for e in stub.Generate(concise(session, "Where can I eat?", max_new_tokens=4), timeout=60)]


async def failure(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        result = call()
        if hasattr(result, "__aiter__"):
            async for _ in result:
                pass
        else:
            await result
    return err.value


async def profile_code(address: str, token: str, ue: str) -> grpc.StatusCode:
    """UpdateProfile of the token's own UE at the edge: a cheap call that only a valid token gets past."""
    async with open_channel(address, Bearer(CA, token)) as channel:
        try:
            await profile_grpc.ProfileServiceStub(channel).UpdateProfile(
                profile_pb2.UpdateProfileRequest(user_id=ue, preferences=["seafood"]), timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def forged(token: str) -> str:
    """``token`` with its payload's UE id changed and the signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "ue-mallory"
    altered = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{altered}.{signature}"


# --- end to end ----------------------------------------------------------------------------------


async def test_a_ran_attach_gives_a_token_that_generates_without_a_certificate(cluster):
    attached = await attach(cluster, "ue-token-1")
    token = attached.token
    claims = jwt.decode(token.token, options={"verify_signature": False})
    assert (claims["sub"], claims["cell"], claims["slice"], claims["jti"]) == \
        ("ue-token-1", CELL, "1-000001", token.token_id)
    assert claims["iss"] == "netgpt-core" and jwt.get_unverified_header(token.token)["alg"] == "ES256"
    assert abs(token.expires_at.ToSeconds() - (time.time() + 3600)) < 60
    session = await session_with(cluster, token.token, "ue-token-1")
    assert session.ue_id == "ue-token-1" and session.serving_edge.token_address == cluster.edge.server.token_address
    events = await generate_with(session.serving_edge.token_address, token.token, session)
    assert events[-1].HasField("summary")


async def test_a_handover_gives_a_token_for_the_new_cell(cluster):
    await attach(cluster, "ue-token-move")
    async with open_channel(cluster.core.address, RAN) as channel:
        moved = await ran_pb2_grpc.RanServiceStub(channel).HandoverUe(
            ran_pb2.HandoverUeRequest(ue_id="ue-token-move", target_cell_id="cell-campus-2"), timeout=5)
    assert jwt.decode(moved.token.token, options={"verify_signature": False})["cell"] == "cell-campus-2"


async def test_expired_foreign_altered_and_malformed_tokens_are_unauthenticated(cluster):
    attached = await attach(cluster, "ue-token-2")
    session = await session_with(cluster, attached.token.token, "ue-token-2")
    signer = cluster.core.tokens.signer
    expired = signer.issue("ue-token-2", CELL, ttl_s=60, now=time.time() - 3600).token
    foreign = UeTokenSigner(ec.generate_private_key(ec.SECP256R1())).issue("ue-token-2", CELL).token
    unsigned = jwt.encode({"sub": "ue-token-2", "iss": "netgpt-core", "exp": time.time() + 60, "iat": time.time(),
                           "jti": "x"}, None, algorithm="none")
    edge = cluster.edge.server.token_address
    reasons = {}
    for name, token in {"expired": expired, "another key": foreign, "altered": forged(attached.token.token),
                        "malformed": "not-a-jwt", "unsigned": unsigned}.items():
        error = await failure(lambda token=token: generate_with(edge, token, session))
        assert error.code() == UNAUTHENTICATED, (name, error.details())
        reasons[name] = error.details()
    assert "expired" in reasons["expired"]
    assert "does not trust" in reasons["another key"] and "does not trust" in reasons["unsigned"]
    assert "signature does not verify" in reasons["altered"]
    assert "malformed" in reasons["malformed"]


async def test_a_ues_token_is_refused_in_another_ues_session(cluster):
    alice = await attach(cluster, "ue-token-alice")
    bob = await attach(cluster, "ue-token-bob")
    bobs_session = await session_with(cluster, bob.token.token, "ue-token-bob")
    edge = cluster.edge.server.token_address
    error = await failure(lambda: generate_with(edge, alice.token.token, bobs_session))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    establish_for_bob = await failure(lambda: session_with(cluster, alice.token.token, "ue-token-bob"))
    assert establish_for_bob.code() == grpc.StatusCode.PERMISSION_DENIED
    async with open_channel(cluster.core.server.token_address, Bearer(CA, alice.token.token)) as channel:
        operate = await failure(lambda: cp_grpc.ControlPlaneServiceStub(channel).ListNodes(
            cp_pb2.ListNodesRequest(), timeout=5))
    assert operate.code() == grpc.StatusCode.PERMISSION_DENIED  # a UE token is a UE, never an operator


async def test_a_detach_revokes_the_ues_tokens_at_the_edge_within_a_heartbeat(cluster):
    token = (await attach(cluster, "ue-token-gone")).token.token
    edge = cluster.edge.server.token_address
    assert await profile_code(edge, token, "ue-token-gone") == grpc.StatusCode.OK
    await detach(cluster, "ue-token-gone")
    at_core = await failure(lambda: session_with(cluster, token, "ue-token-gone"))
    assert at_core.code() == UNAUTHENTICATED and "revoked" in at_core.details()  # the core knows at once

    async def refused_at_edge() -> bool:
        return await profile_code(edge, token, "ue-token-gone") == UNAUTHENTICATED

    await eventually(refused_at_edge, "the edge refusing the detached UE's token (one heartbeat)")
    again = (await attach(cluster, "ue-token-gone")).token.token  # attaching again gives a token that works
    assert await profile_code(edge, again, "ue-token-gone") == grpc.StatusCode.OK


async def test_a_certificate_still_works_and_wins_over_a_token(cluster):
    """A UE certificate on the mutual-TLS port is the caller, whatever token rides along."""
    alice = await attach(cluster, "ue-token-cert")
    session = await session_with(cluster, alice.token.token, "ue-token-cert")
    async with open_channel(cluster.edge.address, identity("ue", "ue-token-cert")) as channel:
        events = [e async for e in up_grpc.UserPlaneServiceStub(channel).Generate(
            concise(session, "Where can I eat?", max_new_tokens=4), timeout=60,
            metadata=(("authorization", "Bearer not-a-jwt"),))]
    assert events[-1].HasField("summary")


async def test_the_openai_api_takes_a_bearer_token(cluster):
    token = (await attach(cluster, "ue-token-http")).token.token
    base = f"https://127.0.0.1:{cluster.edge.http.port}/v1"
    context = ssl.create_default_context(cafile=str(TEST_PKI.folder / "ca.crt"))  # no client certificate
    body = {"model": cluster.edge.slot.current.ref.name, "max_tokens": 4,
            "messages": [{"role": "user", "content": "Where can I eat fresh seafood tonight?"}]}
    expired = cluster.core.tokens.signer.issue("ue-token-http", CELL, ttl_s=60, now=time.time() - 3600).token
    async with httpx.AsyncClient(base_url=base, verify=context, timeout=60) as client:
        answered = await client.post("/chat/completions", json=body, headers={"Authorization": f"Bearer {token}"})
        refused = await client.post("/chat/completions", json=body, headers={"Authorization": f"Bearer {expired}"})
        anonymous = await client.get("/models")
    assert answered.status_code == 200, answered.text
    assert answered.json()["choices"][0]["finish_reason"] and "summary" in answered.json()["netgpt"]
    async with open_channel(cluster.core.server.token_address, Bearer(CA, token)) as channel:  # the token's UE's
        session = (await cp_grpc.ControlPlaneServiceStub(channel).GetSession(
            cp_pb2.GetSessionRequest(session_id=answered.headers["x-netgpt-session"]), timeout=5)).session
    assert (session.ue_id, session.cell_id) == ("ue-token-http", CELL)
    assert refused.status_code == 401 and "expired" in refused.json()["error"]["message"]
    assert anonymous.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"


async def test_netgpt_token_issue_prints_a_usable_token(cluster, capsys):
    key = Path(cluster.core.store.root) / KEY_FILE
    assert await cli("token", "issue", "--key", str(key), "--ue", "ue-token-cli", "--cell", CELL, "--ttl", "1h") == 0
    token = capsys.readouterr().out.strip()
    assert await profile_code(cluster.edge.server.token_address, token, "ue-token-cli") == grpc.StatusCode.OK
    assert await cli("token", "issue", "--key", str(key), "--ue", "ue-token-cli", "--cell", CELL, "--ttl", "2d") == 2
    assert "at most" in capsys.readouterr().err


# --- calls without a certificate reach the access check --------------------------------------------


def _methods(*files) -> list[tuple[str, bool, bool]]:
    services = [service for file in files for service in file.DESCRIPTOR.services_by_name.values()]
    return [(f"/{service.full_name}/{m.name}", m.client_streaming, m.server_streaming)
            for service in services for m in service.methods]


async def _raw_call(channel: grpc.aio.Channel, method: str, client_streaming: bool, server_streaming: bool):
    """``method`` with one empty request message, whatever its shape (bytes in, bytes out)."""
    if client_streaming and server_streaming:
        call = channel.stream_stream(method)(iter([b""]), timeout=5)
        return [reply async for reply in call]
    if client_streaming:
        return await channel.stream_unary(method)(iter([b""]), timeout=5)
    if server_streaming:
        return [reply async for reply in channel.unary_stream(method)(b"", timeout=5)]
    return await channel.unary_unary(method)(b"", timeout=5)


@pytest.mark.parametrize("daemon", ["core", "edge"])
async def test_every_rpc_refuses_a_caller_without_certificate_or_token(cluster, daemon):
    """Each protected RPC on the token port (TLS, no client certificate): UNAUTHENTICATED, not a failed
    handshake; the methods are all those the access tables list (test_security checks they are all)."""
    files = {"core": (control_plane_pb2, compute_plane_pb2, training_pb2, workflow_pb2, blob_pb2, ran_pb2),
             "edge": (user_plane_pb2, profile_pb2, blob_pb2, network_management_pb2)}[daemon]
    methods = _methods(*files)
    assert {m for m, _, _ in methods} == set((core_rules if daemon == "core" else edge_rules)(lambda request: ""))
    address = getattr(cluster, daemon).server.token_address
    codes = {}
    async with grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=CA)) as channel:
        for method, client_streaming, server_streaming in methods:
            try:
                await _raw_call(channel, method, client_streaming, server_streaming)
                codes[method] = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as exc:
                codes[method] = exc.code()
    assert codes == {method: UNAUTHENTICATED for method, _, _ in methods}


async def test_health_answers_anonymously_and_reflection_does_not(cluster):
    address = cluster.edge.server.token_address
    async with grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=CA)) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        error = await failure(lambda: reflection)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert error.code() == UNAUTHENTICATED
    token = (await attach(cluster, "ue-token-reflect")).token.token
    async with open_channel(address, Bearer(CA, token)) as channel:  # any authenticated caller may reflect
        replies = [r async for r in reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)]
    assert "netgpt.v1.UserPlaneService" in {s.name for s in replies[0].list_services_response.service}


async def test_the_mutual_tls_port_still_refuses_a_caller_without_certificate_at_the_handshake(cluster):
    async with grpc.aio.secure_channel(cluster.edge.address,
                                       grpc.ssl_channel_credentials(root_certificates=CA)) as channel:
        error = await failure(lambda: health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                                                timeout=5))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_probe_access_is_configurable():
    assert ProbeAccess().anonymous("/grpc.health.v1.Health/Check")
    assert not ProbeAccess().anonymous("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
    assert not ProbeAccess(anonymous_health=False).anonymous("/grpc.health.v1.Health/Watch")
    assert ProbeAccess(anonymous_reflection=True).anonymous("/grpc.reflection.v1alpha.ServerReflection/X")


# --- the token library on its own ----------------------------------------------------------------


def _verifier(signer: UeTokenSigner, clock=time.time) -> UeTokenVerifier:
    verifier = UeTokenVerifier(clock=clock)
    verifier.apply(TokenState(keys={signer.key_id: signer.public_pem}, snapshot=True))
    return verifier


def test_a_token_round_trips_and_its_lifetime_is_bounded():
    signer = UeTokenSigner(ec.generate_private_key(ec.SECP256R1()))
    issued = signer.issue("ue-1", "cell-a", "slice-1", ttl_s=120)
    claims = _verifier(signer).verify(issued.token)
    assert claims == issued.claims and isinstance(claims, UeClaims)
    for ttl in (0, -1, MAX_TTL_S + 1):
        with pytest.raises(InvalidArgument, match="at most"):
            signer.issue("ue-1", "cell-a", ttl_s=ttl)
    with pytest.raises(InvalidArgument, match="ue_id"):
        signer.issue("", "cell-a")
    with pytest.raises(Unavailable, match="no UE token keys"):
        UeTokenVerifier().verify(issued.token)


def test_an_hmac_token_with_the_public_key_as_secret_is_refused():
    """The classic algorithm confusion: HS256 keyed with the (public) verification key."""
    signer = UeTokenSigner(ec.generate_private_key(ec.SECP256R1()))
    payload = {"sub": "ue-1", "iss": "netgpt-core", "iat": time.time(), "exp": time.time() + 60, "jti": "x"}
    secret = signer.public_pem.encode()
    try:
        confused = jwt.encode(payload, secret, algorithm="HS256", headers={"kid": signer.key_id})
    except jwt.InvalidKeyError:  # newer PyJWT refuses to HMAC with a PEM key at all: nothing to forge with
        return
    with pytest.raises(Unauthenticated):
        _verifier(signer).verify(confused)


def test_revocations_are_bounded_and_fail_closed():
    revocations = Revocations(capacity=2, max_ttl_s=100)
    for at, ue in enumerate(["ue-a", "ue-b", "ue-c"], start=1):
        revocations.revoke(ue, float(at))
    assert len(revocations) == 2 and revocations.revoked_before == 1.0  # ue-a folded into the all-UEs time

    def claims(ue: str, issued_at: float) -> UeClaims:
        return UeClaims(ue, "cell", "", issued_at, issued_at + 50, "jti")

    assert revocations.refuses(claims("ue-a", 1.0)) and revocations.refuses(claims("ue-z", 0.5))
    assert not revocations.refuses(claims("ue-a", 1.5)) and revocations.refuses(claims("ue-c", 3.0))
    revocations.prune(now=1000.0)  # every token those could refuse has expired
    assert len(revocations) == 0 and revocations.revoked_before == 0.0


def test_the_core_sends_a_snapshot_on_register_and_an_addition_on_detach():
    registry = NodeRegistry()
    edge = common_pb2.NodeInfo(node_id="edge-9", role=common_pb2.NODE_ROLE_EDGE, address="127.0.0.1:1",
                               cell_ids=[CELL])
    cloud = common_pb2.NodeInfo(node_id="cloud-9", role=common_pb2.NODE_ROLE_CLOUD, address="127.0.0.1:2")
    for info in (edge, cloud):
        registry.register(info)
    authority = UeTokenAuthority(UeTokenSigner(ec.generate_private_key(ec.SECP256R1())), registry, ttl_s=60)
    authority.revoke("ue-old")
    for info in (edge, cloud):
        authority.on_register(info.node_id)
    authority.revoke("ue-new")

    def token_states(node_id: str) -> list[TokenState]:
        commands = registry.heartbeat(node_id, common_pb2.NodeLoad())
        return [decode_state(c.ue_tokens) for c in commands if c.HasField("ue_tokens")]

    snapshot, addition = token_states("edge-9")
    assert snapshot.snapshot and set(snapshot.revocations) == {"ue-old"} and authority.signer.key_id in snapshot.keys
    assert not addition.snapshot and set(addition.revocations) == {"ue-new"}
    assert token_states("cloud-9") == []  # clouds take no UE calls
    node = UeTokenVerifier()
    for state in (snapshot, addition):
        node.apply(state)
    assert set(node.revocations.entries()) == {"ue-old", "ue-new"}
    assert decode_state(encode_state(snapshot)) == snapshot


async def test_a_token_port_needs_tls():
    with pytest.raises(StartupError, match="needs TLS"):
        await start_server("127.0.0.1:0", [], security=Security(PLAINTEXT, token_listen="127.0.0.1:0"))


async def test_the_key_and_the_revocations_survive_a_core_restart(tmp_path: Path):
    config = CoreConfig(**tls("core", "core"), listen="127.0.0.1:0", token_listen="127.0.0.1:0",
                        store_dir=str(tmp_path / "store"), heartbeat_interval_s=0.2)

    async def list_nodes(core, token: str) -> grpc.aio.AioRpcError:
        async with open_channel(core.server.token_address, Bearer(CA, token)) as channel:
            return await failure(lambda: cp_grpc.ControlPlaneServiceStub(channel).ListNodes(
                cp_pb2.ListNodesRequest(), timeout=5))

    core = await start_core(config)
    try:
        kept, gone = [(await attach(SimpleNamespace(core=core), ue)).token.token for ue in ("ue-kept", "ue-gone")]
        await detach(SimpleNamespace(core=core), "ue-gone")
    finally:
        await core.stop(0)
    core = await start_core(config)
    try:
        assert (await list_nodes(core, kept)).code() == grpc.StatusCode.PERMISSION_DENIED  # known: same key
        refused = await list_nodes(core, gone)
        assert refused.code() == UNAUTHENTICATED and "revoked" in refused.details()
    finally:
        await core.stop(0)
