"""dags/online_backfill.py runs green under dag.test(), its sensors waiting in the triggerer."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_incremental_snapshot import SnapshotConnector, signal_table_rows, snapshot_connector

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dags" / "online_backfill.py"


def load_dag():
    spec = importlib.util.spec_from_file_location("online_backfill", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.online_backfill_dag


@pytest.fixture
def cdc(postgres_conninfo, bootstrap_servers, tmp_path) -> Iterator[SnapshotConnector]:
    with snapshot_connector(postgres_conninfo, bootstrap_servers, tmp_path, {"rows": 500}) as connector:
        yield connector


def test_online_backfill_dag(airflow_db, cdc, postgres_conninfo, monkeypatch, caplog, capsys):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    table = cdc.qualified("rows")

    run = load_dag().test(run_conf={"connector_name": cdc.name, "tables": [table], "filters": {table: "id > 100"}})

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert states == {"connector_healthy": "success", "request_snapshot": "success", "wait_for_snapshot": "success"}
    # Both sensors waited as triggers (dag.test() runs them in line).
    assert caplog.text.count("[DAG TEST] Trigger completed") == 2
    # The sensor's task log (on stdout) carries Debezium's verdict: the filter left 400 of 500 rows.
    assert f"of {cdc.topic_prefix} completed: {table}: SUCCEEDED (400 rows)" in capsys.readouterr().out
    # The sensor removed the signal once Debezium had acted on it: the connector's signal table is empty again.
    assert signal_table_rows(postgres_conninfo, cdc) == []
