"""Exact type mapping: database column types to Arrow, and Arrow to each target's types.

Exact means no widening: ``numeric(12,2)`` becomes ``decimal128(12, 2)`` (not ``decimal(38,10)``),
``timestamptz`` stays a UTC timestamp, ``json`` stays its text. A type with no exact equivalent is
an error naming the column, never a silent conversion.
"""

from __future__ import annotations

import re

import pyarrow as pa

from airflow_mesh.backfill.errors import TypeMappingError

_SIMPLE: dict[str, pa.DataType] = {
    # PostgreSQL (format_type spellings) and MariaDB (information_schema COLUMN_TYPE spellings)
    "bigint": pa.int64(), "integer": pa.int32(), "int": pa.int32(), "smallint": pa.int16(),
    "mediumint": pa.int32(), "tinyint(1)": pa.bool_(), "tinyint": pa.int8(),
    "bigint unsigned": pa.uint64(), "int unsigned": pa.uint32(),
    "boolean": pa.bool_(), "real": pa.float32(), "double precision": pa.float64(), "double": pa.float64(),
    "float": pa.float32(), "text": pa.string(), "mediumtext": pa.string(), "longtext": pa.string(),
    "tinytext": pa.string(), "json": pa.string(), "jsonb": pa.string(), "uuid": pa.string(),
    "bytea": pa.binary(), "blob": pa.binary(), "longblob": pa.binary(), "mediumblob": pa.binary(),
    "date": pa.date32(),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "timestamp without time zone": pa.timestamp("us"),
    "timestamp": pa.timestamp("us", tz="UTC"),  # MariaDB TIMESTAMP is stored in UTC
    "datetime": pa.timestamp("us"),
}
_PARAMETRIC = [
    (re.compile(r"^(?:numeric|decimal)\((\d+),(\d+)\)(?: unsigned)?$"),
     lambda m: pa.decimal128(int(m[1]), int(m[2])) if int(m[1]) <= 38 else pa.decimal256(int(m[1]), int(m[2]))),
    (re.compile(r"^(?:character varying|varchar|character|char)\(\d+\)$"), lambda m: pa.string()),
    (re.compile(r"^(?:character varying|character)$"), lambda m: pa.string()),
    (re.compile(r"^timestamp\(\d\) with time zone$"), lambda m: pa.timestamp("us", tz="UTC")),
    (re.compile(r"^timestamp\(\d\) without time zone$"), lambda m: pa.timestamp("us")),
    (re.compile(r"^datetime\(\d\)$"), lambda m: pa.timestamp("us")),
    (re.compile(r"^timestamp\(\d\)$"), lambda m: pa.timestamp("us", tz="UTC")),
]
# MariaDB spells integer types with a display width that means nothing to the value: int(11).
_DISPLAY_WIDTH = re.compile(r"^(bigint|int|smallint|mediumint|tinyint)\(\d+\)")


def arrow_type(column: str, db_type: str) -> pa.DataType:
    """The exact Arrow type of a database column.

    Args:
        column: The column's name (for the error message).
        db_type: Its type as the database spells it (``format_type`` in PostgreSQL,
            ``COLUMN_TYPE`` in MariaDB), e.g. ``numeric(12,2)``.

    Raises:
        TypeMappingError: the type has no exact Arrow equivalent (e.g. ``numeric`` without a
            precision, whose values may not fit any fixed decimal).
    """
    spelled = db_type.strip().lower().replace(", ", ",")
    if spelled != "tinyint(1)":  # MariaDB's BOOLEAN
        spelled = _DISPLAY_WIDTH.sub(r"\1", spelled)
    if spelled in _SIMPLE:
        return _SIMPLE[spelled]
    for pattern, build in _PARAMETRIC:
        if match := pattern.match(spelled):
            return build(match)
    if spelled in ("numeric", "decimal"):
        raise TypeMappingError(f"column {column!r}: {db_type} has no precision and scale, so no exact decimal "
                               "type can hold it; give the column a precision (e.g. numeric(18,4)) or cast it "
                               "in a view")
    raise TypeMappingError(f"column {column!r}: type {db_type!r} cannot be mapped to an exact Arrow type")


def postgres_ddl_type(field: pa.Field) -> str:
    """The PostgreSQL column type that stores an Arrow field exactly (for a PostgreSQL target)."""
    t = field.type
    if pa.types.is_decimal(t):
        return f"numeric({t.precision},{t.scale})"
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    mapping = {pa.int64(): "bigint", pa.int32(): "integer", pa.int16(): "smallint", pa.int8(): "smallint",
               pa.bool_(): "boolean", pa.float32(): "real", pa.float64(): "double precision",
               pa.string(): "text", pa.large_string(): "text", pa.binary(): "bytea", pa.date32(): "date"}
    if t in mapping:
        return mapping[t]
    raise TypeMappingError(f"column {field.name!r}: Arrow type {t} has no PostgreSQL equivalent here")


def elasticsearch_mapping(field: pa.Field) -> dict[str, str]:
    """The Elasticsearch field mapping of an Arrow field.

    Decimals map to ``keyword`` (their exact text, e.g. ``"12.50"``): Elasticsearch's numeric types
    are binary floating point or ``scaled_float``, which needs a plugin the minimal distribution lacks.
    """
    t = field.type
    if pa.types.is_decimal(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        return {"type": "keyword"}
    if pa.types.is_timestamp(t):
        return {"type": "date_nanos" if t.unit == "ns" else "date", "format": "strict_date_optional_time||epoch_millis"}
    if pa.types.is_date(t):
        return {"type": "date", "format": "strict_date"}
    simple = {pa.int64(): "long", pa.int32(): "integer", pa.int16(): "short", pa.int8(): "byte",
              pa.bool_(): "boolean", pa.float32(): "float", pa.float64(): "double", pa.binary(): "binary"}
    if t in simple:
        return {"type": simple[t]}
    raise TypeMappingError(f"column {field.name!r}: Arrow type {t} has no Elasticsearch mapping here")
