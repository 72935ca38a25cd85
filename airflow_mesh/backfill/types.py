"""Exact type mapping: database column types to Arrow, and Arrow to each target's types.

Exact means no widening, rounding or cutting: ``numeric(12,2)`` becomes ``decimal128(12, 2)`` (not
``decimal(38,10)``), ``timestamptz`` stays a UTC timestamp, ``uuid`` a UUID, ``int[]`` a list of
int32. Where Arrow (or a target) has no native type, the value travels as a lossless text form:
the database's own text output (``inet``, ``timetz``, ranges, geometric types, enums...) or, for
what Arrow holds natively, the forms of ``convert.to_text`` (intervals in ISO 8601...). A type with
no exact equivalent is an error naming the column, its reason and the override that would work
(``--cast col=type``, ``--exclude col``); never a silent conversion.

Each source column becomes an Arrow field whose metadata tells the targets what Arrow's type alone
does not: the source type's family (``mesh.type``: ``inet``, ``enum``, ``json``, ``varchar``...),
its length (``mesh.length``), and how an SQL source selects it (``mesh.select``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from airflow_mesh.backfill.convert import (
    CHECK_PREFIX,
    META_CHECK,
    META_FAMILY,
    META_LENGTH,
    META_READ,
    META_SELECT,
    plain_type,
)
from airflow_mesh.backfill.errors import TypeMappingError
from airflow_mesh.backfill.sqltext import identifier

__all__ = ["UnboundedNumericError", "arrow_type", "cast_spelling", "elasticsearch_mapping", "family", "holds",
           "iceberg_type", "json_storage_type", "length", "mariadb_field", "parse_cast", "postgres_ddl_type",
           "postgres_field", "postgres_storage_type",
           "type_problems"]

UUID = pa.uuid()
INTERVAL = pa.month_day_nano_interval()

# Elasticsearch keeps a string of at most this many characters as a keyword term: 4 bytes a
# character in UTF-8 at the most, so never past Lucene's 32766-byte term limit (8191 * 4 = 32764).
ES_IGNORE_ABOVE = 8191
# Bounded strings this short (varchar(n), char(n), bit(n) with n <= 256) are Elasticsearch keywords.
ES_KEYWORD_LENGTH = 256


class UnboundedNumericError(TypeMappingError):
    """A ``numeric`` without precision and scale: its values may have any scale (the source measures
    them to say which ``--cast`` would hold them)."""

    def __init__(self, column: str, array: bool = False) -> None:
        self.column, self.array = column, array
        kind = "numeric[]" if array else "numeric"
        super().__init__(f"column {column!r}: {kind} has no precision and scale, so no exact decimal type can "
                         f"hold every value it may hold; --cast {column}=numeric(P,S) with P and S that hold its "
                         f"values, or --cast {column}=text (its exact text), or --exclude {column}")


def family(field: pa.Field) -> str | None:
    """The source type's family a field carries (``inet``, ``enum``, ``json``...), if any."""
    value = (field.metadata or {}).get(META_FAMILY)
    return None if value is None else value.decode()


def length(field: pa.Field) -> int | None:
    """The declared length of a ``char(n)``, ``varchar(n)`` or ``bit(n)`` field, if any."""
    value = (field.metadata or {}).get(META_LENGTH)
    return None if value is None else int(value)


@dataclass(frozen=True)
class _Mapped:
    """A source type's Arrow type, how it is selected, and what the targets need to know."""

    type: pa.DataType
    wrap: str | None = None  # how the value is selected (None: as it is)
    family: str | None = None
    length: int | None = None
    read: str | None = None


# ------------------------------------------------------------------------------------ PostgreSQL

_PG_SIMPLE: dict[str, _Mapped] = {
    "smallint": _Mapped(pa.int16()), "integer": _Mapped(pa.int32()), "bigint": _Mapped(pa.int64()),
    "real": _Mapped(pa.float32()), "double precision": _Mapped(pa.float64()), "boolean": _Mapped(pa.bool_()),
    "text": _Mapped(pa.string()), "character varying": _Mapped(pa.string()),
    "name": _Mapped(pa.string(), family="name"),
    "character": _Mapped(pa.string(), family="char"), "bpchar": _Mapped(pa.string(), family="char"),
    '"char"': _Mapped(pa.string(), "text", family="qchar"),
    "bytea": _Mapped(pa.binary()), "uuid": _Mapped(UUID),
    "date": _Mapped(pa.date32(), read="pg"),
    "time without time zone": _Mapped(pa.time64("us")),
    "time with time zone": _Mapped(pa.string(), "text", family="timetz"),
    "timestamp without time zone": _Mapped(pa.timestamp("us"), read="pg"),
    "timestamp with time zone": _Mapped(pa.timestamp("us", tz="UTC"), read="pg"),
    "interval": _Mapped(INTERVAL, "interval"),
    "json": _Mapped(pa.string(), "text", family="json"), "jsonb": _Mapped(pa.string(), "text", family="jsonb"),
    "oid": _Mapped(pa.int64(), "bigint"),
    "bit varying": _Mapped(pa.string(), "text", family="varbit"),
}
# Built-in types whose values travel as PostgreSQL's own text output (exact: every type's text
# output is read back by its input function to the same value).
_PG_TEXT = ("inet", "cidr", "macaddr", "macaddr8", "xml", "tsvector", "tsquery", "point", "line", "lseg", "box",
            "path", "polygon", "circle", "int4range", "int8range", "numrange", "tsrange", "tstzrange", "daterange",
            "int4multirange", "int8multirange", "nummultirange", "tsmultirange", "tstzmultirange",
            "datemultirange", "pg_lsn", "pg_snapshot", "txid_snapshot", "xid", "xid8", "cid", "tid")
