import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from netgpt.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AttachUeRequest(_message.Message):
    __slots__ = ("ue_id", "cell_id", "slice_id", "five_qi")
    UE_ID_FIELD_NUMBER: _ClassVar[int]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    SLICE_ID_FIELD_NUMBER: _ClassVar[int]
    FIVE_QI_FIELD_NUMBER: _ClassVar[int]
    ue_id: str
    cell_id: str
    slice_id: str
    five_qi: int
    def __init__(self, ue_id: _Optional[str] = ..., cell_id: _Optional[str] = ..., slice_id: _Optional[str] = ..., five_qi: _Optional[int] = ...) -> None: ...

class AttachUeResponse(_message.Message):
    __slots__ = ("ue", "reanchored", "token")
    UE_FIELD_NUMBER: _ClassVar[int]
    REANCHORED_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ue: UeContext
    reanchored: _containers.RepeatedCompositeFieldContainer[ReanchoredSession]
    token: UeToken
    def __init__(self, ue: _Optional[_Union[UeContext, _Mapping]] = ..., reanchored: _Optional[_Iterable[_Union[ReanchoredSession, _Mapping]]] = ..., token: _Optional[_Union[UeToken, _Mapping]] = ...) -> None: ...

class UeToken(_message.Message):
    __slots__ = ("token", "token_id", "expires_at")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    token: str
    token_id: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, token: _Optional[str] = ..., token_id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class HandoverUeRequest(_message.Message):
    __slots__ = ("ue_id", "source_cell_id", "target_cell_id")
    UE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_CELL_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_CELL_ID_FIELD_NUMBER: _ClassVar[int]
    ue_id: str
    source_cell_id: str
    target_cell_id: str
    def __init__(self, ue_id: _Optional[str] = ..., source_cell_id: _Optional[str] = ..., target_cell_id: _Optional[str] = ...) -> None: ...

class HandoverUeResponse(_message.Message):
    __slots__ = ("ue", "reanchored", "reanchor_ms", "token")
    UE_FIELD_NUMBER: _ClassVar[int]
    REANCHORED_FIELD_NUMBER: _ClassVar[int]
    REANCHOR_MS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ue: UeContext
    reanchored: _containers.RepeatedCompositeFieldContainer[ReanchoredSession]
    reanchor_ms: float
    token: UeToken
    def __init__(self, ue: _Optional[_Union[UeContext, _Mapping]] = ..., reanchored: _Optional[_Iterable[_Union[ReanchoredSession, _Mapping]]] = ..., reanchor_ms: _Optional[float] = ..., token: _Optional[_Union[UeToken, _Mapping]] = ...) -> None: ...

class ReanchoredSession(_message.Message):
    __slots__ = ("session_id", "from_cell_id", "to_cell_id", "from_edge_id", "to_edge_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_CELL_ID_FIELD_NUMBER: _ClassVar[int]
    TO_CELL_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    TO_EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    from_cell_id: str
    to_cell_id: str
    from_edge_id: str
    to_edge_id: str
    def __init__(self, session_id: _Optional[str] = ..., from_cell_id: _Optional[str] = ..., to_cell_id: _Optional[str] = ..., from_edge_id: _Optional[str] = ..., to_edge_id: _Optional[str] = ...) -> None: ...

class DetachUeRequest(_message.Message):
    __slots__ = ("ue_id", "keep_sessions")
    UE_ID_FIELD_NUMBER: _ClassVar[int]
    KEEP_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    ue_id: str
    keep_sessions: bool
    def __init__(self, ue_id: _Optional[str] = ..., keep_sessions: _Optional[bool] = ...) -> None: ...

class DetachUeResponse(_message.Message):
    __slots__ = ("released_session_ids",)
    RELEASED_SESSION_IDS_FIELD_NUMBER: _ClassVar[int]
    released_session_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, released_session_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetUeRequest(_message.Message):
    __slots__ = ("ue_id",)
    UE_ID_FIELD_NUMBER: _ClassVar[int]
    ue_id: str
    def __init__(self, ue_id: _Optional[str] = ...) -> None: ...

class GetUeResponse(_message.Message):
    __slots__ = ("ue",)
    UE_FIELD_NUMBER: _ClassVar[int]
    ue: UeContext
    def __init__(self, ue: _Optional[_Union[UeContext, _Mapping]] = ...) -> None: ...

class UeContext(_message.Message):
    __slots__ = ("ue_id", "cell_id", "slice_id", "five_qi", "qos", "updated_at")
    UE_ID_FIELD_NUMBER: _ClassVar[int]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    SLICE_ID_FIELD_NUMBER: _ClassVar[int]
    FIVE_QI_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ue_id: str
    cell_id: str
    slice_id: str
    five_qi: int
    qos: _common_pb2.QoS
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, ue_id: _Optional[str] = ..., cell_id: _Optional[str] = ..., slice_id: _Optional[str] = ..., five_qi: _Optional[int] = ..., qos: _Optional[_Union[_common_pb2.QoS, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CellLoad(_message.Message):
    __slots__ = ("cell_id", "prb_utilization", "connected_ues")
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    PRB_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_UES_FIELD_NUMBER: _ClassVar[int]
    cell_id: str
    prb_utilization: float
    connected_ues: int
    def __init__(self, cell_id: _Optional[str] = ..., prb_utilization: _Optional[float] = ..., connected_ues: _Optional[int] = ...) -> None: ...

class ReportCellLoadRequest(_message.Message):
    __slots__ = ("cells",)
    CELLS_FIELD_NUMBER: _ClassVar[int]
    cells: _containers.RepeatedCompositeFieldContainer[CellLoad]
    def __init__(self, cells: _Optional[_Iterable[_Union[CellLoad, _Mapping]]] = ...) -> None: ...

class ReportCellLoadResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCellsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCellsResponse(_message.Message):
    __slots__ = ("cells",)
    CELLS_FIELD_NUMBER: _ClassVar[int]
    cells: _containers.RepeatedCompositeFieldContainer[CellStatus]
    def __init__(self, cells: _Optional[_Iterable[_Union[CellStatus, _Mapping]]] = ...) -> None: ...

class CellStatus(_message.Message):
    __slots__ = ("cell_id", "load", "load_reported_at", "attached_ues", "edge_ids")
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    LOAD_REPORTED_AT_FIELD_NUMBER: _ClassVar[int]
    ATTACHED_UES_FIELD_NUMBER: _ClassVar[int]
    EDGE_IDS_FIELD_NUMBER: _ClassVar[int]
    cell_id: str
    load: CellLoad
    load_reported_at: _timestamp_pb2.Timestamp
    attached_ues: int
    edge_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cell_id: _Optional[str] = ..., load: _Optional[_Union[CellLoad, _Mapping]] = ..., load_reported_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attached_ues: _Optional[int] = ..., edge_ids: _Optional[_Iterable[str]] = ...) -> None: ...
