"""Field paths into Avro schemas: parsing, resolution, listing, and the schema a consumer reads.

A field path names a field through the record fields leading to it, separated by dots:
``after.amount``. ``[]`` after a field steps into an array's items and ``{}`` into a map's values:
``lines[].sku``, ``attributes{}.value``. Unions (such as a nullable record) are crossed without naming
a branch: a step follows every branch it applies to.

Pure logic on :class:`~airflow_mesh.contracts.avro_compat.ParsedSchema`; no Airflow, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from airflow_mesh.contracts.avro_compat import ParsedSchema

__all__ = ["FieldNotFoundError", "FieldPath", "FieldPathError", "consumer_view", "field_paths", "resolve_path"]

ITEMS: Final = "[]"
VALUES: Final = "{}"
_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\]|\{\})*)")
_CONTAINER_STEP = re.compile(r"\[\]|\{\}")
# What a consumer's view of a named type keeps: these field names, or every field (_ALL_FIELDS).
_ALL_FIELDS: Final = None


class FieldPathError(ValueError):
    """A field path is not well formed."""


class FieldNotFoundError(LookupError):
    """A well-formed field path leads nowhere in a schema.

    Attributes:
        path: The path looked up.
        reason: Where and why the lookup stopped, e.g. ``record com.acme.Order has no field amunt
            (its fields: id, amount)``.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class FieldPath:
    """A parsed field path.

    Attributes:
        text: The path as written, e.g. ``lines[].sku``.
        steps: Field names, ``"[]"`` (array items) and ``"{}"`` (map values), in order.
    """

    text: str
    steps: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> FieldPath:
        """Parse a path such as ``after.amount`` or ``lines[].sku``.

        Args:
            text: The path.

        Returns:
            The parsed path.

        Raises:
            FieldPathError: The path is empty, has an empty or invalid segment, or ends with ``[]``
                or ``{}`` (name the array or map field itself to read all of it).
        """
        if not isinstance(text, str) or not text:
            raise FieldPathError("a field path must be a non-empty string such as after.amount")
        steps: list[str] = []
        for segment in text.split("."):
            match = _SEGMENT.fullmatch(segment)
            if match is None:
                raise FieldPathError(
                    f"invalid segment {segment!r} in {text!r}: expected a field name (letters, digits, _) "
                    "optionally followed by [] (array items) or {} (map values)"
                )
            steps.append(match.group(1))
            steps += _CONTAINER_STEP.findall(match.group(2))
        if steps[-1] in (ITEMS, VALUES):
            field = text.rstrip("[]{}")
            raise FieldPathError(f"{text!r} ends with {steps[-1]}: name the field itself ({field!r}) to read all of it")
        return cls(text, tuple(steps))

    def overlaps(self, other: FieldPath) -> bool:
        """Whether one path is the other or leads into it: a consumer reading either reads both.

        Args:
            other: Another path.

        Returns:
            True when the steps of one start with all the steps of the other.
        """
        shorter, longer = sorted((self.steps, other.steps), key=len)
        return longer[: len(shorter)] == shorter

    def __str__(self) -> str:
        return self.text


def _branches(schema: ParsedSchema, type_: Any) -> list[Any]:
    """A type's definition, or the definitions of its branches when it is a union."""
    resolved = schema.resolve(type_)
    if isinstance(resolved, list):
        return [schema.resolve(branch) for branch in resolved]
    return [resolved]


def _kind(type_: Any) -> str:
    return str(type_["type"]) if isinstance(type_, dict) else str(type_)


def _describe(type_: Any) -> str:
    return f"record {type_['name']}" if _kind(type_) == "record" else _kind(type_)


def _step(schema: ParsedSchema, types: list[Any], step: str, walked: str, path: str) -> list[Any]:
    """The types one step leads to from the given (union-expanded) types.

    Raises:
        FieldNotFoundError: No given type has the step (``walked`` is the path up to it).
    """
    if step in (ITEMS, VALUES):
        container, part = ("array", "items") if step == ITEMS else ("map", "values")
        found = [t[part] for t in types if _kind(t) == container]
        if not found:
            kinds = " or ".join(sorted({_describe(t) for t in types}))
            raise FieldNotFoundError(path, f"{walked} is {kinds}, not {'an' if container == 'array' else 'a'} "
                                           f"{container}")
    else:
        records = [t for t in types if _kind(t) == "record"]
        found = [field["type"] for record in records for field in record["fields"] if field["name"] == step]
        if not found and records:
            names = " / ".join(record["name"] for record in records)
            fields = ", ".join(field["name"] for record in records for field in record["fields"])
            raise FieldNotFoundError(path, f"record {names} has no field {step} (its fields: {fields})")
        if not found:
            kinds = " or ".join(sorted({_describe(t) for t in types}))
            raise FieldNotFoundError(path, f"{walked or 'the schema'} is {kinds}, not a record")
    return [branch for type_ in found for branch in _branches(schema, type_)]