_PG_SIMPLE.update({name: _Mapped(pa.string(), "text", family=name) for name in _PG_TEXT})
# inet's text cast always writes the netmask (1.2.3.4/32); its output function, as psql shows it, not.
_PG_SIMPLE["inet"] = _Mapped(pa.string(), "inet", family="inet")


def _pg_decimal(precision: int, scale: int) -> pa.DataType:
    # PostgreSQL 15 allows a scale above the precision (numeric(2,5): |x| < 0.001) or below zero
    # (numeric(5,-2): multiples of 100): the same values as decimal(5,5) and decimal(7,0).
    precision = max(precision, scale)
    if scale < 0:
        precision, scale = precision - scale, 0
    return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)


_PG_PARAMETRIC: list[tuple[re.Pattern[str], Callable[[re.Match[str]], _Mapped]]] = [
    (re.compile(r"^numeric\((\d+),(-?\d+)\)$"), lambda m: _Mapped(_pg_decimal(int(m[1]), int(m[2])), "text")),
    (re.compile(r"^numeric\((\d+)\)$"), lambda m: _Mapped(_pg_decimal(int(m[1]), 0), "text")),
    (re.compile(r"^character varying\((\d+)\)$"), lambda m: _Mapped(pa.string(), family="varchar", length=int(m[1]))),
    (re.compile(r"^character\((\d+)\)$"), lambda m: _Mapped(pa.string(), family="char", length=int(m[1]))),
    (re.compile(r"^bit\((\d+)\)$"), lambda m: _Mapped(pa.string(), "text", family="bit", length=int(m[1]))),
    (re.compile(r"^bit varying\((\d+)\)$"),
     lambda m: _Mapped(pa.string(), "text", family="varbit", length=int(m[1]))),
    (re.compile(r"^time\(\d\) without time zone$"), lambda m: _Mapped(pa.time64("us"))),
    (re.compile(r"^time\(\d\) with time zone$"), lambda m: _Mapped(pa.string(), "text", family="timetz")),
    (re.compile(r"^timestamp\(\d\) without time zone$"), lambda m: _Mapped(pa.timestamp("us"), read="pg")),
    (re.compile(r"^timestamp\(\d\) with time zone$"), lambda m: _Mapped(pa.timestamp("us", tz="UTC"), read="pg")),
    (re.compile(r"^interval(?: [a-z ]+)?(?:\(\d\))?$"), lambda m: _Mapped(INTERVAL, "interval")),
]
# sqlglot's spellings of a cast's type, in format_type's words.
_PG_ALIASES = {"int": "integer", "int4": "integer", "int2": "smallint", "int8": "bigint", "tinyint": "smallint",
               "float4": "real", "float8": "double precision", "float": "double precision",
               "double": "double precision", "bool": "boolean", "decimal": "numeric", "varchar": "character varying",
               "char": "character", "timestamptz": "timestamp with time zone",
               "timestamp": "timestamp without time zone", "timetz": "time with time zone",
               "time": "time without time zone", "varbit": "bit varying", "string": "text"}
_PG_PARAM_ALIASES = {"decimal": "numeric", "varchar": "character varying", "char": "character",
                     "varbit": "bit varying", "timestamp": "timestamp({}) without time zone",
                     "timestamptz": "timestamp({}) with time zone", "time": "time({}) without time zone",
                     "timetz": "time({}) with time zone"}


def _pg_spelling(spelled: str) -> str:
    """A PostgreSQL type as ``format_type`` spells it, from that or sqlglot's spelling."""
    spelled = re.sub(r"\s+", " ", spelled.strip().lower()).replace(", ", ",")
    if spelled in _PG_ALIASES:
        return _PG_ALIASES[spelled]
    if match := re.match(r"^([a-z_]+)\(([^()]*)\)$", spelled):
        name, args = match[1], match[2]
        if name in _PG_PARAM_ALIASES:
            alias = _PG_PARAM_ALIASES[name]
            return alias.format(args) if "{}" in alias else f"{alias}({args})"
    return spelled


