"""The edge's data policy: desensitised before storage, logs and the cloud; retention and erasure of
profiles (and what derives from them); data residency by cloud region."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import grpc
import pytest
from harness import start_cluster
from helpers import RecordGenerate, captured_events, concise, eventually, generate, new_session

from appkit.client import Question, establish
from cli.main import build_parser
from edge_node.serving.data_policy import DataPolicy, ResidencyRule
from edge_node.serving.learned_router import ProbedAnswer
from edge_node.serving.profiles import ProfileStore, RetentionSweep
from edge_node.serving.routing import PerformancePolicy, RoutingInputs
from netgpt.channels import open_channel
from netgpt.v1 import common_pb2, profile_pb2, profile_pb2_grpc, workflow_pb2, workflow_pb2_grpc
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2

PROMPT = ("Where can I eat seafood? Mail root@localhost or jo.doe@example.co.uk, call 415.555.0100, "
          "card 4111.1111.1111.1111, IBAN DE89 3704 0044 0532 0130 00, from 192.168.10.42, SSN 123-45-6789")
PREFERENCES = ["vegetarian", "call me on +44 20 7946 0958"]
RAW = ["root@localhost", "jo.doe", "415.555.0100", "4155550100", "4111.1111.1111.1111", "4111111111111111",
       "DE89 3704", "DE89370400440532013000", "192.168.10.42", "123-45-6789", "7946 0958"]


def raw_pii_in(blob: bytes | str) -> list[str]:
    data = blob.encode() if isinstance(blob, str) else blob
    return [value for value in RAW if value.encode() in data]


def database_bytes(path: Path) -> bytes:
    """The SQLite file and any journal beside it, as they are on disk."""
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


# -- profile store: desensitised, bounded, expiring, really deleted ---------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_profiles_hold_only_desensitised_text_and_keep_the_newest_prompts(tmp_path: Path):
    db = tmp_path / "profiles.sqlite"
    clock = Clock()
    store = ProfileStore(str(db), history_size=3, clock=clock)
    store.update("ue-1", PREFERENCES, merge=False)
    for i in range(5):
        clock.now += 1
        store.record_prompt("ue-1", f"prompt {i}: mail root@localhost")
    profile = store.get("ue-1")
    assert profile.preferences == ["vegetarian", "call me on [phone]"]
    assert profile.recent_prompts == [f"prompt {i}: mail [email]" for i in (4, 3, 2)]
    assert raw_pii_in(database_bytes(db)) == [] and b"prompt 0" not in database_bytes(db)


def test_profiles_expire_after_the_retention_period(tmp_path: Path):
    db = tmp_path / "profiles.sqlite"
    clock = Clock()
    store = ProfileStore(str(db), retention_s=100, clock=clock)
    store.update("ue-old", ["quiet places"], merge=False)
    store.update("ue-busy", ["vegetarian"], merge=False)
    store.record_prompt("ue-busy", "an old question")
    clock.now += 60
    store.record_prompt("ue-busy", "a recent question")
    clock.now += 50  # ue-old's profile and ue-busy's first prompt are now 110 s old
    assert store.find("ue-old") is None  # invisible at once ...
    assert store.get("ue-busy").recent_prompts == ["a recent question"]
    assert store.purge_expired() == 2  # ... and gone from the file on the next write or purge
    assert b"quiet places" not in database_bytes(db) and b"an old question" not in database_bytes(db)
    assert ProfileStore(str(db), retention_s=100, clock=clock).get("ue-busy").preferences == ["vegetarian"]


async def test_an_idle_edge_purges_expired_profiles_on_a_timer(tmp_path: Path):
    clock = Clock()
    store = ProfileStore(str(tmp_path / "profiles.sqlite"), retention_s=100, clock=clock)
    store.update("ue-old", ["quiet places"], merge=False)
    sweep = RetentionSweep(store, interval_s=0.01)
    sweep.start()
    try:
        clock.now += 101
        await eventually(lambda: b"quiet places" not in database_bytes(tmp_path / "profiles.sqlite"), "the sweep")
    finally:
        await sweep.close()


def test_a_profile_file_of_the_previous_schema_is_desensitised_when_opened(tmp_path: Path):
    db = tmp_path / "profiles.sqlite"
    with sqlite3.connect(db) as old:
        old.execute("CREATE TABLE profiles (user_id TEXT PRIMARY KEY, preferences TEXT NOT NULL, "
                    "history TEXT NOT NULL, updated_at REAL NOT NULL)")
        old.execute("INSERT INTO profiles VALUES (?, ?, ?, ?)",
                    ("ue-1", json.dumps(PREFERENCES), json.dumps(["newest, from 192.168.10.42", "mail root@localhost"]),
                     1_000_000.0))
    old.close()
    store = ProfileStore(str(db), clock=Clock())
    profile = store.get("ue-1")
    assert profile.preferences == ["vegetarian", "call me on [phone]"]
    assert profile.recent_prompts == ["newest, from [ip]", "mail [email]"]
    assert raw_pii_in(database_bytes(db)) == []


# -- residency decisions ----------------------------------------------------------------------------------------


def test_residency_rules_only_narrow_the_edges_own_setting():
    edge = DataPolicy.from_settings(["eu-west", "eu-north"])
    assert DataPolicy.from_settings([]).allowed_regions("c1") is None
    assert edge.allowed_regions("c1") == {"eu-west", "eu-north"}
    pushed = cp_pb2.RoutingPolicy(residency=[
        cp_pb2.ResidencyRule(cell_ids=["c1"], allowed_cloud_regions=["eu-west", "us-east"]),
        cp_pb2.ResidencyRule(cell_ids=["c2"]),  # c2 stays at the edge
    ], verbatim_workflows=["raw"])
    updated = edge.updated(pushed)
    assert updated.allowed_regions("c1") == {"eu-west"} and updated.allowed_regions("c2") == frozenset()
    assert updated.allowed_regions("c3") == {"eu-west", "eu-north"}
    assert not updated.desensitises("raw") and updated.desensitises("default")
    everywhere = DataPolicy(residency=(ResidencyRule(frozenset(), frozenset({"eu-west"})),))
    assert everywhere.allowed_regions("any-cell") == {"eu-west"}
    assert updated.updated(cp_pb2.RoutingPolicy()).allowed_regions("c2") == {"eu-west", "eu-north"}


def test_residency_rules_from_the_command_line():
    args = build_parser().parse_args(["policy", "set", "--residency", "cell-1, cell-2=eu-west", "--residency", "*=",
                                      "--verbatim-workflow", "raw"])
    assert args.residency == [cp_pb2.ResidencyRule(cell_ids=["cell-1", "cell-2"], allowed_cloud_regions=["eu-west"]),
                              cp_pb2.ResidencyRule()]
    assert args.verbatim_workflow == ["raw"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["policy", "set", "--residency", "eu-west"])


async def never_probed(tokens: int) -> ProbedAnswer:
    raise AssertionError("residency decides without a probe")


@pytest.mark.parametrize("preference, task, reason", [
    (up_pb2.ROUTE_PREFERENCE_UNSPECIFIED, up_pb2.TASK_CLASS_CHAT, up_pb2.ROUTE_REASON_DATA_RESIDENCY),
    (up_pb2.ROUTE_PREFERENCE_CLOUD, up_pb2.TASK_CLASS_CHAT, up_pb2.ROUTE_REASON_DATA_RESIDENCY),
    (up_pb2.ROUTE_PREFERENCE_EDGE, up_pb2.TASK_CLASS_CHAT, up_pb2.ROUTE_REASON_CLIENT_PREFERENCE),
    (up_pb2.ROUTE_PREFERENCE_UNSPECIFIED, up_pb2.TASK_CLASS_LOOKUP, up_pb2.ROUTE_REASON_EDGE_CAPABLE),
])
async def test_residency_outranks_the_clients_wish_for_the_cloud(preference, task, reason):
    inputs = RoutingInputs(task=task, preference=preference, cloud_available=False,
                           allowed_regions=frozenset({"eu-west"}), residency="data residency: ...")
    route = await PerformancePolicy(confidence_threshold=-1.0).decide(inputs, never_probed)
    assert route.reason == reason and not route.to_cloud
    assert inputs.as_strings()["allowed_cloud_regions"] == "eu-west"


# -- end to end: what the cloud, the profile file and the logs see ----------------------------------------------


async def session_of(core_address: str, ue_id: str) -> cp_pb2.AiSession:
    async with open_channel(core_address) as channel:
        return await establish(cp_grpc.ControlPlaneServiceStub(channel), Question(prompt="", ue_id=ue_id))


async def profiles_stub_call(address: str, method: str, request):
    async with open_channel(address) as channel:
        return await getattr(profile_pb2_grpc.ProfileServiceStub(channel), method)(request, timeout=5)


async def test_no_raw_personal_data_reaches_the_cloud_the_profile_file_or_the_logs(models, tmp_path: Path):
    recorder, db = RecordGenerate(), tmp_path / "profiles.sqlite"
    cluster = await start_cluster(*models, heartbeat_interval_s=0.3, cloud_interceptors=[recorder],
                                  edge={"profiles_db": str(db)})
    try:
        alice, bob = [await session_of(cluster.core.address, ue_id) for ue_id in ("ue-alice", "ue-bob")]
        for session in (alice, bob):
            await profiles_stub_call(cluster.edge.address, "UpdateProfile", profile_pb2.UpdateProfileRequest(
                user_id=session.ue_id, preferences=PREFERENCES))
        with captured_events() as logs:
            events = await generate(cluster.edge.address, concise(alice, PROMPT))
        summary = events[-1].summary
        assert summary.terminated_at == common_pb2.NODE_ROLE_CLOUD, summary.reason_detail
        assert summary.routing_inputs["desensitised"] == "7"
        assert summary.routing_inputs["redacted"] == "email:2,iban:1,ip:1,national_id:1,card:1,phone:1"

        assert len(recorder.requests) == 1
        sent = recorder.requests[0]
        assert raw_pii_in(sent.SerializeToString()) == [] and "[card]" in sent.prompt
        assert "call me on [phone]" in sent.prompt  # the preference, desensitised when stored
        assert raw_pii_in(database_bytes(db)) == [] and b"[iban]" in database_bytes(db)
        assert logs and raw_pii_in(json.dumps(logs, default=str)) == []
        assert any(e["event"] == "edge.desensitised" for e in logs)

        erased = await profiles_stub_call(cluster.edge.address, "DeleteProfile",
                                          profile_pb2.DeleteProfileRequest(user_id=alice.ue_id))
        assert (erased.profile_erased, erased.prompts_erased, erased.cached_answers_erased) == (True, 1, 1)
        kept = database_bytes(db)
        assert alice.ue_id.encode() not in kept and b"[iban]" not in kept  # secure_delete: no stale pages
        assert bob.ue_id.encode() in kept

        # Bob's identical request would have replayed Alice's cached answer: it was erased, so the cloud answers
        summary = (await generate(cluster.edge.address, concise(bob, PROMPT)))[-1].summary
        assert not summary.answer_cached and len(recorder.requests) == 2
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await profiles_stub_call(cluster.edge.address, "DeleteProfile",
                                     profile_pb2.DeleteProfileRequest(user_id=alice.ue_id))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await cluster.stop()


async def test_erasure_stops_sharing_a_call_in_flight(models):
    recorder = RecordGenerate()
    cluster = await start_cluster(*models, heartbeat_interval_s=0.3, cloud_interceptors=[recorder],
                                  edge={"cloud_token_timeout_s": 120.0})  # the gate holds Alice's answer a while
    try:
        alice, bob = [await session_of(cluster.core.address, ue_id) for ue_id in ("ue-alice", "ue-bob")]
        for session in (alice, bob):
            await profiles_stub_call(cluster.edge.address, "UpdateProfile", profile_pb2.UpdateProfileRequest(
                user_id=session.ue_id, preferences=["vegetarian"]))
        recorder.gate.clear()
        alices = asyncio.create_task(generate(cluster.edge.address, concise(alice, "Where can I eat tonight?")))
        await eventually(lambda: len(recorder.requests) == 1, "Alice's call at the cloud", timeout_s=60)
        erased = await profiles_stub_call(cluster.edge.address, "DeleteProfile",
                                          profile_pb2.DeleteProfileRequest(user_id=alice.ue_id))
        assert erased.shared_calls_detached == 1 and erased.cached_answers_erased == 0
        # Bob's identical request would have joined Alice's call; it makes its own
        bobs = asyncio.create_task(generate(cluster.edge.address, concise(bob, "Where can I eat tonight?")))
        await eventually(lambda: len(recorder.requests) == 2, "Bob's own call at the cloud", timeout_s=60)
        recorder.gate.set()
        for task in (alices, bobs):
            summary = (await task)[-1].summary
            assert summary.terminated_at == common_pb2.NODE_ROLE_CLOUD and not summary.coalesced
        # Alice's answer was not cached; Bob's was
        assert len(cluster.edge.gateway.cache) == 1
        again = (await generate(cluster.edge.address, concise(bob, "Where can I eat tonight?")))[-1].summary
        assert again.answer_cached and len(recorder.requests) == 2
    finally:
        await cluster.stop()


async def test_residency_keeps_requests_from_clouds_in_other_regions(models):
    recorder = RecordGenerate()
    cluster = await start_cluster(*models, heartbeat_interval_s=0.3, cloud_interceptors=[recorder],
                                  cloud={"region": "us-east"}, edge={"allowed_cloud_regions": ["eu-west"]})
    try:
        session = await new_session(cluster.core.address)
        await eventually(lambda: len(cluster.edge.peers) == 1, "the cloud known to the edge")
        request = concise(session, "Plan my evening", route=up_pb2.ROUTE_PREFERENCE_CLOUD)
        summary = (await generate(cluster.edge.address, request))[-1].summary
        assert summary.terminated_at == common_pb2.NODE_ROLE_EDGE
        assert summary.reason == up_pb2.ROUTE_REASON_DATA_RESIDENCY
        assert "[eu-west]" in summary.reason_detail and "cloud-1 is in us-east" in summary.reason_detail
        assert summary.routing_inputs["allowed_cloud_regions"] == "eu-west"
        assert recorder.requests == [] and summary.bytes_edge_to_cloud == 0
    finally:
        await cluster.stop()


async def test_residency_and_verbatim_workflows_set_through_the_core(models):
    recorder = RecordGenerate()
    cluster = await start_cluster(*models, heartbeat_interval_s=0.3, cloud_interceptors=[recorder],
                                  cloud={"region": "eu-west"})
    try:
        async with open_channel(cluster.core.address) as channel:
            core = cp_grpc.ControlPlaneServiceStub(channel)
            policy = cp_pb2.RoutingPolicy(residency=[cp_pb2.ResidencyRule(cell_ids=["cell-station-3"],
                                                                          allowed_cloud_regions=["us-east"])],
                                          verbatim_workflows=["raw-cloud"])
            await core.SetRoutingPolicy(cp_pb2.SetRoutingPolicyRequest(policy=policy), timeout=5)
            for bad in (cp_pb2.ResidencyRule(allowed_cloud_regions=["no spaces allowed"]),
                        cp_pb2.ResidencyRule(cell_ids=[""])):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await core.SetRoutingPolicy(cp_pb2.SetRoutingPolicyRequest(
                        policy=cp_pb2.RoutingPolicy(residency=[bad])), timeout=5)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            workflows = workflow_pb2_grpc.WorkflowServiceStub(channel)
            for name in ("raw-cloud", "plain-cloud"):
                step = workflow_pb2.WorkflowStep(id="generate", function="generate_cloud")
                await workflows.ApplyWorkflow(workflow_pb2.ApplyWorkflowRequest(spec=workflow_pb2.WorkflowSpec(
                    name=name, latency_budget_ms=5000, priority=1, steps=[step])), timeout=5)
        await eventually(lambda: cluster.edge.pipeline.data_policy.verbatim_workflows, "the policy at the edge")

        station = await new_session(cluster.core.address, "cell-station-3")
        summary = (await generate(cluster.edge.address, concise(station, "Plan my evening")))[-1].summary
        assert summary.reason == up_pb2.ROUTE_REASON_DATA_RESIDENCY and "cell-station-3" in summary.reason_detail
        summary = (await generate(cluster.edge.address, concise(station, "Plan my evening",
                                                                workflow="plain-cloud")))[-1].summary
        assert summary.reason == up_pb2.ROUTE_REASON_DATA_RESIDENCY  # a workflow without a route step too
        assert recorder.requests == []

        harbour = await new_session(cluster.core.address, "cell-harbour-1")
        summary = (await generate(cluster.edge.address, concise(harbour, "Plan my evening")))[-1].summary
        assert summary.terminated_at == common_pb2.NODE_ROLE_CLOUD
        for workflow, forwarded in (("plain-cloud", "mail [email]"), ("raw-cloud", "mail root@localhost")):
            await generate(cluster.edge.address, concise(harbour, "mail root@localhost", workflow=workflow))
            assert recorder.requests[-1].prompt == forwarded
    finally:
        await cluster.stop()


def test_an_erasure_leaves_no_trace_in_the_files_free_pages(tmp_path: Path):
    """Erased text is gone from the file's bytes, free pages and freed cells included (secure_delete),
    also when a long prompt spilled into overflow pages; without secure_delete SQLite would keep it."""
    db = tmp_path / "profiles.sqlite"
    store = ProfileStore(str(db), history_size=20, retention_s=0)
    users = [f"ue-{i:03d}" for i in range(60)]
    for user in users:
        store.update(user, [f"likes zq{user}zq quiet places"], merge=False)
        for n in range(3):
            store.record_prompt(user, f"question {n} from xq{user}xq " + ("long " * 600 if n == 0 else ""))
    assert b"xque-007xq" in database_bytes(db) and b"zque-007zq" in database_bytes(db)
    erased = store.delete("ue-007")
    assert erased.profile and erased.prompts == 3
    kept = database_bytes(db)
    assert b"xque-007xq" not in kept and b"zque-007zq" not in kept and b"ue-007" not in kept
    assert b"xque-008xq" in kept and b"zque-008zq" in kept  # the others stay

    # the control: the same deletes through a connection without secure_delete leave the text behind
    plain = sqlite3.connect(db)
    plain.execute("PRAGMA secure_delete = OFF")
    with plain:
        plain.execute("DELETE FROM prompts WHERE user_id = 'ue-008'")
        plain.execute("DELETE FROM profiles WHERE user_id = 'ue-008'")
    plain.close()
    assert b"xque-008xq" in database_bytes(db)
