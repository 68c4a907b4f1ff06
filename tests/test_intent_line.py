"""Where the edge's "Intent:" line comes from (issue 29): left empty when the knowledge base decides (the
prompt lists its one venue), so the first token does not wait for the edge model to read the request token
by token; left empty too when the request is known to go to the cloud before it is personalised (unless
``cloud_intent``); read by the edge model as before otherwise, or always with ``intent_from = "model"``.
Through a real edge server."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from pathlib import Path

import pytest
from harness import start_cluster
from helpers import concise, generate, new_session

from edge_node.serving.knowledge import KnowledgeBase
from edge_node.serving.personalise import Personaliser
from edge_node.serving.profiles import ProfileStore
from netgpt.engine import LanguageModel
from netgpt.errors import StartupError
from netgpt.generation import SamplingParams, StartConstraint, TokenPiece
from netgpt.v1 import common_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from up.runner import GenerationRunner

BUNDLED = Path(__file__).resolve().parent.parent / "netgpt" / "assets" / "knowledge.toml"
DECIDED = "Where can I eat seafood tonight?"  # one venue matches, nothing else comes near
KB_INTENT = "Intent: The user wants\nAnswer:"  # the one venue listed says it all
UNDECIDED = "Any spot to leave the car by the quay?"  # two venues listed: the model reads the intent


@pytest.fixture
def edge_streams(models, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """max_new_tokens of every generation the edge GPT-2 runs (the cloud's model is not counted)."""
    calls: list[int] = []
    original = GenerationRunner.stream

    def spy(self: GenerationRunner, model: LanguageModel, prompt_ids: list[int],
            params: SamplingParams, *, start: StartConstraint | None = None) -> AsyncGenerator[TokenPiece, None]:
        if model is models[0]:
            calls.append(params.max_new_tokens)
        return original(self, model, prompt_ids, params, start=start)

    monkeypatch.setattr(GenerationRunner, "stream", spy)
    yield calls


def test_the_knowledge_base_decides_only_for_one_clear_match() -> None:
    kb = KnowledgeBase.load(BUNDLED)
    assert kb.retrieve("cell-harbour-1", DECIDED).decisive
    found = kb.retrieve("cell-harbour-1", UNDECIDED)
    assert len(found.venues) == 2 and not found.decisive
    assert not kb.retrieve("cell-campus-2", "a latte please").decisive  # nothing matched: the fallback venue


async def test_a_decided_request_generates_no_intent_tokens(models, edge_streams: list[int]) -> None:
    edge = {"answer_cache_ttl_s": 0.0, "coalesce": False, "cloud_token_timeout_s": 120.0}  # no fallback on a busy CPU
    cluster = await start_cluster(*models, edge=edge)
    try:
        session = await new_session(cluster.core.address, "cell-harbour-1")
        cloud = up_pb2.ROUTE_PREFERENCE_CLOUD
        decided = await generate(cluster.edge.address, concise(session, DECIDED, route=cloud))
        assert decided[-1].summary.terminated_at == common_pb2.NODE_ROLE_CLOUD
        assert edge_streams == []  # forwarded, and nothing generated at the edge: not even an intent
        assert decided[0].comprehensive_prompt.text.endswith(KB_INTENT)
        assert decided[-1].summary.text  # the cloud answered it

        undecided = await generate(cluster.edge.address, concise(session, UNDECIDED, route=cloud))
        assert edge_streams == []  # known to go to the cloud before personalising: no reading either
        assert undecided[0].comprehensive_prompt.text.count("\n- ") == 2  # two venues listed
        assert undecided[0].comprehensive_prompt.text.endswith(KB_INTENT)
        assert undecided[-1].summary.terminated_at == common_pb2.NODE_ROLE_CLOUD

        edge = up_pb2.ROUTE_PREFERENCE_EDGE
        read = await generate(cluster.edge.address, concise(session, UNDECIDED, route=edge, max_new_tokens=4))
        assert edge_streams == [12, 4]  # answered at the edge: the edge model read the intent (intent_tokens)
        assert not read[0].comprehensive_prompt.text.endswith(KB_INTENT)

        answered = await generate(cluster.edge.address, concise(session, DECIDED, route=edge, max_new_tokens=4))
        assert edge_streams == [12, 4, 4]  # at the edge: the answer alone
        assert answered[0].comprehensive_prompt.text.endswith(KB_INTENT)
    finally:
        await cluster.stop()


async def test_the_intent_is_read_when_a_probe_of_the_prompt_decides_the_route(models, edge_streams: list[int]) -> None:
    """With a confidence threshold the route depends on the personalised prompt, so it is not known before: the
    intent is read as it always was, then the probe runs."""
    edge = {"answer_cache_ttl_s": 0.0, "coalesce": False, "cloud_token_timeout_s": 120.0,
            "confidence_threshold": -0.0001, "confidence_probe_tokens": 3, "edge_tasks": []}
    cluster = await start_cluster(*models, edge=edge)
    try:
        session = await new_session(cluster.core.address, "cell-harbour-1")
        await generate(cluster.edge.address, concise(session, UNDECIDED, max_new_tokens=4))
        assert edge_streams[:2] == [12, 3]  # the intent, then the probe
    finally:
        await cluster.stop()


async def test_cloud_intent_reads_the_intent_for_the_cloud_route_too(models, edge_streams: list[int]) -> None:
    def personaliser(cloud_intent: bool) -> Personaliser:
        return Personaliser(KnowledgeBase.load(BUNDLED), ProfileStore(), GenerationRunner(), intent_tokens=3,
                            cloud_intent=cloud_intent)

    skipped = await personaliser(False).build(UNDECIDED, "cell-harbour-1", "", 8, models[0], to_cloud=True)
    assert edge_streams == [] and skipped.intent_from == "cloud-route"
    assert skipped.text.endswith(KB_INTENT)
    read = await personaliser(True).build(UNDECIDED, "cell-harbour-1", "", 8, models[0], to_cloud=True)
    assert edge_streams == [3] and read.intent_from == "model"
    unknown = await personaliser(False).build(UNDECIDED, "cell-harbour-1", "", 8, models[0], to_cloud=None)
    assert edge_streams == [3, 3] and unknown.intent_from == "model"


async def test_intent_from_model_reads_every_intent(models, edge_streams: list[int], tmp_path: Path) -> None:
    personaliser = Personaliser(KnowledgeBase.load(BUNDLED), ProfileStore(),
                                GenerationRunner(), intent_tokens=3, intent_from="model")
    built = await personaliser.build(DECIDED, "cell-harbour-1", "", 8, models[0])
    assert edge_streams == [3] and built.intent_from == "model"
    with pytest.raises(StartupError, match="intent_from must be one of knowledge, model"):
        Personaliser(KnowledgeBase.load(BUNDLED), ProfileStore(), GenerationRunner(),
                     intent_from="guess")


def test_evaluations_and_the_bench_choose_the_intent_behaviour() -> None:
    from bench.as_deployed import intent_flags
    from tasks.prompt_completion.evaluate import intent_settings

    assert intent_settings("") == {} and intent_settings("none") == {"intent_tokens": 0}
    assert intent_settings("model") == {"intent_from": "model"}
    with pytest.raises(ValueError, match="intent must be one of"):
        intent_settings("guess")
    assert intent_flags("none") == ["--intent-tokens", "0"] and intent_flags("model") == ["--intent-from", "model"]
