"""One way to validate hand-written documents and to say what is wrong with them.

Every document a person writes (the settings, a product type's preprocessing spec and nominal
ranges, a detector's config.json and its overrides) is a pydantic model, and every
``ValidationError`` becomes one line in the same shape::

    <where>: <location>: <message>; <location>: <message>

``where`` names the document (``invalid settings``, ``product type 'pcb': preprocessing spec``,
``model/config.json``); a location is the path of the offending key (``recon.steps``,
``block_out_channels[1]``; the settings give it as the environment variable instead), left out
for a rule about the whole document. A validator's own ``ValueError`` text is shown as written,
without pydantic's ``Value error,`` prefix.

    spec = validate(PreprocessSpec, data, f"product type {name!r}: preprocessing spec", SpecError)

Only pydantic is imported here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

T = TypeVar("T")
Location = tuple[int | str, ...]


def dotted(location: Location) -> str:
    """``("model", "block_out_channels", 1)`` -> ``model.block_out_channels[1]``.

    A dict key that is itself invalid (pydantic adds ``"[key]"`` after it) reads ``'' (key)``.
    """
    text = ""
    for i, part in enumerate(location):
        if part == "[key]":
            continue
        if i + 1 < len(location) and location[i + 1] == "[key]":
            text += ("." if text else "") + f"{part!r} (key)"
        elif isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def error_message(error: ErrorDetails) -> str:
    """The message of one pydantic error: a validator's own ValueError text as written, else pydantic's."""
    if error.get("type") in ("value_error", "assertion_error"):
        cause = (error.get("ctx") or {}).get("error")
        if cause is not None and str(cause):
            return str(cause)
    return str(error["msg"])


def render_errors(exc: ValidationError, where: str, location: Callable[[Location], str] = dotted) -> str:
    """Every error of ``exc`` on one line: ``<where>: <location>: <message>; ...``.

    ``location`` turns an error's location into the name a user knows (default: the dotted key
    path); an error about the whole document has no location and shows only its message.
    """
    problems = []
    for error in exc.errors():
        name = location(tuple(error["loc"]))
        message = error_message(error)
        problems.append(f"{name}: {message}" if name else message)
    return f"{where}: " + "; ".join(problems)


def validate(
    schema: type[T] | TypeAdapter[T],
    data: Any,
    where: str,
    error: type[Exception],
    location: Callable[[Location], str] = dotted,
) -> T:
    """``data`` validated as ``schema`` (a pydantic model, or a TypeAdapter of any type).

    A ``ValidationError`` is raised again as ``error`` (the caller's own type) with the message of
    ``render_errors``, and without the pydantic traceback chained to it.
    """
    try:
        if isinstance(schema, TypeAdapter):
            return schema.validate_python(data)
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            return schema.model_validate(data)
        return TypeAdapter(schema).validate_python(data)
    except ValidationError as exc:
        raise error(render_errors(exc, where, location)) from None
