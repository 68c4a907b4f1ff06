import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from netgpt.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkflowStep(_message.Message):
    __slots__ = ("id", "function", "after")
    ID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    id: str
    function: str
    after: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., function: _Optional[str] = ..., after: _Optional[_Iterable[str]] = ...) -> None: ...

class WorkflowSpec(_message.Message):
    __slots__ = ("name", "latency_budget_ms", "priority", "steps", "cell_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LATENCY_BUDGET_MS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    latency_budget_ms: int
    priority: int
    steps: _containers.RepeatedCompositeFieldContainer[WorkflowStep]
    cell_id: str
    def __init__(self, name: _Optional[str] = ..., latency_budget_ms: _Optional[int] = ..., priority: _Optional[int] = ..., steps: _Optional[_Iterable[_Union[WorkflowStep, _Mapping]]] = ..., cell_id: _Optional[str] = ...) -> None: ...

class StepPlacement(_message.Message):
    __slots__ = ("step_id", "function", "node_id", "node_address", "role")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    function: str
    node_id: str
    node_address: str
    role: _common_pb2.NodeRole
    def __init__(self, step_id: _Optional[str] = ..., function: _Optional[str] = ..., node_id: _Optional[str] = ..., node_address: _Optional[str] = ..., role: _Optional[_Union[_common_pb2.NodeRole, str]] = ...) -> None: ...

class Workflow(_message.Message):
    __slots__ = ("spec", "placement", "estimated_latency_ms", "critical_path", "placed_at", "placement_error", "applied_at")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    CRITICAL_PATH_FIELD_NUMBER: _ClassVar[int]
    PLACED_AT_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_ERROR_FIELD_NUMBER: _ClassVar[int]
    APPLIED_AT_FIELD_NUMBER: _ClassVar[int]
    spec: WorkflowSpec
    placement: _containers.RepeatedCompositeFieldContainer[StepPlacement]
    estimated_latency_ms: float
    critical_path: _containers.RepeatedScalarFieldContainer[str]
    placed_at: _timestamp_pb2.Timestamp
    placement_error: str
    applied_at: _timestamp_pb2.Timestamp
    def __init__(self, spec: _Optional[_Union[WorkflowSpec, _Mapping]] = ..., placement: _Optional[_Iterable[_Union[StepPlacement, _Mapping]]] = ..., estimated_latency_ms: _Optional[float] = ..., critical_path: _Optional[_Iterable[str]] = ..., placed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., placement_error: _Optional[str] = ..., applied_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ApplyWorkflowRequest(_message.Message):
    __slots__ = ("spec", "spec_toml")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SPEC_TOML_FIELD_NUMBER: _ClassVar[int]
    spec: WorkflowSpec
    spec_toml: str
    def __init__(self, spec: _Optional[_Union[WorkflowSpec, _Mapping]] = ..., spec_toml: _Optional[str] = ...) -> None: ...

class ApplyWorkflowResponse(_message.Message):
    __slots__ = ("workflow",)
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    workflow: Workflow
    def __init__(self, workflow: _Optional[_Union[Workflow, _Mapping]] = ...) -> None: ...

class GetWorkflowRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetWorkflowResponse(_message.Message):
    __slots__ = ("workflow",)
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    workflow: Workflow
    def __init__(self, workflow: _Optional[_Union[Workflow, _Mapping]] = ...) -> None: ...

class ListWorkflowsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWorkflowsResponse(_message.Message):
    __slots__ = ("workflows",)
    WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    workflows: _containers.RepeatedCompositeFieldContainer[Workflow]
    def __init__(self, workflows: _Optional[_Iterable[_Union[Workflow, _Mapping]]] = ...) -> None: ...

class DeleteWorkflowRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteWorkflowResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
