"""Checking plain JSON data against an Avro schema.

Kafka Connect's JsonConverter with ``schemas.enable=false`` (how the stack's Debezium connectors write)
sends each record as plain JSON: a record is an object, a union is just the value of one of its
branches, bytes and fixed are text (base64). A contract still describes that data exactly, so each
record is checked against it:

* ``null``, ``boolean`` and ``string`` are JSON null, true/false and text; ``int`` and ``long`` are
  integers within 32 and 64 bits; ``float`` and ``double`` are numbers; ``bytes`` and ``fixed`` are text;
  an enum is text among its symbols. Logical types are checked as their underlying type.
* A record is an object holding each field without a default, and no field the record lacks.
* An array is a JSON array, a map an object; their items and values are checked.
* A union accepts a value any of its branches accepts.

Failures name the field path (``after.lines[2].sku``) and the expected type, never the data itself,
so that reports can be logged without leaking the records' contents.

Pure logic; no Airflow, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from airflow_mesh.contracts.avro_compat import ParsedSchema

__all__ = ["JsonCheck", "compile_json_check"]

JsonCheck = Callable[[Any], "str | None"]
"""Checks one decoded JSON value: None when it conforms, else ``"<path>: <reason>"``."""

_Checker = Callable[[Any], None]

_NAMED_KINDS: Final = frozenset({"record", "enum", "fixed"})
_INT_RANGE: Final = (-(2**31), 2**31 - 1)
_LONG_RANGE: Final = (-(2**63), 2**63 - 1)
# Which Avro types a value of each JSON (Python) type may be, for choosing union branches.
_CANDIDATE_KINDS: Final[dict[type, frozenset[str]]] = {
    type(None): frozenset({"null"}),
    bool: frozenset({"boolean"}),
    int: frozenset({"int", "long", "float", "double"}),
    float: frozenset({"float", "double"}),
    str: frozenset({"string", "bytes", "enum", "fixed"}),
    list: frozenset({"array"}),
    dict: frozenset({"record", "map"}),
}


class _Mismatch(Exception):
    """A value does not conform; ``steps`` collects the path from the failure outwards."""

    def __init__(self, reason: str, at: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.steps: list[str] = [] if at is None else [at]

    def describe(self) -> str:
        path = ""
        for step in reversed(self.steps):
            path += step if step.startswith(("[", "{")) or not path else f".{step}"
        return f"{path}: {self.reason}" if path else self.reason


def _json_type(value: Any) -> str:
    """The JSON type of a value, for messages (never the value itself)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def compile_json_check(schema: ParsedSchema) -> JsonCheck:
    """Build the check of JSON values against a schema (once; then call it per record).

    Args:
        schema: The contract's schema.

    Returns:
        A function taking a decoded JSON value (``json.loads`` output) and returning None when it
        conforms, else the first problem as ``"<field path>: <reason>"``.
    """
    check = _Compiler(schema).compile(schema.root)

    def run(value: Any) -> str | None:
        try:
            check(value)
        except _Mismatch as mismatch:
            return mismatch.describe()
        return None

    return run


