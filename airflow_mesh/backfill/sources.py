"""Sources: read a table's schema, its key bounds, and one key range at a time as Arrow batches.

Each reader takes the fastest path its datastore offers into Arrow: ADBC (binary COPY) for
PostgreSQL, ConnectorX for MariaDB/MySQL, pyiceberg's scan for Iceberg. Ranges are read with keyset
predicates (``key >= lo AND key < hi``, row values for composite keys), never OFFSET.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import threading
import weakref
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import pyarrow as pa

from airflow_mesh.backfill.convert import META_SELECT, conform, plain_type
from airflow_mesh.backfill.errors import PlanError, TypeMappingError
from airflow_mesh.backfill.filters import parse_filter
from airflow_mesh.backfill.keys import KeyRange, json_value, range_condition, range_count
from airflow_mesh.backfill.plan import BackfillRequest, Mode, key_columns
from airflow_mesh.backfill.sqltext import identifier, key_literal, literal, range_predicate, table_name
from airflow_mesh.backfill.types import UnboundedNumericError, mariadb_field, postgres_field


@dataclass(frozen=True)
class DatabaseLocation:
    """Where a database is, as an Airflow connection (or a CLI flag) describes it."""

    host: str
    port: int
    user: str
    password: str
    database: str

    def uri(self, scheme: str) -> str:
        return (f"{scheme}://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
                f"@{self.host}:{self.port}/{quote(self.database, safe='')}")


# Arrow types a key can be cut on: they have a total order that every store agrees on.
def _orderable(t: pa.DataType) -> bool:
    return (pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t)
            or pa.types.is_decimal(t) or pa.types.is_date(t) or pa.types.is_timestamp(t)
            or pa.types.is_boolean(t) or (isinstance(t, pa.BaseExtensionType) and t.extension_name == "arrow.uuid"))


@dataclass(frozen=True)
class TableInfo:
    """A source table: its columns with their exact Arrow types, its primary key (in the key's
    order), and its other unique keys (sets of NOT NULL columns under a unique index)."""

    name: str
    schema: pa.Schema
    primary_key: list[str]
    unique_keys: list[tuple[str, ...]] = field(default_factory=list)
    keys_enforced: bool = True  # False: the store does not enforce its keys (Iceberg's identifier fields)

    def key_columns(self, requested: str | None) -> tuple[str, ...]:
        """The columns ranges are cut on: the requested ones (``a`` or ``a, b``), else the primary
        key, else the first unique key of NOT NULL columns.

        Raises:
            PlanError: no usable key: none given or found, an unknown column, or a type without
                an order every store agrees on (binary, floating point, JSON, arrays).
        """
        columns = key_columns(requested) or (tuple(self.primary_key)
                                             or (self.unique_keys[0] if self.unique_keys else ()))
        if not columns:
            raise PlanError(f"table {self.name}: it has no primary key or unique key; name the column (or columns, "
                            "comma-separated) that identify a row with `key` (--key)")
        missing = [c for c in columns if c not in self.schema.names]
        if missing:
            raise PlanError(f"table {self.name}: key column {', '.join(map(repr, missing))} does not exist "
                            f"(columns: {', '.join(self.schema.names)})")
        unordered = [f"{c!r} is {self.schema.field(c).type}" for c in columns
                     if not _orderable(self.schema.field(c).type)]
        if unordered:
            raise PlanError(f"table {self.name}: key column {'; '.join(unordered)}, which ranges cannot be cut on; "
                            "name other key columns with `key` (--key)")
        return columns

    def known_unique(self, columns: tuple[str, ...]) -> bool:
        """Whether the table's own constraints make ``columns`` unique (a superset of its primary key
        or of a unique key of NOT NULL columns)."""
        return self.keys_enforced and any(key and set(key) <= set(columns)
                                          for key in [tuple(self.primary_key), *self.unique_keys])

    def key_fields(self, columns: tuple[str, ...]) -> list[tuple[str, pa.DataType]]:
        """``(name, Arrow type)`` of each key column."""
        return [(c, self.schema.field(c).type) for c in columns]


@dataclass(frozen=True)
class Snapshot:
    """What a run's view of the source proves.

    Attributes:
        safe_until: Every change that committed, or whose transaction began, before this instant
            (UTC) is visible to the run; None when the source cannot tell (Iceberg).
        consistent: Every read of the run sees the same state of the source (PostgreSQL's exported
            snapshot, Iceberg's pinned snapshot); MariaDB reads each range at its own moment.
        blind: The source would not show the run the other sessions' transactions (a missing
            privilege), so ``safe_until`` is the snapshot's own time held back by the request's lag.
        note: Why the view is what it is, for the log and the summary.
        version: What the view saw, as the source can later tell rows changed since
            (PostgreSQL: the snapshot's ``xmin:xmax:xip`` transaction ids); None where it cannot.
    """

    safe_until: dt.datetime | None = None
    consistent: bool = False
    blind: bool = False
    note: str = ""
    version: str | None = None


NO_SNAPSHOT = Snapshot()


class Source(Protocol):
    """What the engine needs from a source."""

    name: str

    def consistent(self) -> contextlib.AbstractContextManager[Snapshot]:
        """Read everything of a run, until the block ends, as one view of the source (where the
        source can), and say what that view proves."""
        ...

    def describe(self, table: str, casts: Mapping[str, str] | None = None,
                 exclude: Collection[str] = ()) -> TableInfo: ...

    def key_bounds(self, info: TableInfo, key: str, request: BackfillRequest,
                   exact_count: bool = True) -> tuple[int | None, int | None, int]:
        """``(min, max, rows)`` of a single integer key column."""
        ...

    def sample_keys(self, info: TableInfo, keys: tuple[str, ...], request: BackfillRequest,
                    range_size: int) -> tuple[list[tuple[Any, ...]], int]:
        """Key tuples spread over the selected rows (enough to cut ranges of ``range_size`` rows
        at), and how many rows there are."""
        ...

    def duplicate_key(self, info: TableInfo, keys: tuple[str, ...], request: BackfillRequest) -> tuple[Any, ...] | None:
        """A key value more than one selected row holds, or that is NULL; None when the key is unique."""
        ...

    def cursor_max(self, info: TableInfo, column: str, request: BackfillRequest) -> Any:
        """The largest value of a cursor column among the rows the request's filter selects."""
        ...

    def read_range(self, info: TableInfo, keys: tuple[str, ...], request: BackfillRequest,
                   key_range: KeyRange) -> Iterator[pa.RecordBatch]: ...


def _cast(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A batch as the driver read it, in the table's exact schema (see ``convert.conform``)."""
    return conform(batch, schema)


def _overrides(table: str, names: list[str], primary_key: list[str], casts: Mapping[str, str] | None,
               exclude: Collection[str]) -> None:
    """Refuse casts and exclusions of columns the table lacks, or of its primary key.

    Raises:
        PlanError: naming the field (``casts`` or ``exclude``) and the column.
    """
    for option, columns in (("casts", list(casts or {})), ("exclude", list(exclude))):
        for column in columns:
            if column not in names:
                raise PlanError(f"{option}: {column!r} is not a column of {table} (columns: {', '.join(names)})")
            if column in primary_key:
                raise PlanError(f"{option}: {column!r} is the primary key of {table}; the key is copied as it is")


def _mapped_schema(table: str, fields: list[pa.Field], problems: list[str]) -> pa.Schema:
    """The table's schema, or one error with every column's problem (and the columns that did map)."""
    if problems:
        raise TypeMappingError.of(table, problems, mapped=pa.schema(fields))
    return pa.schema(fields)


# Key samples: a table with fewer rows than this has all its keys read (exact boundaries); a larger
# one a sample of about SAMPLE_PER_RANGE keys per range.
SAMPLE_ALL_ROWS = 200_000
SAMPLE_PER_RANGE = 200


class _SqlSource:
    """A table in an SQL database: what PostgreSQL and MariaDB share (catalog lookup, key bounds,
    keyset range reads). A subclass supplies its driver (``_query``, ``_stream``), its catalog queries
    (``_columns_sql``, ``_unique_keys_sql``) and how a column is selected (``_select``).

    Every name is quoted (``sqltext``) and the user's filter is parsed (``filters``), so no input
    reaches the database as SQL of its own.
    """

    scheme: str
    dialect: str

    def __init__(self, location: DatabaseLocation) -> None:
        self.location = location
        self.name = f"{self.scheme}://{location.host}:{location.port}/{location.database}"

    def _query(self, sql: str) -> pa.Table:
        """A small query's whole result."""
        raise NotImplementedError

    def _stream(self, sql: str) -> Iterator[pa.RecordBatch]:
        """A large query's result, batch by batch."""
        raise NotImplementedError

    def _columns_sql(self, schema_name: str, table: str) -> str:
        """A query of the table's columns: ``name``, ``type`` (as the database spells it), ``is_key``
        and what the dialect's ``_field`` needs besides."""
        raise NotImplementedError

    def _unique_keys_sql(self, schema_name: str, table: str) -> str:
        """A query of the table's primary and unique keys: ``index_name``, ``is_primary``, ``position``,
        ``column_name`` and ``not_null`` per key column."""
        raise NotImplementedError

    def _estimate_sql(self, info: TableInfo) -> str:
        """A query of the planner's row estimate of the table (``n``; negative or NULL when unknown)."""
        raise NotImplementedError

    def _sample_clause(self, fraction: float) -> tuple[str, str]:
        """``(after FROM, extra WHERE condition)`` that reads about ``fraction`` of the rows."""
        raise NotImplementedError

    def _select(self, column: pa.Field) -> str:
        """The column's select item(s), as ``describe`` worked them out (``mesh.select``)."""
        select = (column.metadata or {}).get(META_SELECT)
        return select.decode() if select is not None else identifier(column.name, self.dialect)

    @contextlib.contextmanager
    def consistent(self) -> Iterator[Snapshot]:
        """A run's view: each range read at its own moment (no snapshot to share), and the instant
        before which every change is visible to every read: the oldest open transaction's start (or
        now), taken before the first read."""
        now, oldest, blind = self._horizon()
        safe = min(t for t in (now, oldest) if t is not None)
        yield Snapshot(safe_until=safe, consistent=False, blind=blind,
                       note="ranges are read at their own moments" + (
                           "; other sessions' transactions cannot be seen (grant PROCESS)" if blind else ""))

    def _horizon(self) -> tuple[dt.datetime, dt.datetime | None, bool]:
        """``(now, start of the oldest open transaction of another session, blind)``, all in UTC."""
        raise NotImplementedError

    def _ident(self, name: str) -> str:
        return identifier(name, self.dialect)

    def _cursor_literal(self, mark: str, t: pa.DataType) -> str:
        """A mark as a literal of its cursor column's type: a time mark (ISO 8601, UTC) as the
        column holds times (with a zone: as it is; without one, and in MariaDB: UTC's wall time)."""
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            instant = dt.datetime.fromisoformat(mark)
            if instant.tzinfo is not None and (not (pa.types.is_timestamp(t) and t.tz) or self.dialect == "mysql"):
                instant = instant.astimezone(dt.timezone.utc).replace(tzinfo=None)
            text = instant.date().isoformat() if pa.types.is_date(t) else instant.isoformat(sep=" ")
            return self._literal(text)
        return key_literal(mark, t, self.dialect)

    def _table(self, info: TableInfo | str) -> str:
        return table_name(info.name if isinstance(info, TableInfo) else info, self.dialect)

    def _literal(self, value: str) -> str:
        return literal(value, self.dialect)

    def columns(self, table: str) -> list[dict[str, Any]]:
        """The catalog's rows of a table's columns (see ``_columns_sql``), in order; empty when the
        table does not exist."""
        schema_name, _, name = table.rpartition(".")
        return self._query(self._columns_sql(schema_name, name)).to_pylist()

    def _field(self, row: dict[str, Any], cast: str | None) -> pa.Field:
        """A catalog row's exact Arrow field (raises TypeMappingError)."""
        raise NotImplementedError

    def _unmapped(self, table: str, unbounded: list[UnboundedNumericError]) -> list[str]:
        """The problems of columns whose type alone cannot say which type holds their values."""
        return [str(error) for error in unbounded]

    def describe(self, table: str, casts: Mapping[str, str] | None = None,
                 exclude: Collection[str] = ()) -> TableInfo:
        """The table's columns with exact Arrow types, and its primary key.

        Args:
            table: ``schema.table`` or ``table``.
            casts: ``column -> SQL type``: the column is selected as ``CAST(column AS type)`` and
                typed by it (a value the cast would change fails the read, naming the column).
            exclude: Columns neither read nor written.

        Raises:
            PlanError: the table does not exist, or a cast or exclusion names an unknown column or
                the primary key.
            TypeMappingError: every column whose type has no exact mapping, or whose cast the
                database refuses, in one error (each with its reason and the override that would work).
        """
        rows = self.columns(table)
        if not rows:
            raise PlanError(f"table {table} does not exist in {self.name}")
        primary_key, unique = self._keys_of(table, rows)
        _overrides(table, [r["name"] for r in rows], primary_key, casts, exclude)
        fields, problems, unbounded = [], {}, []
        for row in rows:
            if row["name"] in exclude:
                continue
            try:
                fields.append(self._field(row, (casts or {}).get(row["name"])))
            except UnboundedNumericError as exc:
                unbounded.append(exc)
            except TypeMappingError as exc:
                problems[row["name"]] = "; ".join(exc.problems)
        if unbounded:
            problems.update(zip([e.column for e in unbounded], self._unmapped(table, unbounded), strict=True))
        refused = self._refused_selects(table, fields, casts)
        problems.update(refused)
        in_order = [problems[r["name"]] for r in rows if r["name"] in problems]  # one line a column, in order
        schema = _mapped_schema(table, [f for f in fields if f.name not in refused], in_order)
        return TableInfo(table, schema, primary_key, [u for u in unique if all(c in schema.names for c in u)])

    def _keys_of(self, table: str, rows: list[dict[str, Any]]) -> tuple[list[str], list[tuple[str, ...]]]:
        """The table's primary key (in the key's order) and its unique keys of NOT NULL columns."""
        schema_name, _, name = table.rpartition(".")
        indexes: dict[str, list[dict[str, Any]]] = {}
        for row in self._query(self._unique_keys_sql(schema_name, name)).to_pylist():
            indexes.setdefault(row["index_name"], []).append(row)
        primary: list[str] = []
        unique: list[tuple[str, ...]] = []
        for found in indexes.values():
            ordered = [r["column_name"] for r in sorted(found, key=lambda r: r["position"])]
            if any(r["is_primary"] for r in found):
                primary = ordered
            elif all(r["not_null"] for r in found):
                unique.append(tuple(ordered))
        if not primary:  # a catalog without index positions (or no indexes): the columns' own flags
            primary = [r["name"] for r in rows if r["is_key"]]
        return primary, unique

    def _refused_selects(self, table: str, fields: list[pa.Field],
                         casts: Mapping[str, str] | None = None) -> dict[str, str]:
        """``column -> problem`` of the columns whose select (a cast, mostly) the database refuses,
        found before any row is read: the select is planned on no rows (``LIMIT 0``), and again
        column by column if it fails."""
        if not fields:
            return {}

        def probe(selected: list[pa.Field]) -> str | None:
            try:
                self._query(f"SELECT {', '.join(self._select(f) for f in selected)} "
                            f"FROM {table_name(table, self.dialect)} LIMIT 0")
            except Exception as exc:  # noqa: BLE001 - the database's refusal, reported as it said it
                said = " ".join(str(exc).split())
                said = said[said.find("ERROR:"):] if "ERROR:" in said else said
                return said.split(" LINE ")[0].split(" Query was:")[0][:300]
            return None

        if probe(fields) is None:
            return {}
        return {f.name: f"column {f.name!r}: the database refuses to select it"
                        f"{' cast as asked' if (casts or {}).get(f.name) else ''}: {why}"
                for f in fields if (why := probe([f])) is not None}

    def _where(self, info: TableInfo, keys: tuple[str, ...], request: BackfillRequest,
               key_range: KeyRange | None, *extra: str) -> str:
        """The WHERE clause of a range: keyset bounds, the user's filter, the incremental cursor."""
        conditions = []
        if key_range is not None and (predicate := range_predicate(info.key_fields(keys), key_range, self.dialect)):
            conditions.append(predicate)
        if request.where:
            conditions.append(parse_filter(request.where, self.dialect))
        if request.mode is Mode.INCREMENTAL and request.cursor_after is not None:
            # At or past the mark: the rows at the mark itself are read again (they may have been
            # written by a transaction the last run could not see yet), and upserted by key.
            cursor = info.schema.field(request.cursor_column)
            after = self._cursor_literal(request.cursor_after, cursor.type)
            conditions.append(f"{self._ident(cursor.name)} >= {after}")
        conditions += [c for c in extra if c]
        return (" WHERE " + " AND ".join(conditions)) if conditions else ""

    def key_bounds(self, info: TableInfo, key: str, request: BackfillRequest,
                   exact_count: bool = True) -> tuple[int | None, int | None, int]:
        """``(min key, max key, rows)`` of the rows the request selects, for one integer key column.

        Args:
            info: The table.
            key: The key column.
            request: Its filters (``where``, the incremental cursor) apply.
            exact_count: Count the rows (a scan of the table); otherwise take the database's own
                estimate when the request has no filter and the table has statistics (min and max
                of the key are index look-ups), which is all a plan needs to cut ranges.
        """
        filters = self._where(info, (key,), request, None)
        column, table = self._ident(key), self._table(info)
        if not exact_count and not filters:
            row = self._query(f"SELECT min({column}) AS lo, max({column}) AS hi FROM {table}").to_pylist()[0]
            estimate = self._query(self._estimate_sql(info)).to_pylist()[0]["n"]
            if row["lo"] is None:
                return None, None, 0
            if estimate is not None and int(estimate) > 0:
                return int(row["lo"]), int(row["hi"]), int(estimate)
        row = self._query(f"SELECT min({column}) AS lo, max({column}) AS hi, count(*) AS n FROM {table}"
                          + filters).to_pylist()[0]
        return (None if row["lo"] is None else int(row["lo"]), None if row["hi"] is None else int(row["hi"]),
                int(row["n"]))

    def _key_table(self, info: TableInfo, keys: tuple[str, ...], request: BackfillRequest,
                   sample_fraction: float | None = None) -> pa.Table:
        columns = ", ".join(self._select(info.schema.field(k)) for k in keys)
        from_extra, where_extra = self._sample_clause(sample_fraction) if sample_fraction else ("", "")
        return self._query(f"SELECT {columns} FROM {self._table(info)}{from_extra}"
                           + self._where(info, keys, request, None, where_extra))

    def sample_keys(self, info: TableInfo, keys: tuple[str, ...], request: BackfillRequest,
                    range_size: int) -> tuple[list[tuple[Any, ...]], int]:
        """Key tuples to cut ranges at: every key of a small table (or of a filtered request), else a
        sample of about ``SAMPLE_PER_RANGE`` keys per range (PostgreSQL: ``TABLESAMPLE SYSTEM``;
        MariaDB: ``RAND()``).

        Returns:
            The sampled keys (in no order), and the row count (exact when every key was read, else
            the database's estimate).
        """
        estimate = None
        if not request.where and request.mode is Mode.FULL:
            value = self._query(self._estimate_sql(info)).to_pylist()[0]["n"]
            estimate = int(value) if value is not None and int(value) > 0 else None
        wanted = SAMPLE_PER_RANGE * range_count(estimate or 0, range_size)
        if estimate is None or estimate <= max(SAMPLE_ALL_ROWS, wanted):
            table = self._key_table(info, keys, request)
            return _key_tuples(table, keys), table.num_rows
        table = self._key_table(info, keys, request, min(1.0, wanted / estimate))
        return _key_tuples(table, keys), estimate

    def all_keys(self, info: TableInfo, keys: tuple[str, ...], request: BackfillRequest) -> pa.Table:
        """Every selected row's key columns (as the rows are read: the same types)."""
        columns = ", ".join(self._select(info.schema.field(k)) for k in keys)
        unbounded = request.model_copy(update={"cursor_after": None})
        batches = [_cast(b, pa.schema([info.schema.field(k) for k in keys]))
                   for b in self._stream(f"SELECT {columns} FROM {self._table(info)}"
                                         + self._where(info, keys, unbounded, None))]
        return pa.Table.from_batches(batches, schema=pa.schema([info.schema.field(k) for k in keys]))

    def segment_counts(self, info: TableInfo, key: str, request: BackfillRequest, lo: int, width: int) -> pa.Table:
        """``seg, n``: how many selected rows an integer key has in each segment
        ``[lo + seg * width, lo + (seg + 1) * width)``, counted in the database (no key travels)."""
        column = self._ident(key)
        unbounded = request.model_copy(update={"cursor_after": None})
        divide = "DIV" if self.dialect == "mysql" else "/"
        return self._query(f"SELECT ({column} - {int(lo)}) {divide} {int(width)} AS seg, count(*) AS n "
                           f"FROM {self._table(info)}" + self._where(info, (key,), unbounded, None) + " GROUP BY 1")

    def keys_in_segments(self, info: TableInfo, key: str, request: BackfillRequest, lo: int, width: int,
                         segments: list[int]) -> pa.Table:
        """The selected rows' keys in the given segments (see ``segment_counts``): one index range
        scan per run of adjacent segments (PostgreSQL: a join with the ranges; MariaDB: their OR,
        which its range optimizer turns into index ranges)."""
        unbounded = request.model_copy(update={"cursor_after": None})
        column, table = self._ident(key), self._table(info)
        if self.dialect == "postgres":
            spans = merged_segments(lo, width, segments)
            lows = ",".join(str(a) for a, _ in spans)
            highs = ",".join(str(b) for _, b in spans)
            source = (f"unnest('{{{lows}}}'::bigint[], '{{{highs}}}'::bigint[]) AS mesh_ranges(mesh_lo, mesh_hi) "
                      f"JOIN {table} ON {column} >= mesh_lo AND {column} < mesh_hi")
            sql = (f"SELECT {self._select(info.schema.field(key))} FROM {source}"
                   + self._where(info, (key,), unbounded, None))
        else:
            sql = (f"SELECT {self._select(info.schema.field(key))} FROM {table}"
                   + self._where(info, (key,), unbounded, None, segment_ranges(column, lo, width, segments)))
        schema = pa.schema([info.schema.field(key)])
        return pa.Table.from_batches([_cast(b, schema) for b in self._stream(sql)], schema=schema)

    def cursor_max(self, info: TableInfo, column: str, request: BackfillRequest) -> Any:
        """The largest value of a cursor column among the rows the request's filter selects."""
        unbounded = request.model_copy(update={"cursor_after": None})
        return self._query(f"SELECT max({self._ident(column)}) AS m FROM {self._table(info)}"
                           + self._where(info, (), unbounded, None)).to_pylist()[0]["m"]

    def duplicate_key(self, info: TableInfo, keys: tuple[str, ...], request: BackfillRequest) -> tuple[Any, ...] | None:
        """A key value that more than one selected row holds, or a NULL key; None when unique.
        One aggregate over the selected rows."""
        columns = ", ".join(self._ident(k) for k in keys)
        nulls = " OR ".join(f"{self._ident(k)} IS NULL" for k in keys)
        found = self._query(f"SELECT {columns} FROM {self._table(info)}"
                            + self._where(info, keys, request, None, f"({nulls})") + " LIMIT 1")
        if found.num_rows:
            return tuple(found.to_pylist()[0].values())
        found = self._query(f"SELECT {columns} FROM {self._table(info)}" + self._where(info, keys, request, None)
                            + f" GROUP BY {columns} HAVING count(*) > 1 LIMIT 1")
        return tuple(found.to_pylist()[0].values()) if found.num_rows else None

    def read_range(self, info: TableInfo, keys: tuple[str, ...], request: BackfillRequest,
                   key_range: KeyRange) -> Iterator[pa.RecordBatch]:
        """The range's rows, streamed batch by batch in the table's exact Arrow schema (one query,
        never the whole range in memory at once)."""
        columns = ", ".join(self._select(f) for f in info.schema)
        for batch in self._stream(f"SELECT {columns} FROM {self._table(info)}"
                                  + self._where(info, keys, request, key_range)):
            yield _cast(batch, info.schema)


def _one_value(cur: Any) -> Any:
    """The value of a query that answers one row of one column (an aggregate)."""
    row = cur.fetchone()
    if row is None:
        raise RuntimeError("an aggregate query answered no row")
    return row[0]


def merged_segments(lo: int, width: int, segments: list[int]) -> list[tuple[int, int]]:
    """The key ranges ``[a, b)`` of the given segments, adjacent ones merged."""
    spans: list[list[int]] = []
    for segment in sorted({int(s) for s in segments}):
        if spans and spans[-1][1] == segment:
            spans[-1][1] = segment + 1
        else:
            spans.append([segment, segment + 1])
    return [(lo + a * width, lo + b * width) for a, b in spans]


def segment_ranges(column: str, lo: int, width: int, segments: list[int]) -> str:
    """An SQL condition true for the keys of the given segments, as key ranges (adjacent segments
    merged): ``(k >= 64 AND k < 192) OR (...)``."""
    return "(" + " OR ".join(f"({column} >= {a} AND {column} < {b})"
                             for a, b in merged_segments(lo, width, segments)) + ")"


def _key_tuples(table: pa.Table, keys: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """The rows of a table of key columns as tuples of JSON-form values (what bounds hold)."""
    columns = [table.column(k).to_pylist() for k in keys]
    return [tuple(json_value(v) for v in row) for row in zip(*columns, strict=True)]


class PostgresSource(_SqlSource):
    """A PostgreSQL table, read through ADBC (binary COPY straight into Arrow)."""

    scheme = "postgresql"
    dialect = "postgres"

    BATCH_BYTES = 4 << 20
    """ADBC's batch size hint: what a range's read decodes at once. A quarter of ADBC's default: its
    buffers grow by reallocation within a batch, and smaller ones are reused instead of faulting in
    fresh pages (a third fewer page faults, 40 MB less RSS at parallelism 2, the same speed)."""

    def __init__(self, location: DatabaseLocation) -> None:
        super().__init__(location)
        self._base: Any = None
        self._lock = threading.Lock()

    def _connect(self):
        """A new connection sharing one ADBC database: the driver loads PostgreSQL's type catalog
        once (about 50 ms a connection otherwise), and each range still reads on its own connection."""
        import adbc_driver_postgresql.dbapi

        with self._lock:
            if self._base is None:
                self._base = adbc_driver_postgresql.dbapi.connect(self.location.uri("postgresql"))
                weakref.finalize(self, self._base.close)
            return self._base.adbc_clone()

    def _estimate_sql(self, info: TableInfo) -> str:
        return f"SELECT reltuples::bigint AS n FROM pg_class WHERE oid = {self._literal(self._table(info))}::regclass"

    _snapshot_id: str | None = None

    # Who may still commit rows the run's snapshot cannot see: every open transaction of another
    # client session of this database (one that has not written yet writes now() = its start).
    HORIZON_SQL = (
        "SELECT now() AS now, "
        "(SELECT min(xact_start) FROM pg_stat_activity WHERE datname = current_database() "
        " AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND xact_start IS NOT NULL) AS oldest, "
        "(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        " AND backend_type = 'client backend' AND state IS NULL) AS hidden, "
        "pg_current_snapshot()::text AS version")

    @contextlib.contextmanager
    def consistent(self) -> Iterator[Snapshot]:
        """Export a snapshot (``pg_export_snapshot``) and read every range of the run in it: one
        REPEATABLE READ, READ ONLY view for all readers, verification included. The exporting
        transaction stays open until the block ends (as pg_dump's does: vacuum keeps the rows it
        could see). ``safe_until`` is the start of the oldest transaction still open at the export
        (its rows, committed later, carry a cursor no earlier than that), else the export's time."""
        with self._connect() as conn, conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute("SELECT pg_export_snapshot() AS id")
            snapshot_id = cur.fetchone()[0]
            cur.execute(self.HORIZON_SQL)
            now, oldest, hidden, version = cur.fetchone()
            self._snapshot_id = snapshot_id
            try:
                safe = min(t for t in (now, oldest) if t is not None).astimezone(dt.timezone.utc)
                yield Snapshot(safe_until=safe, consistent=True, blind=bool(hidden), version=version,
                               note=f"snapshot {snapshot_id}" + (
                                   f"; {hidden} sessions of other users cannot be seen (grant pg_read_all_stats)"
                                   if hidden else ""))
            finally:
                self._snapshot_id = None
                conn.rollback()

    # Transaction ids, as in pg_current_snapshot()'s text: xmin:xmax:xip,... (64-bit, epoch included).
    _SNAPSHOT_TEXT = re.compile(r"^(\d+):(\d+):([\d,]*)$")

    def changed_since(self, info: TableInfo, keys: tuple[str, ...], request: BackfillRequest,
                      version: str) -> Iterator[pa.RecordBatch] | None:
        """The selected rows inserted or updated since an earlier view (``Snapshot.version``): those
        whose row version (``xmin``) that view could not see, updates that leave every cursor alone
        included. One scan of the table that returns only those rows. Deletes leave no row: compare
        the keys for them.

        Returns:
            The rows, batch by batch; None when ``version`` is too old to compare safely (over a
            billion transactions ago, near PostgreSQL's wraparound horizon).
        """
        found = self._SNAPSHOT_TEXT.match(version or "")
        if found is None:
            return None
        xmax, xip = int(found[2]), [int(x) for x in found[3].split(",") if x]
        age = self._query(f"SELECT age('{xmax % 2**32}'::xid) AS a").to_pylist()[0]["a"]
        if age is None or int(age) > 1_000_000_000:
            return None
        # xmin is 32 bits: a row is newer than the view when it is no older than the view's xmax
        # (age() counts back from now, across wraparound), or was in progress when the view was taken.
        newer = f"age(xmin) <= age('{xmax % 2**32}'::xid)"
        if xip:
            newer += " OR xmin = ANY('{" + ",".join(str(x % 2**32) for x in xip) + "}'::xid[])"
        columns = ", ".join(self._select(f) for f in info.schema)
        return (_cast(batch, info.schema) for batch in
                self._stream(f"SELECT {columns} FROM {self._table(info)}" + self._where(info, keys, request, None,
                                                                                         f"({newer})")))

    def _in_snapshot(self, cur: Any) -> None:
        """Make the cursor's transaction read the run's exported snapshot, if there is one."""
        if self._snapshot_id is not None:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute(f"SET TRANSACTION SNAPSHOT {literal(self._snapshot_id, 'postgres')}")

    def _sample_clause(self, fraction: float) -> tuple[str, str]:
        # Whole pages at random (no scan of the table); REPEATABLE: the same table gives the same plan.
        return f" TABLESAMPLE SYSTEM ({fraction * 100:.6f}) REPEATABLE (42)", ""

    def _unique_keys_sql(self, schema_name: str, table: str) -> str:
        return ("SELECT ic.relname AS index_name, i.indisprimary AS is_primary, k.ord AS position, "
                "a.attname AS column_name, a.attnotnull AS not_null "
                "FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_class ic ON ic.oid = i.indexrelid "
                "CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) "
                "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum "
                "WHERE i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL "
                f"AND c.relname = {self._literal(table)} AND n.nspname = {self._literal(schema_name or 'public')}")

    def _query(self, sql: str) -> pa.Table:
        with self._connect() as conn, conn.cursor() as cur:
            self._in_snapshot(cur)
            cur.execute(sql)
            return cur.fetch_arrow_table()

    def _stream(self, sql: str) -> Iterator[pa.RecordBatch]:
        with self._connect() as conn, conn.cursor() as cur:
            self._in_snapshot(cur)
            cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(self.BATCH_BYTES)})
            cur.execute(sql)
            yield from cur.fetch_record_batch()

    def _columns_sql(self, schema_name: str, table: str) -> str:
        # A domain is read as its base type (PostgreSQL describes its values so); `kind` is the
        # (base or element) type's typtype: b base, e enum, c composite, r/m range/multirange.
        return ("SELECT a.attname AS name, "
                "format_type(coalesce(b.oid, t.oid), CASE WHEN b.oid IS NULL THEN a.atttypmod ELSE t.typtypmod END) "
                "AS type, coalesce(a.attnum = ANY(i.indkey), false) AS is_key, "
                "coalesce(e.typtype, b.typtype, t.typtype)::text AS kind, "
                "coalesce(en.nspname, bn.nspname, tn.nspname) = 'pg_catalog' AS builtin "
                "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "JOIN pg_type t ON t.oid = a.atttypid JOIN pg_namespace tn ON tn.oid = t.typnamespace "
                "LEFT JOIN pg_type b ON t.typtype = 'd' AND b.oid = t.typbasetype "
                "LEFT JOIN pg_namespace bn ON bn.oid = b.typnamespace "
                "LEFT JOIN pg_type e ON coalesce(b.typcategory, t.typcategory) = 'A' "
                "AND e.oid = coalesce(b.typelem, t.typelem) "
                "LEFT JOIN pg_namespace en ON en.oid = e.typnamespace "
                "LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary "
                f"WHERE c.relname = {self._literal(table)} AND n.nspname = {self._literal(schema_name or 'public')} "
                "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum")

    # Decimal columns travel as their text: ADBC decodes a binary NUMERIC by formatting it as text on
    # the client (~0.5 us a value, the costliest column of a read), while PostgreSQL's own numeric
    # output is several times cheaper. Either way Arrow casts the exact text to the column's decimal
    # type (an error, never a rounding, if a value does not fit). Types ADBC has no Arrow type for
    # (inet, timetz, ranges, enums...) travel as PostgreSQL's own text (types.postgres_field).

    _money_scale: int | None = None

    def _field(self, row: dict[str, Any], cast: str | None) -> pa.Field:
        scale = 2
        if row["type"] in ("money", "money[]"):
            if self._money_scale is None:  # the digits lc_monetary gives money (2 for most locales)
                self._money_scale = int(self._query("SELECT scale(0::money::numeric) AS s").to_pylist()[0]["s"])
            scale = self._money_scale
        return postgres_field(row["name"], row["type"], row["kind"], row["kind"], bool(row["builtin"]), cast,
                              money_scale=scale)

    def _unmapped(self, table: str, unbounded: list[UnboundedNumericError]) -> list[str]:
        """``numeric`` columns without precision: their values are measured (digits before and after
        the point) to name the ``--cast`` that holds them all exactly."""
        problems = []
        for error in unbounded:
            column = identifier(error.column, "postgres")
            source = table_name(table, "postgres")
            if error.array:
                source += f", LATERAL unnest({column}) AS v(x)"
                column = "v.x"
            special = f"{column}::text IN ('NaN', 'Infinity', '-Infinity')"
            measured = self._query(
                f"SELECT max(CASE WHEN {special} THEN NULL WHEN trunc(abs({column})) = 0 THEN 0 "
                f"ELSE length(trunc(abs({column}))::text) END) AS before, "
                f"max(CASE WHEN {special} THEN NULL ELSE scale({column}) END) AS after, "
                f"count(*) FILTER (WHERE {special}) AS special, count({column}) AS n FROM {source}").to_pylist()[0]
            name, brackets = error.column, "[]" if error.array else ""
            kind = f"numeric{brackets} has no precision and scale, so no exact decimal type can hold every value it may"
            if measured["special"]:
                problems.append(f"column {name!r}: {kind}, and it holds NaN or infinities, which no decimal holds; "
                                f"--cast {name}=text{brackets} keeps each value's exact text, or --exclude {name}")
            elif not measured["n"]:
                problems.append(f"column {name!r}: {kind}, and it holds no values to measure; choose a precision and "
                                f"scale, e.g. --cast {name}=numeric(38,10){brackets}, or --cast {name}=text{brackets}, "
                                f"or --exclude {name}")
            else:
                before, after = int(measured["before"]), int(measured["after"])
                precision = max(1, before + after)
                fits = f"--cast {name}=numeric({precision},{after}){brackets} holds every value exactly"
                if precision > 38:
                    fits += " (an Iceberg target stores a decimal over 38 digits as its text)"
                problems.append(f"column {name!r}: {kind}; its values have up to {before} digits before the point and "
                                f"{after} after: {fits} (or --cast {name}=text{brackets}, or --exclude {name})")
        return problems

    def non_finite(self, info: TableInfo, keys: tuple[str, ...], request: BackfillRequest,
                   columns: list[str]) -> dict[str, int]:
        """How many of the request's rows hold NaN or an infinity in each float (or float array) column."""
        if not columns:
            return {}
        counts = []
        for i, name in enumerate(columns):
            column = identifier(name, "postgres")
            test = "{} IN ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8)"
            if pa.types.is_list(info.schema.field(name).type):
                counts.append(f"count(*) FILTER (WHERE EXISTS (SELECT 1 FROM unnest({column}) AS v(x) "
                              f"WHERE {test.format('v.x')})) AS c{i}")
            else:
                counts.append(f"count(*) FILTER (WHERE {test.format(column)}) AS c{i}")
        row = self._query(f"SELECT {', '.join(counts)} FROM {table_name(info.name, 'postgres')}"
                          + self._where(info, keys, request, None)).to_pylist()[0]
        return {name: int(row[f"c{i}"]) for i, name in enumerate(columns) if row[f"c{i}"]}


