"""Targets: create or check the destination, replace one key range idempotently, read it back.

Writing a range *replaces* that range (delete-then-write in one commit or transaction, or keyed
overwrites), so a range redone after a crash ends with every row exactly once.
"""

from __future__ import annotations

import functools
import json
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, cast, runtime_checkable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from airflow_mesh.backfill import names
from airflow_mesh.backfill.convert import conform, from_storage, plain_type, table_from_storage, table_to_storage
from airflow_mesh.backfill.errors import (
    PlanError,
    TargetError,
    TargetSchemaError,
    TargetWriteError,
    TypeMappingError,
    UnrepresentableValueError,
)
from airflow_mesh.backfill.keys import KeyRange, json_value, merged, range_condition
from airflow_mesh.backfill.sources import DatabaseLocation, PostgresSource, iceberg_filter, merged_segments
from airflow_mesh.backfill.sqltext import identifier, range_predicate, table_name
from airflow_mesh.backfill.types import (
    UnboundedNumericError,
    elasticsearch_mapping,
    holds,
    iceberg_type,
    json_storage_type,
    postgres_ddl_type,
    postgres_storage_type,
    type_problems,
)

Keys = tuple[str, ...]


def key_tuple(key: str | Keys) -> Keys:
    """A target's key columns: one name, or several."""
    return (key,) if isinstance(key, str) else tuple(key)


def _prepared(schema: pa.Schema | None) -> pa.Schema:
    """A schema a target's ``prepare`` sets (the engine prepares a target before anything else)."""
    if schema is None:
        raise TypeError("the target is not prepared: call its prepare() first")
    return schema


class Target(Protocol):
    """What the engine needs from a target."""

    name: str

    def prepare(self, schema: pa.Schema, key: str | Keys) -> None:
        """Create the target for rows of ``schema`` keyed by ``key`` (one column or several), or
        check that it exists with a schema they can be written into."""
        ...

    def write_range(self, key_range: KeyRange, data: pa.Table, upsert: bool = False) -> None:
        """Replace the range with ``data`` (``upsert``: only overwrite the rows of ``data``, by key)."""
        ...

    def read_range(self, key_range: KeyRange) -> pa.Table: ...


@runtime_checkable
class StagingTarget(Protocol):
    """What only a table format with atomic multi-file commits (Iceberg) can do.

    It writes a range in two steps: stage its data (in parallel, invisible until committed), then
    commit staged ranges together (a commit replaces each range's rows with its staged data). Staged
    files carry the job's tag, so that those a killed run left uncommitted can be found and removed;
    and a committed range can be read back from a fixed snapshot, naming the files read, so that a
    later check can tell whether the range still reads the same files.

    The engine asks ``isinstance(target, StagingTarget)`` (this protocol is runtime-checkable) to
    choose staging over writing ranges one by one.
    """

    name: str
    staging_tag: str
    """The job whose files are staged (set by the engine before staging)."""

    def stage_range(self, key_range: KeyRange, data: pa.Table | Iterable[pa.RecordBatch]) -> Any:
        """Write a range's data into a staged file, tagged with ``staging_tag``; returns what to commit."""
        ...

    def commit(self, staged: list[tuple[KeyRange, Any]]) -> None:
        """Replace each range's rows with its staged data, in one commit."""
        ...

    def remove_orphans(self, job: str) -> int:
        """Remove the staged files of ``job`` that no commit holds; returns how many were removed."""
        ...

    def snapshot_batches(self, key_range: KeyRange) -> tuple[frozenset[tuple[str, frozenset[str]]],
                                                             Iterator[pa.RecordBatch]]:
        """A range read from the current snapshot: the files the scan reads, and the rows as batches."""
        ...

    def range_files(self, key_ranges: list[KeyRange]) -> dict[str, frozenset[tuple[str, frozenset[str]]]]:
        """Per range id, the files a scan of the range reads now."""
        ...


# Commits of one range that another writer beat to it are retried on the reloaded table this often.
COMMIT_ATTEMPTS = 8

# Batches are gathered into row groups of about this much Arrow data (~128k rows of a narrow table):
# readers prune and parallelize by row group, so they should not be as small as a read's batches.
ROW_GROUP_BYTES = 16 << 20

# zstd level 1 unless the table says otherwise (Iceberg's default codec): files about 40% smaller than
# snappy's or lz4's for 15-30% more CPU. Statistics are what Iceberg's file pruning (and a range's
# delete) works from.
_PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 1, "write_statistics": True}


def _parquet_options(properties: dict[str, str]) -> dict[str, Any]:
    """Parquet writer options from an Iceberg table's ``write.parquet.compression-codec`` and
    ``-level`` properties (the ones every Iceberg writer honours), else ``_PARQUET_OPTIONS``."""
    options = dict(_PARQUET_OPTIONS)
    codec = properties.get("write.parquet.compression-codec")
    if codec is not None:
        options["compression"] = "none" if codec == "uncompressed" else codec
        options["compression_level"] = None
    level = properties.get("write.parquet.compression-level")
    if level is not None:
        options["compression_level"] = int(level)
    return options


