from diffqc.v1 import common_pb2 as _common_pb2
from diffqc.v1 import frame_pb2 as _frame_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tile(_message.Message):
    __slots__ = ("index", "x", "y", "width", "height", "tensor")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    index: int
    x: int
    y: int
    width: int
    height: int
    tensor: _common_pb2.BlobRef
    def __init__(self, index: _Optional[int] = ..., x: _Optional[int] = ..., y: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., tensor: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ...) -> None: ...

class PreparedFrame(_message.Message):
    __slots__ = ("frame", "normalized_shape", "scale", "pad_left", "pad_top", "aligned", "tile_overlap", "tiles")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_SHAPE_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    PAD_LEFT_FIELD_NUMBER: _ClassVar[int]
    PAD_TOP_FIELD_NUMBER: _ClassVar[int]
    ALIGNED_FIELD_NUMBER: _ClassVar[int]
    TILE_OVERLAP_FIELD_NUMBER: _ClassVar[int]
    TILES_FIELD_NUMBER: _ClassVar[int]
    frame: _frame_pb2.Frame
    normalized_shape: _common_pb2.Shape
    scale: float
    pad_left: int
    pad_top: int
    aligned: bool
    tile_overlap: int
    tiles: _containers.RepeatedCompositeFieldContainer[Tile]
    def __init__(self, frame: _Optional[_Union[_frame_pb2.Frame, _Mapping]] = ..., normalized_shape: _Optional[_Union[_common_pb2.Shape, _Mapping]] = ..., scale: _Optional[float] = ..., pad_left: _Optional[int] = ..., pad_top: _Optional[int] = ..., aligned: _Optional[bool] = ..., tile_overlap: _Optional[int] = ..., tiles: _Optional[_Iterable[_Union[Tile, _Mapping]]] = ...) -> None: ...

class PrepareRequest(_message.Message):
    __slots__ = ("frame",)
    FRAME_FIELD_NUMBER: _ClassVar[int]
    frame: _frame_pb2.Frame
    def __init__(self, frame: _Optional[_Union[_frame_pb2.Frame, _Mapping]] = ...) -> None: ...

class PrepareResponse(_message.Message):
    __slots__ = ("prepared",)
    PREPARED_FIELD_NUMBER: _ClassVar[int]
    prepared: PreparedFrame
    def __init__(self, prepared: _Optional[_Union[PreparedFrame, _Mapping]] = ...) -> None: ...
