from diffqc.v1 import common_pb2 as _common_pb2
from diffqc.v1 import frame_pb2 as _frame_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IngestStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INGEST_STATUS_UNSPECIFIED: _ClassVar[IngestStatus]
    INGEST_STATUS_ACCEPTED: _ClassVar[IngestStatus]
    INGEST_STATUS_DUPLICATE: _ClassVar[IngestStatus]
    INGEST_STATUS_REJECTED: _ClassVar[IngestStatus]
INGEST_STATUS_UNSPECIFIED: IngestStatus
INGEST_STATUS_ACCEPTED: IngestStatus
INGEST_STATUS_DUPLICATE: IngestStatus
INGEST_STATUS_REJECTED: IngestStatus

class IngestRequest(_message.Message):
    __slots__ = ("frame", "image_data")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_DATA_FIELD_NUMBER: _ClassVar[int]
    frame: _frame_pb2.Frame
    image_data: bytes
    def __init__(self, frame: _Optional[_Union[_frame_pb2.Frame, _Mapping]] = ..., image_data: _Optional[bytes] = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ("frame_id", "status", "detail", "image")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    frame_id: str
    status: IngestStatus
    detail: str
    image: _common_pb2.BlobRef
    def __init__(self, frame_id: _Optional[str] = ..., status: _Optional[_Union[IngestStatus, str]] = ..., detail: _Optional[str] = ..., image: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ...) -> None: ...
