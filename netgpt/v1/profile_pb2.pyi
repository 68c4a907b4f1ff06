import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UserProfile(_message.Message):
    __slots__ = ("user_id", "preferences", "recent_prompts", "updated_at")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    RECENT_PROMPTS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    preferences: _containers.RepeatedScalarFieldContainer[str]
    recent_prompts: _containers.RepeatedScalarFieldContainer[str]
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, user_id: _Optional[str] = ..., preferences: _Optional[_Iterable[str]] = ..., recent_prompts: _Optional[_Iterable[str]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetProfileRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class GetProfileResponse(_message.Message):
    __slots__ = ("profile",)
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    profile: UserProfile
    def __init__(self, profile: _Optional[_Union[UserProfile, _Mapping]] = ...) -> None: ...

class UpdateProfileRequest(_message.Message):
    __slots__ = ("user_id", "preferences", "merge")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    MERGE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    preferences: _containers.RepeatedScalarFieldContainer[str]
    merge: bool
    def __init__(self, user_id: _Optional[str] = ..., preferences: _Optional[_Iterable[str]] = ..., merge: _Optional[bool] = ...) -> None: ...

class UpdateProfileResponse(_message.Message):
    __slots__ = ("profile",)
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    profile: UserProfile
    def __init__(self, profile: _Optional[_Union[UserProfile, _Mapping]] = ...) -> None: ...

class DeleteProfileRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class DeleteProfileResponse(_message.Message):
    __slots__ = ("profile_erased", "prompts_erased", "cached_answers_erased", "shared_calls_detached")
    PROFILE_ERASED_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_ERASED_FIELD_NUMBER: _ClassVar[int]
    CACHED_ANSWERS_ERASED_FIELD_NUMBER: _ClassVar[int]
    SHARED_CALLS_DETACHED_FIELD_NUMBER: _ClassVar[int]
    profile_erased: bool
    prompts_erased: int
    cached_answers_erased: int
    shared_calls_detached: int
    def __init__(self, profile_erased: _Optional[bool] = ..., prompts_erased: _Optional[int] = ..., cached_answers_erased: _Optional[int] = ..., shared_calls_detached: _Optional[int] = ...) -> None: ...
