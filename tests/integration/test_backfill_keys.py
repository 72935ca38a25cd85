"""Backfills on any orderable key, through every target of the real stack: composite keys, text keys
in a collation whose order is not byte order, refused non-unique keys, filters and names."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from airflow_mesh.backfill import engine
from airflow_mesh.backfill.checkpoint import CheckpointStore
from airflow_mesh.backfill.endpoints import ConnectionFields, make_source, make_target
from airflow_mesh.backfill.errors import PlanError
from airflow_mesh.backfill.plan import BackfillRequest

ROOT = Path(__file__).resolve().parents[2]

# Keys whose order differs between byte order and a linguistic collation: upper before lower in
# bytes, accents after z, a 4-byte character last; several regions per id.
WORDS = ["apple", "Apple", "banana", "Zebra", "zebra", "éclair", "eclair", "Ölfass", "olive", "😀smile", "a b", "a'b"]


def conn_fields(conn_id: str) -> ConnectionFields:
    c = json.loads(os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"])
    return ConnectionFields(c["conn_type"], c.get("host"), c.get("port"), c.get("login"), c.get("password"),
                            c.get("schema"), c.get("extra") or {})


@pytest.fixture
def iceberg_catalog(tmp_path) -> ConnectionFields:
    catalog = {"type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/warehouse"}
    return ConnectionFields("iceberg", extra={"catalog": catalog})


@pytest.fixture
def composite_table(postgres_conninfo):
    """``"Region Name" text COLLATE "und-x-icu"``, ``id int``: primary key (region, id), 1,200 rows."""
    name = f"bf_keys_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE {name} ("Region Name" text COLLATE "und-x-icu", id int, amount numeric(10,2), '
                     f'PRIMARY KEY ("Region Name", id))')
        with conn.cursor().copy(f'COPY {name} ("Region Name", id, amount) FROM STDIN') as copy:
            for word in WORDS:
                for i in range(100):
                    copy.write_row((word, i, f"{i}.25"))
    yield f"public.{name}"
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}, {name}_copy")


def _source_rows(postgres_conninfo: str, table: str) -> set[tuple]:
    with psycopg.connect(postgres_conninfo) as conn:
        return {(r, i, str(a)) for r, i, a in conn.execute(f'SELECT "Region Name", id, amount FROM {table}')}


@pytest.mark.parametrize("target_kind", ["iceberg", "postgres", "elasticsearch", "kafka"])
def test_a_composite_text_key_in_a_linguistic_collation_copies_every_row_once(
        composite_table, target_kind, iceberg_catalog, tmp_path, postgres_conninfo, kafka_admin):
    short = composite_table.split(".")[1]
    name = {"iceberg": f"mesh.{short}", "postgres": f"{composite_table}_copy", "elasticsearch": short,
            "kafka": f"backfill.{short}"}[target_kind]
    fields = {"iceberg": iceberg_catalog, "postgres": conn_fields("postgres_mesh"),
              "elasticsearch": conn_fields("elasticsearch_default"), "kafka": conn_fields("kafka_default")}[target_kind]
    source, target = make_source(conn_fields("postgres_mesh")), make_target(fields, name)
    request = BackfillRequest(table=composite_table, range_size=100, parallelism=2)
    checkpoints = CheckpointStore(tmp_path / "cp.sqlite")
    try:
        summary = engine.run(source, target, request, checkpoints)
        assert summary.verified and summary.rows == len(WORDS) * 100
        assert summary.ranges >= 10  # cut at sampled boundaries, not one range
        the_plan = engine.plan(source, target, request, checkpoints)
        assert the_plan.keys == ("Region Name", "id")
        assert the_plan.ranges[0].lo is None and the_plan.ranges[-1].hi is None
        copied = set()
        for key_range in the_plan.ranges:
            rows = target.read_range(key_range).to_pylist()
            copied |= {(r["Region Name"], r["id"], str(r["amount"])) for r in rows}
        assert copied == _source_rows(postgres_conninfo, composite_table)
        # A rerun is a new run (the first completed): it copies every range again, and verifies.
        again = engine.run(source, target, request, checkpoints)
        assert again.ranges_skipped == 0 and again.verified and again.rows == len(WORDS) * 100
    finally:
        if target_kind == "elasticsearch":
            target.client.indices.delete(index=name, ignore_unavailable=True)
        if target_kind == "kafka":
            kafka_admin.delete_topics([name])[name].result(timeout=30)


@pytest.fixture
def mariadb_sql():
    cnf = ROOT / ".stack" / "conf" / "mariadb.cnf"

    def sql(statement: str) -> str:
        return subprocess.run(["mariadb", f"--defaults-file={cnf}", "--default-character-set=utf8mb4", "-u", "root",
                               "mesh", "-N", "-B", "-e", statement],
                              check=True, capture_output=True, text=True).stdout

    return sql


def test_a_mariadb_text_key_in_a_case_insensitive_collation_into_iceberg(mariadb_sql, iceberg_catalog, tmp_path):
    name = f"bf_keys_{uuid.uuid4().hex[:8]}"
    # Distinct under utf8mb4_general_ci too (no word differs from another only in case or accents).
    words = ["apple", "Banana", "zebra", "éclair", "Ölfass", "olive", "😀smile", "a b", "a'b", "Mango"]
    values = ", ".join(f"('{w.replace(chr(39), chr(39) * 2)}-{i}', {i})" for w in words for i in range(50))
    try:
        mariadb_sql(f"CREATE TABLE {name} (code varchar(40) COLLATE utf8mb4_general_ci PRIMARY KEY, n int)")
        mariadb_sql(f"INSERT INTO {name} VALUES {values}")
        source = make_source(conn_fields("mariadb_mesh"))
        target = make_target(iceberg_catalog, f"mesh.{name}")
        summary = engine.run(source, target, BackfillRequest(table=f"mesh.{name}", range_size=40),
                             CheckpointStore(tmp_path / "cp.sqlite"))
        assert summary.verified and summary.ranges >= 10
        codes = target.catalog.load_table(f"mesh.{name}").scan(selected_fields=("code",)).to_arrow()["code"].to_pylist()
        expected = mariadb_sql(f"SELECT code FROM {name}").splitlines()
        assert sorted(codes) == sorted(expected) and len(set(codes)) == len(codes)
    finally:
        mariadb_sql(f"DROP TABLE IF EXISTS {name}")


def test_a_key_that_is_not_unique_is_refused_before_the_target_is_created(pg_table, iceberg_catalog, tmp_path):
    source, target = make_source(conn_fields("postgres_mesh")), make_target(iceberg_catalog, "mesh.by_customer")
    checkpoints = CheckpointStore(tmp_path / "cp.sqlite")
    with pytest.raises(PlanError, match=r"key customer_id is not unique \(\d+ is the key of several rows\)"):
        engine.run(source, target, BackfillRequest(table=pg_table, key="customer_id"), checkpoints)
    with pytest.raises(PlanError, match=r"key note is not unique \(some rows have NULL in it\)"):
        engine.run(source, target, BackfillRequest(table=pg_table, key="note"), checkpoints)
    assert not target.catalog.table_exists("mesh.by_customer")
    # A unique column that is not the primary key is checked, then used.
    summary = engine.run(source, target, BackfillRequest(table=pg_table, key="created_at", range_size=5000),
                         checkpoints)
    assert summary.verified and summary.rows == 20_000


def test_a_filter_that_escapes_its_parentheses_writes_nothing(pg_table, tmp_path, postgres_conninfo):
    source = make_source(conn_fields("postgres_mesh"))
    target = make_target(conn_fields("postgres_mesh"), f"{pg_table}_copy")
    request = BackfillRequest.model_construct(**{**BackfillRequest(table=pg_table).__dict__,
                                                 "where": "id < 10) OR (true"})  # past the request's own check
    with pytest.raises(PlanError, match="is not an SQL expression"):
        engine.run(source, target, request, CheckpointStore(tmp_path / "cp.sqlite"))
    with psycopg.connect(postgres_conninfo) as conn:
        assert conn.execute("SELECT to_regclass(%s)", (f"{pg_table}_copy",)).fetchone()[0] is None
    # The same filter, well formed, copies only what it selects.
    summary = engine.run(source, target, BackfillRequest(table=pg_table, where="id < 10 OR status = 'paid'"),
                         CheckpointStore(tmp_path / "cp.sqlite"))
    with psycopg.connect(postgres_conninfo) as conn:
        expected = conn.execute(f"SELECT count(*) FROM {pg_table} WHERE id < 10 OR status = 'paid'").fetchone()[0]
    assert summary.verified and summary.rows == expected


@pytest.mark.parametrize(("kind", "bad"), [("postgres", "public.x; DROP TABLE y"), ("iceberg", "mesh.bad name!"),
                                       ("elasticsearch", "Orders"), ("kafka", "orders topic")])
def test_target_names_are_refused_before_anything_is_contacted(kind, bad, iceberg_catalog):
    fields = {"iceberg": iceberg_catalog, "postgres": conn_fields("postgres_mesh"),
              "elasticsearch": conn_fields("elasticsearch_default"), "kafka": conn_fields("kafka_default")}[kind]
    with pytest.raises(PlanError, match="name"):
        make_target(fields, bad)
