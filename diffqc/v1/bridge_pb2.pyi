import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AlertKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_KIND_UNSPECIFIED: _ClassVar[AlertKind]
    ALERT_KIND_DEFECT: _ClassVar[AlertKind]
    ALERT_KIND_SPC: _ClassVar[AlertKind]
    ALERT_KIND_NOT_INSPECTED: _ClassVar[AlertKind]
ALERT_KIND_UNSPECIFIED: AlertKind
ALERT_KIND_DEFECT: AlertKind
ALERT_KIND_SPC: AlertKind
ALERT_KIND_NOT_INSPECTED: AlertKind

class SpcViolation(_message.Message):
    __slots__ = ("rule", "detail", "detected_at", "sample_index")
    RULE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    DETECTED_AT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_INDEX_FIELD_NUMBER: _ClassVar[int]
    rule: str
    detail: str
    detected_at: _timestamp_pb2.Timestamp
    sample_index: int
    def __init__(self, rule: _Optional[str] = ..., detail: _Optional[str] = ..., detected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sample_index: _Optional[int] = ...) -> None: ...

class LotDefectRate(_message.Message):
    __slots__ = ("lot", "inspected", "defective", "defect_rate", "upper_control_limit", "lower_control_limit", "closed")
    LOT_FIELD_NUMBER: _ClassVar[int]
    INSPECTED_FIELD_NUMBER: _ClassVar[int]
    DEFECTIVE_FIELD_NUMBER: _ClassVar[int]
    DEFECT_RATE_FIELD_NUMBER: _ClassVar[int]
    UPPER_CONTROL_LIMIT_FIELD_NUMBER: _ClassVar[int]
    LOWER_CONTROL_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    lot: str
    inspected: int
    defective: int
    defect_rate: float
    upper_control_limit: float
    lower_control_limit: float
    closed: bool
    def __init__(self, lot: _Optional[str] = ..., inspected: _Optional[int] = ..., defective: _Optional[int] = ..., defect_rate: _Optional[float] = ..., upper_control_limit: _Optional[float] = ..., lower_control_limit: _Optional[float] = ..., closed: _Optional[bool] = ...) -> None: ...

class SpcState(_message.Message):
    __slots__ = ("line_id", "product_type", "sample_count", "center_line", "upper_control_limit", "lower_control_limit", "last_score", "violations", "updated_at", "limits_fixed", "baseline_size", "sigma", "moving_range_mean", "moving_range_ucl", "last_moving_range", "defect_rate_center_line", "lots")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CENTER_LINE_FIELD_NUMBER: _ClassVar[int]
    UPPER_CONTROL_LIMIT_FIELD_NUMBER: _ClassVar[int]
    LOWER_CONTROL_LIMIT_FIELD_NUMBER: _ClassVar[int]
    LAST_SCORE_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIXED_FIELD_NUMBER: _ClassVar[int]
    BASELINE_SIZE_FIELD_NUMBER: _ClassVar[int]
    SIGMA_FIELD_NUMBER: _ClassVar[int]
    MOVING_RANGE_MEAN_FIELD_NUMBER: _ClassVar[int]
    MOVING_RANGE_UCL_FIELD_NUMBER: _ClassVar[int]
    LAST_MOVING_RANGE_FIELD_NUMBER: _ClassVar[int]
    DEFECT_RATE_CENTER_LINE_FIELD_NUMBER: _ClassVar[int]
    LOTS_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    product_type: str
    sample_count: int
    center_line: float
    upper_control_limit: float
    lower_control_limit: float
    last_score: float
    violations: _containers.RepeatedCompositeFieldContainer[SpcViolation]
    updated_at: _timestamp_pb2.Timestamp
    limits_fixed: bool
    baseline_size: int
    sigma: float
    moving_range_mean: float
    moving_range_ucl: float
    last_moving_range: float
    defect_rate_center_line: float
    lots: _containers.RepeatedCompositeFieldContainer[LotDefectRate]
    def __init__(self, line_id: _Optional[str] = ..., product_type: _Optional[str] = ..., sample_count: _Optional[int] = ..., center_line: _Optional[float] = ..., upper_control_limit: _Optional[float] = ..., lower_control_limit: _Optional[float] = ..., last_score: _Optional[float] = ..., violations: _Optional[_Iterable[_Union[SpcViolation, _Mapping]]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limits_fixed: _Optional[bool] = ..., baseline_size: _Optional[int] = ..., sigma: _Optional[float] = ..., moving_range_mean: _Optional[float] = ..., moving_range_ucl: _Optional[float] = ..., last_moving_range: _Optional[float] = ..., defect_rate_center_line: _Optional[float] = ..., lots: _Optional[_Iterable[_Union[LotDefectRate, _Mapping]]] = ...) -> None: ...

class GetSpcStateRequest(_message.Message):
    __slots__ = ("line_id", "product_type")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_TYPE_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    product_type: str
    def __init__(self, line_id: _Optional[str] = ..., product_type: _Optional[str] = ...) -> None: ...

class GetSpcStateResponse(_message.Message):
    __slots__ = ("states",)
    STATES_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedCompositeFieldContainer[SpcState]
    def __init__(self, states: _Optional[_Iterable[_Union[SpcState, _Mapping]]] = ...) -> None: ...

class PendingAlert(_message.Message):
    __slots__ = ("alert_id", "kind", "line_id", "inspection_id", "created_at", "attempts", "last_error", "next_attempt_at")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    INSPECTION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    kind: AlertKind
    line_id: str
    inspection_id: str
    created_at: _timestamp_pb2.Timestamp
    attempts: int
    last_error: str
    next_attempt_at: _timestamp_pb2.Timestamp
    def __init__(self, alert_id: _Optional[str] = ..., kind: _Optional[_Union[AlertKind, str]] = ..., line_id: _Optional[str] = ..., inspection_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempts: _Optional[int] = ..., last_error: _Optional[str] = ..., next_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListPendingAlertsRequest(_message.Message):
    __slots__ = ("line_id", "page_size", "page_token")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    page_size: int
    page_token: str
    def __init__(self, line_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPendingAlertsResponse(_message.Message):
    __slots__ = ("alerts", "next_page_token")
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[PendingAlert]
    next_page_token: str
    def __init__(self, alerts: _Optional[_Iterable[_Union[PendingAlert, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListFailedAlertsRequest(_message.Message):
    __slots__ = ("line_id", "page_size", "page_token")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    page_size: int
    page_token: str
    def __init__(self, line_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListFailedAlertsResponse(_message.Message):
    __slots__ = ("alerts", "next_page_token")
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[PendingAlert]
    next_page_token: str
    def __init__(self, alerts: _Optional[_Iterable[_Union[PendingAlert, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
