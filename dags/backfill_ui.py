"""Backfill a table from one datastore into another, triggered from the Airflow UI.

Fill in the form (Trigger DAG w/ config): the source connection and table, the target connection
and its table/index/topic (for a Kafka topic, optionally a schema registry connection: the messages
are then Avro, their schemas registered as ``<topic>-key`` and ``<topic>-value``), the mode, an
optional filter, optional column overrides (``cast``: one ``column=type`` a line, e.g.
``amount=numeric(38,20)``; ``exclude``: one column a line), and how to cut and spread the work. The
backfill is planned first (the target is created, or its schema checked, before anything is
written), then every key range runs as its own mapped task, so the ranges spread over the
executor's workers; a final task commits (one Iceberg commit for every range's data files) and
verifies row counts and checksums range by range. A dry run only plans and counts.
"""

from __future__ import annotations

from airflow.sdk import Param, dag

from airflow_mesh.operators.backfill import BackfillRangeOperator, CommitBackfillOperator, PlanBackfillOperator

REQUEST = {name: "{{ params.%s }}" % name for name in (
    "source_conn_id", "table", "target_conn_id", "target_name", "key", "mode", "cursor_column", "where",
    "range_size", "parallelism", "dry_run", "value_format", "schema_registry_conn_id", "cast", "exclude")}


@dag(
    dag_id="backfill_ui",
    schedule=None,
    catchup=False,
    tags=["airflow-mesh", "backfill"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
    params={
        "source_conn_id": Param("postgres_mesh", type="string", minLength=1, title="Source connection",
                                description="A postgres, mysql or iceberg connection.", section="Source"),
        "table": Param("public.orders", type="string", pattern=r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$",
                       title="Source table", description="schema.table", section="Source"),
        "key": Param("", type="string", title="Key column",
                     description="Integer column to cut ranges on; empty = the primary key.", section="Source"),
        "where": Param("", type="string", title="Filter", description="Optional SQL predicate, e.g. status <> 'test'.",
                       section="Source"),
        "cast": Param(None, type=["null", "array"], items={"type": "string", "pattern": r"^[^=]+=.+$"},
                      title="Cast columns",
                      description="Optional, one column=type a line, e.g. amount=numeric(38,20) or shape=text: the "
                                  "column is read as CAST(column AS type); a value that would change fails the run.",
                      section="Source"),
        "exclude": Param(None, type=["null", "array"], items={"type": "string", "minLength": 1},
                         title="Exclude columns", description="Optional, one column a line: not read, not copied.",
                         section="Source"),
        "target_conn_id": Param("iceberg_default", type="string", minLength=1, title="Target connection",
                                description="A postgres, iceberg, elasticsearch or kafka connection.", section="Target"),
        "target_name": Param("mesh.orders", type="string", minLength=1, title="Target table, index or topic",
                             section="Target"),
        "schema_registry_conn_id": Param("", type="string", title="Schema registry connection (Kafka)",
                                         description="Kafka targets only, optional: a schema_registry connection, "
                                                     "e.g. schema_registry_default. The messages are then Avro.",
                                         section="Target"),
        "value_format": Param("", enum=["", "json", "avro"], title="Message format (Kafka)",
                              description="Kafka targets only: empty = avro with a schema registry, else json.",
                              section="Target"),
        "mode": Param("full", enum=["full", "incremental"], title="Mode",
                      description="full: every row; incremental: rows past the last run's cursor.", section="How"),
        "cursor_column": Param("", type="string", title="Cursor column",
                               description="For incremental mode, e.g. updated_at.", section="How"),
        "range_size": Param(250_000, type="integer", minimum=1, maximum=50_000_000, title="Rows per range",
                            section="How"),
        "parallelism": Param(4, type="integer", minimum=1, maximum=64, title="Parallel tasks",
                             description="The ranges are dealt to this many mapped tasks.", section="How"),
        "dry_run": Param(False, type="boolean", title="Dry run", description="Plan and count only.", section="How"),
    },
)
def backfill_ui():
    ranges = PlanBackfillOperator(task_id="plan", **REQUEST)
    moved = BackfillRangeOperator.partial(task_id="move_ranges", **REQUEST).expand(key_ranges=ranges.output)
    CommitBackfillOperator(task_id="commit_and_verify", results=moved.output, **REQUEST)


backfill_ui_dag = backfill_ui()
