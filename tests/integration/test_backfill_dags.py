"""The backfill DAGs under dag.test(): the UI form fanned out over mapped tasks, and the scheduled migration."""

from __future__ import annotations

import importlib.util
import json
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest

from airflow_mesh.backfill.endpoints import ConnectionFields, make_source

ROOT = Path(__file__).resolve().parents[2]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "dags" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, f"{name}_dag")


@pytest.fixture
def iceberg(tmp_path, monkeypatch) -> ConnectionFields:
    """A private Iceberg catalog, defined as the iceberg_default connection for the test."""
    catalog = {"type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/warehouse"}
    monkeypatch.setenv("AIRFLOW_CONN_ICEBERG_DEFAULT",
                       json.dumps({"conn_type": "iceberg", "extra": {"catalog": catalog}}))
    monkeypatch.setenv("AIRFLOW_HOME", os.environ["AIRFLOW_HOME"])
    return ConnectionFields("iceberg", extra={"catalog": catalog})


@pytest.fixture
def source_table(postgres_conninfo):
    name = f"bf_ui_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, status text, amount numeric(12,2), "
                     "updated_at timestamptz NOT NULL DEFAULT now())")
        conn.execute(f"INSERT INTO {name} SELECT g, 's' || g % 3, g / 4.0, now() - interval '1 day' "
                     "FROM generate_series(1, 5000) g")
    yield name
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


def iceberg_rows(iceberg: ConnectionFields, table: str) -> dict[int, tuple]:
    rows = make_source(iceberg).catalog.load_table(table).scan().to_arrow().to_pylist()
    return {r["id"]: (r["status"], str(r["amount"])) for r in rows}


def test_ui_backfill_fans_out_and_verifies(airflow_db, iceberg, source_table):
    dag = load("backfill_ui")
    run = dag.test(run_conf={"table": f"public.{source_table}", "target_name": f"mesh.{source_table}",
                             "range_size": 700, "parallelism": 3})
    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert sorted(k for k in states if k[0] == "move_ranges") == [("move_ranges", i) for i in range(3)]
    # Mapped tasks are labelled by their key ranges, not [0], [1], [2].
    labels = sorted(ti.rendered_map_index for ti in run.get_task_instances() if ti.task_id == "move_ranges")
    assert labels[0].startswith("3 ranges: 1-") and all(label and "ranges: " in label for label in labels), labels
    copied = iceberg_rows(iceberg, f"mesh.{source_table}")
    assert len(copied) == 5000 and copied[4] == ("s1", "1.00")
    # One commit for the data of every range (plus the table's creation).
    snapshots = make_source(iceberg).catalog.load_table(f"mesh.{source_table}").snapshots()
    assert len(snapshots) == 1


def test_ui_backfill_rejects_a_conf_its_form_would_refuse(airflow_db, iceberg):
    from airflow.sdk.exceptions import ParamValidationError

    dag = load("backfill_ui")
    with pytest.raises(ParamValidationError, match="range_size"):
        dag.test(run_conf={"range_size": 0})
    with pytest.raises(ParamValidationError, match="mode"):
        dag.test(run_conf={"mode": "sideways"})


def test_scheduled_migration_copies_upserts_then_syncs_what_the_cursor_misses(airflow_db, iceberg, source_table,
                                                                              postgres_conninfo, monkeypatch):
    dag = load("scheduled_migration")
    for task_id in ("migrate_orders", "sync_orders"):
        # Point the migration at the test's own table (the demo tables belong to other tests).
        monkeypatch.setattr(dag.get_task(task_id), "table", f"public.{source_table}")
        monkeypatch.setattr(dag.get_task(task_id), "target_name", f"mesh.{source_table}")
    dag = dag.partial_subset(task_ids=["sync_due", "migrate_orders", "sync_orders"], include_upstream=False)
    run = dag.test(run_conf={"sync": False}, logical_date=datetime(2026, 12, 4, 13, tzinfo=timezone.utc))
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success" and states["sync_orders"] == "skipped", states  # not the sync hour
    assert len(iceberg_rows(iceberg, f"mesh.{source_table}")) == 5000

    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"UPDATE {source_table} SET status = 'changed', updated_at = now() WHERE id IN (7, 8)")
        conn.execute(f"INSERT INTO {source_table} (id, status, amount) VALUES (6001, 'new', 1.25)")
        conn.execute(f"DELETE FROM {source_table} WHERE id = 10")  # only the sync sees this
        conn.execute(f"UPDATE {source_table} SET status = 'silent' WHERE id = 11")  # nor this
    run = dag.test(logical_date=datetime(2026, 12, 5, 0, tzinfo=timezone.utc))  # midnight: the daily sync runs
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success" and states["sync_orders"] == "success", states
    copied = iceberg_rows(iceberg, f"mesh.{source_table}")
    assert len(copied) == 5000 and 10 not in copied
    assert copied[7] == ("changed", "1.75") and copied[6001] == ("new", "1.25") and copied[11] == ("silent", "2.75")


def test_the_demo_tables_move_updated_at_on_every_update(postgres_conninfo):
    with psycopg.connect(postgres_conninfo) as conn:  # rolled back: the demo tables stay as they were
        conn.execute("INSERT INTO customers (id, name, updated_at) VALUES (-1, 'x', now() - interval '1 day')")
        conn.execute("UPDATE customers SET name = 'y' WHERE id = -1")  # updated_at not set by the statement
        moved = conn.execute("SELECT updated_at > now() - interval '1 minute' FROM customers WHERE id = -1").fetchone()
        conn.rollback()
    assert moved == (True,)
