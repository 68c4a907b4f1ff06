"""The cloud's user-plane flow: a comprehensive prompt in, LLaMA tokens and a summary out (domain events)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

import structlog

from cloud_node.batching_runner import BatchingRunner
from netgpt.model_slot import Served
from netgpt.timing import Stopwatch
from netgpt.v1 import common_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from up.events import Event, Latency, Summary, Tokens
from up.local import Answer, encode_prompt
from up.request import GenerationRequest
from up.runner import GenerationRunner

log = structlog.get_logger(__name__)


class CloudGenerator:
    def __init__(self, runner: GenerationRunner) -> None:
        self.runner = runner

    async def run(self, request: GenerationRequest, served: Served) -> AsyncIterator[Event]:
        """Tokens, then the summary; ``served`` is the model pinned for the whole request."""
        prompt_ids = encode_prompt(served.model, request.prompt, request.params.max_new_tokens, "comprehensive")
        log.info("cloud.generate.start", prompt_tokens=len(prompt_ids), max_new_tokens=request.params.max_new_tokens)
        clock, answer = Stopwatch(), Answer(max_new_tokens=request.params.max_new_tokens)
        queued_ms = -1.0  # when the scheduler admitted it (-1: the thread-per-request path, queueing not split out)

        def admitted() -> None:
            nonlocal queued_ms
            queued_ms = clock.ms()

        if isinstance(self.runner, BatchingRunner):  # the session's QoS priority orders admission under load
            pieces = self.runner.stream(served.model, prompt_ids, request.params, request.ran.priority, admitted)
        else:
            pieces = self.runner.stream(served.model, prompt_ids, request.params)
        async with aclosing(pieces):
            async for piece in pieces:
                if not answer.token_ids:
                    answer.first_token_ms = clock.ms()
                answer.text += piece.text
                answer.token_ids.append(piece.token_id)
                yield Tokens(text=piece.text, token_ids=(piece.token_id,), source=common_pb2.NODE_ROLE_CLOUD)
        total = clock.ms()
        log.info("cloud.generate.done", completion_tokens=len(answer.token_ids), total_ms=round(total, 1),
                 queued_ms=round(queued_ms, 1), first_token_ms=round(answer.first_token_ms, 1))
        yield Summary(
            session_id=request.session_id, ai_flow_id=request.ran.ai_flow_id,
            terminated_at=common_pb2.NODE_ROLE_CLOUD, reason=up_pb2.ROUTE_REASON_DIRECT,
            latency=Latency(cloud_ms=total, time_to_first_token_ms=answer.first_token_ms, total_ms=total),
            prompt_tokens=len(prompt_ids), completion_tokens=len(answer.token_ids), cloud_model=served.ref,
            finish_reason=answer.finish_reason, text=answer.text,
        )