# An interval's time part in seconds past what Arrow's intervals hold (int64 nanoseconds): ADBC
# refuses the whole read, so such a value is selected as NULL and refused by its check column.
_PG_INTERVAL_TOO_LONG = ("abs(extract(epoch from ({0} - make_interval(months => (extract(year from {0}) * 12 "
                         "+ extract(month from {0}))::int, days => extract(day from {0})::int)))) > 9223372036.854775")
_PG_WRAPS = {None: "{}", "text": "{}::text", "money": "{}::numeric::text", "bigint": "{}::bigint",
             "inet": "inet_out({})::text",
             "interval": "CASE WHEN " + _PG_INTERVAL_TOO_LONG + " THEN NULL ELSE {0} END"}
_PG_ARRAY_WRAPS = {None: "{}", "text": "{}::text[]", "money": "{}::numeric[]::text[]", "bigint": "{}::bigint[]",
                   "interval": "{}", "inet": "{}::text[]"}


def _pg_scalar(column: str, spelled: str, kind: str, builtin: bool, money_scale: int) -> _Mapped:
    if kind == "e":
        return _Mapped(pa.string(), "text", family="enum")
    if kind == "c":
        return _Mapped(pa.string(), "text", family="composite")
    if kind in ("r", "m") and not builtin:
        return _Mapped(pa.string(), "text", family="range")
    if spelled == "money" and builtin:
        return _Mapped(pa.decimal128(19, money_scale), "money", family="money")
    return _lookup(column, spelled, _PG_SIMPLE if builtin or kind == "b" else {},
                   _PG_PARAMETRIC if builtin or kind == "b" else [], "PostgreSQL")


def _lookup(column: str, spelled: str, simple: dict[str, _Mapped],
            parametric: list[tuple[re.Pattern[str], Callable[[re.Match[str]], _Mapped]]], database: str) -> _Mapped:
    """A type spelling's mapping: by name, else by pattern (raises TypeMappingError, naming the override)."""
    if spelled in simple:
        return simple[spelled]
    for pattern, build in parametric:
        if match := pattern.match(spelled):
            return build(match)
    raise TypeMappingError(f"column {column!r}: type {spelled!r} has no exact Arrow type here; "
                           f"--cast {column}=text keeps {database}'s text form of it exactly, or --exclude {column}")


def _field(name: str, mapped: _Mapped, select: str, check: tuple[str, str] | None = None) -> pa.Field:
    metadata = {META_SELECT: select.encode()}
    if mapped.family:
        metadata[META_FAMILY] = mapped.family.encode()
    if mapped.length is not None:
        metadata[META_LENGTH] = str(mapped.length).encode()
    if mapped.read:
        metadata[META_READ] = mapped.read.encode()
    if check is not None:
        metadata[META_SELECT] = f"{select}, {check[0]}".encode()
        metadata[META_CHECK] = check[1].encode()
    return pa.field(name, mapped.type, metadata=metadata)


def _check_alias(name: str, dialect: str) -> str:
    return identifier(CHECK_PREFIX + name, dialect)


def _cast_check(name: str, cast: str, changed: str, text: str, dialect: str) -> tuple[str, str]:
    """A cast column's check column (the source value's text where ``changed`` holds) and its reason."""
    return (f"CASE WHEN {changed} THEN {text} END AS {_check_alias(name, dialect)}",
            (f"changes when cast to {cast} (a value that does not fit it exactly is never rounded or cut); "
             f"cast to a type that holds it, e.g. --cast {name}=text"))


