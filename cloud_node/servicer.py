"""The cloud node's UserPlaneService: comprehensive prompts in, LLaMA tokens out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog

from netgpt.errors import InvalidArgument
from netgpt.model_slot import ModelSlot
from netgpt.timing import Stopwatch
from netgpt.v1 import common_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc
from up.convert import Answer, summary_event
from up.limits import Limits, check_request
from up.local import encode_prompt, stream_answer
from up.runner import GenerationRunner

log = structlog.get_logger(__name__)


class CloudUserPlane(up_grpc.UserPlaneServiceServicer):
    def __init__(self, slot: ModelSlot, runner: GenerationRunner, limits: Limits) -> None:
        self.slot = slot
        self.runner = runner
        self.limits = limits

    async def Generate(self, request: up_pb2.GenerateRequest, context) -> AsyncIterator[up_pb2.GenerateResponse]:
        if request.kind == up_pb2.PROMPT_KIND_CONCISE:
            raise InvalidArgument("cloud nodes serve comprehensive prompts; send concise prompts to an edge node")
        prompt, params = check_request(request, self.limits)
        served = self.slot.current  # read once: this request finishes on it even if a deploy swaps the slot
        prompt_ids = encode_prompt(served.model, prompt, params.max_new_tokens, "comprehensive")
        with structlog.contextvars.bound_contextvars(session_id=request.session_id, ai_flow_id=request.ran.ai_flow_id):
            log.info("cloud.generate.start", prompt_tokens=len(prompt_ids), max_new_tokens=params.max_new_tokens)
            clock, answer = Stopwatch(), Answer()
            async for event in stream_answer(self.runner, served.model, prompt_ids, params,
                                             common_pb2.NODE_ROLE_CLOUD, answer, clock):
                yield event
            total = clock.ms()
            log.info("cloud.generate.done", completion_tokens=len(answer.token_ids), total_ms=round(total, 1))
            yield summary_event(up_pb2.GenerationSummary(
                terminated_at=common_pb2.NODE_ROLE_CLOUD,
                reason=up_pb2.ROUTE_REASON_DIRECT,
                latency=up_pb2.LatencySplit(cloud_ms=total, time_to_first_token_ms=answer.first_token_ms,
                                            total_ms=total),
                prompt_tokens=len(prompt_ids),
                completion_tokens=len(answer.token_ids),
                cloud_model=served.ref,
                session_id=request.session_id,
                ai_flow_id=request.ran.ai_flow_id,
                finish_reason=answer.finish_reason,
                text=answer.text,
            ))
