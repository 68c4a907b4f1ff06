import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from netgpt.v1 import blob_pb2 as _blob_pb2
from netgpt.v1 import common_pb2 as _common_pb2
from netgpt.v1 import training_pb2 as _training_pb2
from netgpt.v1 import user_plane_pb2 as _user_plane_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterNodeRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: _common_pb2.NodeInfo
    def __init__(self, node: _Optional[_Union[_common_pb2.NodeInfo, _Mapping]] = ...) -> None: ...

class RegisterNodeResponse(_message.Message):
    __slots__ = ("node_id", "heartbeat_interval_ms")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    heartbeat_interval_ms: int
    def __init__(self, node_id: _Optional[str] = ..., heartbeat_interval_ms: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("node_id", "load", "sequence")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    load: _common_pb2.NodeLoad
    sequence: int
    def __init__(self, node_id: _Optional[str] = ..., load: _Optional[_Union[_common_pb2.NodeLoad, _Mapping]] = ..., sequence: _Optional[int] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("commands",)
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    commands: _containers.RepeatedCompositeFieldContainer[NodeCommand]
    def __init__(self, commands: _Optional[_Iterable[_Union[NodeCommand, _Mapping]]] = ...) -> None: ...

class NodeCommand(_message.Message):
    __slots__ = ("command_id", "peers_update", "routing_policy", "deploy", "rollback", "start_training", "cancel_training", "sessions_moved", "ue_tokens", "certificate_revocations", "cell_loads")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    PEERS_UPDATE_FIELD_NUMBER: _ClassVar[int]
    ROUTING_POLICY_FIELD_NUMBER: _ClassVar[int]
    DEPLOY_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    START_TRAINING_FIELD_NUMBER: _ClassVar[int]
    CANCEL_TRAINING_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_MOVED_FIELD_NUMBER: _ClassVar[int]
    UE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_REVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    CELL_LOADS_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    peers_update: PeersUpdate
    routing_policy: RoutingPolicy
    deploy: DeployCommand
    rollback: RollbackCommand
    start_training: StartTrainingCommand
    cancel_training: CancelTrainingCommand
    sessions_moved: SessionsMoved
    ue_tokens: UeTokenState
    certificate_revocations: CertificateRevocations
    cell_loads: CellLoads
    def __init__(self, command_id: _Optional[str] = ..., peers_update: _Optional[_Union[PeersUpdate, _Mapping]] = ..., routing_policy: _Optional[_Union[RoutingPolicy, _Mapping]] = ..., deploy: _Optional[_Union[DeployCommand, _Mapping]] = ..., rollback: _Optional[_Union[RollbackCommand, _Mapping]] = ..., start_training: _Optional[_Union[StartTrainingCommand, _Mapping]] = ..., cancel_training: _Optional[_Union[CancelTrainingCommand, _Mapping]] = ..., sessions_moved: _Optional[_Union[SessionsMoved, _Mapping]] = ..., ue_tokens: _Optional[_Union[UeTokenState, _Mapping]] = ..., certificate_revocations: _Optional[_Union[CertificateRevocations, _Mapping]] = ..., cell_loads: _Optional[_Union[CellLoads, _Mapping]] = ...) -> None: ...

class CellLoads(_message.Message):
    __slots__ = ("prb_utilization",)
    class PrbUtilizationEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PRB_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    prb_utilization: _containers.ScalarMap[str, float]
    def __init__(self, prb_utilization: _Optional[_Mapping[str, float]] = ...) -> None: ...

class CertificateRevocations(_message.Message):
    __slots__ = ("crl", "number")
    CRL_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    crl: bytes
    number: int
    def __init__(self, crl: _Optional[bytes] = ..., number: _Optional[int] = ...) -> None: ...

class UeTokenState(_message.Message):
    __slots__ = ("snapshot", "keys", "revocations", "revoked_before")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    REVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    snapshot: bool
    keys: _containers.RepeatedCompositeFieldContainer[UeTokenKey]
    revocations: _containers.RepeatedCompositeFieldContainer[UeTokenRevocation]
    revoked_before: _timestamp_pb2.Timestamp
    def __init__(self, snapshot: _Optional[bool] = ..., keys: _Optional[_Iterable[_Union[UeTokenKey, _Mapping]]] = ..., revocations: _Optional[_Iterable[_Union[UeTokenRevocation, _Mapping]]] = ..., revoked_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UeTokenKey(_message.Message):
    __slots__ = ("key_id", "public_key_pem")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    public_key_pem: str
    def __init__(self, key_id: _Optional[str] = ..., public_key_pem: _Optional[str] = ...) -> None: ...

class UeTokenRevocation(_message.Message):
    __slots__ = ("ue_id", "issued_before")
    UE_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    ue_id: str
    issued_before: _timestamp_pb2.Timestamp
    def __init__(self, ue_id: _Optional[str] = ..., issued_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SessionsMoved(_message.Message):
    __slots__ = ("session_ids",)
    SESSION_IDS_FIELD_NUMBER: _ClassVar[int]
    session_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeployCommand(_message.Message):
    __slots__ = ("model", "plan")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    plan: _blob_pb2.FetchPlan
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., plan: _Optional[_Union[_blob_pb2.FetchPlan, _Mapping]] = ...) -> None: ...

class RollbackCommand(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StartTrainingCommand(_message.Message):
    __slots__ = ("job_id", "spec", "base", "dataset")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    spec: _training_pb2.TrainingJobSpec
    base: _common_pb2.ModelRef
    dataset: _common_pb2.ModelRef
    def __init__(self, job_id: _Optional[str] = ..., spec: _Optional[_Union[_training_pb2.TrainingJobSpec, _Mapping]] = ..., base: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., dataset: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ...) -> None: ...

class CancelTrainingCommand(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class PeersUpdate(_message.Message):
    __slots__ = ("cloud_nodes",)
    CLOUD_NODES_FIELD_NUMBER: _ClassVar[int]
    cloud_nodes: _containers.RepeatedCompositeFieldContainer[_common_pb2.NodeStatus]
    def __init__(self, cloud_nodes: _Optional[_Iterable[_Union[_common_pb2.NodeStatus, _Mapping]]] = ...) -> None: ...

class EstablishSessionRequest(_message.Message):
    __slots__ = ("ue_id", "cell_id", "slice_id", "qos")
    UE_ID_FIELD_NUMBER: _ClassVar[int]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    SLICE_ID_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    ue_id: str
    cell_id: str
    slice_id: str
    qos: _common_pb2.QoS
    def __init__(self, ue_id: _Optional[str] = ..., cell_id: _Optional[str] = ..., slice_id: _Optional[str] = ..., qos: _Optional[_Union[_common_pb2.QoS, _Mapping]] = ...) -> None: ...

class EstablishSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: AiSession
    def __init__(self, session: _Optional[_Union[AiSession, _Mapping]] = ...) -> None: ...

class AiSession(_message.Message):
    __slots__ = ("session_id", "ai_flow_id", "ue_id", "cell_id", "slice_id", "qos", "serving_edge", "serving_cloud", "created_at")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AI_FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    UE_ID_FIELD_NUMBER: _ClassVar[int]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    SLICE_ID_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    SERVING_EDGE_FIELD_NUMBER: _ClassVar[int]
    SERVING_CLOUD_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    ai_flow_id: str
    ue_id: str
    cell_id: str
    slice_id: str
    qos: _common_pb2.QoS
    serving_edge: _common_pb2.NodeInfo
    serving_cloud: _common_pb2.NodeInfo
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, session_id: _Optional[str] = ..., ai_flow_id: _Optional[str] = ..., ue_id: _Optional[str] = ..., cell_id: _Optional[str] = ..., slice_id: _Optional[str] = ..., qos: _Optional[_Union[_common_pb2.QoS, _Mapping]] = ..., serving_edge: _Optional[_Union[_common_pb2.NodeInfo, _Mapping]] = ..., serving_cloud: _Optional[_Union[_common_pb2.NodeInfo, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class GetSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: AiSession
    def __init__(self, session: _Optional[_Union[AiSession, _Mapping]] = ...) -> None: ...

class ReleaseSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class ReleaseSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("role",)
    ROLE_FIELD_NUMBER: _ClassVar[int]
    role: _common_pb2.NodeRole
    def __init__(self, role: _Optional[_Union[_common_pb2.NodeRole, str]] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[_common_pb2.NodeStatus]
    def __init__(self, nodes: _Optional[_Iterable[_Union[_common_pb2.NodeStatus, _Mapping]]] = ...) -> None: ...

class RoutingPolicy(_message.Message):
    __slots__ = ("edge_tasks", "confidence_threshold", "confidence_probe_tokens", "max_cloud_queue", "residency", "verbatim_workflows", "distill_samples")
    EDGE_TASKS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_PROBE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_CLOUD_QUEUE_FIELD_NUMBER: _ClassVar[int]
    RESIDENCY_FIELD_NUMBER: _ClassVar[int]
    VERBATIM_WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    DISTILL_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    edge_tasks: _containers.RepeatedScalarFieldContainer[_user_plane_pb2.TaskClass]
    confidence_threshold: float
    confidence_probe_tokens: int
    max_cloud_queue: int
    residency: _containers.RepeatedCompositeFieldContainer[ResidencyRule]
    verbatim_workflows: _containers.RepeatedScalarFieldContainer[str]
    distill_samples: bool
    def __init__(self, edge_tasks: _Optional[_Iterable[_Union[_user_plane_pb2.TaskClass, str]]] = ..., confidence_threshold: _Optional[float] = ..., confidence_probe_tokens: _Optional[int] = ..., max_cloud_queue: _Optional[int] = ..., residency: _Optional[_Iterable[_Union[ResidencyRule, _Mapping]]] = ..., verbatim_workflows: _Optional[_Iterable[str]] = ..., distill_samples: _Optional[bool] = ...) -> None: ...

class ResidencyRule(_message.Message):
    __slots__ = ("cell_ids", "allowed_cloud_regions")
    CELL_IDS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_CLOUD_REGIONS_FIELD_NUMBER: _ClassVar[int]
    cell_ids: _containers.RepeatedScalarFieldContainer[str]
    allowed_cloud_regions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cell_ids: _Optional[_Iterable[str]] = ..., allowed_cloud_regions: _Optional[_Iterable[str]] = ...) -> None: ...

class SetRoutingPolicyRequest(_message.Message):
    __slots__ = ("policy", "node_ids", "update_mask")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    policy: RoutingPolicy
    node_ids: _containers.RepeatedScalarFieldContainer[str]
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, policy: _Optional[_Union[RoutingPolicy, _Mapping]] = ..., node_ids: _Optional[_Iterable[str]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class SetRoutingPolicyResponse(_message.Message):
    __slots__ = ("node_ids",)
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    node_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, node_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetRoutingPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetRoutingPolicyResponse(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: RoutingPolicy
    def __init__(self, policy: _Optional[_Union[RoutingPolicy, _Mapping]] = ...) -> None: ...
