import datetime

from diffqc.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Frame(_message.Message):
    __slots__ = ("frame_id", "plant_id", "line_id", "station_id", "camera_id", "product_type", "work_order", "lot", "capture_time", "process_parameters", "image", "shape", "priority", "ingest_time")
    class ProcessParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    PLANT_ID_FIELD_NUMBER: _ClassVar[int]
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    STATION_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_TYPE_FIELD_NUMBER: _ClassVar[int]
    WORK_ORDER_FIELD_NUMBER: _ClassVar[int]
    LOT_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_FIELD_NUMBER: _ClassVar[int]
    PROCESS_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    INGEST_TIME_FIELD_NUMBER: _ClassVar[int]
    frame_id: str
    plant_id: str
    line_id: str
    station_id: str
    camera_id: str
    product_type: str
    work_order: str
    lot: str
    capture_time: _timestamp_pb2.Timestamp
    process_parameters: _containers.ScalarMap[str, float]
    image: _common_pb2.BlobRef
    shape: _common_pb2.Shape
    priority: _common_pb2.Priority
    ingest_time: _timestamp_pb2.Timestamp
    def __init__(self, frame_id: _Optional[str] = ..., plant_id: _Optional[str] = ..., line_id: _Optional[str] = ..., station_id: _Optional[str] = ..., camera_id: _Optional[str] = ..., product_type: _Optional[str] = ..., work_order: _Optional[str] = ..., lot: _Optional[str] = ..., capture_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., process_parameters: _Optional[_Mapping[str, float]] = ..., image: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ..., shape: _Optional[_Union[_common_pb2.Shape, _Mapping]] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ..., ingest_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