def postgres_field(name: str, spelled: str, kind: str = "b", element_kind: str | None = None, builtin: bool = True,
                   cast: str | None = None, money_scale: int = 2) -> pa.Field:
    """The exact Arrow field of a PostgreSQL column, and how to select it.

    Args:
        name: The column.
        spelled: Its type as ``format_type`` spells it (a domain's base type), e.g. ``numeric(12,2)``,
            ``character varying(64)[]``.
        kind: ``pg_type.typtype`` of the type (of an array's element when ``element_kind`` is None):
            ``b`` base, ``e`` enum, ``c`` composite, ``r``/``m`` range/multirange.
        element_kind: For an array, its element type's ``typtype``.
        builtin: Whether the type is PostgreSQL's own (in ``pg_catalog``): an extension's type
            (hstore, PostGIS...) needs a cast.
        cast: A ``--cast`` override: the column is selected as ``CAST(col AS <cast>)`` and typed by it.
        money_scale: The digits after the point of ``money`` in the database's ``lc_monetary``.

    Returns:
        The field: its type, and metadata (``mesh.select``: the select item(s); the family...).

    Raises:
        UnboundedNumericError: ``numeric`` without precision and scale.
        TypeMappingError: the type has no exact Arrow type here (the message says which override would).
    """
    column = identifier(name, "postgres")
    expr, check = column, None
    if cast is not None:
        own, spelled, kind, element_kind, builtin = spelled, _pg_spelling(parse_cast(cast, "postgres")), "b", "b", True
        expr = f"CAST({column} AS {cast_spelling(cast, 'postgres')})"
        if not _exact_text_cast(spelled, "postgres"):
            # Cast back to the column's own type: a value the cast rounded or cut compares unequal.
            check = _cast_check(name, cast, f"CAST({expr} AS {own}) IS DISTINCT FROM {column}", f"{column}::text",
                                "postgres")
    spelled = _pg_spelling(spelled)
    array = spelled.endswith("[]")
    if array:
        element = _pg_spelling(spelled[:-2])
        if element in ("numeric", "decimal"):
            raise UnboundedNumericError(name, array=True)
        mapped = _pg_scalar(name, element, element_kind or "b", builtin, money_scale)
        select = _PG_ARRAY_WRAPS[mapped.wrap].format(expr)
        mapped = _Mapped(pa.list_(mapped.type), None, mapped.family, mapped.length, mapped.read)
        if check is None:
            check = ((f"CASE WHEN array_ndims({expr}) > 1 OR array_lower({expr}, 1) <> 1 THEN {expr}::text END "
                      f"AS {_check_alias(name, 'postgres')}"),
                     ("is a multi-dimensional array or does not start at index 1, which a list cannot hold; "
                      f"--cast {name}=text keeps PostgreSQL's text of it exactly, or --exclude {name}"))
    else:
        if spelled in ("numeric", "decimal"):
            if cast is not None:
                raise TypeMappingError(f"column {name!r}: --cast {name}={cast} has no precision and scale; give "
                                       f"both, e.g. --cast {name}=numeric(38,10), or --cast {name}=text")
            raise UnboundedNumericError(name)
        mapped = _pg_scalar(name, spelled, kind, builtin, money_scale)
        select = _PG_WRAPS[mapped.wrap].format(expr)
        if mapped.wrap == "interval" and check is None:
            check = ((f"CASE WHEN {_PG_INTERVAL_TOO_LONG.format(expr)} THEN {expr}::text END "
                      f"AS {_check_alias(name, 'postgres')}"),
                     ("has a time part beyond 2562047:47:16.854775 hours, which an interval in nanoseconds "
                      f"(Arrow's) cannot hold; --cast {name}=text keeps PostgreSQL's text of it exactly, "
                      f"or --exclude {name}"))
    return _field(name, mapped, f"{select} AS {column}", check)


def _exact_text_cast(spelled: str, dialect: str) -> bool:
    """Whether a cast makes the column's exact text (no value can change: no check needed)."""
    while spelled.endswith("[]"):
        spelled = spelled[:-2]
    if dialect == "postgres":
        return spelled in ("text", "character varying")
    return spelled in ("text", "char", "longtext", "character varying")


# ------------------------------------------------------------------------------------------ casts


def parse_cast(cast: str, dialect: str | None = None):
    """A ``--cast`` type spelling as sqlglot reads it (in the dialect, or in any of ours).

    Returns:
        The type's spelling in the dialect (lower case), e.g. ``decimal(38, 20)``.

    Raises:
        ValueError: no dialect reads it as a type.
    """
    from sqlglot import exp
    from sqlglot.errors import ParseError

    errors = []
    for candidate in ([dialect] if dialect else ["postgres", "mysql", None]):
        try:
            return exp.DataType.build(cast, dialect=candidate).sql(dialect=dialect or candidate).lower()
        except (ParseError, ValueError, TypeError) as exc:
            errors.append(str(exc))
    raise ValueError(f"{cast!r} is not an SQL type (e.g. numeric(38,20), text, varchar(64), bigint)")


def cast_spelling(cast: str, dialect: str) -> str:
    """A ``--cast`` type as the dialect's ``CAST(... AS <type>)`` spells it (MariaDB: ``SIGNED``,
    ``CHAR``... where its CAST takes no other name)."""
    from sqlglot import exp

    cast_sql = exp.Cast(this=exp.to_identifier("c"), to=exp.DataType.build(cast, dialect=dialect)).sql(dialect=dialect)
    inner = re.match(r"^CAST\(c AS (.*)\)$", cast_sql, re.DOTALL)
    if inner is None:
        raise ValueError(f"{cast!r} cannot be a CAST's type in {dialect}")
    return inner[1]


# --------------------------------------------------------------------------------------- MariaDB

