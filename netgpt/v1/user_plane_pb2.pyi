from netgpt.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PromptKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROMPT_KIND_UNSPECIFIED: _ClassVar[PromptKind]
    PROMPT_KIND_CONCISE: _ClassVar[PromptKind]
    PROMPT_KIND_COMPREHENSIVE: _ClassVar[PromptKind]

class TaskClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_CLASS_UNSPECIFIED: _ClassVar[TaskClass]
    TASK_CLASS_CHAT: _ClassVar[TaskClass]
    TASK_CLASS_LOOKUP: _ClassVar[TaskClass]

class RoutePreference(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUTE_PREFERENCE_UNSPECIFIED: _ClassVar[RoutePreference]
    ROUTE_PREFERENCE_EDGE: _ClassVar[RoutePreference]
    ROUTE_PREFERENCE_CLOUD: _ClassVar[RoutePreference]

class RouteReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUTE_REASON_UNSPECIFIED: _ClassVar[RouteReason]
    ROUTE_REASON_EDGE_CAPABLE: _ClassVar[RouteReason]
    ROUTE_REASON_CLIENT_PREFERENCE: _ClassVar[RouteReason]
    ROUTE_REASON_CLOUD_FORWARDED: _ClassVar[RouteReason]
    ROUTE_REASON_CLOUD_UNAVAILABLE: _ClassVar[RouteReason]
    ROUTE_REASON_LATENCY_BUDGET: _ClassVar[RouteReason]
    ROUTE_REASON_CLOUD_FAILED: _ClassVar[RouteReason]
    ROUTE_REASON_DIRECT: _ClassVar[RouteReason]
    ROUTE_REASON_EDGE_CONFIDENT: _ClassVar[RouteReason]
    ROUTE_REASON_CLOUD_BUSY: _ClassVar[RouteReason]
    ROUTE_REASON_WORKFLOW: _ClassVar[RouteReason]
    ROUTE_REASON_DATA_RESIDENCY: _ClassVar[RouteReason]
    ROUTE_REASON_CELL_LOAD: _ClassVar[RouteReason]

class FinishReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FINISH_REASON_UNSPECIFIED: _ClassVar[FinishReason]
    FINISH_REASON_EOS: _ClassVar[FinishReason]
    FINISH_REASON_MAX_TOKENS: _ClassVar[FinishReason]
PROMPT_KIND_UNSPECIFIED: PromptKind
PROMPT_KIND_CONCISE: PromptKind
PROMPT_KIND_COMPREHENSIVE: PromptKind
TASK_CLASS_UNSPECIFIED: TaskClass
TASK_CLASS_CHAT: TaskClass
TASK_CLASS_LOOKUP: TaskClass
ROUTE_PREFERENCE_UNSPECIFIED: RoutePreference
ROUTE_PREFERENCE_EDGE: RoutePreference
ROUTE_PREFERENCE_CLOUD: RoutePreference
ROUTE_REASON_UNSPECIFIED: RouteReason
ROUTE_REASON_EDGE_CAPABLE: RouteReason
ROUTE_REASON_CLIENT_PREFERENCE: RouteReason
ROUTE_REASON_CLOUD_FORWARDED: RouteReason
ROUTE_REASON_CLOUD_UNAVAILABLE: RouteReason
ROUTE_REASON_LATENCY_BUDGET: RouteReason
ROUTE_REASON_CLOUD_FAILED: RouteReason
ROUTE_REASON_DIRECT: RouteReason
ROUTE_REASON_EDGE_CONFIDENT: RouteReason
ROUTE_REASON_CLOUD_BUSY: RouteReason
ROUTE_REASON_WORKFLOW: RouteReason
ROUTE_REASON_DATA_RESIDENCY: RouteReason
ROUTE_REASON_CELL_LOAD: RouteReason
FINISH_REASON_UNSPECIFIED: FinishReason
FINISH_REASON_EOS: FinishReason
FINISH_REASON_MAX_TOKENS: FinishReason

class GenerationParams(_message.Message):
    __slots__ = ("max_new_tokens", "temperature", "top_k", "top_p", "seed")
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    max_new_tokens: int
    temperature: float
    top_k: int
    top_p: float
    seed: int
    def __init__(self, max_new_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., top_k: _Optional[int] = ..., top_p: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("session_id", "kind", "prompt", "ran", "params", "task", "route", "workflow")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    RAN_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    kind: PromptKind
    prompt: str
    ran: _common_pb2.RanContext
    params: GenerationParams
    task: TaskClass
    route: RoutePreference
    workflow: str
    def __init__(self, session_id: _Optional[str] = ..., kind: _Optional[_Union[PromptKind, str]] = ..., prompt: _Optional[str] = ..., ran: _Optional[_Union[_common_pb2.RanContext, _Mapping]] = ..., params: _Optional[_Union[GenerationParams, _Mapping]] = ..., task: _Optional[_Union[TaskClass, str]] = ..., route: _Optional[_Union[RoutePreference, str]] = ..., workflow: _Optional[str] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("comprehensive_prompt", "tokens", "fallback", "summary")
    COMPREHENSIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    comprehensive_prompt: ComprehensivePrompt
    tokens: TokenChunk
    fallback: Fallback
    summary: GenerationSummary
    def __init__(self, comprehensive_prompt: _Optional[_Union[ComprehensivePrompt, _Mapping]] = ..., tokens: _Optional[_Union[TokenChunk, _Mapping]] = ..., fallback: _Optional[_Union[Fallback, _Mapping]] = ..., summary: _Optional[_Union[GenerationSummary, _Mapping]] = ...) -> None: ...

class ComprehensivePrompt(_message.Message):
    __slots__ = ("text", "knowledge_used", "prompt_tokens", "edge_node_id")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_USED_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    EDGE_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    text: str
    knowledge_used: _containers.RepeatedScalarFieldContainer[str]
    prompt_tokens: int
    edge_node_id: str
    def __init__(self, text: _Optional[str] = ..., knowledge_used: _Optional[_Iterable[str]] = ..., prompt_tokens: _Optional[int] = ..., edge_node_id: _Optional[str] = ...) -> None: ...

class TokenChunk(_message.Message):
    __slots__ = ("text", "token_ids", "source")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    text: str
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    source: _common_pb2.NodeRole
    def __init__(self, text: _Optional[str] = ..., token_ids: _Optional[_Iterable[int]] = ..., source: _Optional[_Union[_common_pb2.NodeRole, str]] = ...) -> None: ...

class Fallback(_message.Message):
    __slots__ = ("reason", "discarded_tokens")
    REASON_FIELD_NUMBER: _ClassVar[int]
    DISCARDED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    reason: str
    discarded_tokens: int
    def __init__(self, reason: _Optional[str] = ..., discarded_tokens: _Optional[int] = ...) -> None: ...

class LatencySplit(_message.Message):
    __slots__ = ("personalise_ms", "edge_generate_ms", "cloud_ms", "time_to_first_token_ms", "total_ms")
    PERSONALISE_MS_FIELD_NUMBER: _ClassVar[int]
    EDGE_GENERATE_MS_FIELD_NUMBER: _ClassVar[int]
    CLOUD_MS_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    personalise_ms: float
    edge_generate_ms: float
    cloud_ms: float
    time_to_first_token_ms: float
    total_ms: float
    def __init__(self, personalise_ms: _Optional[float] = ..., edge_generate_ms: _Optional[float] = ..., cloud_ms: _Optional[float] = ..., time_to_first_token_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class GenerationSummary(_message.Message):
    __slots__ = ("terminated_at", "reason", "reason_detail", "fallback", "latency", "prompt_tokens", "completion_tokens", "bytes_edge_to_cloud", "edge_model", "cloud_model", "session_id", "ai_flow_id", "finish_reason", "text", "answer_cached", "coalesced", "routing_inputs", "steps")
    class RoutingInputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TERMINATED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REASON_DETAIL_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    BYTES_EDGE_TO_CLOUD_FIELD_NUMBER: _ClassVar[int]
    EDGE_MODEL_FIELD_NUMBER: _ClassVar[int]
    CLOUD_MODEL_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AI_FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ANSWER_CACHED_FIELD_NUMBER: _ClassVar[int]
    COALESCED_FIELD_NUMBER: _ClassVar[int]
    ROUTING_INPUTS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    terminated_at: _common_pb2.NodeRole
    reason: RouteReason
    reason_detail: str
    fallback: bool
    latency: LatencySplit
    prompt_tokens: int
    completion_tokens: int
    bytes_edge_to_cloud: int
    edge_model: _common_pb2.ModelRef
    cloud_model: _common_pb2.ModelRef
    session_id: str
    ai_flow_id: str
    finish_reason: FinishReason
    text: str
    answer_cached: bool
    coalesced: bool
    routing_inputs: _containers.ScalarMap[str, str]
    steps: _containers.RepeatedCompositeFieldContainer[StepTiming]
    def __init__(self, terminated_at: _Optional[_Union[_common_pb2.NodeRole, str]] = ..., reason: _Optional[_Union[RouteReason, str]] = ..., reason_detail: _Optional[str] = ..., fallback: _Optional[bool] = ..., latency: _Optional[_Union[LatencySplit, _Mapping]] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., bytes_edge_to_cloud: _Optional[int] = ..., edge_model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., cloud_model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., session_id: _Optional[str] = ..., ai_flow_id: _Optional[str] = ..., finish_reason: _Optional[_Union[FinishReason, str]] = ..., text: _Optional[str] = ..., answer_cached: _Optional[bool] = ..., coalesced: _Optional[bool] = ..., routing_inputs: _Optional[_Mapping[str, str]] = ..., steps: _Optional[_Iterable[_Union[StepTiming, _Mapping]]] = ...) -> None: ...

class StepTiming(_message.Message):
    __slots__ = ("step_id", "function", "started_ms", "finished_ms", "skipped")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    STARTED_MS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_MS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    function: str
    started_ms: float
    finished_ms: float
    skipped: str
    def __init__(self, step_id: _Optional[str] = ..., function: _Optional[str] = ..., started_ms: _Optional[float] = ..., finished_ms: _Optional[float] = ..., skipped: _Optional[str] = ...) -> None: ...