class MariaDbSource(_SqlSource):
    """A MariaDB/MySQL table, its ranges read through ConnectorX (its binary protocol, decoded in
    Rust); the small queries (catalog, bounds, samples) through PyMySQL, which reports a refused
    login or an unknown column at once (ConnectorX's pool retries a refused login for 30 s)."""

    scheme = "mysql"
    dialect = "mysql"

    BATCH_ROWS = 65_536
    """Rows per batch of ConnectorX's Arrow stream: a range is never held whole."""

    def _query(self, sql: str) -> pa.Table:
        import pymysql

        location = self.location
        with pymysql.connect(host=location.host, port=location.port, user=location.user, password=location.password,
                             database=location.database, charset="utf8mb4", connect_timeout=15) as conn, \
                conn.cursor() as cur:
            cur.execute(sql)
            names = [d[0] for d in cur.description or ()]
            rows = cur.fetchall()
        return pa.table({name: pa.array([row[i] for row in rows]) for i, name in enumerate(names)})

    def _horizon(self) -> tuple[dt.datetime, dt.datetime | None, bool]:
        """InnoDB's open transactions (``information_schema.INNODB_TRX``, which needs the PROCESS
        privilege: without it the run is blind to them). Times in UTC (the session's zone is set)."""
        import pymysql

        location = self.location
        with pymysql.connect(host=location.host, port=location.port, user=location.user, password=location.password,
                             database=location.database, charset="utf8mb4", connect_timeout=15,
                             init_command="SET time_zone = '+00:00'") as conn, conn.cursor() as cur:
            cur.execute("SELECT UTC_TIMESTAMP(6)")
            now = _one_value(cur).replace(tzinfo=dt.timezone.utc)
            try:
                cur.execute("SELECT MIN(trx_started) FROM information_schema.INNODB_TRX "
                            "WHERE trx_mysql_thread_id <> CONNECTION_ID()")
            except pymysql.err.OperationalError:  # 1227: access denied (no PROCESS)
                return now, None, True
            oldest = _one_value(cur)
            cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST")
            sees_others = _one_value(cur) > 1
        # INNODB_TRX shows every session's transactions only with PROCESS; PROCESSLIST alike.
        return now, oldest.replace(tzinfo=dt.timezone.utc) if oldest else None, not sees_others

    def _stream(self, sql: str) -> Iterator[pa.RecordBatch]:
        import connectorx

        yield from connectorx.read_sql(self.location.uri("mysql"), sql, return_type="arrow_stream",
                                       batch_size=self.BATCH_ROWS)

    def _estimate_sql(self, info: TableInfo) -> str:
        schema_name, _, name = info.name.rpartition(".")
        return ("SELECT TABLE_ROWS AS n FROM information_schema.TABLES "
                f"WHERE TABLE_SCHEMA = {self._literal(schema_name or self.location.database)} "
                f"AND TABLE_NAME = {self._literal(name)}")

    def _sample_clause(self, fraction: float) -> tuple[str, str]:
        return "", f"RAND(42) < {fraction:.9f}"  # MariaDB has no TABLESAMPLE: one scan, keys only

    def _unique_keys_sql(self, schema_name: str, table: str) -> str:
        return ("SELECT INDEX_NAME AS index_name, INDEX_NAME = 'PRIMARY' AS is_primary, SEQ_IN_INDEX AS position, "
                "COLUMN_NAME AS column_name, NULLABLE <> 'YES' AS not_null FROM information_schema.STATISTICS "
                f"WHERE TABLE_SCHEMA = {self._literal(schema_name or self.location.database)} "
                f"AND TABLE_NAME = {self._literal(table)} AND NON_UNIQUE = 0 AND SUB_PART IS NULL")

    def _columns_sql(self, schema_name: str, table: str) -> str:
        # MariaDB's JSON is a LONGTEXT with a json_valid check; MySQL's has a type of its own.
        return ("SELECT c.COLUMN_NAME AS name, c.COLUMN_TYPE AS type, c.COLUMN_KEY = 'PRI' AS is_key, "
                "(c.DATA_TYPE = 'json' OR EXISTS (SELECT 1 FROM information_schema.CHECK_CONSTRAINTS k "
                "WHERE k.CONSTRAINT_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME "
                "AND k.CHECK_CLAUSE = CONCAT('json_valid(`', c.COLUMN_NAME, '`)'))) AS is_json "
                "FROM information_schema.COLUMNS c "
                f"WHERE c.TABLE_SCHEMA = {self._literal(schema_name or self.location.database)} "
                f"AND c.TABLE_NAME = {self._literal(table)} ORDER BY c.ORDINAL_POSITION")

    def _field(self, row: dict[str, Any], cast: str | None) -> pa.Field:
        return mariadb_field(row["name"], row["type"], bool(row["is_json"]), cast)

    def non_finite(self, info: TableInfo, keys: tuple[str, ...], request: BackfillRequest,
                   columns: list[str]) -> dict[str, int]:
        """MariaDB's floats hold no NaN or infinity."""
        return {}


