from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Source(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SOURCE_UNSPECIFIED: _ClassVar[Source]
    SOURCE_SIM: _ClassVar[Source]
    SOURCE_LIVE: _ClassVar[Source]
SOURCE_UNSPECIFIED: Source
SOURCE_SIM: Source
SOURCE_LIVE: Source

class Trace(_message.Message):
    __slots__ = ("name", "rounds", "workers", "dtype", "shape", "times")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    TIMES_FIELD_NUMBER: _ClassVar[int]
    name: str
    rounds: int
    workers: int
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    times: bytes
    def __init__(self, name: _Optional[str] = ..., rounds: _Optional[int] = ..., workers: _Optional[int] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., times: _Optional[bytes] = ...) -> None: ...

class RunConfig(_message.Message):
    __slots__ = ("run_id", "source", "scheme", "params", "n", "jobs", "delay", "load", "rounds_planned", "policy", "mu", "deadline_s", "load_slope", "time_scale", "models", "seed", "model", "dataset", "optimizer", "message_dtype", "trace", "started_unix_s", "gcode_version", "extra")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_PLANNED_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    MU_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    LOAD_SLOPE_FIELD_NUMBER: _ClassVar[int]
    TIME_SCALE_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_DTYPE_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    GCODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    source: Source
    scheme: str
    params: _containers.ScalarMap[str, str]
    n: int
    jobs: int
    delay: int
    load: float
    rounds_planned: int
    policy: str
    mu: float
    deadline_s: float
    load_slope: float
    time_scale: float
    models: int
    seed: int
    model: str
    dataset: str
    optimizer: str
    message_dtype: str
    trace: Trace
    started_unix_s: float
    gcode_version: str
    extra: _containers.ScalarMap[str, str]
    def __init__(self, run_id: _Optional[str] = ..., source: _Optional[_Union[Source, str]] = ..., scheme: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ..., n: _Optional[int] = ..., jobs: _Optional[int] = ..., delay: _Optional[int] = ..., load: _Optional[float] = ..., rounds_planned: _Optional[int] = ..., policy: _Optional[str] = ..., mu: _Optional[float] = ..., deadline_s: _Optional[float] = ..., load_slope: _Optional[float] = ..., time_scale: _Optional[float] = ..., models: _Optional[int] = ..., seed: _Optional[int] = ..., model: _Optional[str] = ..., dataset: _Optional[str] = ..., optimizer: _Optional[str] = ..., message_dtype: _Optional[str] = ..., trace: _Optional[_Union[Trace, _Mapping]] = ..., started_unix_s: _Optional[float] = ..., gcode_version: _Optional[str] = ..., extra: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("job", "slot", "chunks", "coefficients")
    JOB_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    COEFFICIENTS_FIELD_NUMBER: _ClassVar[int]
    job: int
    slot: int
    chunks: _containers.RepeatedScalarFieldContainer[int]
    coefficients: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, job: _Optional[int] = ..., slot: _Optional[int] = ..., chunks: _Optional[_Iterable[int]] = ..., coefficients: _Optional[_Iterable[float]] = ...) -> None: ...

class WorkerRound(_message.Message):
    __slots__ = ("worker", "tasks", "arrival_s", "straggler", "late", "compute_s", "injected_sleep_s", "failure")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    ARRIVAL_S_FIELD_NUMBER: _ClassVar[int]
    STRAGGLER_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_S_FIELD_NUMBER: _ClassVar[int]
    INJECTED_SLEEP_S_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    worker: int
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    arrival_s: float
    straggler: bool
    late: bool
    compute_s: float
    injected_sleep_s: float
    failure: str
    def __init__(self, worker: _Optional[int] = ..., tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., arrival_s: _Optional[float] = ..., straggler: _Optional[bool] = ..., late: _Optional[bool] = ..., compute_s: _Optional[float] = ..., injected_sleep_s: _Optional[float] = ..., failure: _Optional[str] = ...) -> None: ...

class ModelLoss(_message.Message):
    __slots__ = ("model", "job", "loss")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    model: int
    job: int
    loss: float
    def __init__(self, model: _Optional[int] = ..., job: _Optional[int] = ..., loss: _Optional[float] = ...) -> None: ...

class RoundRecord(_message.Message):
    __slots__ = ("round", "workers", "fell_back", "duration_s", "deadline_s", "decoded_jobs", "losses", "wall_time_s", "max_decode_rel_error")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    FELL_BACK_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    DECODED_JOBS_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    WALL_TIME_S_FIELD_NUMBER: _ClassVar[int]
    MAX_DECODE_REL_ERROR_FIELD_NUMBER: _ClassVar[int]
    round: int
    workers: _containers.RepeatedCompositeFieldContainer[WorkerRound]
    fell_back: bool
    duration_s: float
    deadline_s: float
    decoded_jobs: _containers.RepeatedScalarFieldContainer[int]
    losses: _containers.RepeatedCompositeFieldContainer[ModelLoss]
    wall_time_s: float
    max_decode_rel_error: float
    def __init__(self, round: _Optional[int] = ..., workers: _Optional[_Iterable[_Union[WorkerRound, _Mapping]]] = ..., fell_back: _Optional[bool] = ..., duration_s: _Optional[float] = ..., deadline_s: _Optional[float] = ..., decoded_jobs: _Optional[_Iterable[int]] = ..., losses: _Optional[_Iterable[_Union[ModelLoss, _Mapping]]] = ..., wall_time_s: _Optional[float] = ..., max_decode_rel_error: _Optional[float] = ...) -> None: ...

class ParamChecksum(_message.Message):
    __slots__ = ("model", "algorithm", "value")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    model: int
    algorithm: str
    value: str
    def __init__(self, model: _Optional[int] = ..., algorithm: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class RunSummary(_message.Message):
    __slots__ = ("runtime_s", "rounds", "waits", "decoded_jobs", "final_losses", "param_checksums", "max_decode_rel_error", "wall_time_s", "stopped", "stop_reason")
    RUNTIME_S_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    WAITS_FIELD_NUMBER: _ClassVar[int]
    DECODED_JOBS_FIELD_NUMBER: _ClassVar[int]
    FINAL_LOSSES_FIELD_NUMBER: _ClassVar[int]
    PARAM_CHECKSUMS_FIELD_NUMBER: _ClassVar[int]
    MAX_DECODE_REL_ERROR_FIELD_NUMBER: _ClassVar[int]
    WALL_TIME_S_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    runtime_s: float
    rounds: int
    waits: int
    decoded_jobs: int
    final_losses: _containers.RepeatedCompositeFieldContainer[ModelLoss]
    param_checksums: _containers.RepeatedCompositeFieldContainer[ParamChecksum]
    max_decode_rel_error: float
    wall_time_s: float
    stopped: bool
    stop_reason: str
    def __init__(self, runtime_s: _Optional[float] = ..., rounds: _Optional[int] = ..., waits: _Optional[int] = ..., decoded_jobs: _Optional[int] = ..., final_losses: _Optional[_Iterable[_Union[ModelLoss, _Mapping]]] = ..., param_checksums: _Optional[_Iterable[_Union[ParamChecksum, _Mapping]]] = ..., max_decode_rel_error: _Optional[float] = ..., wall_time_s: _Optional[float] = ..., stopped: _Optional[bool] = ..., stop_reason: _Optional[str] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("config", "round", "summary")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    config: RunConfig
    round: RoundRecord
    summary: RunSummary
    def __init__(self, config: _Optional[_Union[RunConfig, _Mapping]] = ..., round: _Optional[_Union[RoundRecord, _Mapping]] = ..., summary: _Optional[_Union[RunSummary, _Mapping]] = ...) -> None: ...
