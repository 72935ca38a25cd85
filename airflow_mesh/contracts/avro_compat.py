"""Avro schema compatibility checking, following the Avro specification's "Schema Resolution".

A reader schema can read data written with a writer schema when every value the writer
can produce resolves against the reader:

* primitives match themselves or a promotion: int -> long/float/double, long -> float/double,
  float -> double, string <-> bytes;
* records match by unqualified name (or a reader alias of the writer's full name); fields
  match by name (or a reader field alias) in any order, writer-only fields are skipped and
  reader-only fields need a default;
* enums match by name; a writer symbol unknown to the reader needs a reader ``default``;
* fixed types match by name and size; arrays and maps resolve their items and values;
* every branch of a writer union must be readable; a non-union writer type is read by the
  first reader-union branch it matches;
* decimals match only when precision and scale are equal; other logical types (and a
  decimal facing a plain type) resolve as their underlying type. ``doc`` is ignored.
* an invalid decimal (a precision that is not a positive integer, a scale that is not an
  integer from 0 to the precision, a ``fixed`` too small for the precision, a decimal on a
  type other than bytes or fixed) is, as the specification says, ignored: the type is its
  underlying type, in the checker and in the parsed schema used to decode data. fastavro's
  parser rejects most of these instead.

Incompatibility paths use dotted field names (``customer.address.zip``), ``[]`` for array
items, ``{}`` for map values and ``<branch>`` for the branch of a writer union, e.g.
``payment<com.acme.Card>.number``. Problems inside a named type are reported once, at the
first path where the pair of types is resolved, which also makes recursive types terminate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Final, TypeAlias, TypeGuard

from fastavro.schema import SchemaParseException, UnknownType, parse_schema

__all__ = [
    "AvroCompatibilityError",
    "CompatibilityLevel",
    "Direction",
    "Incompatibility",
    "InvalidSchemaError",
    "ParsedSchema",
    "SchemaInput",
    "check_can_read",
    "check_compatibility",
    "parse_avro_schema",
]

SchemaInput: TypeAlias = "str | dict[str, Any] | list[Any]"
"""A schema as JSON text, a bare type name such as ``"string"``, or parsed JSON."""

_Schema: TypeAlias = "str | dict[str, Any] | list[Any]"

_PRIMITIVES: Final = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED_KINDS: Final = frozenset({"record", "enum", "fixed"})
_PROMOTIONS: Final[dict[str, frozenset[str]]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}


class AvroCompatibilityError(Exception):
    """Base class of the errors raised by this module."""


class InvalidSchemaError(AvroCompatibilityError):
    """A schema given to the checker is not a valid Avro schema."""


class Direction(Enum):
    """Which way a new schema and a previous version were resolved against each other."""

    BACKWARD = "backward"
    """The new schema reads data written with the previous version."""
    FORWARD = "forward"
    """The previous version reads data written with the new schema."""


class CompatibilityLevel(Enum):
    """Compatibility levels, named and defined as in Confluent Schema Registry."""

    NONE = "NONE"
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"


# Per level: the directions to check, and whether to check every version or only the latest.
_LEVEL_RULES: Final[dict[CompatibilityLevel, tuple[tuple[Direction, ...], bool]]] = {
    CompatibilityLevel.NONE: ((), False),
    CompatibilityLevel.BACKWARD: ((Direction.BACKWARD,), False),
    CompatibilityLevel.BACKWARD_TRANSITIVE: ((Direction.BACKWARD,), True),
    CompatibilityLevel.FORWARD: ((Direction.FORWARD,), False),
    CompatibilityLevel.FORWARD_TRANSITIVE: ((Direction.FORWARD,), True),
    CompatibilityLevel.FULL: ((Direction.BACKWARD, Direction.FORWARD), False),
    CompatibilityLevel.FULL_TRANSITIVE: ((Direction.BACKWARD, Direction.FORWARD), True),
}


@dataclass(frozen=True)
class Incompatibility:
    """One reason why a reader schema cannot read data written with a writer schema.

    Attributes:
        path: Where in the schema the problem is (see the module docstring); empty for
            the root type.
        message: Why resolution fails there, in terms of the writer and reader types.
        version: For :func:`check_compatibility`, the 1-based position of the previous
            version concerned in the list of previous versions.
        direction: For :func:`check_compatibility`, which schema was the reader.
    """

    path: str
    message: str
    version: int | None = None
    direction: Direction | None = None

    def describe(self, subject: str | None = None) -> str:
        """Render the incompatibility as one line of text.

        Args:
            subject: Optional name to prefix, such as a Schema Registry subject.

        Returns:
            For example ``orders-value: field amount: writer type string cannot be read
            as long (new schema cannot read data written with version 3)``.
        """
        parts = [subject] if subject else []
        if self.path:
            parts.append(f"{'at' if self.path[0] in '[{<' else 'field'} {self.path}")
        parts.append(self.message)
        return ": ".join(parts) + self._version_suffix()

    def _version_suffix(self) -> str:
        if self.direction is Direction.BACKWARD:
            return f" (new schema cannot read data written with version {self.version})"
        if self.direction is Direction.FORWARD:
            return f" (version {self.version} cannot read data written with the new schema)"
        return ""

    def __str__(self) -> str:
        return self.describe()


def check_can_read(reader: SchemaInput, writer: SchemaInput) -> list[Incompatibility]:
    """List why ``reader`` cannot read data written with ``writer``.

    Args:
        reader: The schema data is read with.
        writer: The schema data was written with.

    Returns:
        Every incompatibility found, in schema order; an empty list means compatible.

    Raises:
        InvalidSchemaError: If either schema is not a valid Avro schema.
    """
    parsed_reader = _parse(reader, "reader schema")
    parsed_writer = _parse(writer, "writer schema")
    return _Resolver(parsed_writer, parsed_reader).check()


def check_compatibility(
    new_schema: SchemaInput,
    previous_versions: Sequence[SchemaInput],
    level: CompatibilityLevel,
) -> list[Incompatibility]:
    """Check a candidate schema against the previous versions of a subject.

    BACKWARD: the new schema reads data of the latest version. FORWARD: the latest version
    reads data of the new schema. FULL: both. The ``*_TRANSITIVE`` levels check against
    every previous version instead of only the latest. NONE accepts any valid schema.

    Args:
        new_schema: The candidate schema.
        previous_versions: The registered versions, oldest first.
        level: The compatibility level to enforce.

    Returns:
        Every incompatibility found, each tagged with the version and direction it
        concerns; an empty list means the new schema may be registered.

    Raises:
        InvalidSchemaError: If the new schema or a checked previous version is invalid.
    """
    new = _parse(new_schema, "new schema")
    directions, transitive = _LEVEL_RULES[level]
    if not directions:
        return []
    numbered = list(enumerate(previous_versions, start=1))
    checked_versions = numbered if transitive else numbered[-1:]
    found: list[Incompatibility] = []
    for version, schema in checked_versions:
        previous = _parse(schema, f"version {version}")
        for direction in directions:
            reader, writer = (new, previous) if direction is Direction.BACKWARD else (previous, new)
            found += [
                replace(incompatibility, version=version, direction=direction)
                for incompatibility in _Resolver(writer, reader).check()
            ]
    return found


@dataclass(frozen=True)
class ParsedSchema:
    """A validated schema in fastavro's parsed form and its named types by full name.

    Attributes:
        root: The schema with every name made a full name; a named type is defined where it first
            appears and referenced by its full name after that.
        named: Each named type's definition by full name.
    """

    root: _Schema
    named: dict[str, dict[str, Any]]

    def resolve(self, schema: _Schema) -> _Schema:
        """Replace a reference to a named type with the type's definition."""
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            return self.named[schema]
        return schema