def _is_text(t: pa.DataType) -> bool:
    """Dictionary-encode only strings and binaries: for numbers and timestamps, which are mostly
    distinct, building the dictionary costs more than the file gains."""
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _narrowed(t: pa.DataType) -> pa.DataType:
    """Large strings, binaries and lists as plain ones (what a source's batches hold: no copy to
    write them), a list's element field kept as it is (its name and Iceberg field id)."""
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_large_binary(t):
        return pa.binary()
    if pa.types.is_large_list(t) or pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(_narrowed(t.value_type)))
    return t


def _schema_problems(expected: pa.Schema, actual: pa.Schema) -> list[str]:
    """Why a target's columns cannot take the rows: each expected column must exist and hold its
    type exactly (the same type, or one of its exact widenings: ``types.holds``)."""
    problems = []
    for field in expected:
        if field.name not in actual.names:
            problems.append(f"column {field.name!r} is missing")
        elif not holds(actual.field(field.name).type, field.type):
            problems.append(f"column {field.name!r} is {actual.field(field.name).type}, the source's is {field.type}")
    return problems


def _refuse_types(target: str, schema: pa.Schema, mapping: Any) -> None:
    """Every column the target has no exact type for, in one error, before anything is created."""
    problems = type_problems(schema, mapping)
    if problems:
        raise TypeMappingError.of(target, problems)


def _iceberg_schema(schema: pa.Schema) -> pa.Schema:
    """The Arrow schema an Iceberg table is created with (and must hold) for the backfill's schema."""
    return pa.schema([pa.field(f.name, iceberg_type(f), f.nullable) for f in schema])


