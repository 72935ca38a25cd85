"""A scheduled migration of the demo tables from PostgreSQL into Iceberg: incremental every hour, a
sync every day.

Every hour each table's rows changed since the last run are upserted into its Iceberg table, by
``updated_at`` (the demo tables' trigger moves it on every update); the first run copies everything.
Each run reads one consistent snapshot of the source, and its high-water mark is what that snapshot
proves (the oldest transaction still open when it was taken), so a row whose transaction commits
after a run is copied by the next one; a failed or killed run is resumed by its retry.

An incremental run cannot see deletes, nor an update that leaves ``updated_at`` alone or sets it into
the past: once a day (the run of midnight UTC, or any run triggered with ``{"sync": true}``) a sync
compares source and target range by range and repairs what differs, deletes included.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Param, dag, task

from airflow_mesh.operators.backfill import BackfillOperator

TABLES = ("public.orders", "public.customers")
SYNC_HOUR = 0  # UTC: the hourly run that also syncs


@dag(dag_id="scheduled_migration", schedule="@hourly", start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
     catchup=False, max_active_runs=1, tags=["airflow-mesh", "backfill"], doc_md=__doc__,
     params={"sync": Param(False, type="boolean", title="Sync now",
                           description="Also run the daily sync (deletes and silent updates) in this run.")},
     default_args={"retries": 2, "retry_delay": timedelta(minutes=1)})
def scheduled_migration():
    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def sync_due(logical_date: datetime | None = None, params: dict | None = None) -> bool:
        """The day's sync runs at SYNC_HOUR, or when the run asks for it."""
        return bool((params or {}).get("sync")) or (logical_date is not None and logical_date.hour == SYNC_HOUR)

    due = sync_due()
    for table in TABLES:
        name = table.split(".")[1]
        common = {"source_conn_id": "postgres_mesh", "table": table, "target_conn_id": "iceberg_default",
                  "target_name": f"mesh.{name}", "range_size": 100_000}
        migrate = BackfillOperator(task_id=f"migrate_{name}", mode="incremental", cursor_column="updated_at",
                                   **common)
        sync = BackfillOperator(task_id=f"sync_{name}", mode="sync", **common)
        migrate >> sync
        due >> sync


scheduled_migration_dag = scheduled_migration()
