"""The edge's answer begins with the name of a venue its prompt lists (``answer_start = "venue"``, the default):
the constraint itself over scripted logits, the fact line's name, and the starter edge through a real cluster,
where the free model runs two listed names together."""

from __future__ import annotations

import numpy as np
import pytest
from harness import start_cluster
from helpers import concise, generate, new_session

from edge_node.serving.answer_start import venue_start
from edge_node.serving.knowledge import Venue, fact_name
from edge_node.serving.pipeline import EdgeSettings
from netgpt.errors import StartupError
from netgpt.generation import SamplingParams, StartConstraint, generate_tokens, log_softmax
from netgpt.v1 import common_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from tasks.prompt_completion.evaluate import names_in

VOCAB, EOS = 10, 9


class ScriptedSession:
    """A decoder whose next-token favourites follow a script whatever it is fed (2nd favourite: token 0)."""

    def __init__(self, favourites: list[int]) -> None:
        self._favourites = iter(favourites)

    def _next(self) -> np.ndarray:
        logits = np.zeros(VOCAB, np.float32)
        logits[0] = 2.0
        logits[next(self._favourites)] = 5.0
        return logits

    def prefill(self, input_ids: list[int]) -> np.ndarray:
        return self._next()

    def advance(self, token_id: int) -> np.ndarray:
        return self._next()


class Digits:
    eos_token_id = EOS

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [int(c) for c in text if c.isdigit()]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(map(str, ids))


def run(favourites: list[int], start: StartConstraint | None) -> list[int]:
    params = SamplingParams(max_new_tokens=len(favourites))
    return [p.token_id for p in generate_tokens(ScriptedSession(favourites), Digits(), [1], params, start=start)]


def test_the_answer_spells_one_start_then_goes_free() -> None:
    names = [[1, 2], [3, 4]]
    assert run([1, 3, 5, 6], None) == [1, 3, 5, 6]  # free: the two names run together
    assert run([1, 3, 5, 6], StartConstraint(names)) == [1, 2, 5, 6]  # one name, then the model's own choices
    assert run([7, 3, 5, 6], StartConstraint(names)) == [1, 2, 5, 6]  # neither is its favourite: the likeliest


def test_a_complete_start_ends_the_constraint_even_when_a_longer_one_begins_with_it() -> None:
    assert run([1, 7, 8], StartConstraint([[1], [1, 2]])) == [1, 7, 8]
    assert run([1, EOS, 8], StartConstraint([[1, 2], [3]])) == [1, 2, 8]  # no end of the answer inside a name


def test_the_reported_log_probability_is_the_models_own() -> None:
    start = StartConstraint([[1, 2]])
    pieces = list(generate_tokens(ScriptedSession([1, 3]), Digits(), [1], SamplingParams(max_new_tokens=2),
                                  start=start))
    expected = log_softmax(ScriptedSession([3])._next())[2]
    assert [p.token_id for p in pieces] == [1, 2] and pieces[1].logprob == pytest.approx(expected)
    assert not start.active and start.allowed() == set()


@pytest.mark.parametrize("name", ["Harbour Car Park P2", "Cafe (Old Town)", "Left-Luggage Lockers"])
def test_the_fact_line_gives_back_the_venue_name(name: str) -> None:
    fact = Venue("cell-1", name, "cafe", "coffee (fair trade): and cakes", "07:00-17:00").as_fact()
    assert fact_name(fact) == name


def test_only_template_less_models_with_listed_facts_are_constrained(models) -> None:
    gpt2 = models[0]
    facts = [Venue("c", name, "cafe", "coffee").as_fact() for name in ("Campus Cafe", "Central Library")]
    start = venue_start(gpt2, facts, "venue")
    assert start is not None and start.allowed() == {gpt2.tokenizer.encode(" Campus")[0],
                                                     gpt2.tokenizer.encode(" Central")[0]}
    assert venue_start(gpt2, [], "venue") is None and venue_start(gpt2, facts, "free") is None
    with pytest.raises(StartupError, match="answer_start must be one of venue, free"):
        EdgeSettings("edge-1", frozenset(), answer_start="first")


QUESTION, CAMPUS = "Somewhere silent to read on campus?", ("Campus Cafe", "Central Library")


@pytest.mark.parametrize("answer_start, names", [("free", 2), ("venue", 1)])
async def test_the_starter_edge_names_one_listed_venue(models, answer_start: str, names: int) -> None:
    """The starter edge, left free, answers this development question "Campus Cafe Central Library, ..."."""
    cluster = await start_cluster(*models, edge={"answer_start": answer_start, "answer_cache_ttl_s": 0.0})
    try:
        session = await new_session(cluster.core.address, "cell-campus-2")
        events = await generate(cluster.edge.address, concise(session, QUESTION, route=up_pb2.ROUTE_PREFERENCE_EDGE))
        listed = events[0].comprehensive_prompt.text
        assert all(f"- {name} (" in listed for name in CAMPUS)
        summary = events[-1].summary
        assert summary.terminated_at == common_pb2.NODE_ROLE_EDGE
        assert len(names_in(summary.text, CAMPUS)) == names, summary.text
    finally:
        await cluster.stop()
