"""The edge learns from the cloud: the sample store honours the operator's switch, desensitisation, residency and
erasure; its export is a dataset the trainer reads; and end to end on tiny models through real servers, the
samples become a dataset version, a training job on the edge fine-tunes the serving model on it, and the new
version is deployed and answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deploy_helpers import deploy, publish, settled
from harness import start_cluster
from helpers import cli, concise, eventually, generate, new_session

from appkit.client import Question, establish
from edge_node.serving.distill_samples import DistillSamples, Sample
from netgpt.channels import open_channel
from netgpt.training.dataset import read_jsonl
from netgpt.training.trainer import TrainConfig, train
from netgpt.v1 import common_pb2 as S
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import profile_pb2, profile_pb2_grpc
from netgpt.v1 import training_pb2 as T
from netgpt.v1 import training_pb2_grpc as tr_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2

PROMPT = "Location: Harbour (cell cell-harbour-1).\nUser request: Where can I eat fish?\nAnswer:"


def sample(owner: str = "ue-1", regions: frozenset[str] | None = None, prompt: str = PROMPT) -> Sample:
    return Sample(owner, "cell-harbour-1", regions, prompt, "Try Harbour Fish Market.", "cloud@v1")


def test_store_keeps_erases_and_exports_by_region(tmp_path: Path):
    store = DistillSamples(str(tmp_path / "distill.sqlite"), max_samples=3)
    assert store.keep(sample("ue-1"))
    assert store.keep(sample("ue-2", frozenset({"eu-west"}), prompt=PROMPT.replace("fish", "noodles")))
    assert not store.keep(Sample("ue-1", "c", None, PROMPT, "  ", ""))  # an empty answer teaches nothing
    assert len(store) == 2

    assert [r["prompt"] for r in store.rows()] == [PROMPT]  # no region given: unrestricted cells only
    assert len(store.rows("eu-west")) == 2 and len(store.rows("us-east")) == 1
    out = tmp_path / "distill.jsonl"
    assert store.export(out, "eu-west") == 2
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["completion"] == " Try Harbour Fish Market." and "ue-1" not in out.read_text()
    assert [e.completion for e in read_jsonl(out)] == [" Try Harbour Fish Market."] * 2

    assert store.forget("ue-1") == 1 and store.forget("ue-1") == 0 and store.forget("") == 0
    assert [s.owner for s in store.samples()] == ["ue-2"]
    for i in range(5):  # bounded: the oldest go first
        store.keep(sample(f"ue-{i + 10}", prompt=f"{PROMPT} {i}"))
    assert [s.owner for s in store.samples()] == ["ue-12", "ue-13", "ue-14"]


def test_one_line_per_prompt_the_latest_answer(tmp_path: Path):
    store = DistillSamples(":memory:")
    store.keep(sample("ue-1"))
    store.keep(Sample("ue-2", "cell-harbour-1", None, PROMPT, "Try the Oyster Bar.", "cloud@v2"))
    assert [r["completion"] for r in store.rows()] == [" Try the Oyster Bar."]


async def session_of(core_address: str, ue_id: str) -> cp_pb2.AiSession:
    async with open_channel(core_address) as channel:
        return await establish(cp_grpc.ControlPlaneServiceStub(channel), Question(prompt="", ue_id=ue_id))


async def profiles(address: str, user_id: str) -> profile_pb2.DeleteProfileResponse:
    async with open_channel(address) as channel:
        return await profile_pb2_grpc.ProfileServiceStub(channel).DeleteProfile(
            profile_pb2.DeleteProfileRequest(user_id=user_id), timeout=5)


def chat(session, prompt: str) -> up_pb2.GenerateRequest:
    return concise(session, prompt, max_new_tokens=8, task=up_pb2.TASK_CLASS_CHAT,
                   route=up_pb2.ROUTE_PREFERENCE_CLOUD)


async def test_off_by_default_nothing_is_kept(tiny_models, tmp_path: Path):
    db = tmp_path / "distill.sqlite"
    cluster = await start_cluster(*tiny_models, edge={"distill_db": str(db)})
    try:
        assert cluster.edge.peers is not None
        session = await new_session(cluster.core.address)
        summary = (await generate(cluster.edge.address, chat(session, "Where can I eat fish?")))[-1].summary
        assert summary.terminated_at == S.NODE_ROLE_CLOUD
        assert not db.exists()
    finally:
        await cluster.stop()


async def test_restricted_cells_are_exported_only_where_allowed(tiny_models, tmp_path: Path):
    """A cell under residency rules (here the edge's own) is kept with them and exported only towards a region
    they allow; what is kept is the desensitised prompt."""
    db = tmp_path / "distill.sqlite"
    cluster = await start_cluster(*tiny_models, edge={"distill_samples": True, "distill_db": str(db),
                                                      "allowed_cloud_regions": ["eu-west"]},
                                  cloud={"region": "eu-west"})
    try:
        session = await new_session(cluster.core.address)
        summary = (await generate(cluster.edge.address, chat(session, "Mail me at jo@example.com: fish?")))[-1].summary
        assert summary.terminated_at == S.NODE_ROLE_CLOUD, summary.reason_detail
        kept = list(DistillSamples(str(db)).samples())
        assert [s.allowed_regions for s in kept] == [frozenset({"eu-west"})]
        assert "[email]" in kept[0].prompt and "jo@example.com" not in kept[0].prompt
        assert await cli("data", "distill", "export", "--db", str(db), "--out", str(tmp_path / "a.jsonl")) == 0
        assert (tmp_path / "a.jsonl").read_text() == ""  # no region named: the restricted cell stays out
        assert await cli("data", "distill", "export", "--db", str(db), "--out", str(tmp_path / "b.jsonl"),
                         "--region", "eu-west") == 0
        assert len(read_jsonl(tmp_path / "b.jsonl")) == 1

        # the core's policy can stop every edge keeping samples, at run time
        assert await cli("policy", "set", "--distill-samples", "off", "--core", cluster.core.address) == 0

        async def stopped() -> bool:
            before = len(DistillSamples(str(db)))
            await generate(cluster.edge.address, chat(session, "Where can I eat noodles?"))
            return len(DistillSamples(str(db))) == before

        await eventually(stopped, "the edge applying the core's distill_samples = off", timeout_s=30)
    finally:
        await cluster.stop()


def test_the_cores_switch_only_narrows_the_edges():
    from cli.main import build_parser
    from cli.policy import change_of
    from edge_node.serving.data_policy import DataPolicy

    assert DataPolicy().distill_samples  # no policy from the core: the edge's own setting decides
    assert not DataPolicy().updated(cp_pb2.RoutingPolicy(distill_samples=False)).distill_samples
    assert DataPolicy().updated(cp_pb2.RoutingPolicy()).distill_samples
    for word, expected in (("off", False), ("on", True)):
        policy, fields = change_of(build_parser().parse_args(["policy", "set", "--distill-samples", word]), False)
        assert fields == ["distill_samples"] and policy.HasField("distill_samples")
        assert policy.distill_samples is expected
    policy, fields = change_of(build_parser().parse_args(["policy", "set", "--distill-samples", "default"]), False)
    assert fields == ["distill_samples"] and not policy.HasField("distill_samples")


async def test_samples_to_a_training_job_on_the_edge_and_a_deployed_version(tiny_models, tmp_path: Path):
    db, out = tmp_path / "distill.sqlite", tmp_path / "distill.jsonl"
    cluster = await start_cluster(*tiny_models, heartbeat_interval_s=0.2,
                                  edge={"distill_samples": True, "distill_db": str(db), "model": "tiny",
                                        "deploy_dir": str(tmp_path / "edge")})
    try:
        alice, bob = [await session_of(cluster.core.address, ue_id) for ue_id in ("ue-alice", "ue-bob")]
        asked = {}
        for session, prompt in ((alice, "Where can I eat fish? I am jo@example.com"), (bob, "Is there a ferry?")):
            summary = (await generate(cluster.edge.address, chat(session, prompt)))[-1].summary
            assert summary.terminated_at == S.NODE_ROLE_CLOUD, summary.reason_detail
            asked[prompt] = summary
        kept = list(DistillSamples(str(db)).samples())
        assert len(kept) == 2 and all("jo@example.com" not in s.prompt for s in kept)
        assert {s.completion for s in kept} == {s.text for s in asked.values()}

        erased = await profiles(cluster.edge.address, kept[0].owner)  # the user's erasure takes their samples
        assert erased.profile_erased is False
        assert [s.owner for s in DistillSamples(str(db)).samples()] == [kept[1].owner]
        assert kept[0].owner.encode() not in b"".join(p.read_bytes() for p in tmp_path.glob("distill.sqlite*"))

        assert await cli("data", "distill", "export", "--db", str(db), "--out", str(out)) == 0
        rows = read_jsonl(out)
        assert len(rows) == 1 and rows[0].completion.startswith(" ")
        async with open_channel(cluster.core.address) as channel:
            models, training = cmp_grpc.ComputePlaneServiceStub(channel), tr_grpc.TrainingServiceStub(channel)
            await publish(models, out, "edge-distill", "r1", S.MODEL_KIND_DATASET)
            job = (await training.StartTrainingJob(T.StartTrainingJobRequest(spec=T.TrainingJobSpec(
                name="distill", method=T.TRAINING_METHOD_FULL, role=S.NODE_ROLE_EDGE,
                dataset=T.StoredVersion(name="edge-distill", version="r1"), seed=7, output_name="edge-learned",
                output_version="r1", hyper_parameters=T.HyperParameters(max_steps=2, batch_size=1, threads=1))),
                timeout=10)).job
            final = [r.job async for r in training.WatchTrainingJob(T.WatchTrainingJobRequest(job_id=job.id),
                                                                    timeout=240)][-1]
            assert final.state == S.TRAINING_STATE_SUCCEEDED, final.error
            commands = await deploy(models, "edge-learned", "r1", ("edge-1",))
            state = await settled(models, "edge-1", commands["edge-1"])
            assert state.phase == S.DEPLOYMENT_PHASE_SERVING, state.error
        session = await new_session(cluster.core.address)
        events = (await generate(cluster.edge.address, concise(session, "Where can I eat fish?", max_new_tokens=4,
                                                                route=up_pb2.ROUTE_PREFERENCE_EDGE)))
        assert events[-1].summary.terminated_at == S.NODE_ROLE_EDGE
        assert (events[-1].summary.edge_model.name, events[-1].summary.edge_model.version) == ("edge-learned", "r1")
    finally:
        await cluster.stop()


@pytest.mark.parametrize("method", ["full"])
def test_the_trainer_reads_an_export(tiny, tmp_path: Path, method: str):
    store = DistillSamples(":memory:")
    store.keep(sample())
    data = tmp_path / "d.jsonl"
    store.export(data)
    result = train(tiny.gpt2_dir, data, tmp_path / "work", TrainConfig(method=method, max_steps=1, batch_size=1))
    assert result.steps == 1 and (result.output_dir / "model.safetensors").is_file()


def test_only_grounded_cloud_answers_are_trained_on():
    from tasks.distill.dataset import grounded, listed_venues

    prompt = ("Location: Harbour (cell cell-harbour-1).\nLocal information:\n"
              "- Harbour Fish Market (restaurant): fresh fish\nUser request: fish?\nAnswer:")
    assert listed_venues(prompt) == ("Harbour Fish Market",)
    venues = {"cell-harbour-1": ["Harbour Fish Market", "Ferry Terminal"]}
    row = {"prompt": prompt, "completion": " Try Harbour Fish Market.", "meta": {"cell": "cell-harbour-1"}}
    assert grounded(row, venues)
    assert not grounded(row | {"completion": " Try Ferry Terminal."}, venues)  # not listed
    assert not grounded(row | {"completion": " Harbour Fish Market or Ferry Terminal."}, venues)  # another venue
    assert not grounded(row | {"completion": " I do not know."}, venues)


def test_a_grounded_answer_is_taught_in_the_edges_own_form():
    from edge_node.serving.knowledge import Venue
    from tasks.distill.dataset import in_edge_form

    prompt = ("Location: Harbour (cell cell-harbour-1).\nLocal information:\n"
              "- Harbour Fish Market (restaurant): fresh fish, open 11:00-22:00\n"
              "- Maritime Museum (museum): ships\nUser request: fish?\nAnswer:")
    venues = [Venue("cell-harbour-1", "Harbour Fish Market", "restaurant", "fresh fish", "11:00-22:00"),
              Venue("cell-harbour-1", "Maritime Museum", "museum", "ships")]
    row = {"prompt": prompt, "completion": " Try Harbour Fish Market: fresh fish, open 11:00-22:00.",
           "meta": {"cell": "cell-harbour-1"}}
    taught = in_edge_form(row, venues)
    assert taught is not None and taught["prompt"] == prompt
    assert taught["completion"] == " Harbour Fish Market, open 11:00-22:00."
    assert taught["meta"] == {"cell": "cell-harbour-1", "form": "edge"}
    assert in_edge_form(row | {"completion": " Maritime Museum has ships."}, venues)["completion"] == \
        " Maritime Museum, hours not listed."
    assert in_edge_form(row | {"completion": " Harbour Fish Market or the Maritime Museum."}, venues) is None
    assert in_edge_form(row | {"completion": " I do not know."}, venues) is None


def test_a_retrained_edge_serves_only_when_no_worse_on_the_development_questions():
    from tasks.distill.evaluation import passes_gate

    serving = {"edge_share_equal": 0.5, "edge_quality": 0.87}
    assert passes_gate(serving, serving)
    assert passes_gate({"edge_share_equal": 0.6, "edge_quality": 0.88}, serving)
    assert not passes_gate({"edge_share_equal": 0.9, "edge_quality": 0.86}, serving)  # answers worse
    assert not passes_gate({"edge_share_equal": 0.4, "edge_quality": 0.95}, serving)  # ends fewer at equal quality


def test_no_collected_question_is_ever_evaluated():
    from tasks.distill.evaluation import DEV, evaluation_questions
    from tasks.distill.rounds import collection_questions
    from tasks.routing.questions import HELDOUT

    evaluated = {q.question for split in (HELDOUT, DEV) for q in evaluation_questions(split)}
    collected = [q.question for q in collection_questions(180)]
    assert len(set(collected)) == 180 and not evaluated & set(collected)
    assert len(evaluation_questions(HELDOUT)) == 71 and len(evaluation_questions(DEV)) == 114


async def test_a_round_evaluates_collects_and_keeps_every_answer(tiny, tmp_path: Path):
    """One round through real servers (the starter edge, the tiny cloud): the serving edge's answers to the
    first held-out questions are kept with its figures, the round's questions reach the cloud, and a candidate
    is trained only from grounded samples (the tiny cloud's answers name no venue: then the starter stays)."""
    from node.runtime import starter_models
    from tasks.distill.rounds import Options, run
    from tasks.routing.collect import Collected

    options = Options(rounds=1, questions=2, heldout=3, cloud_model="tiny", concurrency=2, max_new_tokens=8)
    first, last = await run(options, tmp_path)
    records = Collected.read(tmp_path / "round-0-heldout.json").records
    assert len(records) == 3 and {r.split for r in records} == {"heldout"}
    assert all("probe_mean_logprob" in r.features for r in records)
    assert first.cloud_calls + first.failed == 2 and first.samples_kept == first.cloud_calls
    assert (first.train_lines > 0) == (first.grounded > 0)
    if not first.grounded:
        assert first.gate is None and last.edge_model == str(starter_models().gpt2_dir)
    assert 0.0 <= last.edge_share_equal <= 1.0 and last.cloud_calls == 0
