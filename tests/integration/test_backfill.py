"""Backfills between the real datastores: content round-trips exactly, kills resume, bad input is refused."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest

from airflow_mesh.backfill import engine
from airflow_mesh.backfill.checkpoint import CheckpointStore
from airflow_mesh.backfill.endpoints import ConnectionFields, make_source, make_target
from airflow_mesh.backfill.errors import PlanError, TargetSchemaError, TypeMappingError, VerificationError
from airflow_mesh.backfill.plan import BackfillRequest, KeyRange

ROOT = Path(__file__).resolve().parents[2]
ROWS = 20_000  # the rows of the `pg_table` fixture (conftest.py)


def conn_fields(conn_id: str) -> ConnectionFields:
    c = json.loads(os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"])
    return ConnectionFields(c["conn_type"], c.get("host"), c.get("port"), c.get("login"), c.get("password"),
                            c.get("schema"), c.get("extra") or {})


@pytest.fixture
def mariadb_table():
    name = f"bf_{uuid.uuid4().hex[:8]}"
    cnf = ROOT / ".stack" / "conf" / "mariadb.cnf"

    def sql(statement: str) -> None:
        subprocess.run(["mariadb", f"--defaults-file={cnf}", "-u", "root", "mesh", "-e", statement], check=True)

    sql(f"CREATE TABLE {name} (id bigint PRIMARY KEY, order_id int(11), carrier varchar(64), "
        f"price decimal(10,3), shipped_at datetime(6), delivered tinyint(1))")
    sql(f"INSERT INTO {name} SELECT seq, seq % 50, CONCAT('carrier-', seq % 4), seq / 8, "
        f"TIMESTAMP '2026-02-03 04:05:06.123456' + INTERVAL seq MINUTE, seq % 2 FROM seq_1_to_{ROWS}")
    yield f"mesh.{name}"
    sql(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
def iceberg_catalog(tmp_path) -> ConnectionFields:
    catalog = {"type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/warehouse"}
    return ConnectionFields("iceberg", extra={"catalog": catalog})


def whole(target_or_source_table: pa.Table, key: str) -> pa.Table:
    return target_or_source_table.sort_by(key)


def copy_and_compare(source, target, request, checkpoints):
    summary = engine.run(source, target, request, checkpoints)
    assert summary.verified and summary.rows == ROWS
    # Cut from the database's row estimate when it has one (InnoDB's is rough): about 4 ranges; the
    # completed run's plan is not kept (the next run is a new one).
    assert 3 <= summary.ranges <= 6 and checkpoints.saved_plan(summary.job) is None
    plan = engine.plan(source, target, request)
    everything = KeyRange(plan.ranges[0].lo, plan.ranges[-1].hi)
    expected = whole(engine.read_range(source, plan, request, everything), plan.key)
    actual = whole(target.read_range(everything), plan.key)
    assert actual.schema.equals(expected.schema)
    assert actual.equals(expected)  # types and values round-trip exactly
    return summary


@pytest.mark.parametrize("target_kind", ["iceberg", "postgres", "elasticsearch", "kafka"])
def test_postgres_to_each_target(pg_table, target_kind, iceberg_catalog, tmp_path, kafka_admin):
    source = make_source(conn_fields("postgres_mesh"))
    name = {"iceberg": f"mesh.{pg_table.split('.')[1]}", "postgres": f"{pg_table}_copy",
            "elasticsearch": pg_table.split(".")[1], "kafka": f"backfill.{pg_table.split('.')[1]}"}[target_kind]
    fields = {"iceberg": iceberg_catalog, "postgres": conn_fields("postgres_mesh"),
              "elasticsearch": conn_fields("elasticsearch_default"), "kafka": conn_fields("kafka_default")}[target_kind]
    target = make_target(fields, name)
    request = BackfillRequest(table=pg_table, range_size=ROWS // 4, parallelism=2)
    try:
        copy_and_compare(source, target, request, CheckpointStore(tmp_path / "cp.sqlite"))
    finally:
        if target_kind == "elasticsearch":
            target.client.indices.delete(index=name, ignore_unavailable=True)
        if target_kind == "kafka":
            kafka_admin.delete_topics([name])[name].result(timeout=30)


def test_mariadb_to_iceberg_and_iceberg_to_postgres(mariadb_table, iceberg_catalog, tmp_path, postgres_conninfo):
    checkpoints = CheckpointStore(tmp_path / "cp.sqlite")
    iceberg_name = f"mesh.{mariadb_table.split('.')[1]}"
    copy_and_compare(make_source(conn_fields("mariadb_mesh")), make_target(iceberg_catalog, iceberg_name),
                     BackfillRequest(table=mariadb_table, range_size=ROWS // 4), checkpoints)
    pg_name = f"public.{mariadb_table.split('.')[1]}_from_iceberg"
    try:
        copy_and_compare(make_source(iceberg_catalog), make_target(conn_fields("postgres_mesh"), pg_name),
                         BackfillRequest(table=iceberg_name, range_size=ROWS // 4), checkpoints)
    finally:
        with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {pg_name}")


def done_ranges(checkpoints: Path) -> int:
    """Ranges a run recorded as done; 0 before it made its checkpoint file and tables."""
    try:
        return sqlite3.connect(checkpoints).execute("SELECT count(*) FROM done_ranges").fetchone()[0]
    except sqlite3.OperationalError:  # the file exists, its tables not yet
        return 0


def test_sigkill_mid_run_then_resume_leaves_every_row_exactly_once(pg_table, iceberg_catalog, tmp_path):
    checkpoints = tmp_path / "cp.sqlite"
    c = json.loads(os.environ["AIRFLOW_CONN_POSTGRES_MESH"])
    args = [sys.executable, "-m", "airflow_mesh.backfill",
            "--source", f"postgresql://{c['login']}:{c['password']}@{c['host']}:{c['port']}/{c['schema']}",
            "--table", pg_table, "--target", "iceberg://?extra=" + json.dumps(iceberg_catalog.extra),
            "--target-name", "mesh.killed", "--range-size", "500", "--parallelism", "1",
            "--checkpoints", str(checkpoints)]
    run = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill it once some, but not all, of the 40 ranges are done
        if done_ranges(checkpoints) >= 5:
            break
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    done_before = sqlite3.connect(checkpoints).execute("SELECT count(*) FROM done_ranges").fetchone()[0]
    assert 5 <= done_before < 40

    resumed = subprocess.run(args, capture_output=True, text=True, check=True)
    summary = json.loads(resumed.stdout)
    assert summary["verified"] and summary["rows"] == ROWS
    assert summary["ranges_skipped"] >= done_before
    copied = make_source(iceberg_catalog)
    ids = copied.catalog.load_table("mesh.killed").scan(selected_fields=("id",)).to_arrow()["id"]
    assert len(ids) == ROWS and len(set(ids.to_pylist())) == ROWS


def test_verification_names_the_range_that_differs(pg_table, tmp_path, postgres_conninfo):
    source = make_source(conn_fields("postgres_mesh"))
    target = make_target(conn_fields("postgres_mesh"), f"{pg_table}_copy")
    request = BackfillRequest(table=pg_table, range_size=ROWS // 4)
    engine.run(source, target, request, CheckpointStore(tmp_path / "cp.sqlite"))
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"UPDATE {pg_table}_copy SET amount = amount + 0.01 WHERE id = 12345")
    with pytest.raises(VerificationError,
                       match=r"range 10001-15001: 0 rows missing from the target, 1 differ, 0 extra"):
        engine.verify(source, target, request)


def test_bad_input_fails_before_writing(pg_table, postgres_conninfo, tmp_path):
    source = make_source(conn_fields("postgres_mesh"))
    target = make_target(conn_fields("postgres_mesh"), f"{pg_table}_copy")
    checkpoints = CheckpointStore(tmp_path / "cp.sqlite")
    with pytest.raises(PlanError, match=r"table public\.nope does not exist"):
        engine.run(source, target, BackfillRequest(table="public.nope"), checkpoints)
    name = pg_table.split(".")[1]
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name}_nokey (a int, b text)")
        conn.execute(f"CREATE TABLE {name}_numeric (id bigint PRIMARY KEY, x numeric)")
        conn.execute(f"CREATE TABLE {name}_copy (id bigint PRIMARY KEY, amount text)")  # incompatible target
    try:
        with pytest.raises(PlanError, match="has no primary key or unique key; name the column"):
            engine.run(source, target, BackfillRequest(table=f"{pg_table}_nokey"), checkpoints)
        with pytest.raises(TypeMappingError, match="column 'x': numeric has no precision"):
            engine.run(source, target, BackfillRequest(table=f"{pg_table}_numeric"), checkpoints)
        with pytest.raises(TargetSchemaError, match="column 'amount' is string, the source's is decimal128"):
            engine.run(source, target, BackfillRequest(table=pg_table), checkpoints)
        with psycopg.connect(postgres_conninfo) as conn:
            assert conn.execute(f"SELECT count(*) FROM {name}_copy").fetchone()[0] == 0
    finally:
        with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {name}_nokey, {name}_numeric")


def test_resume_keeps_the_first_plan_and_extends_it_to_new_keys(pg_table, iceberg_catalog, tmp_path,
                                                                 postgres_conninfo):
    """The plan is cut from PostgreSQL's row estimate (no count) and saved with the run; the run is
    killed, rows are added and the statistics change, and the resumed run moves its saved ranges
    (the done ones skipped) plus ranges for the new keys."""
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"ANALYZE {pg_table}")
    checkpoints = tmp_path / "cp.sqlite"
    c = json.loads(os.environ["AIRFLOW_CONN_POSTGRES_MESH"])
    args = [sys.executable, "-m", "airflow_mesh.backfill",
            "--source", f"postgresql://{c['login']}:{c['password']}@{c['host']}:{c['port']}/{c['schema']}",
            "--table", pg_table, "--target", "iceberg://?extra=" + json.dumps(iceberg_catalog.extra),
            "--target-name", "mesh.grown", "--range-size", "500", "--parallelism", "1",
            "--checkpoints", str(checkpoints)]
    run = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if checkpoints.exists() and sqlite3.connect(checkpoints).execute(
                "SELECT count(*) FROM sqlite_master WHERE name = 'done_ranges'").fetchone()[0] and \
                sqlite3.connect(checkpoints).execute("SELECT count(*) FROM done_ranges").fetchone()[0] >= 5:
            break
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    store = CheckpointStore(checkpoints)
    job = sqlite3.connect(checkpoints).execute("SELECT job FROM plans").fetchone()[0]
    saved_ranges, _ = store.saved_plan(job)
    assert len(saved_ranges) == 40 and 5 <= len(store.done(job)) < 40

    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {pg_table} (id, status) "
                     f"SELECT g, 'late' FROM generate_series({ROWS + 1}, {ROWS + 2000}) g")
        conn.execute(f"ANALYZE {pg_table}")
    resumed = json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)
    assert resumed["job"] == job and resumed["ranges"] == 44  # the 40 saved ranges, 4 more for the new keys
    assert resumed["ranges_skipped"] >= 5 and resumed["rows"] == ROWS + 2000 and resumed["verified"]
    assert store.saved_plan(job) is None  # the run completed: its plan goes with it
    ids = make_source(iceberg_catalog).catalog.load_table("mesh.grown").scan(selected_fields=("id",)).to_arrow()["id"]
    assert len(ids) == ROWS + 2000 and len(set(ids.to_pylist())) == ROWS + 2000
