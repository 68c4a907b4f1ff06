import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_ROLE_UNSPECIFIED: _ClassVar[NodeRole]
    NODE_ROLE_CORE: _ClassVar[NodeRole]
    NODE_ROLE_EDGE: _ClassVar[NodeRole]
    NODE_ROLE_CLOUD: _ClassVar[NodeRole]

class ModelKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_KIND_UNSPECIFIED: _ClassVar[ModelKind]
    MODEL_KIND_ONNX_EDGE: _ClassVar[ModelKind]
    MODEL_KIND_LORA_ADAPTER: _ClassVar[ModelKind]
    MODEL_KIND_CHECKPOINT: _ClassVar[ModelKind]
    MODEL_KIND_DATASET: _ClassVar[ModelKind]
    MODEL_KIND_ROUTER: _ClassVar[ModelKind]

class DeploymentPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEPLOYMENT_PHASE_UNSPECIFIED: _ClassVar[DeploymentPhase]
    DEPLOYMENT_PHASE_PENDING: _ClassVar[DeploymentPhase]
    DEPLOYMENT_PHASE_FETCHING: _ClassVar[DeploymentPhase]
    DEPLOYMENT_PHASE_VERIFYING: _ClassVar[DeploymentPhase]
    DEPLOYMENT_PHASE_LOADING: _ClassVar[DeploymentPhase]
    DEPLOYMENT_PHASE_SERVING: _ClassVar[DeploymentPhase]
    DEPLOYMENT_PHASE_FAILED: _ClassVar[DeploymentPhase]
    DEPLOYMENT_PHASE_ROLLED_BACK: _ClassVar[DeploymentPhase]
    DEPLOYMENT_PHASE_SUPERSEDED: _ClassVar[DeploymentPhase]

class TrainingState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_STATE_UNSPECIFIED: _ClassVar[TrainingState]
    TRAINING_STATE_PENDING: _ClassVar[TrainingState]
    TRAINING_STATE_PLACED: _ClassVar[TrainingState]
    TRAINING_STATE_RUNNING: _ClassVar[TrainingState]
    TRAINING_STATE_SUCCEEDED: _ClassVar[TrainingState]
    TRAINING_STATE_FAILED: _ClassVar[TrainingState]
    TRAINING_STATE_CANCELLED: _ClassVar[TrainingState]

class NodeHealth(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_HEALTH_UNSPECIFIED: _ClassVar[NodeHealth]
    NODE_HEALTH_SERVING: _ClassVar[NodeHealth]
    NODE_HEALTH_STALE: _ClassVar[NodeHealth]
    NODE_HEALTH_LOST: _ClassVar[NodeHealth]
NODE_ROLE_UNSPECIFIED: NodeRole
NODE_ROLE_CORE: NodeRole
NODE_ROLE_EDGE: NodeRole
NODE_ROLE_CLOUD: NodeRole
MODEL_KIND_UNSPECIFIED: ModelKind
MODEL_KIND_ONNX_EDGE: ModelKind
MODEL_KIND_LORA_ADAPTER: ModelKind
MODEL_KIND_CHECKPOINT: ModelKind
MODEL_KIND_DATASET: ModelKind
MODEL_KIND_ROUTER: ModelKind
DEPLOYMENT_PHASE_UNSPECIFIED: DeploymentPhase
DEPLOYMENT_PHASE_PENDING: DeploymentPhase
DEPLOYMENT_PHASE_FETCHING: DeploymentPhase
DEPLOYMENT_PHASE_VERIFYING: DeploymentPhase
DEPLOYMENT_PHASE_LOADING: DeploymentPhase
DEPLOYMENT_PHASE_SERVING: DeploymentPhase
DEPLOYMENT_PHASE_FAILED: DeploymentPhase
DEPLOYMENT_PHASE_ROLLED_BACK: DeploymentPhase
DEPLOYMENT_PHASE_SUPERSEDED: DeploymentPhase
TRAINING_STATE_UNSPECIFIED: TrainingState
TRAINING_STATE_PENDING: TrainingState
TRAINING_STATE_PLACED: TrainingState
TRAINING_STATE_RUNNING: TrainingState
TRAINING_STATE_SUCCEEDED: TrainingState
TRAINING_STATE_FAILED: TrainingState
TRAINING_STATE_CANCELLED: TrainingState
NODE_HEALTH_UNSPECIFIED: NodeHealth
NODE_HEALTH_SERVING: NodeHealth
NODE_HEALTH_STALE: NodeHealth
NODE_HEALTH_LOST: NodeHealth

class ModelRef(_message.Message):
    __slots__ = ("name", "version", "sha256", "kind", "base_model")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    sha256: str
    kind: ModelKind
    base_model: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ..., kind: _Optional[_Union[ModelKind, str]] = ..., base_model: _Optional[str] = ...) -> None: ...

