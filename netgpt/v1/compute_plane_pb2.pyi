import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from netgpt.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListModelsRequest(_message.Message):
    __slots__ = ("role",)
    ROLE_FIELD_NUMBER: _ClassVar[int]
    role: _common_pb2.NodeRole
    def __init__(self, role: _Optional[_Union[_common_pb2.NodeRole, str]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ServedModel]
    def __init__(self, models: _Optional[_Iterable[_Union[ServedModel, _Mapping]]] = ...) -> None: ...

class ServedModel(_message.Message):
    __slots__ = ("model", "node_ids")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    node_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., node_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ModelManifest(_message.Message):
    __slots__ = ("name", "version", "kind", "base_model", "size_bytes", "sha256", "created_at", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    kind: _common_pb2.ModelKind
    base_model: str
    size_bytes: int
    sha256: str
    created_at: _timestamp_pb2.Timestamp
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., kind: _Optional[_Union[_common_pb2.ModelKind, str]] = ..., base_model: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ModelChunk(_message.Message):
    __slots__ = ("offset", "data")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class PublishModelRequest(_message.Message):
    __slots__ = ("manifest", "chunk")
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    manifest: ModelManifest
    chunk: ModelChunk
    def __init__(self, manifest: _Optional[_Union[ModelManifest, _Mapping]] = ..., chunk: _Optional[_Union[ModelChunk, _Mapping]] = ...) -> None: ...

class PublishModelResponse(_message.Message):
    __slots__ = ("manifest", "deduplicated")
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    manifest: ModelManifest
    deduplicated: bool
    def __init__(self, manifest: _Optional[_Union[ModelManifest, _Mapping]] = ..., deduplicated: _Optional[bool] = ...) -> None: ...

class ListModelVersionsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListModelVersionsResponse(_message.Message):
    __slots__ = ("manifests",)
    MANIFESTS_FIELD_NUMBER: _ClassVar[int]
    manifests: _containers.RepeatedCompositeFieldContainer[ModelManifest]
    def __init__(self, manifests: _Optional[_Iterable[_Union[ModelManifest, _Mapping]]] = ...) -> None: ...

class DescribeModelVersionRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class DescribeModelVersionResponse(_message.Message):
    __slots__ = ("manifest",)
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    manifest: ModelManifest
    def __init__(self, manifest: _Optional[_Union[ModelManifest, _Mapping]] = ...) -> None: ...

class FetchModelRequest(_message.Message):
    __slots__ = ("name", "version", "offset", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    offset: int
    sha256: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., offset: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class FetchModelResponse(_message.Message):
    __slots__ = ("manifest", "chunk", "trailer")
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    TRAILER_FIELD_NUMBER: _ClassVar[int]
    manifest: ModelManifest
    chunk: ModelChunk
    trailer: FetchModelTrailer
    def __init__(self, manifest: _Optional[_Union[ModelManifest, _Mapping]] = ..., chunk: _Optional[_Union[ModelChunk, _Mapping]] = ..., trailer: _Optional[_Union[FetchModelTrailer, _Mapping]] = ...) -> None: ...

class FetchModelTrailer(_message.Message):
    __slots__ = ("sha256", "size_bytes")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size_bytes: int
    def __init__(self, sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class DeployModelRequest(_message.Message):
    __slots__ = ("name", "version", "node_ids", "role")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    node_ids: _containers.RepeatedScalarFieldContainer[str]
    role: _common_pb2.NodeRole
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., node_ids: _Optional[_Iterable[str]] = ..., role: _Optional[_Union[_common_pb2.NodeRole, str]] = ...) -> None: ...

class DeployModelResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeDeployments]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeDeployments, _Mapping]]] = ...) -> None: ...

class RollbackModelRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class RollbackModelResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: NodeDeployments
    def __init__(self, node: _Optional[_Union[NodeDeployments, _Mapping]] = ...) -> None: ...

class GetDeploymentStatusRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class GetDeploymentStatusResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeDeployments]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeDeployments, _Mapping]]] = ...) -> None: ...

class NodeDeployments(_message.Message):
    __slots__ = ("node_id", "role", "health", "serving", "deployments")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    role: _common_pb2.NodeRole
    health: _common_pb2.NodeHealth
    serving: _common_pb2.ModelRef
    deployments: _containers.RepeatedCompositeFieldContainer[_common_pb2.DeploymentState]
    def __init__(self, node_id: _Optional[str] = ..., role: _Optional[_Union[_common_pb2.NodeRole, str]] = ..., health: _Optional[_Union[_common_pb2.NodeHealth, str]] = ..., serving: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., deployments: _Optional[_Iterable[_Union[_common_pb2.DeploymentState, _Mapping]]] = ...) -> None: ...
