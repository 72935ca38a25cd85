"""dags/deploy_cdc_connectors.py runs green under dag.test(), waiting in a worker or in the triggerer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from airflow_mesh.hooks.kafka_connect import KafkaConnectHook

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dags" / "deploy_cdc_connectors.py"


def load_dag():
    spec = importlib.util.spec_from_file_location("deploy_cdc_connectors", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.deploy_cdc_connectors_dag


@pytest.fixture
def fresh_connectors(postgres_conninfo):
    """Neither shipped connector is deployed before or after the test (offsets and PG slot included)."""
    from tests.integration.test_cdc_connectors import drop_slot, remove_connector

    hook = KafkaConnectHook()

    def clean():
        for name in ("mesh-postgres-cdc", "mesh-mariadb-cdc"):
            remove_connector(hook, name)
        drop_slot(postgres_conninfo, "mesh_postgres_cdc")

    clean()
    yield hook
    clean()


# The DAG's sensors are deferrable whatever Airflow's [operators] default_deferrable says.
@pytest.mark.parametrize("deferrable", [False, True], ids=["default-poke", "default-deferrable"])
def test_deploy_cdc_connectors_dag(airflow_db, fresh_connectors, monkeypatch, caplog, deferrable):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", str(deferrable))
    dag = load_dag()

    run = dag.test()
    output = caplog.text

    instances = run.get_task_instances()
    states = {(ti.task_id, ti.map_index): ti.state for ti in instances}
    assert run.state == "success", states
    assert states == {("deploy_connectors", -1): "success", ("wait_until_healthy", 0): "success",
                      ("wait_until_healthy", 1): "success"}
    # Deferred sensors went through the triggerer: their try shows the trigger's resumption.
    sensors = [ti for ti in instances if ti.task_id == "wait_until_healthy"]
    assert all(ti.next_method == "execute_complete" or ti.trigger_id is not None for ti in sensors)
    # Deferred, each sensor's wait ran as a trigger (dag.test() runs triggers in line).
    assert output.count("[DAG TEST] Trigger completed") == 2
    for name in ("mesh-postgres-cdc", "mesh-mariadb-cdc"):
        status = fresh_connectors.get_connector_status(name)
        assert status["connector"]["state"] == "RUNNING"
        assert {t["state"] for t in status["tasks"]} == {"RUNNING"}
