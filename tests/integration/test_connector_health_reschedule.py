"""ConnectorHealthSensor in mode="reschedule" under dag.test(): each poke is a new run of the task,
and the watch's state (healthy since when, restarts made) survives in Airflow's task state store."""

from __future__ import annotations

import importlib.util
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml

from airflow_mesh.hooks.kafka_connect import KafkaConnectHook
from airflow_mesh.operators.kafka_connect import DeployConnectorOperator

DAG_FILE = """
from datetime import datetime

from airflow.sdk import DAG
from airflow_mesh.sensors.kafka_connect import ConnectorHealthSensor

with DAG({dag_id!r}, schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
    ConnectorHealthSensor(task_id="wait", connector_name={connector!r}, mode="reschedule",
                          poke_interval=1, healthy_for=4, timeout=90, deferrable=False)
"""


@pytest.fixture
def running_connector(postgres_conninfo: str, tmp_path: Path) -> Iterator[str]:
    """A Debezium connector of its own (fresh table, slot, publication), RUNNING; removed afterwards."""
    suffix = uuid.uuid4().hex[:8]
    table, name = f"resched_{suffix}", f"resched-cdc-{suffix}"
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE public.{table} (id bigint PRIMARY KEY)")
    spec = {"name": name, "class": "io.debezium.connector.postgresql.PostgresConnector",
            "database": {"conn_id": "postgres_mesh"},
            "config": {"topic.prefix": f"resched{suffix}", "plugin.name": "pgoutput", "slot.name": table,
                       "publication.name": table, "publication.autocreate.mode": "filtered",
                       "table.include.list": f"public\\.{table}"}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    DeployConnectorOperator(task_id="deploy", spec_path=str(tmp_path / "spec.yaml")).execute({})
    yield name
    hook = KafkaConnectHook()
    hook.delete_connector(name)
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (table,)).fetchone()
            if row is None or not row[0]:
                if row is not None:
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (table,))
                break
            time.sleep(0.5)
        conn.execute(f"DROP PUBLICATION IF EXISTS {table}")
        conn.execute(f"DROP TABLE public.{table}")


def test_healthy_for_elapses_across_reschedules(airflow_db, running_connector, capfd, tmp_path, monkeypatch):
    # dag.test() runs DAGs of a bundle: a folder of this test's own holds the one DAG.
    folder = tmp_path / "dags"
    folder.mkdir()
    dag_id = f"connector_health_reschedule_{uuid.uuid4().hex[:6]}"
    dag_file = folder / f"{dag_id}.py"
    dag_file.write_text(DAG_FILE.format(dag_id=dag_id, connector=running_connector))
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([{
        "name": "reschedule-test", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": str(folder), "refresh_interval": 0}}]))
    spec = importlib.util.spec_from_file_location(dag_id, dag_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    run = module.dag.test()
    captured = capfd.readouterr()
    output = captured.out + captured.err  # the task runner's structlog lines

    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    # Each poke logs how long the connector has been healthy; with the state lost between
    # reschedules it would be 0.0 every time and the sensor would time out.
    healthy = [float(x) for x in re.findall(r"healthy for ([0-9.]+)s of 4\.0s", output)]
    pokes = output.count(f"connector {running_connector} is RUNNING")
    print(f"\npokes: {pokes}; healthy seconds logged: {healthy}")
    assert len(healthy) >= 2, output[-3000:]
    assert healthy == sorted(healthy) and healthy[-1] >= 2.0
    assert output.count("new_state=up_for_reschedule") >= 2  # each poke but the last ended its run: rescheduled