_MY_SIMPLE: dict[str, _Mapped] = {
    "tinyint": _Mapped(pa.int8()), "tinyint unsigned": _Mapped(pa.uint8()), "smallint": _Mapped(pa.int16()),
    "smallint unsigned": _Mapped(pa.uint16()), "mediumint": _Mapped(pa.int32()),
    "mediumint unsigned": _Mapped(pa.int32()), "int": _Mapped(pa.int32()), "integer": _Mapped(pa.int32()),
    "int unsigned": _Mapped(pa.uint32()), "bigint": _Mapped(pa.int64()), "bigint unsigned": _Mapped(pa.uint64()),
    "tinyint(1)": _Mapped(pa.bool_()), "boolean": _Mapped(pa.bool_()), "bool": _Mapped(pa.bool_()),
    "float": _Mapped(pa.float32()), "float unsigned": _Mapped(pa.float32()), "double": _Mapped(pa.float64()),
    "double unsigned": _Mapped(pa.float64()), "double precision": _Mapped(pa.float64()),
    "real": _Mapped(pa.float64()),
    "year": _Mapped(pa.int16()), "date": _Mapped(pa.date32(), "char"), "time": _Mapped(pa.time64("us"), "char"),
    "datetime": _Mapped(pa.timestamp("us"), "char"),
    "timestamp": _Mapped(pa.timestamp("us", tz="UTC"), "epoch", read="epoch"),
    "text": _Mapped(pa.string()), "tinytext": _Mapped(pa.string()), "mediumtext": _Mapped(pa.string()),
    "longtext": _Mapped(pa.string()), "char": _Mapped(pa.string(), family="varchar", length=1),
    "json": _Mapped(pa.string(), family="json"),
    "blob": _Mapped(pa.binary()), "tinyblob": _Mapped(pa.binary()), "mediumblob": _Mapped(pa.binary()),
    "longblob": _Mapped(pa.binary()), "binary": _Mapped(pa.binary()), "varbinary": _Mapped(pa.binary()),
    "inet4": _Mapped(pa.string(), family="ipaddr"), "inet6": _Mapped(pa.string(), family="ipaddr"),
    "uuid": _Mapped(UUID, "char"),
    "signed": _Mapped(pa.int64()), "unsigned": _Mapped(pa.uint64()),
}
_MY_GEOMETRY = ("geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon",
                "geometrycollection")
_MY_SIMPLE.update({name: _Mapped(pa.binary(), "binary", family="geometry") for name in _MY_GEOMETRY})


def _bits(n: int) -> _Mapped:
    t = pa.bool_() if n == 1 else pa.uint64() if n == 64 else pa.int64()
    return _Mapped(t, "unsigned")


_MY_PARAMETRIC: list[tuple[re.Pattern[str], Callable[[re.Match[str]], _Mapped]]] = [
    (re.compile(r"^(?:decimal|numeric)\((\d+),(\d+)\)(?: unsigned)?$"),
     lambda m: _Mapped(_pg_decimal(int(m[1]), int(m[2])), "char")),
    (re.compile(r"^(?:decimal|numeric)\((\d+)\)(?: unsigned)?$"), lambda m: _Mapped(_pg_decimal(int(m[1]), 0), "char")),
    (re.compile(r"^(?:decimal|numeric)(?: unsigned)?$"), lambda m: _Mapped(pa.decimal128(10, 0), "char")),
    (re.compile(r"^(?:float)\(\d+(?:,\d+)?\)(?: unsigned)?$"), lambda m: _Mapped(pa.float32())),
    (re.compile(r"^(?:double|real|double precision)\(\d+,\d+\)(?: unsigned)?$"), lambda m: _Mapped(pa.float64())),
    (re.compile(r"^bit\((\d+)\)$"), lambda m: _bits(int(m[1]))),
    (re.compile(r"^bit$"), lambda m: _bits(1)),
    (re.compile(r"^year\(\d\)$"), lambda m: _Mapped(pa.int16())),
    (re.compile(r"^datetime\(\d\)$"), lambda m: _Mapped(pa.timestamp("us"), "char")),
    (re.compile(r"^time\(\d\)$"), lambda m: _Mapped(pa.time64("us"), "char")),
    (re.compile(r"^timestamp\(\d\)$"), lambda m: _Mapped(pa.timestamp("us", tz="UTC"), "epoch", read="epoch")),
    (re.compile(r"^(?:varchar|character varying)\((\d+)\)$"),
     lambda m: _Mapped(pa.string(), family="varchar", length=int(m[1]))),
    # MariaDB's CHAR(n) drops trailing spaces when read: what varchar(n) holds, not a padded char(n).
    (re.compile(r"^(?:char|character)\((\d+)\)$"), lambda m: _Mapped(pa.string(), family="varchar", length=int(m[1]))),
    (re.compile(r"^(?:binary|varbinary)\(\d+\)$"), lambda m: _Mapped(pa.binary())),
    (re.compile(r"^(?:text|blob)\(\d+\)$"),
     lambda m: _Mapped(pa.binary() if m[0].startswith("blob") else pa.string())),
    (re.compile(r"^enum\(.*\)$", re.DOTALL), lambda m: _Mapped(pa.string(), family="enum")),
    (re.compile(r"^set\(.*\)$", re.DOTALL), lambda m: _Mapped(pa.string(), family="set")),
]
# MariaDB spells integer types with a display width that means nothing to the value: int(11).
_DISPLAY_WIDTH = re.compile(r"^(bigint|int|integer|smallint|mediumint|tinyint)\(\d+\)")
_MY_WRAPS = {None: "{}", "char": "CAST({} AS CHAR)", "unsigned": "CAST({} AS UNSIGNED)",
             "binary": "CAST({} AS BINARY)",
             "epoch": "IF({0} = 0, CAST({0} AS CHAR), CAST(UNIX_TIMESTAMP({0}) AS CHAR))"}