def parse_avro_schema(schema: SchemaInput, role: str = "schema") -> ParsedSchema:
    """Validate a schema the way the checker does and return its parsed form.

    Args:
        schema: The schema.
        role: What the schema is, for error messages (e.g. ``value.avsc``).

    Returns:
        The parsed schema.

    Raises:
        InvalidSchemaError: If the schema is not a valid Avro schema.
    """
    return _parse(schema, role)


def _parse(schema: SchemaInput, role: str) -> ParsedSchema:
    loaded = _load_json(schema, role)
    named: dict[str, dict[str, Any]] = {}
    try:
        root = parse_schema(_without_invalid_decimals(loaded), named_schemas=named)
        _enforce_rules_fastavro_skips(root, set())
    except UnknownType as exc:
        raise InvalidSchemaError(f"invalid {role}: unknown type {exc.name!r}") from exc
    except KeyError as exc:  # how fastavro reports some missing attributes
        raise InvalidSchemaError(f"invalid {role}: missing attribute {exc}") from exc
    except (SchemaParseException, ValueError, TypeError) as exc:
        raise InvalidSchemaError(f"invalid {role}: {exc}") from exc
    return ParsedSchema(root, named)


def _load_json(schema: SchemaInput, role: str) -> _Schema:
    if isinstance(schema, str) and schema.lstrip()[:1] in ("{", "[", '"'):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise InvalidSchemaError(f"invalid {role}: not valid JSON: {exc}") from exc
    if not isinstance(schema, (str, dict, list)):
        raise InvalidSchemaError(
            f"invalid {role}: expected JSON text, a type name, a dict or a list, got {type(schema).__name__}"
        )
    return schema


