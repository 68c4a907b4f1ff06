"""User plane: protocol messages ⇄ domain objects, in one place.

Servicers decode a ``GenerateRequest`` here (validating every field against the node's
limits), hand domain objects to the pipeline, and encode the domain events it yields;
the edge decodes the cloud's stream here too. Nothing else builds ``GenerateResponse``
or ``GenerationSummary``.
"""

from __future__ import annotations

from netgpt.engine import ModelIdentity
from netgpt.generation import SamplingParams
from netgpt.v1 import common_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.validate import check_request
from up.events import Event, FellBack, Latency, PromptBuilt, StepTiming, Summary, Tokens
from up.limits import Limits, check_prompt, sampling_params
from up.request import GenerationRequest, Ran


def model_ref(identity: ModelIdentity, kind: common_pb2.ModelKind) -> common_pb2.ModelRef:
    return common_pb2.ModelRef(name=identity.name, version=identity.version, sha256=identity.sha256, kind=kind)


def decode_request(request: up_pb2.GenerateRequest, limits: Limits) -> GenerationRequest:
    """The validated domain request, or InvalidArgument naming the violated limit (the field bounds of
    :mod:`netgpt.validate` too: known enum values, identifiers, QoS ranges, also for in-process callers)."""
    check_request(request)
    prompt, params = check_prompt(request.prompt, limits), sampling_params(request.params, limits)
    return GenerationRequest(session_id=request.session_id, prompt=prompt, params=params, ran=decode_ran(request.ran),
                             task=request.task, route=request.route, workflow=request.workflow)


def decode_ran(ran: common_pb2.RanContext) -> Ran:
    return Ran(cell_id=ran.cell_id, ue_id=ran.ue_id, slice_id=ran.slice_id, priority=ran.qos.priority,
               latency_budget_ms=ran.qos.latency_budget_ms, ai_flow_id=ran.ai_flow_id)


def encode_ran(ran: Ran) -> common_pb2.RanContext:
    return common_pb2.RanContext(cell_id=ran.cell_id, ue_id=ran.ue_id, slice_id=ran.slice_id, ai_flow_id=ran.ai_flow_id,
                                 qos=common_pb2.QoS(priority=ran.priority, latency_budget_ms=ran.latency_budget_ms))


def encode_params(params: SamplingParams) -> up_pb2.GenerationParams:
    """Resolved parameters on the wire, so the next hop applies no defaults of its own."""
    message = up_pb2.GenerationParams(max_new_tokens=params.max_new_tokens, temperature=params.temperature,
                                      top_k=params.top_k, top_p=params.top_p)
    if params.seed is not None:
        message.seed = params.seed
    return message


def comprehensive_request(session_id: str, prompt: str, params: SamplingParams, ran: Ran,
                          task: up_pb2.TaskClass) -> up_pb2.GenerateRequest:
    """The edge → cloud request: the comprehensive prompt with the edge's resolved parameters."""
    return up_pb2.GenerateRequest(session_id=session_id, kind=up_pb2.PROMPT_KIND_COMPREHENSIVE, prompt=prompt,
                                  ran=encode_ran(ran), params=encode_params(params), task=task)


def encode_event(event: Event) -> up_pb2.GenerateResponse:
    if isinstance(event, Tokens):
        return up_pb2.GenerateResponse(tokens=up_pb2.TokenChunk(text=event.text, token_ids=event.token_ids,
                                                                source=event.source))
    if isinstance(event, PromptBuilt):
        return up_pb2.GenerateResponse(comprehensive_prompt=up_pb2.ComprehensivePrompt(
            text=event.text, knowledge_used=event.facts, prompt_tokens=event.prompt_tokens,
            edge_node_id=event.edge_node_id))
    if isinstance(event, FellBack):
        return up_pb2.GenerateResponse(fallback=up_pb2.Fallback(reason=event.reason,
                                                                discarded_tokens=event.discarded_tokens))
    return up_pb2.GenerateResponse(summary=encode_summary(event))


def encode_summary(summary: Summary) -> up_pb2.GenerationSummary:
    latency = summary.latency
    message = up_pb2.GenerationSummary(
        terminated_at=summary.terminated_at, reason=summary.reason, reason_detail=summary.reason_detail,
        fallback=summary.fallback,
        latency=up_pb2.LatencySplit(personalise_ms=latency.personalise_ms, edge_generate_ms=latency.edge_generate_ms,
                                    cloud_ms=latency.cloud_ms, time_to_first_token_ms=latency.time_to_first_token_ms,
                                    total_ms=latency.total_ms),
        prompt_tokens=summary.prompt_tokens, completion_tokens=summary.completion_tokens,
        bytes_edge_to_cloud=summary.bytes_edge_to_cloud, session_id=summary.session_id,
        ai_flow_id=summary.ai_flow_id, finish_reason=summary.finish_reason, text=summary.text,
        answer_cached=summary.answer_cached, coalesced=summary.coalesced, routing_inputs=summary.routing_inputs,
        steps=[up_pb2.StepTiming(step_id=s.step_id, function=s.function, started_ms=s.started_ms,
                                 finished_ms=s.finished_ms, skipped=s.skipped) for s in summary.steps],
    )
    if summary.edge_model is not None:
        message.edge_model.CopyFrom(summary.edge_model)
    if summary.cloud_model is not None:
        message.cloud_model.CopyFrom(summary.cloud_model)
    return message


def decode_event(response: up_pb2.GenerateResponse) -> Event | None:
    """A cloud's streamed message as a domain event (None for an empty message)."""
    kind = response.WhichOneof("event")
    if kind == "tokens":
        chunk = response.tokens
        return Tokens(text=chunk.text, token_ids=tuple(chunk.token_ids), source=chunk.source)
    if kind == "summary":
        return decode_summary(response.summary)
    if kind == "fallback":
        return FellBack(reason=response.fallback.reason, discarded_tokens=response.fallback.discarded_tokens)
    if kind == "comprehensive_prompt":
        built = response.comprehensive_prompt
        return PromptBuilt(text=built.text, facts=tuple(built.knowledge_used), prompt_tokens=built.prompt_tokens,
                           edge_node_id=built.edge_node_id)
    return None


def decode_summary(message: up_pb2.GenerationSummary) -> Summary:
    latency = message.latency
    return Summary(
        session_id=message.session_id, ai_flow_id=message.ai_flow_id, terminated_at=message.terminated_at,
        reason=message.reason, reason_detail=message.reason_detail, fallback=message.fallback,
        latency=Latency(personalise_ms=latency.personalise_ms, edge_generate_ms=latency.edge_generate_ms,
                        cloud_ms=latency.cloud_ms, time_to_first_token_ms=latency.time_to_first_token_ms,
                        total_ms=latency.total_ms),
        prompt_tokens=message.prompt_tokens, completion_tokens=message.completion_tokens,
        bytes_edge_to_cloud=message.bytes_edge_to_cloud,
        edge_model=message.edge_model if message.HasField("edge_model") else None,
        cloud_model=message.cloud_model if message.HasField("cloud_model") else None,
        finish_reason=message.finish_reason, text=message.text, answer_cached=message.answer_cached,
        coalesced=message.coalesced, routing_inputs=dict(message.routing_inputs),
        steps=tuple(StepTiming(step_id=s.step_id, function=s.function, started_ms=s.started_ms,
                               finished_ms=s.finished_ms, skipped=s.skipped) for s in message.steps),
    )
