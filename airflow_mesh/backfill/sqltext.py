"""SQL text for the backfill's sources and targets: quoted identifiers and literals, per dialect.

Every name that reaches SQL (tables, columns, keys) goes through ``identifier`` or ``table_name``,
so an awkward name (``"Order Date"``, ``select``, a quote) is one identifier, never SQL.
Dialects are sqlglot's names: ``postgres`` and ``mysql`` (MariaDB).
"""

from __future__ import annotations

from sqlglot import exp

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
