from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IntentAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INTENT_ACTION_UNSPECIFIED: _ClassVar[IntentAction]
    INTENT_ACTION_CREATE: _ClassVar[IntentAction]
    INTENT_ACTION_MODIFY: _ClassVar[IntentAction]
    INTENT_ACTION_DELETE: _ClassVar[IntentAction]

class NetworkSlice(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NETWORK_SLICE_UNSPECIFIED: _ClassVar[NetworkSlice]
    NETWORK_SLICE_EMBB: _ClassVar[NetworkSlice]
    NETWORK_SLICE_URLLC: _ClassVar[NetworkSlice]
    NETWORK_SLICE_MIOT: _ClassVar[NetworkSlice]

class IntentDocumentFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INTENT_DOCUMENT_FORMAT_UNSPECIFIED: _ClassVar[IntentDocumentFormat]
    INTENT_DOCUMENT_FORMAT_3GPP_TS28312: _ClassVar[IntentDocumentFormat]
    INTENT_DOCUMENT_FORMAT_TMF921: _ClassVar[IntentDocumentFormat]
INTENT_ACTION_UNSPECIFIED: IntentAction
INTENT_ACTION_CREATE: IntentAction
INTENT_ACTION_MODIFY: IntentAction
INTENT_ACTION_DELETE: IntentAction
NETWORK_SLICE_UNSPECIFIED: NetworkSlice
NETWORK_SLICE_EMBB: NetworkSlice
NETWORK_SLICE_URLLC: NetworkSlice
NETWORK_SLICE_MIOT: NetworkSlice
INTENT_DOCUMENT_FORMAT_UNSPECIFIED: IntentDocumentFormat
INTENT_DOCUMENT_FORMAT_3GPP_TS28312: IntentDocumentFormat
INTENT_DOCUMENT_FORMAT_TMF921: IntentDocumentFormat

class TitleHistory(_message.Message):
    __slots__ = ("title", "views")
    TITLE_FIELD_NUMBER: _ClassVar[int]
    VIEWS_FIELD_NUMBER: _ClassVar[int]
    title: str
    views: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, title: _Optional[str] = ..., views: _Optional[_Iterable[int]] = ...) -> None: ...

class HistoryWindow(_message.Message):
    __slots__ = ("first_interval", "titles")
    FIRST_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TITLES_FIELD_NUMBER: _ClassVar[int]
    first_interval: int
    titles: _containers.RepeatedCompositeFieldContainer[TitleHistory]
    def __init__(self, first_interval: _Optional[int] = ..., titles: _Optional[_Iterable[_Union[TitleHistory, _Mapping]]] = ...) -> None: ...

class PredictPopularityRequest(_message.Message):
    __slots__ = ("history", "interval", "top_k")
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    history: HistoryWindow
    interval: int
    top_k: int
    def __init__(self, history: _Optional[_Union[HistoryWindow, _Mapping]] = ..., interval: _Optional[int] = ..., top_k: _Optional[int] = ...) -> None: ...

class TitleScore(_message.Message):
    __slots__ = ("title", "probability", "predicted_appear")
    TITLE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_APPEAR_FIELD_NUMBER: _ClassVar[int]
    title: str
    probability: float
    predicted_appear: bool
    def __init__(self, title: _Optional[str] = ..., probability: _Optional[float] = ..., predicted_appear: _Optional[bool] = ...) -> None: ...

class PredictPopularityResponse(_message.Message):
    __slots__ = ("interval", "titles", "model_version")
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TITLES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    interval: int
    titles: _containers.RepeatedCompositeFieldContainer[TitleScore]
    model_version: str
    def __init__(self, interval: _Optional[int] = ..., titles: _Optional[_Iterable[_Union[TitleScore, _Mapping]]] = ..., model_version: _Optional[str] = ...) -> None: ...

class NetworkIntent(_message.Message):
    __slots__ = ("action", "source", "destination", "bandwidth_mbps", "latency_ms", "protection", "slice", "five_qi", "time_window")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    BANDWIDTH_MBPS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    PROTECTION_FIELD_NUMBER: _ClassVar[int]
    SLICE_FIELD_NUMBER: _ClassVar[int]
    FIVE_QI_FIELD_NUMBER: _ClassVar[int]
    TIME_WINDOW_FIELD_NUMBER: _ClassVar[int]
    action: IntentAction
    source: str
    destination: str
    bandwidth_mbps: float
    latency_ms: float
    protection: bool
    slice: NetworkSlice
    five_qi: int
    time_window: str
    def __init__(self, action: _Optional[_Union[IntentAction, str]] = ..., source: _Optional[str] = ..., destination: _Optional[str] = ..., bandwidth_mbps: _Optional[float] = ..., latency_ms: _Optional[float] = ..., protection: _Optional[bool] = ..., slice: _Optional[_Union[NetworkSlice, str]] = ..., five_qi: _Optional[int] = ..., time_window: _Optional[str] = ...) -> None: ...

class InferIntentRequest(_message.Message):
    __slots__ = ("text", "document_format")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    text: str
    document_format: IntentDocumentFormat
    def __init__(self, text: _Optional[str] = ..., document_format: _Optional[_Union[IntentDocumentFormat, str]] = ...) -> None: ...

class InferIntentResponse(_message.Message):
    __slots__ = ("intent", "confidence", "needs_clarification", "missing_fields", "ambiguous_fields", "clarification", "model_version", "document")
    class ConfidenceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    INTENT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    NEEDS_CLARIFICATION_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELDS_FIELD_NUMBER: _ClassVar[int]
    AMBIGUOUS_FIELDS_FIELD_NUMBER: _ClassVar[int]
    CLARIFICATION_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    intent: NetworkIntent
    confidence: _containers.ScalarMap[str, float]
    needs_clarification: bool
    missing_fields: _containers.RepeatedScalarFieldContainer[str]
    ambiguous_fields: _containers.RepeatedScalarFieldContainer[str]
    clarification: str
    model_version: str
    document: str
    def __init__(self, intent: _Optional[_Union[NetworkIntent, _Mapping]] = ..., confidence: _Optional[_Mapping[str, float]] = ..., needs_clarification: _Optional[bool] = ..., missing_fields: _Optional[_Iterable[str]] = ..., ambiguous_fields: _Optional[_Iterable[str]] = ..., clarification: _Optional[str] = ..., model_version: _Optional[str] = ..., document: _Optional[str] = ...) -> None: ...
