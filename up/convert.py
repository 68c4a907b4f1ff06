"""Domain → user-plane messages, in one place."""

from __future__ import annotations

from dataclasses import dataclass, field

from netgpt.engine import ModelIdentity
from netgpt.generation import TokenPiece
from netgpt.v1 import common_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2


@dataclass
class Answer:
    """What one generation produced, accumulated while streaming."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    max_new_tokens: int = 0
    first_token_ms: float = 0.0

    def add(self, piece: TokenPiece) -> None:
        self.text += piece.text
        self.token_ids.append(piece.token_id)

    @property
    def finish_reason(self) -> int:
        if self.max_new_tokens and len(self.token_ids) >= self.max_new_tokens:
            return up_pb2.FINISH_REASON_MAX_TOKENS
        return up_pb2.FINISH_REASON_EOS


def model_ref(identity: ModelIdentity, kind: int) -> common_pb2.ModelRef:
    return common_pb2.ModelRef(name=identity.name, version=identity.version, sha256=identity.sha256, kind=kind)


def token_event(piece: TokenPiece, source: int) -> up_pb2.GenerateResponse:
    chunk = up_pb2.TokenChunk(text=piece.text, token_ids=[piece.token_id], source=source)
    return up_pb2.GenerateResponse(tokens=chunk)


def summary_event(summary: up_pb2.GenerationSummary) -> up_pb2.GenerateResponse:
    return up_pb2.GenerateResponse(summary=summary)
