import datetime

from diffqc.v1 import common_pb2 as _common_pb2
from diffqc.v1 import frame_pb2 as _frame_pb2
from diffqc.v1 import preprocessing_pb2 as _preprocessing_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InferenceResult(_message.Message):
    __slots__ = ("frame", "component_scores", "anomaly_map", "model", "latency", "score", "trial_scores", "canary")
    class ComponentScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    FRAME_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_SCORES_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_MAP_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TRIAL_SCORES_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    frame: _frame_pb2.Frame
    component_scores: _containers.ScalarMap[str, float]
    anomaly_map: _common_pb2.BlobRef
    model: _common_pb2.ModelRef
    latency: _duration_pb2.Duration
    score: float
    trial_scores: _containers.RepeatedCompositeFieldContainer[TrialScore]
    canary: bool
    def __init__(self, frame: _Optional[_Union[_frame_pb2.Frame, _Mapping]] = ..., component_scores: _Optional[_Mapping[str, float]] = ..., anomaly_map: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., score: _Optional[float] = ..., trial_scores: _Optional[_Iterable[_Union[TrialScore, _Mapping]]] = ..., canary: _Optional[bool] = ...) -> None: ...

class TrialScore(_message.Message):
    __slots__ = ("model", "score", "component_scores")
    class ComponentScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_SCORES_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    score: float
    component_scores: _containers.ScalarMap[str, float]
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., score: _Optional[float] = ..., component_scores: _Optional[_Mapping[str, float]] = ...) -> None: ...

class DetectRequest(_message.Message):
    __slots__ = ("prepared",)
    PREPARED_FIELD_NUMBER: _ClassVar[int]
    prepared: _preprocessing_pb2.PreparedFrame
    def __init__(self, prepared: _Optional[_Union[_preprocessing_pb2.PreparedFrame, _Mapping]] = ...) -> None: ...

class DetectResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: InferenceResult
    def __init__(self, result: _Optional[_Union[InferenceResult, _Mapping]] = ...) -> None: ...
