"""Iceberg backfills stream ranges into staged files and commit them in groups: a copy redone over an
existing table, cut differently, still replaces every range (no row lost, none doubled)."""

from __future__ import annotations

import json
import os
import uuid

import psycopg
import pyarrow.compute as pc
import pytest

from airflow_mesh.backfill import engine
from airflow_mesh.backfill.checkpoint import CheckpointStore
from airflow_mesh.backfill.endpoints import ConnectionFields, make_source, make_target
from airflow_mesh.backfill.plan import BackfillRequest

ROWS = 30_000


@pytest.fixture
def pg_table(postgres_conninfo):
    name = f"bf_replace_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, amount numeric(12,2), note text)")
        conn.execute(f"INSERT INTO {name} SELECT g, g / 4.0, CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' || g END "
                     f"FROM generate_series(1, {ROWS}) g")
    yield name
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


def test_redone_copies_replace_every_range(pg_table, tmp_path, postgres_conninfo):
    c = json.loads(os.environ["AIRFLOW_CONN_POSTGRES_MESH"])
    source = make_source(ConnectionFields(c["conn_type"], c["host"], c["port"], c["login"], c["password"], c["schema"]))
    catalog = {"type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/warehouse"}
    target = make_target(ConnectionFields("iceberg", extra={"catalog": catalog}), f"mesh.{pg_table}")
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        expected_sum = conn.execute(f"SELECT sum(amount) FROM {pg_table}").fetchone()[0]

    # A first copy, the same again (every range's delete now matches a file), then cuts that do not
    # line up with the files already there (deletes rewrite files) and an update in between.
    for run, (range_size, parallelism) in enumerate([(5_000, 2), (5_000, 2), (7_000, 3), (12_000, 1)]):
        if run == 3:
            with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
                conn.execute(f"UPDATE {pg_table} SET amount = amount + 1 WHERE id % 1000 = 0")
            expected_sum += 30
        summary = engine.run(source, target, BackfillRequest(table=f"public.{pg_table}", range_size=range_size,
                                                             parallelism=parallelism),
                             CheckpointStore(tmp_path / f"checkpoints-{run}.sqlite"))
        assert summary.verified and summary.rows == ROWS
        copied = target.catalog.load_table(f"mesh.{pg_table}").scan(selected_fields=("id", "amount")).to_arrow()
        assert copied.num_rows == ROWS and pc.count_distinct(copied["id"]).as_py() == ROWS
        assert pc.sum(copied["amount"]).as_py() == expected_sum


def test_staged_files_follow_the_tables_compression_properties(pg_table, tmp_path):
    """Files are written with the codec an existing table asks for (Iceberg's write.parquet.* properties)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyiceberg.catalog import load_catalog

    c = json.loads(os.environ["AIRFLOW_CONN_POSTGRES_MESH"])
    source = make_source(ConnectionFields(c["conn_type"], c["host"], c["port"], c["login"], c["password"], c["schema"]))
    catalog = {"type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/warehouse"}
    iceberg = load_catalog("default", **catalog)
    iceberg.create_namespace("mesh")
    schema = pa.schema([pa.field("id", pa.int64(), nullable=False), ("amount", pa.decimal128(12, 2)),
                        ("note", pa.string())])
    iceberg.create_table(f"mesh.{pg_table}", schema=schema, properties={"write.parquet.compression-codec": "snappy"})
    target = make_target(ConnectionFields("iceberg", extra={"catalog": catalog}), f"mesh.{pg_table}")
    summary = engine.run(source, target, BackfillRequest(table=f"public.{pg_table}", range_size=10_000,
                                                             parallelism=1),
                         CheckpointStore(tmp_path / "checkpoints.sqlite"))
    assert summary.verified and summary.ranges == 3
    files = [task.file.file_path for task in iceberg.load_table(f"mesh.{pg_table}").scan().plan_files()]
    assert len(files) == 3
    for path in files:
        metadata = pq.ParquetFile(path.removeprefix("file://")).metadata
        assert {metadata.row_group(0).column(i).compression for i in range(metadata.num_columns)} == {"SNAPPY"}


def test_ranges_read_back_early_are_read_again_when_their_files_change(pg_table, tmp_path, caplog):
    """Ranges are read back right after their commit; at the end, a range whose files changed since
    (here: a later commit rewrites an early range with a wrong row) is read again and fails."""
    import logging

    import pyarrow as pa

    from airflow_mesh.backfill.errors import VerificationError
    from airflow_mesh.backfill.plan import KeyRange

    c = json.loads(os.environ["AIRFLOW_CONN_POSTGRES_MESH"])
    source = make_source(ConnectionFields(c["conn_type"], c["host"], c["port"], c["login"], c["password"], c["schema"]))
    catalog = {"type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/warehouse"}
    request = BackfillRequest(table=f"public.{pg_table}", range_size=5_000, parallelism=1)

    clean = make_target(ConnectionFields("iceberg", extra={"catalog": catalog}), f"mesh.{pg_table}_clean")
    with caplog.at_level(logging.INFO, logger="airflow_mesh.backfill.engine"):
        summary = engine.run(source, clean, request, CheckpointStore(tmp_path / "clean.sqlite"))
    assert summary.verified and summary.ranges == 6
    proven = [r.getMessage() for r in caplog.records if "verified as they were committed" in r.getMessage()]
    assert proven and not proven[0].startswith("backfill: 0 ranges")

    tampered = make_target(ConnectionFields("iceberg", extra={"catalog": catalog}), f"mesh.{pg_table}_tampered")
    commit = tampered.commit
    first = KeyRange(1, 5_001)

    def commit_then_tamper(staged):
        commit(staged)
        if any(key_range.lo > 25_000 for key_range, _ in staged):  # the last range: rewrite the first one
            rows = tampered.read_range(first)
            wrong = rows.set_column(rows.schema.get_field_index("note"), "note",
                                    pa.array(["tampered"] * rows.num_rows, pa.string()))
            commit([(first, tampered.stage_range(first, wrong))])

    tampered.commit = commit_then_tamper
    with pytest.raises(VerificationError, match="range 1-5001"):
        engine.run(source, tampered, request, CheckpointStore(tmp_path / "tampered.sqlite"))
