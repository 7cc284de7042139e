"""One pattern for every service: a table of errors, applied to the gRPC path by a decorator and
to the stream path by a stage runner.

A service declares which exceptions mean what (``ErrorTable``: exception -> gRPC status). The
same table decides the stream's fate of a message: UNAVAILABLE (a dependency is down) is retried
for as long as it lasts; every other listed exception is the message's own fault (poison) and
sends it to the dead-letter topic. A stream stage is then a row: input topic -> handler ->
output topic (or an emitter), run by the shared consume loop. A result the broker refuses for
good (PublishRefused: too large ...) dead-letters its input too, in the consume loop, whatever
the table says; a stage with a database passes the loop a poison fence
(``diffqc.store.poison.PoisonFence``) so that an input that kills the process is dead-lettered
after a restart instead of crash-looping the stage.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc
from confluent_kafka import Message

from diffqc.bus.consumer import ConsumeLoop, Fence, PoisonMessage
from diffqc.bus.producer import Publisher
from diffqc.contracts.topics import ProtoTopic
from diffqc.runtime.logging import frame_context
from diffqc.settings import KafkaSettings, Settings
from diffqc.v1.frame_pb2 import Frame

ErrorTable = Mapping[type[Exception], grpc.StatusCode]
In = TypeVar("In")
Out = TypeVar("Out")
Request = TypeVar("Request")
Response = TypeVar("Response")
Method = Callable[[Any, Request, grpc.ServicerContext], Response]


def status_of(errors: ErrorTable, exc: BaseException) -> grpc.StatusCode | None:
    """The status of the most specific class of ``exc`` in the table (None: not listed)."""
    for cls in type(exc).__mro__:
        if cls in errors:
            return errors[cls]
    return None


def poison_errors(errors: ErrorTable) -> tuple[type[Exception], ...]:
    """The listed exceptions that no retry can fix: all but UNAVAILABLE."""
    return tuple(cls for cls, status in errors.items() if status is not grpc.StatusCode.UNAVAILABLE)


def grpc_errors(
    errors: ErrorTable, frame: Callable[[Any], Frame] | None = None
) -> Callable[[Method[Request, Response]], Method[Request, Response]]:
    """Decorate a servicer method: log lines inside carry the request's frame id (``frame``), and a
    listed exception aborts the call with its status and message."""
    listed = tuple(errors)

    def decorate(method: Method[Request, Response]) -> Method[Request, Response]:
        @functools.wraps(method)
        def wrapper(self: Any, request: Request, context: grpc.ServicerContext) -> Response:
            with frame_context(frame(request).frame_id if frame else None):
                try:
                    return method(self, request, context)
                except listed as exc:
                    context.abort(status_of(errors, exc) or grpc.StatusCode.UNKNOWN, str(exc))
                    raise  # abort() raises; this tells type checkers so

        return wrapper

    return decorate


@dataclass(frozen=True)
class StreamStage(Generic[In, Out]):
    """A service's stream path as a table row: read ``source`` in consumer group ``group``, call
    ``handle`` on each message, publish its result on ``output`` and/or hand it to ``emit``; the
    offset is committed after that. ``errors`` decides retry or dead letter (module doc)."""

    group: str
    source: ProtoTopic[Any]
    handle: Callable[[In], Out]
    errors: ErrorTable
    output: ProtoTopic[Any] | None = None
    emit: Callable[[Out], None] | None = None

    def workers(self, settings: Settings, fence: Fence | None = None) -> list[ConsumeLoop[In]]:
        """``service.stream_workers`` consume loops of this stage (one consumer of the group each)."""
        return [self.worker(settings.kafka, fence) for _ in range(settings.service.stream_workers)]

    def worker(self, kafka: KafkaSettings, fence: Fence | None = None) -> ConsumeLoop[In]:
        publisher = Publisher(kafka) if self.output is not None else None
        poison = poison_errors(self.errors)

        def handle(value: In, _msg: Message) -> None:
            try:
                result = self.handle(value)
            except poison as exc:
                raise PoisonMessage(str(exc)) from exc
            if publisher is not None and self.output is not None:
                publisher.send(self.output, result)
            if self.emit is not None:
                self.emit(result)

        return ConsumeLoop(kafka, self.source, self.group, self.source.decode, handle, fence)