def iceberg_filter(keys: tuple[str, ...], key_range: KeyRange):
    """``lo <= key < hi`` as a pyiceberg row filter (lexicographic for a composite key); pyiceberg
    binds each bound's JSON form (text for dates, uuids, decimals...) to the field's type."""
    from pyiceberg.expressions import (
        AlwaysTrue,
        And,
        EqualTo,
        GreaterThan,
        GreaterThanOrEqual,
        LessThan,
        LessThanOrEqual,
        Or,
    )

    ops = {">": GreaterThan, ">=": GreaterThanOrEqual, "<": LessThan, "<=": LessThanOrEqual}

    def all_of(items: list[Any]) -> Any:
        return items[0] if len(items) == 1 else And(*items)

    def any_of(items: list[Any]) -> Any:
        return items[0] if len(items) == 1 else Or(*items)

    return range_condition(keys, key_range, lambda c, op, v: ops[op](c, v), EqualTo, all_of, any_of, AlwaysTrue)


class IcebergSource:
    """An Iceberg table, scanned with pyiceberg (row filters prune data files by key range)."""

    def __init__(self, catalog_properties: dict[str, str], catalog_name: str = "default") -> None:
        from pyiceberg.catalog import load_catalog

        self.catalog = load_catalog(catalog_name, **catalog_properties)
        self.name = f"iceberg://{catalog_properties.get('uri', catalog_name)}"
        self._pinned: dict[str, int | None] | None = None

    @contextlib.contextmanager
    def consistent(self) -> Iterator[Snapshot]:
        """Every scan of the run reads the table's snapshot current at its first scan."""
        self._pinned = {}
        try:
            yield Snapshot(consistent=True, note="the table's snapshot is pinned for the run")
        finally:
            self._pinned = None

    def _scan(self, table: str, **options: Any) -> Any:
        iceberg = self.catalog.load_table(table)
        if self._pinned is not None:
            if table not in self._pinned:
                current = iceberg.current_snapshot()
                self._pinned[table] = current.snapshot_id if current else None
            if self._pinned[table] is not None:
                options["snapshot_id"] = self._pinned[table]
        return iceberg.scan(**options)

    def describe(self, table: str, casts: Mapping[str, str] | None = None,
                 exclude: Collection[str] = ()) -> TableInfo:
        """The table's columns (plain Arrow types: pyiceberg's large strings and lists as plain ones)
        and its identifier fields as the primary key.

        Raises:
            PlanError: no such table, an exclusion of an unknown column or of the key, or a cast
                (an Iceberg source reads no SQL).
        """
        from pyiceberg.exceptions import NoSuchTableError

        try:
            iceberg_table = self.catalog.load_table(table)
        except NoSuchTableError:
            raise PlanError(f"table {table} does not exist in {self.name}") from None
        schema = iceberg_table.schema()
        keys = [schema.find_field(i).name for i in schema.identifier_field_ids]
        arrow = schema.as_arrow()
        _overrides(table, arrow.names, keys, casts, exclude)
        if casts:
            raise PlanError("casts: an Iceberg source reads no SQL, so it takes no casts (exclude works)")
        return TableInfo(table, pa.schema([pa.field(f.name, plain_type(f.type), f.nullable) for f in arrow
                                           if f.name not in exclude]), keys, keys_enforced=False)

    def _no_filters(self, request: BackfillRequest) -> None:
        if request.where or request.mode is Mode.INCREMENTAL:
            raise PlanError("an Iceberg source takes no SQL filter or incremental cursor (yet)")

    def _keys(self, info: TableInfo, keys: tuple[str, ...]) -> pa.Table:
        return self._scan(info.name, selected_fields=keys).to_arrow()

    def cursor_max(self, info: TableInfo, column: str, request: BackfillRequest) -> Any:
        """Refused: an Iceberg source takes no incremental cursor (``PlanError``, as for every read)."""
        self._no_filters(request)
        raise PlanError("an Iceberg source takes no SQL filter or incremental cursor (yet)")

    def non_finite(self, info: TableInfo, keys: tuple[str, ...], request: BackfillRequest,
                   columns: list[str]) -> dict[str, int]:
        """How many rows hold NaN or an infinity in each float (or float list) column."""
        import pyarrow.compute as pc

        if not columns:
            return {}
        counts = {}
        data = self._scan(info.name, selected_fields=tuple(columns)).to_arrow()
        for name in columns:
            values = data.column(name)
            while pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
                values = pc.list_flatten(values)
            bad = pc.sum(pc.invert(pc.fill_null(pc.is_finite(values), True))).as_py() or 0
            if bad:
                counts[name] = int(bad)
        return counts

    def key_bounds(self, info: TableInfo, key: str, request: BackfillRequest,
                   exact_count: bool = True) -> tuple[int | None, int | None, int]:
        import pyarrow.compute as pc

        self._no_filters(request)
        keys = self._keys(info, (key,))[key]
        if len(keys) == 0:
            return None, None, 0
        bounds = pc.min_max(keys).as_py()
        return bounds["min"], bounds["max"], len(keys)

    def sample_keys(self, info: TableInfo, keys: tuple[str, ...], request: BackfillRequest,
                    range_size: int) -> tuple[list[tuple[Any, ...]], int]:
        """Every key (an Iceberg scan of the key columns reads only their column chunks)."""
        self._no_filters(request)
        table = self._keys(info, keys)
        return _key_tuples(table, keys), table.num_rows

    def duplicate_key(self, info: TableInfo, keys: tuple[str, ...], request: BackfillRequest) -> tuple[Any, ...] | None:
        import pyarrow.compute as pc

        self._no_filters(request)
        table = self._keys(info, keys)
        for k in keys:
            if table.column(k).null_count:
                return tuple(table.filter(pc.is_null(table.column(k))).slice(0, 1).to_pylist()[0].values())
        counts = table.group_by(list(keys)).aggregate([([], "count_all")])
        repeated = counts.filter(pc.greater(counts["count_all"], 1))
        return tuple(repeated.select(list(keys)).slice(0, 1).to_pylist()[0].values()) if repeated.num_rows else None

    def read_range(self, info: TableInfo, keys: tuple[str, ...], request: BackfillRequest,
                   key_range: KeyRange) -> Iterator[pa.RecordBatch]:
        scan = self._scan(info.name, row_filter=iceberg_filter(keys, key_range))
        for batch in scan.to_arrow_batch_reader():
            yield _cast(batch, info.schema)