def _mariadb_spelling(spelled: str) -> str:
    spelled = re.sub(r"\s+", " ", spelled.strip().lower()).replace(", ", ",").replace(" zerofill", "")
    if not spelled.startswith("tinyint(1)"):  # MariaDB's BOOLEAN
        spelled = _DISPLAY_WIDTH.sub(r"\1", spelled)
    return spelled


def _mariadb_scalar(column: str, spelled: str) -> _Mapped:
    return _lookup(column, spelled, _MY_SIMPLE, _MY_PARAMETRIC, "MariaDB")


def mariadb_field(name: str, spelled: str, is_json: bool = False, cast: str | None = None) -> pa.Field:
    """The exact Arrow field of a MariaDB/MySQL column, and how to select it.

    Decimals, dates, times and datetimes are selected as their text (ConnectorX reads decimals
    through a 28-digit type with at most 10 decimals, and panics on zero dates), TIMESTAMP as its
    seconds since 1970 (independent of the session's time zone), BIT as its number, geometry as
    MariaDB's bytes (a 4-byte SRID, then WKB).

    Args:
        name: The column.
        spelled: Its ``information_schema.COLUMNS.COLUMN_TYPE``, e.g. ``int(11) unsigned``.
        is_json: A MariaDB JSON column (a LONGTEXT checked by ``json_valid``).
        cast: A ``--cast`` override: the column is selected as ``CAST(col AS <cast>)`` and typed by it.

    Raises:
        TypeMappingError: the type has no exact Arrow type here.
    """
    column = identifier(name, "mysql")
    expr, check = column, None
    spelled = _mariadb_spelling(spelled)
    if cast is not None:
        spelled, is_json = _mariadb_spelling(parse_cast(cast, "mysql")), False
        expr = f"CAST({column} AS {cast_spelling(cast, 'mysql')})"
        if not _exact_text_cast(spelled, "mysql"):
            check = _cast_check(name, cast, f"NOT ({expr} <=> {column})", f"CAST({column} AS CHAR)", "mysql")
    mapped = _Mapped(pa.string(), family="json") if is_json else _mariadb_scalar(name, spelled)
    return _field(name, mapped, f"{_MY_WRAPS[mapped.wrap].format(expr)} AS {column}", check)


def arrow_type(column: str, db_type: str) -> pa.DataType:
    """The exact Arrow type of a database column, from its type's spelling alone (PostgreSQL's
    ``format_type``, else MariaDB's ``COLUMN_TYPE``).

    Raises:
        TypeMappingError: the type has no exact Arrow equivalent (e.g. ``numeric`` without a
            precision, whose values may not fit any fixed decimal).
    """
    try:
        return postgres_field(column, db_type).type
    except UnboundedNumericError:
        raise
    except TypeMappingError:
        return mariadb_field(column, db_type).type


# ---------------------------------------------------------------------------------------- targets


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


def _is_uuid(t: pa.DataType) -> bool:
    return isinstance(t, pa.BaseExtensionType) and t.extension_name == "arrow.uuid"


def type_problems(schema: pa.Schema, mapping: Callable[[pa.Field], object]) -> list[str]:
    """Each column's problem with a target's type mapping (one line each; none when all map)."""
    problems = []
    for field in schema:
        try:
            mapping(field)
        except TypeMappingError as exc:
            problems.extend(exc.problems)
    return problems


def iceberg_type(field: pa.Field) -> pa.DataType:
    """The Arrow type an Iceberg table stores a field in (pyiceberg maps it to the Iceberg type):
    int8/16, uint8/16 -> ``int``; uint32 -> ``long``; uint64 -> ``decimal(20,0)``; a decimal over 38
    digits, an interval or JSON -> ``string`` (their exact text); uuid -> ``uuid``; lists -> ``list``.

    Raises:
        TypeMappingError: no Iceberg type holds it exactly.
    """
    t = plain_type(field.type)
    if _is_list(t):
        return pa.list_(iceberg_type(pa.field("element", t.value_type)))
    if t in (pa.int8(), pa.int16(), pa.uint8(), pa.uint16()):
        return pa.int32()
    if t == pa.uint32():
        return pa.int64()
    if t == pa.uint64():
        return pa.decimal128(20, 0)
    if pa.types.is_decimal(t):
        return t if t.precision <= 38 else pa.string()
    if t == INTERVAL:
        return pa.string()
    if pa.types.is_timestamp(t):
        if t.unit == "ns":
            raise TypeMappingError(f"column {field.name!r}: {t} has nanoseconds, which an Iceberg v2 timestamp "
                                   f"cannot hold; --cast {field.name}=text, or --exclude {field.name}")
        return pa.timestamp("us", tz="UTC" if t.tz else None)
    if pa.types.is_time(t):
        return pa.time64("us")
    if t in (pa.bool_(), pa.int32(), pa.int64(), pa.float32(), pa.float64(), pa.string(), pa.binary(), pa.date32()) \
            or pa.types.is_fixed_size_binary(t) or _is_uuid(t):
        return t
    if pa.types.is_date(t):
        return pa.date32()
    raise TypeMappingError(f"column {field.name!r}: Arrow type {t} has no Iceberg equivalent here; "
                           f"--cast {field.name}=text, or --exclude {field.name}")


