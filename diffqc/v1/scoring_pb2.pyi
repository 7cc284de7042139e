import datetime

from diffqc.v1 import common_pb2 as _common_pb2
from diffqc.v1 import frame_pb2 as _frame_pb2
from diffqc.v1 import inference_pb2 as _inference_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_PASS: _ClassVar[Verdict]
    VERDICT_DEFECT: _ClassVar[Verdict]
    VERDICT_NOT_INSPECTED: _ClassVar[Verdict]
VERDICT_UNSPECIFIED: Verdict
VERDICT_PASS: Verdict
VERDICT_DEFECT: Verdict
VERDICT_NOT_INSPECTED: Verdict

class DefectRegion(_message.Message):
    __slots__ = ("bbox", "area_px", "peak_score")
    BBOX_FIELD_NUMBER: _ClassVar[int]
    AREA_PX_FIELD_NUMBER: _ClassVar[int]
    PEAK_SCORE_FIELD_NUMBER: _ClassVar[int]
    bbox: _common_pb2.BoundingBox
    area_px: int
    peak_score: float
    def __init__(self, bbox: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ..., area_px: _Optional[int] = ..., peak_score: _Optional[float] = ...) -> None: ...

class InspectionVerdict(_message.Message):
    __slots__ = ("inspection_id", "frame", "verdict", "score", "threshold", "component_scores", "regions", "heatmap", "model", "latency", "decided_at", "not_inspected_reason")
    class ComponentScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    INSPECTION_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_SCORES_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    HEATMAP_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    NOT_INSPECTED_REASON_FIELD_NUMBER: _ClassVar[int]
    inspection_id: str
    frame: _frame_pb2.Frame
    verdict: Verdict
    score: float
    threshold: float
    component_scores: _containers.ScalarMap[str, float]
    regions: _containers.RepeatedCompositeFieldContainer[DefectRegion]
    heatmap: _common_pb2.BlobRef
    model: _common_pb2.ModelRef
    latency: _duration_pb2.Duration
    decided_at: _timestamp_pb2.Timestamp
    not_inspected_reason: str
    def __init__(self, inspection_id: _Optional[str] = ..., frame: _Optional[_Union[_frame_pb2.Frame, _Mapping]] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., score: _Optional[float] = ..., threshold: _Optional[float] = ..., component_scores: _Optional[_Mapping[str, float]] = ..., regions: _Optional[_Iterable[_Union[DefectRegion, _Mapping]]] = ..., heatmap: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., not_inspected_reason: _Optional[str] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: _inference_pb2.InferenceResult
    def __init__(self, result: _Optional[_Union[_inference_pb2.InferenceResult, _Mapping]] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("verdict",)
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    verdict: InspectionVerdict
    def __init__(self, verdict: _Optional[_Union[InspectionVerdict, _Mapping]] = ...) -> None: ...
