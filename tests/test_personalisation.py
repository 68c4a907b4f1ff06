"""Location knowledge (SQLite/FTS5) and user profiles at the edge, and what reaches the cloud."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import grpc
import pytest
from harness import start_cluster
from helpers import RecordGenerate, concise, generate, new_session

from edge_node.serving.knowledge import SCHEMA_VERSION, KnowledgeBase
from edge_node.serving.profiles import ProfileStore
from netgpt.channels import open_channel
from netgpt.errors import InvalidArgument, StartupError
from netgpt.v1 import profile_pb2, profile_pb2_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2
from tasks.prompt_completion.venue_terms import write_keywords

BUNDLED = Path(__file__).resolve().parent.parent / "netgpt" / "assets" / "knowledge.toml"


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.load(BUNDLED)


@pytest.mark.parametrize("cell, prompt, expected, foreign", [
    ("cell-harbour-1", "Where can I eat seafood tonight?", "Harbour Fish Market", "Upper Level Food Court"),
    ("cell-station-3", "Where can I eat something quick?", "Upper Level Food Court", "Harbour Fish Market"),
    ("cell-campus-2", "I need a coffee", "Campus Cafe", "Platform Coffee"),
    ("cell-station-3", "How do I get to the airport?", "Central Station", "Pier 3 Ferry Terminal"),
])
def test_facts_come_from_the_ues_cell_ranked_by_prompt(kb, cell, prompt, expected, foreign):
    facts = kb.facts_for(cell, prompt)
    assert facts and facts[0].startswith(expected)
    assert not any(foreign in fact for fact in facts)


def test_category_words_find_venues_without_shared_words(kb):
    assert kb.facts_for("cell-harbour-1", "I feel sick, need medicine")[0].startswith("Quay Street Pharmacy")


def test_unknown_cell_has_no_facts_and_knowledge_persists(tmp_path: Path, kb):
    assert kb.facts_for("cell-nowhere", "seafood") == [] and kb.area("cell-nowhere") == ""
    db = tmp_path / "kb.sqlite"
    KnowledgeBase.load(BUNDLED, str(db))
    reopened = KnowledgeBase.load(BUNDLED, str(db))
    assert reopened.cells == ["cell-campus-2", "cell-harbour-1", "cell-station-3"]  # reload replaces, no duplicates
    assert _names(reopened.venues("cell-harbour-1", "seafood", limit=10)) == ["Harbour Fish Market"]


def _names(venues: list) -> list[str]:
    return [v.name for v in venues]


def test_words_find_their_stems_and_weak_matches_are_left_out(kb):
    assert _names(kb.venues("cell-station-3", "Is there a burger place?")) == ["Upper Level Food Court"]  # "burgers"
    loose = KnowledgeBase.load(BUNDLED, min_share=0.0)  # the word, then its category ("seafood" → restaurant)
    assert _names(loose.venues("cell-harbour-1", "seafood", limit=10)) == ["Harbour Fish Market", "Quayside Noodle Bar"]
    with pytest.raises(StartupError, match=r"fact_min_share must be in \[0, 1\], got 1.5"):
        KnowledgeBase.load(BUNDLED, min_share=1.5)


def test_keywords_find_a_venue_its_own_words_do_not(tmp_path: Path):
    text = ('[cells.c1]\narea = "A"\n[[cells.c1.venues]]\nname = "Bean Bar"\ncategory = "cafe"\n'
            'description = "espresso drinks"\n[[cells.c1.venues]]\nname = "Books"\ncategory = "shop"\n'
            'description = "novels and maps"\n')
    path = tmp_path / "kb.toml"
    path.write_text(text)
    assert _names(KnowledgeBase.load(path).venues("c1", "a latte please")) == ["Bean Bar"]  # nothing matched: first
    assert _names(KnowledgeBase.load(path).venues("c1", "a cheap paperback")) == ["Bean Bar"]
    expanded = write_keywords(text, {("c1", "Books"): ["paperback", "novel"], ("c1", "Nowhere"): ["x"]})
    assert expanded == text.replace('name = "Books"\n', 'name = "Books"\nkeywords = ["paperback", "novel"]\n')
    assert write_keywords(expanded, {("c1", "Books"): ["atlas"]}).count("keywords") == 1  # replaced, not added
    path.write_text(expanded)
    kb = KnowledgeBase.load(path)
    assert _names(kb.venues("c1", "a cheap paperback")) == ["Books"]
    assert kb.venues("c1", "a cheap paperback")[0].keywords == ("paperback", "novel")
    assert "paperback" not in kb.facts_for("c1", "a cheap paperback")[0]  # found by them, never shown


def test_a_knowledge_db_file_of_an_older_schema_is_rebuilt(tmp_path: Path):
    db = tmp_path / "kb.sqlite"
    with sqlite3.connect(db) as old:  # version 1: no stemming, no user_version
        old.executescript("CREATE TABLE cells (cell_id TEXT PRIMARY KEY, area TEXT NOT NULL);"
                          "CREATE TABLE venues (id INTEGER PRIMARY KEY, cell_id TEXT NOT NULL, name TEXT NOT NULL,"
                          " category TEXT NOT NULL, description TEXT NOT NULL, hours TEXT NOT NULL);"
                          "CREATE VIRTUAL TABLE venues_fts USING fts5(name, category, description, content='venues',"
                          " content_rowid='id');")
    reopened = KnowledgeBase.load(BUNDLED, str(db))
    assert _names(reopened.venues("cell-station-3", "burger")) == ["Upper Level Food Court"]
    with sqlite3.connect(db) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


@pytest.mark.parametrize("text, needle", [
    ("[cells.c1]\nvenues = [{name = 'x'}]\n", "needs a name and a category"),
    ("[cells.c1]\nfacts = 'not a list'\n", "must be a list of strings"),
    ("[cells\n", "knowledge base"),
    ("[cells.c1]\nvenues = [{name = 'x', category = 'cafe', keywords = 'latte'}]\n", "must be a list of single words"),
    ("[cells.c1]\nvenues = [{name = 'x', category = 'cafe', keywords = ['flat white']}]\n", "keywords of 'x'"),
])
def test_bad_knowledge_file_is_a_startup_error(tmp_path: Path, text, needle):
    path = tmp_path / "kb.toml"
    path.write_text(text)
    with pytest.raises(StartupError) as err:
        KnowledgeBase.load(path)
    assert needle in str(err.value)


def test_profile_store_merge_replace_limits_and_durability(tmp_path: Path):
    db = str(tmp_path / "profiles.sqlite")
    store = ProfileStore(db)
    store.update("ue-1", ["vegetarian"], merge=False)
    store.update("ue-1", ["vegetarian", "has a bicycle"], merge=True)
    store.record_prompt("ue-1", "first")
    store.record_prompt("ue-unknown", "not tracked")
    reopened = ProfileStore(db)
    profile = reopened.get("ue-1")
    assert profile.preferences == ["vegetarian", "has a bicycle"] and profile.recent_prompts == ["first"]
    assert reopened.find("ue-unknown") is None
    assert reopened.update("ue-1", ["quiet places"], merge=False).preferences == ["quiet places"]
    with pytest.raises(InvalidArgument):
        reopened.update("ue-1", ["x" * 121], merge=True)
    with pytest.raises(InvalidArgument):
        reopened.update("ue-1", [f"p{i}" for i in range(17)], merge=False)


async def test_profile_personalises_and_never_leaves_the_edge(models):
    recorder = RecordGenerate()
    cluster = await start_cluster(*models, heartbeat_interval_s=0.3, cloud_interceptors=[recorder])
    try:
        session = await new_session(cluster.core.address, "cell-harbour-1")
        async with open_channel(cluster.edge.address) as channel:
            profiles = profile_pb2_grpc.ProfileServiceStub(channel)
            await profiles.UpdateProfile(profile_pb2.UpdateProfileRequest(
                user_id=session.ue_id, preferences=["vegetarian", "travels by bicycle"]), timeout=5)
            secret = "my doctor appointment at 9 about my back pain"
            await generate(cluster.edge.address, concise(session, secret, route=up_pb2.ROUTE_PREFERENCE_EDGE))
            events = await generate(cluster.edge.address, concise(session, "Where can I eat tonight?"))
            reply = await profiles.GetProfile(profile_pb2.GetProfileRequest(user_id=session.ue_id), timeout=5)
            stored = reply.profile
        prompt = events[0].comprehensive_prompt.text
        assert "User preferences: vegetarian; travels by bicycle." in prompt
        assert list(stored.recent_prompts) == ["Where can I eat tonight?", secret]

        assert len(recorder.requests) == 1  # the edge-routed request never reached the cloud
        sent = recorder.requests[0]
        assert sent.prompt == prompt  # the cloud sees exactly the comprehensive prompt ...
        wire = sent.SerializeToString()
        assert session.ue_id.encode() not in wire and not sent.ran.ue_id  # ... and not who the user is
        assert b"doctor" not in wire and b"back pain" not in wire  # nor their history
    finally:
        await cluster.stop()


async def test_profile_api_errors(cluster):
    async with open_channel(cluster.edge.address) as channel:
        profiles = profile_pb2_grpc.ProfileServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await profiles.GetProfile(profile_pb2.GetProfileRequest(user_id="ue-never-seen"), timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await profiles.UpdateProfile(profile_pb2.UpdateProfileRequest(user_id="", preferences=["x"]), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "user_id" in err.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await profiles.DeleteProfile(profile_pb2.DeleteProfileRequest(user_id="ue-never-seen"), timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