# PostgreSQL target: the column type a family's text is stored in (when it is PostgreSQL's own type).
_PG_FAMILY_TYPES = {name: name for name in (*_PG_TEXT, "json", "jsonb")}
_PG_FAMILY_TYPES.update({"timetz": "time with time zone", "ipaddr": "inet", "qchar": '"char"', "name": "name"})


def postgres_ddl_type(field: pa.Field) -> str:
    """The PostgreSQL column type that stores an Arrow field exactly (for a PostgreSQL target): the
    source's own type where PostgreSQL has it (``inet``, ``jsonb``, ``varchar(64)``, ``bit(3)``,
    ``int4range``...; MariaDB's inet4/inet6 as ``inet``), else the Arrow type's.

    Raises:
        TypeMappingError: no PostgreSQL type holds it here.
    """
    t = plain_type(field.type)
    if _is_list(t):
        return postgres_ddl_type(field.with_type(t.value_type)) + "[]"
    kind, n = family(field), length(field)
    if _is_text(t):
        if kind == "varchar":
            return f"character varying({n})" if n else "character varying"
        if kind == "char":
            return f"character({n})" if n else "bpchar"
        if kind in ("bit", "varbit"):
            base = "bit" if kind == "bit" else "bit varying"
            return f"{base}({n})" if n else base
        return _PG_FAMILY_TYPES.get(kind or "", "text")
    if pa.types.is_decimal(t):
        return f"numeric({t.precision},{t.scale})"
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    if pa.types.is_time(t):
        return "time"
    if _is_uuid(t):
        return "uuid"
    mapping = {pa.int64(): "bigint", pa.int32(): "integer", pa.int16(): "smallint", pa.int8(): "smallint",
               pa.uint8(): "smallint", pa.uint16(): "integer", pa.uint32(): "bigint", pa.uint64(): "numeric(20,0)",
               pa.bool_(): "boolean", pa.float32(): "real", pa.float64(): "double precision",
               pa.binary(): "bytea", pa.date32(): "date", INTERVAL: "interval"}
    if t in mapping:
        return mapping[t]
    if pa.types.is_fixed_size_binary(t):
        return "bytea"
    raise TypeMappingError(f"column {field.name!r}: Arrow type {t} has no PostgreSQL equivalent here; "
                           f"--cast {field.name}=text, or --exclude {field.name}")


_PG_NATIVE: dict[str, pa.DataType] = {
    "boolean": pa.bool_(), "smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64(),
    "real": pa.float32(), "double precision": pa.float64(), "text": pa.string(), "character varying": pa.string(),
    "bpchar": pa.string(), "name": pa.string(), "json": pa.string(), "bytea": pa.binary(), "date": pa.date32(),
    "time without time zone": pa.time64("us"), "timestamp without time zone": pa.timestamp("us"),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"), "interval": INTERVAL, "uuid": UUID,
}


def postgres_storage_type(spelled: str, engine: pa.DataType) -> pa.DataType | None:
    """The Arrow type ADBC's COPY writes straight into a PostgreSQL column of this type (None: the
    column takes the value's text, cast by PostgreSQL into its type).

    Args:
        spelled: The target column's ``format_type``.
        engine: The backfill's type of the values headed there.
    """
    spelled = _pg_spelling(spelled)
    if spelled.endswith("[]"):
        element = postgres_storage_type(spelled[:-2], engine.value_type if _is_list(engine) else engine)
        return None if element is None or not _is_list(engine) else pa.list_(element)
    if re.match(r"^numeric(\(.*\))?$", spelled):
        return engine if pa.types.is_decimal(engine) else pa.decimal128(38, 0) if pa.types.is_integer(engine) else None
    for pattern in (r"^character varying\(\d+\)$", r"^character\(\d+\)$"):
        if re.match(pattern, spelled):
            return pa.string()
    spelled = re.sub(r"^(time|timestamp)\(\d\)", r"\1", spelled)
    return _PG_NATIVE.get(spelled)