def resolve_path(schema: ParsedSchema, path: FieldPath) -> list[Any]:
    """The types a path leads to (several when it crosses unions of records that share a field).

    Args:
        schema: The schema to look in.
        path: The path.

    Returns:
        The definitions found at the end of the path, unions expanded into their branches.

    Raises:
        FieldNotFoundError: A step of the path does not exist, naming the step and the record (with
            its fields) or the type where it stopped.
    """
    types = _branches(schema, schema.root)
    walked = ""
    for step in path.steps:
        types = _step(schema, types, step, walked, path.text)
        walked = walked + step if step in (ITEMS, VALUES) or not walked else f"{walked}.{step}"
    return types


def field_paths(schema: ParsedSchema) -> list[str]:
    """Every field path of a schema, parents before children, in schema order.

    A recursive record is listed once per route, down to where it recurs.

    Args:
        schema: The schema.

    Returns:
        The paths, e.g. ``["before", "before.id", ..., "lines", "lines[].sku"]``, without repeats.
    """
    return list(dict.fromkeys(_walk_fields(schema, schema.root, "", frozenset())))


def _walk_fields(schema: ParsedSchema, type_: Any, prefix: str, route: frozenset[str]) -> Iterator[str]:
    for branch in _branches(schema, type_):
        kind = _kind(branch)
        if kind == "record" and branch["name"] not in route:
            for field in branch["fields"]:
                path = f"{prefix}.{field['name']}" if prefix else field["name"]
                yield path
                yield from _walk_fields(schema, field["type"], path, route | {branch["name"]})
        elif kind == "array":
            yield from _walk_fields(schema, branch["items"], prefix + ITEMS, route)
        elif kind == "map":
            yield from _walk_fields(schema, branch["values"], prefix + VALUES, route)


def consumer_view(schema: ParsedSchema, path: FieldPath) -> Any:
    """The schema of a consumer that reads only ``path`` of data written with ``schema``.

    It keeps the records leading to the path with only the fields on the way, and everything under
    the path's end. It drops every field default, so that a writer that no longer has a field the
    consumer reads is incompatible with it (the consumer reads the data, not a default). A record of a
    union branch the path does not go through keeps its name and no field, so that it still reads the
    data of that branch. Named types keep their aliases, enums their default symbol.

    Args:
        schema: The schema the consumer's data is written with today.
        path: The field the consumer reads.

    Returns:
        The consumer's reader schema (JSON form), to resolve a new writer schema against.

    Raises:
        FieldNotFoundError: The path does not exist in ``schema``.
    """
    resolve_path(schema, path)
    kept: dict[str, set[str] | None] = {}
    _keep_path(schema, schema.root, path.steps, kept)
    return _emit(schema, schema.root, kept, set())


def _keep_path(schema: ParsedSchema, type_: Any, steps: tuple[str, ...], kept: dict[str, set[str] | None]) -> None:
    """Record, per named record on the path, which fields the view keeps."""
    for branch in _branches(schema, type_):
        kind = _kind(branch)
        if not steps:
            _keep_all(schema, branch, kept)
        elif kind == "record":
            for field in branch["fields"]:
                if field["name"] == steps[0]:
                    fields = kept.setdefault(branch["name"], set())
                    if fields is not _ALL_FIELDS:
                        fields.add(steps[0])
                    _keep_path(schema, field["type"], steps[1:], kept)
        elif (kind, steps[0]) in (("array", ITEMS), ("map", VALUES)):
            _keep_path(schema, branch["items" if kind == "array" else "values"], steps[1:], kept)


def _keep_all(schema: ParsedSchema, type_: Any, kept: dict[str, set[str] | None]) -> None:
    """Keep every field of every record under a type."""
    for branch in _branches(schema, type_):
        kind = _kind(branch)
        if kind == "record" and kept.get(branch["name"], set()) is not _ALL_FIELDS:
            kept[branch["name"]] = _ALL_FIELDS
            for field in branch["fields"]:
                _keep_all(schema, field["type"], kept)
        elif kind == "array":
            _keep_all(schema, branch["items"], kept)
        elif kind == "map":
            _keep_all(schema, branch["values"], kept)


def _emit(schema: ParsedSchema, type_: Any, kept: dict[str, set[str] | None], defined: set[str]) -> Any:
    """Write the view of a type as schema JSON; each named type is defined once, then referenced."""
    if isinstance(type_, list):
        return [_emit(schema, branch, kept, defined) for branch in type_]
    resolved = schema.resolve(type_)
    if not isinstance(resolved, dict):
        return resolved
    kind = resolved["type"]
    if kind in ("record", "enum", "fixed"):
        if resolved["name"] in defined:
            return resolved["name"]
        defined.add(resolved["name"])
    view = {key: value for key, value in resolved.items() if not key.startswith("__") and key != "doc"}
    if kind == "record":
        fields = kept.get(resolved["name"], set())
        view["fields"] = [
            {key: (_emit(schema, value, kept, defined) if key == "type" else value)
             for key, value in field.items() if key in ("name", "type", "aliases")}
            for field in resolved["fields"] if fields is _ALL_FIELDS or field["name"] in fields
        ]
    elif kind == "array":
        view["items"] = _emit(schema, resolved["items"], kept, defined)
    elif kind == "map":
        view["values"] = _emit(schema, resolved["values"], kept, defined)
    return view
