from netgpt.v1 import compute_plane_pb2 as _compute_plane_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FetchBlobRequest(_message.Message):
    __slots__ = ("sha256", "offset", "length", "node_id")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    offset: int
    length: int
    node_id: str
    def __init__(self, sha256: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., node_id: _Optional[str] = ...) -> None: ...

class FetchBlobResponse(_message.Message):
    __slots__ = ("chunk", "trailer")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    TRAILER_FIELD_NUMBER: _ClassVar[int]
    chunk: _compute_plane_pb2.ModelChunk
    trailer: _compute_plane_pb2.FetchModelTrailer
    def __init__(self, chunk: _Optional[_Union[_compute_plane_pb2.ModelChunk, _Mapping]] = ..., trailer: _Optional[_Union[_compute_plane_pb2.FetchModelTrailer, _Mapping]] = ...) -> None: ...

class FetchPlan(_message.Message):
    __slots__ = ("sources", "piece_size_bytes", "piece_sha256", "seed", "size_bytes")
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    PIECE_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PIECE_SHA256_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    sources: _containers.RepeatedCompositeFieldContainer[BlobSource]
    piece_size_bytes: int
    piece_sha256: _containers.RepeatedScalarFieldContainer[str]
    seed: bool
    size_bytes: int
    def __init__(self, sources: _Optional[_Iterable[_Union[BlobSource, _Mapping]]] = ..., piece_size_bytes: _Optional[int] = ..., piece_sha256: _Optional[_Iterable[str]] = ..., seed: _Optional[bool] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class BlobSource(_message.Message):
    __slots__ = ("node_id", "address", "origin")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    address: str
    origin: bool
    def __init__(self, node_id: _Optional[str] = ..., address: _Optional[str] = ..., origin: _Optional[bool] = ...) -> None: ...