def _without_invalid_decimals(schema: _Schema) -> _Schema:
    """The schema with the logical type of each invalid decimal removed (a copy where anything changed).

    The Avro specification: "If a logical type is invalid, for example a decimal with scale greater
    than its precision, then implementations should ignore the logical type and use the underlying
    Avro type." Its other attributes (``precision``, ``scale``) stay, as attributes without meaning.
    Only type definitions are walked; a ``logicalType`` on a record field is no type's and stays.
    """
    if isinstance(schema, list):
        return [_without_invalid_decimals(branch) for branch in schema]
    if not isinstance(schema, dict):
        return schema
    cleaned = dict(schema)
    if cleaned.get("logicalType") == "decimal" and not _is_valid_decimal(cleaned):
        del cleaned["logicalType"]
    if isinstance(cleaned.get("type"), (dict, list)):
        cleaned["type"] = _without_invalid_decimals(cleaned["type"])
    for key in ("items", "values"):
        if key in cleaned:
            cleaned[key] = _without_invalid_decimals(cleaned[key])
    if isinstance(cleaned.get("fields"), list):
        cleaned["fields"] = [
            {**field, "type": _without_invalid_decimals(field["type"])}
            if isinstance(field, dict) and "type" in field else field
            for field in cleaned["fields"]
        ]
    return cleaned


def _is_valid_decimal(schema: dict[str, Any]) -> bool:
    """Whether a decimal's attributes are what the specification requires of them.

    A positive integer precision; a scale (default 0) that is an integer from 0 to the precision;
    bytes or fixed underneath, a fixed of ``size`` bytes holding at most
    floor(log10(2**(8 * size - 1) - 1)) digits. JSON integers only: not ``true``, not ``4.0``.
    """
    precision, scale = schema.get("precision"), schema.get("scale", 0)
    if not (_is_integer(precision) and _is_integer(scale) and 0 <= scale <= precision and precision >= 1):
        return False
    if schema.get("type") == "bytes":
        return True
    if schema.get("type") == "fixed":
        size = schema.get("size")
        return _is_integer(size) and size >= 1 and precision <= _fixed_decimal_digits(size)
    return False


def _fixed_decimal_digits(size: int) -> int:
    """How many decimal digits a signed ``fixed`` of ``size`` bytes always holds."""
    digits = math.floor((8 * size - 1) * math.log10(2))  # 2**k is never a power of ten...
    if size <= 65536:  # ...but floats round: made exact while the integers stay small
        largest = 2 ** (8 * size - 1) - 1
        while 10 ** (digits + 1) <= largest:
            digits += 1
        while 10**digits > largest:
            digits -= 1
    return digits


