"""SQL text for the backfill's sources and targets: quoted identifiers and literals, per dialect.

Every name that reaches SQL (tables, columns, keys) goes through ``identifier`` or ``table_name``,
so an awkward name (``"Order Date"``, ``select``, a quote) is one identifier, never SQL.
Dialects are sqlglot's names: ``postgres`` and ``mysql`` (MariaDB).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from sqlglot import exp

from airflow_mesh.backfill.keys import KeyRange, parts

DIALECTS = ("postgres", "mysql")


def identifier(name: str, dialect: str) -> str:
    """A column (or any single) name, quoted for the dialect: ``"Order Date"``, ```Order Date```.

    Args:
        name: The name as the database stores it (case kept).
        dialect: ``postgres`` or ``mysql``.

    Returns:
        The quoted identifier.
    """
    return exp.to_identifier(name, quoted=True).sql(dialect=dialect)


def split_table(name: str) -> tuple[str | None, str]:
    """``schema.table`` -> ``("schema", "table")``; ``table`` -> ``(None, "table")``. A name is
    split at its last dot (schema names hold no dots here)."""
    schema, _, table = name.rpartition(".")
    return schema or None, table


def table_name(name: str, dialect: str) -> str:
    """A ``schema.table`` (or ``table``) name, each part quoted for the dialect."""
    schema, table = split_table(name)
    return exp.table_(table, db=schema, quoted=True).sql(dialect=dialect)


def literal(value: str, dialect: str) -> str:
    """A string literal for the dialect (quotes, and MariaDB's backslashes, escaped)."""
    return exp.Literal.string(value).sql(dialect=dialect)


def key_expression(name: str, arrow_type: pa.DataType, dialect: str) -> str:
    """A key column as ranges compare it: text in byte order (``COLLATE "C"`` in PostgreSQL, a
    binary cast in MariaDB), as every target compares it; any other type as it is.

    PostgreSQL uses an index for such a comparison only if the index has the same collation: for a
    text key in a database whose collation is not ``C``, ``CREATE INDEX ON t (key COLLATE "C")``.
    """
    column = identifier(name, dialect)
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return f'({column}::text COLLATE "C")' if dialect == "postgres" else f"CAST({column} AS BINARY)"
    return column


def key_literal(value: Any, arrow_type: pa.DataType, dialect: str) -> str:
    """A key bound's value as an SQL literal: numbers (and decimals, exact) unquoted, everything
    else quoted text that the database reads as the column's type."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    if pa.types.is_decimal(arrow_type) or pa.types.is_integer(arrow_type):
        text = str(value)
        if not _NUMBER.match(text):
            raise ValueError(f"{text!r} is not a number")
        return text
    return literal(str(value), dialect)


_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def range_predicate(columns: Sequence[tuple[str, pa.DataType]], key_range: KeyRange, dialect: str) -> str | None:
    """``lo <= key < hi`` in SQL, with row values for a composite key (``(a, b) >= (1, 'x')``,
    which PostgreSQL and MariaDB answer from a composite index); None for an unbounded range."""
    keys = [key_expression(name, t, dialect) for name, t in columns]
    left = keys[0] if len(keys) == 1 else "(" + ", ".join(keys) + ")"
    conditions = []
    for bound, op in ((key_range.lo, ">="), (key_range.hi, "<")):
        if bound is None:
            continue
        values = [key_literal(v, t, dialect) for v, (_, t) in zip(parts(bound, len(columns)), columns, strict=True)]
        right = values[0] if len(values) == 1 else "(" + ", ".join(values) + ")"
        conditions.append(f"{left} {op} {right}")
    return " AND ".join(conditions) or None