class IcebergTarget:
    """An Iceberg table through pyiceberg (any catalog it supports: SQL/SQLite, REST, Glue, Hive...).

    A range is written as a Parquet file, then committed in one transaction that deletes the
    range's key interval and adds the file: readers see the range entirely before or entirely after.
    """

    def __init__(self, catalog_properties: dict[str, str], table: str, catalog_name: str = "default") -> None:
        from pyiceberg.catalog import load_catalog

        self.identifier = names.iceberg_table(table)
        self.catalog = load_catalog(catalog_name, **catalog_properties)
        self.name = f"iceberg://{catalog_properties.get('uri', catalog_name)}/{table}"
        self.keys: Keys = ()
        self.schema: pa.Schema | None = None
        self.staging_tag = "untagged"  # the job whose files are staged (set by the engine)
        self._write_lock = threading.Lock()

    def type_problems(self, schema: pa.Schema) -> list[str]:
        """The columns no Iceberg type holds exactly (one line each)."""
        return type_problems(schema, iceberg_type)

    def prepare(self, schema: pa.Schema, key: str | Keys) -> None:
        """Create the table (Iceberg types for the backfill's: ``types.iceberg_type``), or check that
        the existing one holds every column (its types, or Iceberg's promotions of them: int ->
        long, float -> double, wider decimals).

        Raises:
            TypeMappingError: a column no Iceberg type holds (before anything is created).
            TargetSchemaError: the existing table cannot hold a column.
        """
        from pyiceberg.exceptions import NoSuchTableError

        _refuse_types(f"Iceberg table {self.identifier}", schema, iceberg_type)
        self.keys, self.schema = key_tuple(key), schema
        stored = _iceberg_schema(schema)
        namespace = self.identifier.rpartition(".")[0]
        if namespace:
            self.catalog.create_namespace_if_not_exists(namespace)
        try:
            existing = self.catalog.load_table(self.identifier).schema().as_arrow()
        except NoSuchTableError:
            required = stored
            for k in self.keys:
                required = required.set(required.get_field_index(k), required.field(k).with_nullable(False))
            table = self.catalog.create_table(self.identifier, schema=required)
            with table.update_schema() as update:
                update.set_identifier_fields(*self.keys)
            return
        problems = _schema_problems(stored, existing)
        if problems:
            raise TargetSchemaError(f"Iceberg table {self.identifier} exists with an incompatible schema: "
                                    + "; ".join(problems))

    def _range_filter(self, key_range: KeyRange):
        return iceberg_filter(self.keys, key_range)

    def _ranges_filter(self, key_ranges: list[KeyRange]):
        """One filter for several ranges, adjacent ones merged (one delete scans the manifests once)."""
        from pyiceberg.expressions import Or

        filters = [self._range_filter(span) for span in merged(key_ranges)]
        return filters[0] if len(filters) == 1 else Or(*filters)

    def stage_range(self, key_range: KeyRange, data: pa.Table | Iterable[pa.RecordBatch]) -> str:
        """Write a range's rows as a Parquet data file in the table's location; returns its path.

        ``data`` is a table, or batches that are written as they come (gathered into row groups of
        about ``ROW_GROUP_BYTES``), so a streamed range is never held in memory whole. Staging is
        safe in parallel and from several workers; nothing is visible until committed.
        """
        table = self.catalog.load_table(self.identifier)
        # In the table's own Arrow schema (its key is required, its ids are Iceberg field ids), so
        # that add_files accepts the file; strings stay plain (Parquet stores both alike) rather than
        # being copied into the large strings pyiceberg reads them as.
        schema = pa.schema([f.with_type(_narrowed(f.type)) for f in table.schema().as_arrow()])
        name = f"{self._staged_prefix(self.staging_tag)}{key_range.id}-{uuid.uuid4().hex}.parquet"
        path = f"{table.location()}/data/{name}"
        batches = data.to_batches() if isinstance(data, pa.Table) else data
        with table.io.new_output(path).create(overwrite=True) as stream, \
                pq.ParquetWriter(stream, schema, **_parquet_options(table.properties),
                                 use_dictionary=[f.name for f in schema if _is_text(f.type)]) as writer:
            group: list[pa.Table] = []
            group_bytes = 0
            for batch in batches:
                group.append(table_to_storage(batch, schema).cast(schema))
                group_bytes += batch.nbytes
                if group_bytes >= ROW_GROUP_BYTES:
                    writer.write_table(pa.concat_tables(group))
                    group, group_bytes = [], 0
            if group:
                writer.write_table(pa.concat_tables(group))
        return path

    @staticmethod
    def _staged_prefix(job: str) -> str:
        return f"backfill-{job}-"

    def count_rows(self) -> int:
        """The table's rows (from its metadata: the files' record counts, deletes applied)."""
        return self.catalog.load_table(self.identifier).scan().count()

    def remove_orphans(self, job: str) -> int:
        """Delete the files a job staged but never committed (a run killed between staging and
        committing leaves them): the job's files in the table's data folder that no snapshot holds.

        Call it only when no run of the job is staging at the same time.

        Returns:
            How many files were removed.
        """
        from pyarrow import fs

        table = self.catalog.load_table(self.identifier)
        io: Any = table.io  # duck-typed: parse_location and fs_by_scheme are PyArrowFileIO's, not FileIO's
        if not hasattr(io, "fs_by_scheme"):  # not pyiceberg's PyArrowFileIO: leave the files
            return 0
        scheme, netloc, path = io.parse_location(f"{table.location()}/data")
        filesystem = io.fs_by_scheme(scheme, netloc)
        prefix = self._staged_prefix(job)
        staged = [info.path for info in filesystem.get_file_info(fs.FileSelector(path, allow_not_found=True))
                  if info.type == fs.FileType.File and info.base_name.startswith(prefix)]
        if not staged:
            return 0
        held = {io.parse_location(p)[2] for p in _held_files(table)}
        orphans = [p for p in staged if p not in held]
        for orphan in orphans:
            filesystem.delete_file(orphan)
        return len(orphans)

    def commit(self, staged: list[tuple[KeyRange, str]]) -> None:
        """One Iceberg commit: delete every staged range's keys, add every staged file."""
        if not staged:
            return

        def change(table: Any) -> None:
            with warnings.catch_warnings():
                # Deleting ranges that hold no rows yet (every range of a first copy) is no news.
                warnings.filterwarnings("ignore", "Delete operation did not match any records", UserWarning)
                with table.transaction() as tx:
                    tx.delete(delete_filter=self._ranges_filter([key_range for key_range, _ in staged]))
                    tx.add_files([path for _, path in staged], check_duplicate_files=False)

        self._committing(change, f"committing {len(staged)} ranges")

    def _committing(self, change: Callable[[Any], None], what: str) -> None:
        """Run ``change(table)`` (one commit) on the table as it is now: one writer of this target at a
        time (threads of one run never race each other), and again on a reloaded table when another
        process committed first (Iceberg's optimistic concurrency), up to ``COMMIT_ATTEMPTS``."""
        from pyiceberg.exceptions import CommitFailedException, ValidationException

        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                with self._write_lock:
                    change(self.catalog.load_table(self.identifier))
                return
            except (CommitFailedException, ValidationException) as exc:
                if attempt == COMMIT_ATTEMPTS:
                    raise TargetError(f"Iceberg table {self.identifier}: {what}: other writers kept committing "
                                      f"first ({attempt} attempts; last: {exc}); run fewer writers at once "
                                      "(one backfill of a table at a time) and rerun") from None
                time.sleep(min(5.0, 0.1 * 2 ** attempt))

    def _keys_filter(self, keys: pa.Table):
        """A row filter matching exactly the given keys (``In`` for one key column)."""
        from pyiceberg.expressions import And, EqualTo, In, Or

        rows = [tuple(json_value(v) for v in row.values()) for row in keys.select(list(self.keys)).to_pylist()]
        if len(self.keys) == 1:
            return In(self.keys[0], {row[0] for row in rows})
        matches = [And(*[EqualTo(k, v) for k, v in zip(self.keys, row, strict=False)]) for row in rows]
        return matches[0] if len(matches) == 1 else Or(*matches)

    def apply_changes(self, key_range: KeyRange, upserts: pa.Table, deletes: pa.Table) -> None:
        """Write ``upserts`` and delete the ``deletes`` keys in one commit (the rows of every key
        touched are deleted, then the upserts appended)."""
        touched = pa.concat_tables([upserts.select(list(self.keys)), deletes.select(list(self.keys)).cast(
            upserts.select(list(self.keys)).schema)]) if upserts.num_rows else deletes.select(list(self.keys))
        if not touched.num_rows:
            return

        def change(table: Any) -> None:
            stored = table.schema().as_arrow()
            with warnings.catch_warnings(), table.transaction() as tx:
                warnings.filterwarnings("ignore", "Delete operation did not match any records", UserWarning)
                tx.delete(delete_filter=self._keys_filter(touched))
                if upserts.num_rows:
                    tx.append(table_to_storage(upserts, stored).cast(stored))

        self._committing(change, f"repairing range {key_range.label}")

    def write_range(self, key_range: KeyRange, data: pa.Table, upsert: bool = False) -> None:
        if upsert:
            def change(table: Any) -> None:
                stored = table.schema().as_arrow()
                table.upsert(table_to_storage(data, stored).cast(stored), join_cols=list(self.keys))

            self._committing(change, f"upserting range {key_range.label}")
        else:
            self.commit([(key_range, self.stage_range(key_range, data))])

    def _scan(self, key_range: KeyRange):
        table = self.catalog.load_table(self.identifier)
        return table.scan(row_filter=self._range_filter(key_range), selected_fields=tuple(_prepared(self.schema).names))

    def read_range(self, key_range: KeyRange) -> pa.Table:
        return table_from_storage(self._scan(key_range).to_arrow(), self.schema)

    def _from_storage(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Batches as Iceberg stored them, in the backfill's types for checksums: a column whose type
        differs only by its storage (large strings, a list element's name) is left as it is, which
        the checksum takes alike (no copy of every text); the others are converted back."""
        for batch in batches:
            columns = []
            for field in _prepared(self.schema):
                column = batch.column(field.name)
                same = plain_type(column.type) == plain_type(field.type)
                columns.append(column if same else from_storage(column, field.type, field.name))
            yield pa.RecordBatch.from_arrays(columns, names=_prepared(self.schema).names)

    def read_batches(self, key_range: KeyRange) -> Iterator[pa.RecordBatch]:
        """The range's rows as they are read, file by file, in the backfill's types (an int column
        back to int16, a text back to its interval...)."""
        yield from self._from_storage(self._scan(key_range).to_arrow_batch_reader())

    def read_keys(self, key_range: KeyRange, keys: pa.Table) -> pa.Table:
        """The rows of the given keys (a scan filtered by them: files whose statistics exclude
        every key are not read)."""
        if not keys.num_rows:
            return self.read_range(key_range).slice(0, 0)
        table = self.catalog.load_table(self.identifier)
        scan = table.scan(row_filter=self._keys_filter(keys), selected_fields=tuple(_prepared(self.schema).names))
        return table_from_storage(scan.to_arrow(), self.schema)

    def all_keys(self) -> pa.Table:
        """Every row's key columns (only their column chunks are read)."""
        table = self.catalog.load_table(self.identifier)
        return table_from_storage(table.scan(selected_fields=self.keys).to_arrow(),
                                  pa.schema([_prepared(self.schema).field(k) for k in self.keys]))

    def segment_counts(self, lo: int, width: int) -> pa.Table:
        """``seg, n`` of an integer key (see ``PostgresSource.segment_counts``), from its column."""
        import polars as pl

        frame = cast(pl.DataFrame, pl.from_arrow(self.all_keys().rename_columns(["k"])))  # a table: a DataFrame
        return frame.group_by(((pl.col("k") - lo) // width).alias("seg")).agg(pl.len().alias("n")).to_arrow()

    def keys_in_segments(self, lo: int, width: int, segments: list[int]) -> pa.Table:
        """The keys of the given segments."""
        keys = self.all_keys()
        wanted = pa.array(segments, pa.int64())
        segment = pc.divide(pc.subtract(pc.cast(keys.column(0), pa.int64()), lo), width)
        return keys.filter(pc.is_in(segment, value_set=wanted))

    @staticmethod
    def _files(scan: Any) -> frozenset[tuple[str, frozenset[str]]]:
        """The data files a scan reads, each with the delete files applied to it."""
        return frozenset((task.file.file_path, frozenset(d.file_path for d in task.delete_files))
                         for task in scan.plan_files())

    def snapshot_batches(
        self, key_range: KeyRange
    ) -> tuple[frozenset[tuple[str, frozenset[str]]], Iterator[pa.RecordBatch]]:
        """A range as of the table's current snapshot: the files its scan reads, and its rows.

        Both come from the same snapshot. Data files are immutable, so a later snapshot whose scan
        of the range reads the same files (``range_files``) holds the same rows there.
        """
        scan = self._scan(key_range)
        return self._files(scan), self._from_storage(scan.to_arrow_batch_reader())

    def range_files(self, key_ranges: list[KeyRange]) -> dict[str, frozenset[tuple[str, frozenset[str]]]]:
        """``range id -> files`` a scan of each range reads in the table's current snapshot (metadata only)."""
        table = self.catalog.load_table(self.identifier)
        return {r.id: self._files(table.scan(row_filter=self._range_filter(r), selected_fields=self.keys))
                for r in key_ranges}


def _held_files(table: Any) -> set[str]:
    """Every data and delete file any snapshot of an Iceberg table holds (its manifests, each read
    once; no statistics decoded, so any column type will do)."""
    held: set[str] = set()
    seen: set[str] = set()
    for snapshot in table.metadata.snapshots:
        for manifest in snapshot.manifests(table.io):
            if manifest.manifest_path in seen:
                continue
            seen.add(manifest.manifest_path)
            entries = manifest.fetch_manifest_entry(table.io, discard_deleted=False)
            held.update(entry.data_file.file_path for entry in entries)
    return held


class PostgresTarget:
    """A PostgreSQL table: each range is replaced in one transaction (DELETE, then ADBC's COPY ingest)."""

    def __init__(self, location: DatabaseLocation, table: str) -> None:
        self.location = location
        self.table = names.postgres_table(table)
        self.name = f"postgresql://{location.host}:{location.port}/{location.database}/{table}"
        self.keys: Keys = ()
        self.schema: pa.Schema | None = None
        self._columns: dict[str, dict[str, Any]] = {}  # the table's catalog rows (prepare)
        self._stored: pa.Schema | None = None  # its columns' own Arrow types and selects

    def _connect(self):
        """A connection of the target's one ADBC database (its type catalog is loaded once)."""
        return self._catalog._connect()

    @functools.cached_property
    def _catalog(self) -> PostgresSource:
        """The target database read as a source is (its catalog, and how a column is selected)."""
        return PostgresSource(self.location)

    @property
    def _quoted(self) -> str:
        return table_name(self.table, "postgres")

    def _column_list(self, columns: list[str] | tuple[str, ...]) -> str:
        return ", ".join(identifier(c, "postgres") for c in columns)

    def _where(self, key_range: KeyRange) -> str:
        predicate = range_predicate([(k, _prepared(self.schema).field(k).type) for k in self.keys], key_range,
                                    "postgres")
        return f" WHERE {predicate}" if predicate else ""

    def type_problems(self, schema: pa.Schema) -> list[str]:
        """The columns no PostgreSQL type holds exactly (one line each)."""
        return type_problems(schema, postgres_ddl_type)

    def prepare(self, schema: pa.Schema, key: str | Keys) -> None:
        """Create the table (the source's own types where PostgreSQL has them: ``types.postgres_ddl_type``),
        or check that the existing one holds every column (the same type or a wider one).

        Raises:
            TypeMappingError: a column no PostgreSQL type holds (before anything is created).
            TargetSchemaError: the existing table cannot hold a column.
        """
        _refuse_types(f"PostgreSQL table {self.table}", schema, postgres_ddl_type)
        self.keys, self.schema = key_tuple(key), schema
        catalog = self._catalog
        rows = catalog.columns(self.table)
        if not rows:
            columns = ", ".join(f"{identifier(f.name, 'postgres')} {postgres_ddl_type(f)}" for f in schema)
            with self._connect() as conn, conn.cursor() as cur:
                cur.execute(f"CREATE TABLE {self._quoted} ({columns}, PRIMARY KEY ({self._column_list(self.keys)}))")
                conn.commit()
            rows = catalog.columns(self.table)
        self._columns = {row["name"]: row for row in rows}
        self._stored = pa.schema([self._stored_field(row) for row in rows])
        problems = []
        for field in schema:
            if field.name in self._columns and pa.types.is_null(self._stored.field(field.name).type):
                problems.append(f"column {field.name!r} is {self._columns[field.name]['type']}, which holds no "
                                f"{field.type}")
            else:
                problems += _schema_problems(pa.schema([field]), self._stored)
        if problems:
            raise TargetSchemaError(f"PostgreSQL table {self.table} exists with an incompatible schema: "
                                    + "; ".join(problems))

    def _stored_field(self, row: dict[str, Any]) -> pa.Field:
        """A target column's own Arrow type, and how to select it (as a PostgreSQL source would)."""
        try:
            return self._catalog._field(row, None)
        except UnboundedNumericError:  # numeric without precision holds every decimal: read its text
            column = identifier(row["name"], "postgres")
            return pa.field(row["name"], pa.decimal256(76, 38),
                            metadata={b"mesh.select": f"{column}::text AS {column}"})
        except TypeMappingError:  # a type of the user's own: it holds nothing of ours
            return pa.field(row["name"], pa.null(), metadata={b"mesh.select": identifier(row["name"], "postgres")})

    def _ingest(self, cur: Any, data: pa.Table) -> None:
        """Append rows: ADBC's binary COPY straight into the table where every column takes the
        Arrow type COPY writes, else through a temporary table whose text columns PostgreSQL casts
        into the target's types (inet, jsonb, timetz, ranges...)."""
        schema_name, _, name = self.table.rpartition(".")
        storage = {f.name: postgres_storage_type(self._columns[f.name]["type"], f.type) for f in _prepared(self.schema)}
        if all(t is not None for t in storage.values()):
            stored = pa.schema([pa.field(n, t) for n, t in storage.items()])
            cur.adbc_ingest(name, table_to_storage(data, stored), mode="append", db_schema_name=schema_name or None)
            return
        text = {n: t if t is not None else pa.list_(pa.string()) if pa.types.is_list(data.schema.field(n).type)
                else pa.string() for n, t in storage.items()}
        stage = f"_mesh_stage_{uuid.uuid4().hex}"
        cur.adbc_ingest(stage, table_to_storage(data, pa.schema([pa.field(n, t) for n, t in text.items()])),
                        mode="create", temporary=True)
        columns = [identifier(n, "postgres") for n in storage]
        values = [f"CAST({c} AS {self._columns[n]['type']})" for n, c in zip(storage, columns, strict=False)]
        cur.execute(f"INSERT INTO {self._quoted} ({', '.join(columns)}) SELECT {', '.join(values)} FROM {stage}")
        cur.execute(f"DROP TABLE {stage}")

    def _select_list(self) -> str:
        return ", ".join(self._catalog._select(_prepared(self._stored).field(f.name)) for f in _prepared(self.schema))

    def _as_source_types(self, data: pa.Table) -> pa.Table:
        """Rows read from the target table, in the backfill's types."""
        stored = pa.schema([_prepared(self._stored).field(f.name) for f in _prepared(self.schema)])
        batches = [conform(batch, stored) for batch in data.to_batches()]
        return table_from_storage(pa.Table.from_batches(batches, schema=stored), self.schema)

    def _stage_keys(self, cur: Any, keys: pa.Table) -> tuple[str, str]:
        """Load keys into a temporary table (binary COPY); returns its quoted name and the condition
        matching the table's rows (``t``) to them (``s``)."""
        staged = identifier(f"airflow_mesh_keys_{uuid.uuid4().hex[:12]}", "postgres")
        stored = pa.schema([pa.field(k, postgres_storage_type(self._columns[k]["type"], keys.schema.field(k).type)
                                     or keys.schema.field(k).type) for k in self.keys])
        cur.adbc_ingest(staged.strip('"'), table_to_storage(keys.select(list(self.keys)), stored), mode="create",
                        temporary=True)
        # Its statistics, so the planner matches a few keys through the table's index, not by a scan.
        cur.execute(f"ANALYZE {staged}")
        return staged, " AND ".join(f"t.{identifier(k, 'postgres')} = s.{identifier(k, 'postgres')}" for k in self.keys)

    def _delete_keys(self, cur: Any, keys: pa.Table) -> None:
        """Delete the rows of the given keys, in one statement."""
        if not keys.num_rows:
            return
        staged, matches = self._stage_keys(cur, keys)
        cur.execute(f"DELETE FROM {self._quoted} AS t USING {staged} AS s WHERE {matches}")
        cur.execute(f"DROP TABLE {staged}")

    def read_keys(self, key_range: KeyRange, keys: pa.Table) -> pa.Table:
        """The rows of the given keys (a join with them, loaded into a temporary table)."""
        if not keys.num_rows:
            return self.read_range(key_range).slice(0, 0)
        with self._connect() as conn, conn.cursor() as cur:
            staged, matches = self._stage_keys(cur, keys)
            cur.execute(f"SELECT {self._select_list()} FROM {self._quoted} AS t WHERE EXISTS "
                        f"(SELECT 1 FROM {staged} AS s WHERE {matches})")
            found = self._as_source_types(cur.fetch_arrow_table())
            conn.rollback()
            return found

    def segment_counts(self, lo: int, width: int) -> pa.Table:
        """``seg, n`` of an integer key (see ``PostgresSource.segment_counts``), counted in the database."""
        column = identifier(self.keys[0], "postgres")
        with self._connect() as conn, conn.cursor() as cur:
            cur.execute(f"SELECT ({column} - {int(lo)}) / {int(width)} AS seg, count(*) AS n "
                        f"FROM {self._quoted} GROUP BY 1")
            return cur.fetch_arrow_table()

    def keys_in_segments(self, lo: int, width: int, segments: list[int]) -> pa.Table:
        """The keys of the given segments."""
        column = identifier(self.keys[0], "postgres")
        with self._connect() as conn, conn.cursor() as cur:
            spans = merged_segments(lo, width, segments)  # a join with the ranges: index range scans
            lows, highs = ",".join(str(a) for a, _ in spans), ",".join(str(b) for _, b in spans)
            own = _prepared(self._stored)
            cur.execute(f"SELECT {self._catalog._select(own.field(self.keys[0]))} FROM "
                        f"unnest('{{{lows}}}'::bigint[], '{{{highs}}}'::bigint[]) AS mesh_ranges(mesh_lo, mesh_hi) "
                        f"JOIN {self._quoted} ON {column} >= mesh_lo AND {column} < mesh_hi")
            stored = pa.schema([own.field(self.keys[0])])
            batches = [conform(b, stored) for b in cur.fetch_arrow_table().to_batches()]
            data = pa.Table.from_batches(batches, schema=stored)
            return table_from_storage(data, pa.schema([_prepared(self.schema).field(self.keys[0])]))

    def all_keys(self) -> pa.Table:
        """Every row's key columns."""
        with self._connect() as conn, conn.cursor() as cur:
            keys = ", ".join(self._catalog._select(_prepared(self._stored).field(k)) for k in self.keys)
            cur.execute(f"SELECT {keys} FROM {self._quoted}")
            stored = pa.schema([_prepared(self._stored).field(k) for k in self.keys])
            batches = [conform(b, stored) for b in cur.fetch_arrow_table().to_batches()]
            data = pa.Table.from_batches(batches, schema=stored)
            return table_from_storage(data, pa.schema([_prepared(self.schema).field(k) for k in self.keys]))

    def write_range(self, key_range: KeyRange, data: pa.Table, upsert: bool = False) -> None:
        """Replace the range (or, with ``upsert``, the rows of ``data`` by key) with ``data``, in one
        transaction."""
        with self._connect() as conn, conn.cursor() as cur:
            if upsert:
                self._delete_keys(cur, data)
            else:
                cur.execute(f"DELETE FROM {self._quoted}" + self._where(key_range))
            if data.num_rows:
                self._ingest(cur, data)
            conn.commit()

    def apply_changes(self, key_range: KeyRange, upserts: pa.Table, deletes: pa.Table) -> None:
        """Delete the rows of every key touched (``upserts``' and ``deletes``'), insert ``upserts``:
        one transaction."""
        with self._connect() as conn, conn.cursor() as cur:
            self._delete_keys(cur, upserts)
            self._delete_keys(cur, deletes)
            if upserts.num_rows:
                self._ingest(cur, upserts)
            conn.commit()

    def read_range(self, key_range: KeyRange) -> pa.Table:
        with self._connect() as conn, conn.cursor() as cur:
            cur.execute(f"SELECT {self._select_list()} FROM {self._quoted}" + self._where(key_range))
            return self._as_source_types(cur.fetch_arrow_table())

    def count_rows(self) -> int:
        """The table's rows."""
        with self._connect() as conn, conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {self._quoted}")
            return int(cur.fetchone()[0])


def _json_schema(schema: pa.Schema) -> pa.Schema:
    """The columns as JSON holds them (``types.json_storage_type``): numbers and booleans as JSON
    values, everything else as its exact text."""
    return pa.schema([pa.field(f.name, json_storage_type(f.type)) for f in schema])


def _non_finite(column: pa.ChunkedArray) -> bool:
    values = column
    while pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        values = pc.list_flatten(values)
    return pa.types.is_floating(values.type) and pc.any(pc.invert(pc.fill_null(pc.is_finite(values), True))).as_py()


def _documents(data: pa.Table) -> list[dict[str, Any]]:
    """One JSON document per row (decimals, timestamps, uuids... as their exact text: ``convert.to_text``).

    Raises:
        UnrepresentableValueError: a float is NaN or infinite, which JSON cannot hold.
    """
    for name in data.column_names:
        if _non_finite(data.column(name)):
            raise UnrepresentableValueError(name, "holds NaN or an infinity, which JSON (and Elasticsearch) cannot "
                                                  f"hold; --cast {name}=text, or --exclude {name}")
    return table_to_storage(data, _json_schema(data.schema)).to_pylist()


def _from_documents(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rebuild typed Arrow columns from JSON documents (the inverse of ``_documents``)."""
    stored = _json_schema(schema)
    table = pa.table([pa.array([row.get(f.name) for row in rows], f.type) for f in stored], schema=stored)
    return table_from_storage(table, schema)


# Mappings an existing index may have where this tool would create another, and still hold the
# values exactly (_source keeps each document as it was written): an index an earlier version made
# with `keyword` for text, wider numbers.
_ES_HOLDS = {"text": {"keyword", "match_only_text", "wildcard"}, "keyword": {"text", "wildcard"},
             "byte": {"short", "integer", "long"}, "short": {"integer", "long"}, "integer": {"long"},
             "float": {"double"}}


def _write_error(index: str, error: Any) -> TargetWriteError:
    """Elasticsearch's own words about the first documents a bulk request refused."""
    failures = []
    for item in error.errors[:3]:
        result = next(iter(item.values())) if isinstance(item, dict) and item else {}
        cause = result.get("error")
        cause = cause if isinstance(cause, dict) else {"reason": str(cause)}
        failures.append((str(result.get("_id")), str(cause.get("type", "error")), str(cause.get("reason", ""))[:500]))
    return TargetWriteError(f"Elasticsearch index {index}", failures, len(error.errors),
                            note=" (the range is partly written; a rerun replaces it)")


class ElasticsearchTarget:
    """An Elasticsearch index: one document per row, its ``_id`` the row's key (a composite key's
    values as a JSON array).

    Writing a range indexes its rows by id and deletes the range's documents that are no longer in
    the source, so a redone range ends exactly as the source. Key fields are mapped as ``keyword``
    (text) or their numeric or date type, which Elasticsearch orders as the source does.
    """

    def __init__(self, client: Any, index: str) -> None:
        self.client = client
        self.index = names.elasticsearch_index(index)
        self.name = f"elasticsearch://{index}"
        self.keys: Keys = ()
        self.schema: pa.Schema | None = None

    finite_floats_only = True  # JSON has no NaN or infinity: such values are refused before writing

    def type_problems(self, schema: pa.Schema) -> list[str]:
        """The columns no Elasticsearch mapping holds exactly (one line each)."""
        return type_problems(schema, elasticsearch_mapping)

    def _mapping(self, schema: pa.Schema) -> dict[str, dict[str, Any]]:
        wanted = {f.name: elasticsearch_mapping(f) for f in schema}
        for k in self.keys:
            t = schema.field(k).type
            if pa.types.is_decimal(t):
                raise PlanError(f"Elasticsearch index {self.index}: key column {k!r} is a decimal, which Elasticsearch "
                                "holds as text and cannot order as a number; name another key with `key` (--key)")
            if pa.types.is_string(t) or pa.types.is_large_string(t):
                wanted[k] = {"type": "keyword"}  # ranges and sorting need the exact term, whatever its length
        return wanted

    def prepare(self, schema: pa.Schema, key: str | Keys) -> None:
        """Create the index (``types.elasticsearch_mapping``, dynamic mapping off; key fields as
        ``keyword``), or check the existing mapping: each field of the type this tool would give it,
        or one that holds the same values (an earlier version's ``keyword`` for text, a wider number).

        Raises:
            TypeMappingError: a column no mapping holds (before anything is created).
            TargetSchemaError: the existing mapping cannot hold a column.
        """
        _refuse_types(f"Elasticsearch index {self.index}", schema, elasticsearch_mapping)
        self.keys, self.schema = key_tuple(key), schema
        wanted = self._mapping(schema)
        if not self.client.indices.exists(index=self.index):
            self.client.indices.create(index=self.index, mappings={"dynamic": "strict", "properties": wanted})
            return
        actual = self.client.indices.get_mapping(index=self.index)[self.index]["mappings"].get("properties", {})
        problems = [f"field {name!r} is {actual.get(name, {}).get('type', 'missing')}, expected {m['type']}"
                    for name, m in wanted.items() if actual.get(name, {}).get("type") != m["type"]
                    and actual.get(name, {}).get("type") not in _ES_HOLDS.get(m["type"], ())]
        if problems:
            raise TargetSchemaError(f"Elasticsearch index {self.index} exists with an incompatible mapping: "
                                    + "; ".join(problems))

    def _range_query(self, key_range: KeyRange) -> dict[str, Any]:
        ops = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}
        return range_condition(
            self.keys, key_range,
            compare=lambda c, op, v: {"range": {c: {ops[op]: v}}},
            equal=lambda c, v: {"term": {c: v}},
            all_of=lambda items: items[0] if len(items) == 1 else {"bool": {"filter": items}},
            any_of=lambda items: {"bool": {"should": items, "minimum_should_match": 1}},
            always=lambda: {"match_all": {}})

    def _id(self, values: tuple[Any, ...]) -> str:
        return str(values[0]) if len(values) == 1 else json.dumps(list(values), separators=(",", ":"))

    def _documents_in(self, key_range: KeyRange, fields: list[str] | bool) -> list[dict[str, Any]]:
        """Every document of a range, paged by key with search_after."""
        found, after = [], None
        while True:
            page = self.client.search(index=self.index, query=self._range_query(key_range), size=5000,
                                      sort=[{k: "asc"} for k in self.keys], source=fields,
                                      search_after=after)["hits"]["hits"]
            found += page
            if len(page) < 5000:
                return found
            after = page[-1]["sort"]

    def write_range(self, key_range: KeyRange, data: pa.Table, upsert: bool = False) -> None:
        from elasticsearch import helpers

        documents = _documents(data)
        ids = [self._id(tuple(doc[k] for k in self.keys)) for doc in documents]
        stale: list[str] = []
        if not upsert:
            self.client.indices.refresh(index=self.index)
            keep = set(ids)
            stale = [hit["_id"] for hit in self._documents_in(key_range, False) if hit["_id"] not in keep]
        actions: list[dict[str, Any]] = [{"_op_type": "delete", "_index": self.index, "_id": doc_id}
                                         for doc_id in stale]
        actions += [
            {"_index": self.index, "_id": doc_id, "_source": doc} for doc_id, doc in zip(ids, documents, strict=False)
        ]
        try:
            helpers.bulk(self.client.options(request_timeout=120), actions, chunk_size=5000)
        except helpers.BulkIndexError as exc:
            raise _write_error(self.index, exc) from None

    def read_range(self, key_range: KeyRange) -> pa.Table:
        self.client.indices.refresh(index=self.index)
        return _from_documents([hit["_source"] for hit in self._documents_in(key_range, True)], self.schema)

    def apply_changes(self, key_range: KeyRange, upserts: pa.Table, deletes: pa.Table) -> None:
        """Index ``upserts`` and delete the ``deletes`` keys' documents (one bulk request)."""
        from elasticsearch import helpers

        documents = _documents(upserts) if upserts.num_rows else []
        gone = [self._id(tuple(doc[k] for k in self.keys))  # as the ids were written: from the documents' form
                for doc in (_documents(deletes.select(list(self.keys))) if deletes.num_rows else [])]
        actions: list[dict[str, Any]] = [{"_op_type": "delete", "_index": self.index, "_id": doc_id}
                                         for doc_id in gone]
        actions += [{"_index": self.index, "_id": self._id(tuple(doc[k] for k in self.keys)), "_source": doc}
                    for doc in documents]
        if not actions:
            return
        try:
            helpers.bulk(self.client.options(request_timeout=120), actions, chunk_size=5000)
        except helpers.BulkIndexError as exc:
            raise _write_error(self.index, exc) from None

    def count_rows(self) -> int:
        """The index's documents."""
        self.client.indices.refresh(index=self.index)
        return int(self.client.count(index=self.index)["count"])
