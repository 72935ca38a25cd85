"""Online backfill: have a running Debezium connector re-emit chosen tables into their topics while it
keeps streaming changes (an incremental snapshot).

1. ``connector_healthy`` waits until the connector and its tasks run (deploy it with
   ``deploy_cdc_connectors`` first);
2. ``request_snapshot`` checks that the connector captures every table, that each filter is one
   SQL condition, that the connection's type fits the connector, and has the database plan each
   table's read with its filter (``EXPLAIN``, read-only); only then does it write an
   ``execute-snapshot`` signal to the connector's signal table;
3. ``wait_for_snapshot`` follows the connector's notifications until Debezium reports every table
   read, and fails with Debezium's reason and the database's own message otherwise; at the end it
   removes the signal row and Debezium's watermark rows from the signal table.

Debezium emits each row read as an ``op=r`` event interleaved with the live changes, so a consumer
applying the topic in order ends with the table's current content. Trigger the DAG with the form's
parameters. Both waits are deferrable: they wait in Airflow's triggerer, holding no worker slot.
"""

from __future__ import annotations

from airflow.sdk import Param, dag

from airflow_mesh.operators.debezium import IncrementalSnapshotOperator
from airflow_mesh.sensors.debezium import IncrementalSnapshotSensor
from airflow_mesh.sensors.kafka_connect import ConnectorHealthSensor


@dag(
    dag_id="online_backfill",
    schedule=None,
    catchup=False,
    tags=["airflow-mesh", "connectors", "backfill"],
    doc_md=__doc__,
    render_template_as_native_obj=True,  # the list and mapping parameters reach the operator as such
    params={
        "connector_name": Param("mesh-postgres-cdc", type="string", title="Connector",
                                description="The Kafka Connect connector (Debezium) to backfill through."),
        "database_conn_id": Param("postgres_mesh", type="string", title="Database connection",
                                  description="Airflow connection to the captured database (postgres for a "
                                              "PostgreSQL connector, mysql for MariaDB/MySQL), allowed to insert "
                                              "into and delete from the connector's signal table."),
        "tables": Param(["public.orders"], type="array", items={"type": "string"}, minItems=1, title="Tables",
                        description="Qualified names (schema.table) of the tables to re-emit."),
        "filters": Param({}, type="object", title="Filters",
                         description='Per table, an SQL condition limiting the rows re-emitted, e.g. '
                                     '{"public.orders": "created_at > \'2026-01-01\'"}.'),
    },
)
def online_backfill():
    healthy = ConnectorHealthSensor(task_id="connector_healthy", connector_name="{{ params.connector_name }}",
                                    poke_interval=3, timeout=300, deferrable=True)
    request = IncrementalSnapshotOperator(task_id="request_snapshot", connector_name="{{ params.connector_name }}",
                                          database_conn_id="{{ params.database_conn_id }}",
                                          tables="{{ params.tables }}", filters="{{ params.filters }}")
    done = IncrementalSnapshotSensor(task_id="wait_for_snapshot", connector_name="{{ params.connector_name }}",
                                     database_conn_id="{{ params.database_conn_id }}",
                                     snapshot_id=request.output["signal_id"],
                                     data_collections=request.output["data_collections"],
                                     since_ms=request.output["signaled_at_ms"], poke_interval=5, timeout=6 * 3600,
                                     deferrable=True)
    healthy >> request >> done


online_backfill_dag = online_backfill()

if __name__ == "__main__":
    run = online_backfill_dag.test()
    raise SystemExit(0 if run.state == "success" else 1)
