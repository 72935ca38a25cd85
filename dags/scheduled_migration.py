"""A scheduled, incremental migration of the demo tables from PostgreSQL into Iceberg.

Every hour each table's rows changed since the last run (by ``updated_at`` / ``created_at``) are
upserted into its Iceberg table; the first run copies everything. The high-water mark lives in the
backfill checkpoint store and moves only after a run was copied and verified, so a failed or
killed run is simply redone by its retry.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag

from airflow_mesh.operators.backfill import BackfillOperator

TABLES = {"public.orders": "updated_at", "public.customers": "created_at"}


@dag(dag_id="scheduled_migration", schedule="@hourly", start_date=datetime(2026, 1, 1), catchup=False,
     max_active_runs=1, tags=["airflow-mesh", "backfill"], doc_md=__doc__,
     default_args={"retries": 2, "retry_delay": timedelta(minutes=1)})
def scheduled_migration():
    for table, cursor in TABLES.items():
        BackfillOperator(
            task_id=f"migrate_{table.split('.')[1]}",
            source_conn_id="postgres_mesh",
            table=table,
            target_conn_id="iceberg_default",
            target_name=f"mesh.{table.split('.')[1]}",
            mode="incremental",
            cursor_column=cursor,
            range_size=100_000,
        )


scheduled_migration_dag = scheduled_migration()