class _Compiler:
    """Turns a parsed schema into nested checker closures; named types are compiled once."""

    def __init__(self, schema: ParsedSchema) -> None:
        self._schema = schema
        self._named: dict[str, _Checker] = {}

    def compile(self, type_: Any) -> _Checker:
        resolved = self._schema.resolve(type_)
        if isinstance(resolved, list):
            return self._union(resolved)
        if isinstance(resolved, str):
            return _primitive(resolved)
        kind = resolved["type"]
        if kind in _NAMED_KINDS:
            return self._named_type(resolved)
        if kind == "array":
            return self._array(self.compile(resolved["items"]))
        if kind == "map":
            return self._map(self.compile(resolved["values"]))
        return _primitive(kind)  # a primitive with a logical type

    def _named_type(self, definition: dict[str, Any]) -> _Checker:
        name = definition["name"]
        if name not in self._named:
            compiled: list[_Checker] = []
            # Recursive references made while compiling the type reach it through this indirection.
            self._named[name] = lambda value: compiled[0](value)  # noqa: PLW0108 - compiled[0] is set below
            kind = definition["type"]
            if kind == "record":
                checker = self._record(definition)
            elif kind == "enum":
                checker = _enum(definition)
            else:
                checker = _primitive("fixed")
            compiled.append(checker)
            self._named[name] = checker
        return self._named[name]

    def _record(self, record: dict[str, Any]) -> _Checker:
        name = record["name"]
        fields = [(field["name"], self.compile(field["type"]), "default" not in field) for field in record["fields"]]
        names = frozenset(field_name for field_name, _, _ in fields)

        def check(value: Any) -> None:
            if type(value) is not dict:
                raise _Mismatch(f"expected an object (record {name}), got {_json_type(value)}")
            present = 0
            for field_name, check_field, required in fields:
                if field_name in value:
                    present += 1
                    try:
                        check_field(value[field_name])
                    except _Mismatch as mismatch:
                        mismatch.steps.append(field_name)
                        raise
                elif required:
                    raise _Mismatch(f"missing (record {name} has no default for it)", at=field_name)
            if present != len(value):
                unexpected = min(set(value) - names)
                raise _Mismatch(f"unexpected field (record {name} has no field {unexpected})", at=unexpected)

        return check

    @staticmethod
    def _array(check_item: _Checker) -> _Checker:
        def check(value: Any) -> None:
            if type(value) is not list:
                raise _Mismatch(f"expected an array, got {_json_type(value)}")
            for index, item in enumerate(value):
                try:
                    check_item(item)
                except _Mismatch as mismatch:
                    mismatch.steps.append(f"[{index}]")
                    raise

        return check

    @staticmethod
    def _map(check_value: _Checker) -> _Checker:
        def check(value: Any) -> None:
            if type(value) is not dict:
                raise _Mismatch(f"expected an object (map), got {_json_type(value)}")
            for key, item in value.items():
                try:
                    check_value(item)
                except _Mismatch as mismatch:
                    mismatch.steps.append(f"{{{key}}}")
                    raise

        return check

    def _union(self, branches: list[Any]) -> _Checker:
        resolved = [self._schema.resolve(branch) for branch in branches]
        kinds = [str(branch["type"]) if isinstance(branch, dict) else str(branch) for branch in resolved]
        checkers = [self.compile(branch) for branch in branches]
        by_json_type = {json_type: [checker for kind, checker in zip(kinds, checkers, strict=True)
                                    if kind in candidates]
                        for json_type, candidates in _CANDIDATE_KINDS.items()}
        labels = ", ".join(str(branch["name"]) if isinstance(branch, dict) and kind in _NAMED_KINDS else kind
                           for kind, branch in zip(kinds, resolved, strict=True))

        def check(value: Any) -> None:
            candidates = by_json_type.get(type(value), [])
            if len(candidates) == 1:
                candidates[0](value)  # the only branch it can be: its own mismatch is the precise one
                return
            for candidate in candidates:
                try:
                    candidate(value)
                except _Mismatch:
                    continue
                return
            raise _Mismatch(f"{_json_type(value)} matches no branch of union [{labels}]")

        return check


def _primitive(kind: str) -> _Checker:
    if kind == "null":
        return _expect_type(type(None), "null")
    if kind == "boolean":
        return _expect_type(bool, "a boolean")
    if kind in ("string", "bytes", "fixed"):
        return _expect_type(str, "a string" if kind == "string" else f"a string ({kind} as base64 text)")
    if kind in ("int", "long"):
        low, high = _INT_RANGE if kind == "int" else _LONG_RANGE

        def check_integer(value: Any) -> None:
            if type(value) is not int:
                raise _Mismatch(f"expected an integer ({kind}), got {_json_type(value)}")
            if not low <= value <= high:
                raise _Mismatch(f"integer out of the range of {kind}")

        return check_integer

    def check_number(value: Any) -> None:  # float, double
        if type(value) not in (int, float):
            raise _Mismatch(f"expected a number ({kind}), got {_json_type(value)}")

    return check_number


def _expect_type(python_type: type, expected: str) -> _Checker:
    def check(value: Any) -> None:
        if type(value) is not python_type:
            raise _Mismatch(f"expected {expected}, got {_json_type(value)}")

    return check


def _enum(definition: dict[str, Any]) -> _Checker:
    name, symbols = definition["name"], frozenset(definition["symbols"])

    def check(value: Any) -> None:
        if type(value) is not str:
            raise _Mismatch(f"expected a symbol of enum {name}, got {_json_type(value)}")
        if value not in symbols:
            raise _Mismatch(f"not a symbol of enum {name}")

    return check
