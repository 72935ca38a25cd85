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

from typing import Any

from airflow.sdk import Param, dag

from airflow_mesh.backfill.plan import BackfillRequest
from airflow_mesh.operators.backfill import BackfillRangeOperator, CommitBackfillOperator, PlanBackfillOperator

# schema.table, database.table or namespace.table (or a bare name): names are quoted, so any
# character but a dot, a quote, ';' or a control character (as the backfill's request accepts).
TABLE_PATTERN = r'^[^.;"`\x00-\x1f]+(\.[^.;"`\x00-\x1f]+)?$'
REQUEST = {name: f"{{{{ params.{name} }}}}" for name in (
    "source_conn_id", "table", "target_conn_id", "target_name", "key", "mode", "cursor_column", "where",
    "range_size", "parallelism", "value_format", "schema_registry_conn_id", "cast", "exclude")}
REQUEST["plan_only"] = "{{ params.dry_run }}"  # the form's "Dry run" is the operators' plan_only


def default(setting: str) -> Any:
    """The backfill request's own default of a setting (defaults live in ``BackfillRequest`` only)."""
    value = BackfillRequest.model_fields[setting].default
    return getattr(value, "value", value)  # an enum's value (mode)


@dag(
    dag_id="backfill_ui",
    schedule=None,
    catchup=False,
    tags=["airflow-mesh", "backfill"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
    params={
        # Optional params are nullable with a None default: Airflow's trigger form treats a param as
        # required unless its type admits null, and keeps Trigger disabled while one is empty. The
        # form shows each description under its field and no message of its own for a value out of
        # bounds, so every description says what is accepted; the server refuses the rest naming the
        # param and the JSON-schema rule.
        "source_conn_id": Param("postgres_mesh", type="string", minLength=1, title="Source connection",
                                description="The connection id to copy from: a postgres, mysql (MariaDB/MySQL) or "
                                            "iceberg connection (Admin > Connections), e.g. postgres_mesh.",
                                section="Source"),
        "table": Param("public.orders", type="string", pattern=TABLE_PATTERN, title="Source table",
                       description="schema.table (PostgreSQL), database.table (MariaDB/MySQL) or namespace.table "
                                   "(Iceberg), e.g. public.orders; names as the database spells them (quotes, "
                                   "';' and control characters excepted).", section="Source"),
        "key": Param(None, type=["null", "string"], title="Key column",
                     description="Optional: the column to cut key ranges on, or several comma-separated "
                                 "(region, id); any orderable type, unique over the rows. Empty: the primary key "
                                 "(else a unique key).",
                     section="Source"),
        "where": Param(None, type=["null", "string"], title="Filter",
                       description="Optional: one SQL condition on the source rows in the source's dialect, "
                                   "e.g. status <> 'test'. Empty: every row.", section="Source"),
        "cast": Param(None, type=["null", "array"], items={"type": "string", "pattern": r"^[^=]+=.+$"},
                      title="Cast columns",
                      description="Optional, one column=type a line, e.g. amount=numeric(38,20) or shape=text: the "
                                  "column is read as CAST(column AS type); a value that would change fails the run.",
                      section="Source"),
        "exclude": Param(None, type=["null", "array"], items={"type": "string", "minLength": 1},
                         title="Exclude columns", description="Optional, one column a line: not read, not copied.",
                         section="Source"),
        "target_conn_id": Param("iceberg_default", type="string", minLength=1, title="Target connection",
                                description="The connection id to copy into: a postgres, iceberg, elasticsearch or "
                                            "kafka connection, e.g. iceberg_default, postgres_mesh, "
                                            "elasticsearch_default, kafka_default.", section="Target"),
        "target_name": Param("mesh.orders", type="string", minLength=1, title="Target table, index or topic",
                             description="namespace.table (Iceberg), schema.table (PostgreSQL), the index "
                                         "(Elasticsearch) or the topic (Kafka); created when missing.",
                             section="Target"),
        "schema_registry_conn_id": Param(None, type=["null", "string"], title="Schema registry connection (Kafka)",
                                         description="Kafka targets only, optional: a schema_registry connection id, "
                                                     "e.g. schema_registry_default; the messages are then Avro, "
                                                     "their schemas registered as <topic>-key and <topic>-value. "
                                                     "Ignored (with a warning in the log) for other targets.",
                                         section="Target"),
        "value_format": Param(None, type=["null", "string"], enum=[None, "json", "avro"],
                              values_display={"null": "automatic", "json": "json", "avro": "avro"},
                              title="Message format (Kafka)",
                              description="Kafka targets only: json, or avro (with the schema registry above, else "
                                          "schema_registry_default). Automatic: avro when a schema registry is "
                                          "named, else json. Ignored (with a warning in the log) for other targets.",
                              section="Target"),
        "mode": Param(default("mode"), type="string", enum=["full", "incremental", "sync"], title="Mode",
                      description="full: replace every key range with the source's rows; incremental: upsert the "
                                  "rows by key (this form keeps no high-water mark: scheduled_migration does); "
                                  "sync: compare source and target range by range and repair what differs, deletes "
                                  "included.", section="How"),
        "cursor_column": Param(None, type=["null", "string"], title="Cursor column",
                               description="Incremental mode only: a column that grows with every change, "
                                           "e.g. updated_at.", section="How"),
        "range_size": Param(default("range_size"), type="integer", minimum=1, maximum=50_000_000,
                            title="Rows per range",
                            description="From 1 to 50,000,000: the rows of each key range, which is copied, "
                                        "checkpointed and verified as one unit.", section="How"),
        "parallelism": Param(4, type="integer", minimum=1, maximum=64, title="Parallel tasks",
                             description="From 1 to 64: the ranges are dealt to this many mapped tasks.",
                             section="How"),
        "dry_run": Param(default("dry_run"), type="boolean", title="Dry run",
                         description="Plan and count only: nothing is written.",
                         section="How"),
    },
)
def backfill_ui():
    ranges = PlanBackfillOperator(task_id="plan", **REQUEST)
    moved = BackfillRangeOperator.partial(task_id="move_ranges", **REQUEST).expand(key_ranges=ranges.output)
    CommitBackfillOperator(task_id="commit_and_verify", results=moved.output, **REQUEST)


backfill_ui_dag = backfill_ui()