def _is_integer(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _enforce_rules_fastavro_skips(schema: _Schema, defined: set[str]) -> None:
    """Reject what fastavro's parser lets through: bad unions, repeated fields or names, and
    aliases of named types that are not a list.

    Raises:
        ValueError: With the broken rule.
    """
    if isinstance(schema, list):
        _enforce_union_rules(schema)
        for branch in schema:
            _enforce_rules_fastavro_skips(branch, defined)
    elif isinstance(schema, dict):
        kind = schema["type"]
        if kind in _NAMED_KINDS:
            _enforce_named_type_rules(schema, defined)
        if kind == "record":
            _enforce_unique_field_names(schema)
            for field in schema["fields"]:
                _enforce_rules_fastavro_skips(field["type"], defined)
        elif kind == "array":
            _enforce_rules_fastavro_skips(schema["items"], defined)
        elif kind == "map":
            _enforce_rules_fastavro_skips(schema["values"], defined)


def _enforce_named_type_rules(named: dict[str, Any], defined: set[str]) -> None:
    if named["name"] in defined:
        raise ValueError(f"named type {named['name']} is defined more than once")
    defined.add(named["name"])
    if not isinstance(named.get("aliases", []), list):
        raise ValueError(f"aliases of {named['name']} must be a list")


def _enforce_union_rules(union: list[Any]) -> None:
    labels = [_type_label(branch) for branch in union]
    if "union" in labels:
        raise ValueError("a union cannot directly contain another union")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"a union cannot contain more than one {', '.join(repeated)} branch")


def _enforce_unique_field_names(record: dict[str, Any]) -> None:
    names = [field["name"] for field in record["fields"]]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"record {record['name']} repeats field {', '.join(repeated)}")


class _Resolver:
    """Resolves a writer schema against a reader schema, collecting incompatibilities."""

    def __init__(self, writer: ParsedSchema, reader: ParsedSchema) -> None:
        self._writer = writer
        self._reader = reader
        self._visited: set[tuple[str, str]] = set()

    def check(self) -> list[Incompatibility]:
        return list(self._resolve(self._writer.root, self._reader.root, ""))

    def _resolve(self, writer: _Schema, reader: _Schema, path: str) -> Iterator[Incompatibility]:
        writer = self._writer.resolve(writer)
        reader = self._reader.resolve(reader)
        if isinstance(writer, list):
            for branch in writer:
                yield from self._resolve(branch, reader, f"{path}<{_type_label(branch)}>")
            return
        if isinstance(reader, list):
            branch = self._first_matching_branch(writer, reader)
            if branch is None:
                branches = ", ".join(_type_label(branch) for branch in reader)
                yield Incompatibility(
                    path, f"writer type {_describe(writer)} matches no branch of reader union [{branches}]"
                )
                return
            reader = branch
        mismatch = _mismatch(writer, reader)
        if mismatch:
            yield Incompatibility(path, mismatch)
        elif isinstance(writer, dict) and isinstance(reader, dict):  # only these have contents
            yield from self._resolve_contents(writer, reader, path)

    def _first_matching_branch(self, writer: _Schema, union: list[Any]) -> _Schema | None:
        for branch in map(self._reader.resolve, union):
            if _mismatch(writer, branch) is None:
                return branch
        return None

    def _resolve_contents(self, writer: dict[str, Any], reader: dict[str, Any], path: str) -> Iterator[Incompatibility]:
        """Resolve the parts of two matching types: items, values, fields or symbols."""
        kind = writer["type"]
        if kind == "array":
            yield from self._resolve(writer["items"], reader["items"], f"{path}[]")
        elif kind == "map":
            yield from self._resolve(writer["values"], reader["values"], f"{path}{{}}")
        elif kind in ("record", "enum") and self._first_visit(writer, reader):
            if kind == "record":
                yield from self._resolve_fields(writer, reader, path)
            else:
                yield from _resolve_symbols(writer, reader, path)

    def _first_visit(self, writer: dict[str, Any], reader: dict[str, Any]) -> bool:
        pair = (writer["name"], reader["name"])
        if pair in self._visited:
            return False
        self._visited.add(pair)
        return True

    def _resolve_fields(self, writer: dict[str, Any], reader: dict[str, Any], path: str) -> Iterator[Incompatibility]:
        writer_fields = {field["name"]: field for field in writer["fields"]}
        for field in reader["fields"]:
            field_path = f"{path}.{field['name']}" if path else field["name"]
            source = _writer_field_for(field, writer_fields)
            if source is not None:
                yield from self._resolve(source["type"], field["type"], field_path)
            elif "default" not in field:
                yield Incompatibility(
                    field_path, "reader field has no default and the writer has no field of this name or alias"
                )


