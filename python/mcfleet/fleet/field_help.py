"""What a field of a fleet file holds, found from a validation error's location.

pydantic says what is wrong with a value ("Input should be a valid list") but not what the
field is for; its description (the one the JSON Schema carries) and the JSON type it takes turn
that into a fix: `env: KEY=VALUE (a list of strings)`.
"""

from __future__ import annotations

import enum
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo


def _unwrap(tp: Any) -> Any:
    """The type under Annotated[...] and Optional[...] (None is never what a fix asks for)."""
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
            continue
        if get_origin(tp) in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _union_models(tp: Any) -> list[type[BaseModel]]:
    if get_origin(tp) in (Union, types.UnionType):
        return [m for m in (_unwrap(a) for a in get_args(tp)) if _is_model(m)]
    return [tp] if _is_model(tp) else []


def _tags(model: type[BaseModel]) -> tuple[Any, ...]:
    """The values of a union member's `kind` field (its tag in pydantic's error locations)."""
    kind = model.model_fields.get("kind")
    return (
        get_args(_unwrap(kind.annotation))
        if kind is not None and get_origin(_unwrap(kind.annotation)) is Literal
        else ()
    )


def json_type(tp: Any) -> str | None:
    """How the field's JSON is spelled: 'a string', 'a list of strings', 'one of a, b'; None if unsure."""
    tp = _unwrap(tp)
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(map(str, get_args(tp)))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in tp)
    if origin in (list, tuple, set, frozenset):
        inner = json_type(get_args(tp)[0]) if get_args(tp) else None
        plural = {"a string": "strings", "a whole number": "whole numbers", "an object": "objects"}
        return f"a list of {plural[inner]}" if inner in plural else "a list"
    if origin is dict or tp is dict or _union_models(tp):
        return "an object"
    simple = {str: "a string", bool: "true or false", int: "a whole number", float: "a number"}
    return simple.get(tp) if isinstance(tp, type) else None


def _walk(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[str | None, FieldInfo | None, Any]:
    """(name, FieldInfo) of the last field named on the way along `loc`, and the type reached;
    the type is None when a part leads nowhere."""
    current: Any = model
    name: str | None = None
    info: FieldInfo | None = None
    for part in loc:
        tp = _unwrap(current)
        if isinstance(part, int):
            if get_origin(tp) not in (list, tuple):
                return name, info, None
            current = get_args(tp)[0] if get_args(tp) else Any
            continue
        if get_origin(tp) is dict:
            current = get_args(tp)[1] if len(get_args(tp)) == 2 else Any
            continue
        members = _union_models(tp)
        tagged = [m for m in members if part in _tags(m)]
        if len(members) > 1 and tagged:
            current = tagged[0]  # a union member's tag (e.g. 'rfc2136'): the next part names the field
            continue
        found = next((f for m in members if (f := _field(m, part)) is not None), None)
        if found is None:
            return name, info, None
        name, info, current = part, found, found.annotation
    return name, info, current


def _field(model: type[BaseModel], key: str) -> FieldInfo | None:
    fields = model.model_fields
    return fields.get(key) or next((f for f in fields.values() if f.alias == key), None)


def field_help(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[str, str | None, str | None] | None:
    """(field name, description, JSON type) of the field at `loc` (pydantic's error location,
    union tags included); None when the location does not lead to a named field."""
    name, info, reached = _walk(model, loc)
    if name is None or info is None or reached is None:
        return None
    return name, info.description, json_type(info.annotation)


def known_fields(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The field names (as spelled in the files) of the object at `loc`; [] when it is not one model."""
    _name, _info, reached = _walk(model, loc)
    members = _union_models(_unwrap(reached)) if reached is not None else []
    if len(members) != 1:
        return []
    return [f.alias or key for key, f in members[0].model_fields.items()]
