"""The demo DAG runs green end to end under dag.test() against the real stack, and cleans up after itself."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import psycopg

from airflow_mesh.hooks.kafka_connect import KafkaConnectHook

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "mesh_demo.py"


def _load_dag():
    spec = importlib.util.spec_from_file_location("mesh_demo", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.demo_dag


def test_mesh_demo_dag_succeeds(airflow_db, postgres_conninfo, capfd):
    dag = _load_dag()

    dag_run = dag.test(run_conf={"orders": 30, "threshold": 120})

    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states
    assert set(states.values()) == {"success"}
    assert set(states) == {"create_topics", "submit_processor", "produce_orders", "read_results", "deploy_connector",
                           "connector_healthy", "submit_cdc_processor", "report_cdc", "change_rows",
                           "reset_connector_offsets", "delete_connector", "clean_up"}
    printed = [line for line in capfd.readouterr().out.splitlines() if line.startswith("step ")]
    assert [line.split(":")[0] for line in printed if line.startswith(("step 7", "step 8"))] == ["step 7", "step 8"] * 5
    assert any("-> null (a tombstone: deleted downstream)" in line for line in printed)
    assert printed[-1].startswith("step 9: cancelled Flink jobs")
    # The clean-up removed the connector and its slot.
    assert not KafkaConnectHook().connector_exists("mesh-postgres-cdc")
    with psycopg.connect(postgres_conninfo) as conn:
        assert conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'mesh_postgres_cdc'").fetchone() \
            is None