def _writer_field_for(field: dict[str, Any], writer_fields: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Find the writer field a reader field reads: same name first, then its aliases in order."""
    for name in (field["name"], *field.get("aliases", [])):
        if name in writer_fields:
            return writer_fields[name]
    return None


def _resolve_symbols(writer: dict[str, Any], reader: dict[str, Any], path: str) -> Iterator[Incompatibility]:
    missing = [symbol for symbol in writer["symbols"] if symbol not in reader["symbols"]]
    if missing and "default" not in reader:
        yield Incompatibility(
            path,
            f"writer enum symbols {', '.join(missing)} are not in reader enum {reader['name']}, which has no default",
        )


def _mismatch(writer: _Schema, reader: _Schema) -> str | None:
    """Say why two non-union types do not match, ignoring their contents; None if they match."""
    writer_kind, reader_kind = _kind(writer), _kind(reader)
    if writer_kind != reader_kind and reader_kind not in _PROMOTIONS.get(writer_kind, ()):
        return f"writer type {_describe(writer)} cannot be read as {_describe(reader)}"
    if writer_kind in _NAMED_KINDS and isinstance(writer, dict) and isinstance(reader, dict):
        named_mismatch = _named_mismatch(writer, reader)
        if named_mismatch:
            return named_mismatch
    writer_decimal, reader_decimal = _decimal(writer), _decimal(reader)
    if writer_decimal and reader_decimal and writer_decimal != reader_decimal:
        return f"writer {_describe(writer)} cannot be read as {_describe(reader)}"
    return None


def _named_mismatch(writer: dict[str, Any], reader: dict[str, Any]) -> str | None:
    if not _names_match(writer, reader):
        return (
            f"writer {_describe(writer)} cannot be read as {_describe(reader)}: "
            "unqualified names differ and no reader alias matches"
        )
    if writer["type"] == "fixed" and writer["size"] != reader["size"]:
        return f"writer fixed {writer['name']} has size {writer['size']}, reader expects size {reader['size']}"
    return None


def _names_match(writer: dict[str, Any], reader: dict[str, Any]) -> bool:
    if _unqualified(writer["name"]) == _unqualified(reader["name"]):
        return True
    namespace = reader["name"].rpartition(".")[0]
    aliases = (_qualify(alias, namespace) for alias in reader.get("aliases", []))
    return writer["name"] in aliases


def _unqualified(full_name: str) -> str:
    return full_name.rpartition(".")[2]


def _qualify(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _kind(schema: _Schema) -> str:
    """The Avro type of a resolved schema: a primitive name, "union" or a complex type."""
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return str(schema["type"])
    return schema


def _decimal(schema: _Schema) -> tuple[int, int] | None:
    """Precision and scale of a decimal; None for other types (parsing removed invalid decimals)."""
    if isinstance(schema, dict) and schema.get("logicalType") == "decimal":
        return schema["precision"], schema.get("scale", 0)
    return None


def _type_label(schema: _Schema) -> str:
    """Name a type the way a union tells its branches apart: full name or type."""
    if isinstance(schema, dict) and schema["type"] in _NAMED_KINDS:
        return str(schema["name"])
    return _kind(schema)


def _describe(schema: _Schema) -> str:
    """Describe a resolved type for a message, e.g. ``record com.acme.Order``."""
    kind = _kind(schema)
    text = f"{kind} {_type_label(schema)}" if kind in _NAMED_KINDS else kind
    decimal = _decimal(schema)
    if decimal:
        text += f" decimal(precision={decimal[0]}, scale={decimal[1]})"
    return text
