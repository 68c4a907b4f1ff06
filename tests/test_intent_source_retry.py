"""The reader's second look for a source: a line that states an action and a destination but no source at
all is decoded again with ``src:`` written for the model, and kept only when the source it then writes is
a span of the request, not the destination, and probable enough.

The model here is scripted (a few-word vocabulary whose next token depends only on the line so far): what
is tested is the reader's decision, which the real SmolLM2 reader's figures (``netgpt eval intent --model
pretrained``) cannot isolate. The scripted model, like the pretrained reader on held-out route phrasings,
leaves the source out unless it is asked for one.
"""

from __future__ import annotations

import numpy as np

from edge_node.netmgmt.intent_reader import IntentReader

START, EOS, UNKNOWN = 0, 1, 2
PIECES = ["<start>", "<eos>", "?", "act:", " delete", ";", " src:", " dst:", " Hub-1", " PoP Leeds"]
ID = {piece: i for i, piece in enumerate(PIECES)}


class WordTokenizer:
    """Any prompt is one START token; a line is its pieces, matched longest first."""

    eos_token_id = EOS

    def __len__(self) -> int:
        return len(PIECES)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        if text.startswith("Request:"):
            return [START]
        ids, rest = [], text
        while rest:
            piece = max((p for p in PIECES[3:] if rest.startswith(p)), key=len, default=None)
            ids.append(ID[piece] if piece else UNKNOWN)
            rest = rest[len(piece):] if piece else rest[1:]
        return ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(PIECES[i] for i in ids if i not in (START, EOS))


class ScriptedSession:
    def __init__(self, source: str, p_source: float) -> None:
        self.source, self.p_source = source, p_source
        self.line: list[int] = []

    def prefill(self, ids: list[int]) -> np.ndarray:
        self.line = [i for i in ids if i != START]
        return self._next()

    def advance(self, token: int) -> np.ndarray:
        self.line.append(token)
        return self._next()

    def _next(self) -> np.ndarray:
        after = PIECES[self.line[-1]] if self.line else ""
        choice, p = {"": ("act:", 0.99), "act:": (" delete", 0.99), " delete": (";", 0.99),
                     ";": (" dst:", 0.9) if ID[" src:"] not in self.line else (" dst:", 0.99),
                     " src:": (self.source, self.p_source), " dst:": (" PoP Leeds", 0.95),
                     " PoP Leeds": ("<eos>", 0.99), " Hub-1": (";", 0.99)}[after]
        logits = np.full(len(PIECES), np.log((1 - p) / (len(PIECES) - 1)))
        logits[ID[choice]] = np.log(p)
        return logits


class ScriptedModel:
    max_context = 256

    def __init__(self, source: str = " Hub-1", p_source: float = 0.9) -> None:
        self.tokenizer = WordTokenizer()
        self.source, self.p_source = source, p_source

    def new_session(self) -> ScriptedSession:
        return ScriptedSession(self.source, self.p_source)


REQUEST = "decommission the pipe for Hub-1 to reach PoP Leeds"


def reader(model: ScriptedModel, source_retry: float) -> IntentReader:
    return IntentReader(model, min_confidence=0.3, source_retry=source_retry)  # type: ignore[arg-type]


def test_a_source_left_out_is_asked_for_once_more_and_kept_when_the_request_has_it() -> None:
    reading = reader(ScriptedModel(), 0.7).read(REQUEST)
    assert reading.keyword_line == "act: delete; src: Hub-1; dst: PoP Leeds"
    assert not reading.needs_clarification and reading.intent.source == "Hub-1"


def test_without_the_second_look_the_reader_asks_for_the_source() -> None:
    reading = reader(ScriptedModel(), 1.0).read(REQUEST)
    assert reading.keyword_line == "act: delete; dst: PoP Leeds"
    assert reading.needs_clarification and reading.missing_fields == ["source"]


def test_a_source_the_request_lacks_or_the_destination_or_an_unlikely_one_is_not_taken() -> None:
    no_source = reader(ScriptedModel(), 0.7).read("decommission the pipe to PoP Leeds")
    assert no_source.keyword_line == "act: delete; dst: PoP Leeds" and no_source.needs_clarification
    same = reader(ScriptedModel(source=" PoP Leeds"), 0.7).read(REQUEST)
    assert same.keyword_line == "act: delete; dst: PoP Leeds" and same.needs_clarification
    unlikely = reader(ScriptedModel(p_source=0.5), 0.7).read(REQUEST)
    assert unlikely.keyword_line == "act: delete; dst: PoP Leeds" and unlikely.needs_clarification
