from . import run_pb2 as _run_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchRequest(_message.Message):
    __slots__ = ("from_round",)
    FROM_ROUND_FIELD_NUMBER: _ClassVar[int]
    from_round: int
    def __init__(self, from_round: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Status(_message.Message):
    __slots__ = ("round", "decoded_jobs", "waits", "running", "last_loss", "wall_time_s", "rounds_planned", "stop_requested", "run_id", "config", "summary", "stragglers")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    DECODED_JOBS_FIELD_NUMBER: _ClassVar[int]
    WAITS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    LAST_LOSS_FIELD_NUMBER: _ClassVar[int]
    WALL_TIME_S_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_PLANNED_FIELD_NUMBER: _ClassVar[int]
    STOP_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    STRAGGLERS_FIELD_NUMBER: _ClassVar[int]
    round: int
    decoded_jobs: int
    waits: int
    running: bool
    last_loss: _containers.RepeatedCompositeFieldContainer[_run_pb2.ModelLoss]
    wall_time_s: float
    rounds_planned: int
    stop_requested: bool
    run_id: str
    config: _run_pb2.RunConfig
    summary: _run_pb2.RunSummary
    stragglers: int
    def __init__(self, round: _Optional[int] = ..., decoded_jobs: _Optional[int] = ..., waits: _Optional[int] = ..., running: _Optional[bool] = ..., last_loss: _Optional[_Iterable[_Union[_run_pb2.ModelLoss, _Mapping]]] = ..., wall_time_s: _Optional[float] = ..., rounds_planned: _Optional[int] = ..., stop_requested: _Optional[bool] = ..., run_id: _Optional[str] = ..., config: _Optional[_Union[_run_pb2.RunConfig, _Mapping]] = ..., summary: _Optional[_Union[_run_pb2.RunSummary, _Mapping]] = ..., stragglers: _Optional[int] = ...) -> None: ...

class StopRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class StopReply(_message.Message):
    __slots__ = ("accepted", "message")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    message: str
    def __init__(self, accepted: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...
