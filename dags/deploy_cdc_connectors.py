"""Deploy every CDC connector spec in ``connectors/`` to Kafka Connect and wait until each runs.

Each spec is validated (by its model, then by the connector plugin) before anything is deployed; a
connector whose deployed config already matches its spec is left untouched. One health sensor per
connector then waits until the connector and all its tasks are RUNNING, restarting failed tasks
once, and fails with the task's stack trace otherwise. The sensors are deferrable: they wait in
Airflow's triggerer, holding no worker slot.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import dag

from airflow_mesh.operators.kafka_connect import DeployConnectorOperator
from airflow_mesh.sensors.kafka_connect import ConnectorHealthSensor

CONNECTORS_DIR = os.environ.get("MESH_CONNECTORS_DIR", str(Path(__file__).resolve().parent.parent / "connectors"))


@dag(dag_id="deploy_cdc_connectors", schedule=None, catchup=False, tags=["airflow-mesh", "connectors"],
     doc_md=__doc__)
def deploy_cdc_connectors():
    deployed = DeployConnectorOperator(task_id="deploy_connectors", spec_path=CONNECTORS_DIR)
    ConnectorHealthSensor.partial(
        task_id="wait_until_healthy", restart_failed_tasks=1, poke_interval=3, timeout=300, deferrable=True,
    ).expand(connector_name=deployed.output.map(lambda result: result["name"]))


deploy_cdc_connectors_dag = deploy_cdc_connectors()

if __name__ == "__main__":
    run = deploy_cdc_connectors_dag.test()
    raise SystemExit(0 if run.state == "success" else 1)