class Capabilities(_message.Message):
    __slots__ = ("accelerator", "runtime", "max_concurrency", "max_context_tokens", "models")
    ACCELERATOR_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTEXT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    accelerator: str
    runtime: str
    max_concurrency: int
    max_context_tokens: int
    models: _containers.RepeatedCompositeFieldContainer[ModelRef]
    def __init__(self, accelerator: _Optional[str] = ..., runtime: _Optional[str] = ..., max_concurrency: _Optional[int] = ..., max_context_tokens: _Optional[int] = ..., models: _Optional[_Iterable[_Union[ModelRef, _Mapping]]] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("node_id", "role", "address", "region", "cell_ids", "capabilities", "token_address")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    CELL_IDS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    role: NodeRole
    address: str
    region: str
    cell_ids: _containers.RepeatedScalarFieldContainer[str]
    capabilities: Capabilities
    token_address: str
    def __init__(self, node_id: _Optional[str] = ..., role: _Optional[_Union[NodeRole, str]] = ..., address: _Optional[str] = ..., region: _Optional[str] = ..., cell_ids: _Optional[_Iterable[str]] = ..., capabilities: _Optional[_Union[Capabilities, _Mapping]] = ..., token_address: _Optional[str] = ...) -> None: ...

class NodeLoad(_message.Message):
    __slots__ = ("queue_depth", "active_requests", "tokens_per_second", "models_served", "p50_first_token_ms", "counters", "deployments", "training", "blobs")
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    MODELS_SERVED_FIELD_NUMBER: _ClassVar[int]
    P50_FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    BLOBS_FIELD_NUMBER: _ClassVar[int]
    queue_depth: int
    active_requests: int
    tokens_per_second: float
    models_served: _containers.RepeatedCompositeFieldContainer[ModelRef]
    p50_first_token_ms: float
    counters: _containers.ScalarMap[str, int]
    deployments: _containers.RepeatedCompositeFieldContainer[DeploymentState]
    training: _containers.RepeatedCompositeFieldContainer[TrainingJobState]
    blobs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, queue_depth: _Optional[int] = ..., active_requests: _Optional[int] = ..., tokens_per_second: _Optional[float] = ..., models_served: _Optional[_Iterable[_Union[ModelRef, _Mapping]]] = ..., p50_first_token_ms: _Optional[float] = ..., counters: _Optional[_Mapping[str, int]] = ..., deployments: _Optional[_Iterable[_Union[DeploymentState, _Mapping]]] = ..., training: _Optional[_Iterable[_Union[TrainingJobState, _Mapping]]] = ..., blobs: _Optional[_Iterable[str]] = ...) -> None: ...

class TransferSource(_message.Message):
    __slots__ = ("node_id", "address", "bytes", "dropped", "error")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    address: str
    bytes: int
    dropped: bool
    error: str
    def __init__(self, node_id: _Optional[str] = ..., address: _Optional[str] = ..., bytes: _Optional[int] = ..., dropped: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class DeploymentState(_message.Message):
    __slots__ = ("command_id", "model", "phase", "error", "error_code", "bytes_done", "bytes_total", "rollback", "started_at", "updated_at", "sources")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    model: ModelRef
    phase: DeploymentPhase
    error: str
    error_code: int
    bytes_done: int
    bytes_total: int
    rollback: bool
    started_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    sources: _containers.RepeatedCompositeFieldContainer[TransferSource]
    def __init__(self, command_id: _Optional[str] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ..., phase: _Optional[_Union[DeploymentPhase, str]] = ..., error: _Optional[str] = ..., error_code: _Optional[int] = ..., bytes_done: _Optional[int] = ..., bytes_total: _Optional[int] = ..., rollback: _Optional[bool] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sources: _Optional[_Iterable[_Union[TransferSource, _Mapping]]] = ...) -> None: ...

class TrainingJobState(_message.Message):
    __slots__ = ("job_id", "state", "step", "total_steps", "train_loss", "eval_loss", "tokens_per_second", "eta_s", "error", "error_code", "result", "started_at", "updated_at")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    EVAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ETA_S_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: TrainingState
    step: int
    total_steps: int
    train_loss: float
    eval_loss: float
    tokens_per_second: float
    eta_s: float
    error: str
    error_code: int
    result: ModelRef
    started_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[TrainingState, str]] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., train_loss: _Optional[float] = ..., eval_loss: _Optional[float] = ..., tokens_per_second: _Optional[float] = ..., eta_s: _Optional[float] = ..., error: _Optional[str] = ..., error_code: _Optional[int] = ..., result: _Optional[_Union[ModelRef, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class QoS(_message.Message):
    __slots__ = ("priority", "latency_budget_ms")
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    LATENCY_BUDGET_MS_FIELD_NUMBER: _ClassVar[int]
    priority: int
    latency_budget_ms: int
    def __init__(self, priority: _Optional[int] = ..., latency_budget_ms: _Optional[int] = ...) -> None: ...

class RanContext(_message.Message):
    __slots__ = ("cell_id", "ue_id", "slice_id", "qos", "ai_flow_id")
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    UE_ID_FIELD_NUMBER: _ClassVar[int]
    SLICE_ID_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    AI_FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    cell_id: str
    ue_id: str
    slice_id: str
    qos: QoS
    ai_flow_id: str
    def __init__(self, cell_id: _Optional[str] = ..., ue_id: _Optional[str] = ..., slice_id: _Optional[str] = ..., qos: _Optional[_Union[QoS, _Mapping]] = ..., ai_flow_id: _Optional[str] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("info", "load", "last_heartbeat", "health", "registered_at")
    INFO_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    info: NodeInfo
    load: NodeLoad
    last_heartbeat: _timestamp_pb2.Timestamp
    health: NodeHealth
    registered_at: _timestamp_pb2.Timestamp
    def __init__(self, info: _Optional[_Union[NodeInfo, _Mapping]] = ..., load: _Optional[_Union[NodeLoad, _Mapping]] = ..., last_heartbeat: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., health: _Optional[_Union[NodeHealth, str]] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