def json_storage_type(t: pa.DataType) -> pa.DataType:
    """The Arrow type a column takes in JSON (Elasticsearch documents, Kafka JSON): booleans,
    integers up to 64 bits signed and floats as JSON values, lists as arrays, everything else as
    its exact text (``convert.to_text``)."""
    t = plain_type(t)
    if _is_list(t):
        return pa.list_(json_storage_type(t.value_type))
    if pa.types.is_boolean(t) or pa.types.is_floating(t) or (pa.types.is_integer(t) and t != pa.uint64()):
        return t
    return pa.string()


_ES_KEYWORD_FAMILIES = {"enum", "set", "inet", "macaddr", "macaddr8", "timetz", "pg_lsn", "xid", "xid8", "cid",
                        "tid", "qchar", "name"}


def elasticsearch_mapping(field: pa.Field) -> dict[str, object]:
    """The Elasticsearch field mapping of an Arrow field.

    Long or unbounded text is ``text`` with a ``keyword`` sub-field that keeps values up to
    ``ES_IGNORE_ABOVE`` characters (never past Lucene's term limit); short bounded strings
    (varchar(n), char(n) with n <= 256), enums and uuids are ``keyword``; MariaDB's inet4/inet6 are
    ``ip`` and PostgreSQL's cidr ``ip_range`` (PostgreSQL's inet may carry a netmask, which ``ip``
    cannot: ``keyword``). Decimals, uint64, times and intervals map to ``keyword`` (their exact
    text): Elasticsearch's numbers are binary floating point and at most signed 64-bit integers
    (``scaled_float`` and ``unsigned_long`` need modules a minimal distribution lacks). A list maps
    as its element (Elasticsearch fields hold several values).

    Raises:
        TypeMappingError: no mapping holds it here.
    """
    t = plain_type(field.type)
    if _is_list(t):
        return elasticsearch_mapping(field.with_type(t.value_type))
    if _is_text(t):
        kind, n = family(field), length(field)
        if kind == "ipaddr":
            return {"type": "ip"}
        if kind == "cidr":
            return {"type": "ip_range"}
        if kind in _ES_KEYWORD_FAMILIES or (kind in ("varchar", "char", "bit", "varbit") and n is not None
                                            and n <= ES_KEYWORD_LENGTH):
            return {"type": "keyword"}
        return {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": ES_IGNORE_ABOVE}}}
    if pa.types.is_decimal(t) or _is_uuid(t) or t == pa.uint64() or pa.types.is_time(t) or t == INTERVAL:
        return {"type": "keyword"}
    if pa.types.is_timestamp(t):
        return {"type": "date_nanos" if t.unit == "ns" else "date", "format": "strict_date_optional_time||epoch_millis"}
    if pa.types.is_date(t):
        return {"type": "date", "format": "strict_date"}
    simple = {pa.int64(): "long", pa.int32(): "integer", pa.int16(): "short", pa.int8(): "byte", pa.uint8(): "short",
              pa.uint16(): "integer", pa.uint32(): "long", pa.bool_(): "boolean", pa.float32(): "float",
              pa.float64(): "double", pa.binary(): "binary"}
    if t in simple:
        return {"type": simple[t]}
    if pa.types.is_fixed_size_binary(t):
        return {"type": "binary"}
    raise TypeMappingError(f"column {field.name!r}: Arrow type {t} has no Elasticsearch mapping here; "
                           f"--cast {field.name}=text, or --exclude {field.name}")


# ------------------------------------------------------------------------------ existing targets

_INT_DIGITS = {pa.int8(): 3, pa.int16(): 5, pa.int32(): 10, pa.int64(): 19, pa.uint8(): 3, pa.uint16(): 5,
               pa.uint32(): 10, pa.uint64(): 20}


def holds(actual: pa.DataType, expected: pa.DataType) -> bool:
    """Whether a target column of type ``actual`` holds every value of type ``expected`` exactly:
    the same type, or a wider one (int -> long, float -> double, a decimal with more digits on
    both sides of the point, an integer in a decimal with enough digits), list for list."""
    actual, expected = plain_type(actual), plain_type(expected)
    if actual.equals(expected):
        return True
    if _is_list(actual) and _is_list(expected):
        return holds(actual.value_type, expected.value_type)
    if pa.types.is_integer(actual) and pa.types.is_integer(expected):
        if pa.types.is_signed_integer(actual):
            return actual.bit_width >= expected.bit_width + (0 if pa.types.is_signed_integer(expected) else 1)
        return pa.types.is_unsigned_integer(expected) and actual.bit_width >= expected.bit_width
    if pa.types.is_decimal(actual) and pa.types.is_decimal(expected):
        return actual.scale >= expected.scale and actual.precision - actual.scale >= expected.precision - expected.scale
    if pa.types.is_decimal(actual) and expected in _INT_DIGITS:
        return actual.precision - actual.scale >= _INT_DIGITS[expected]
    return actual == pa.float64() and expected == pa.float32()
