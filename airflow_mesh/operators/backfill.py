"""Operators that run backfills: in one task, or fanned out over key ranges as mapped tasks.

One task (``BackfillOperator``) moves ranges in parallel threads and resumes from its checkpoints
when retried. To scale past one worker, ``PlanBackfillOperator`` -> ``BackfillRangeOperator.expand``
-> ``CommitBackfillOperator`` lets Airflow's executor (Celery, Kubernetes...) spread the ranges; for an
Iceberg target the range tasks only stage data files and the final task commits them all at once,
so concurrent writers never fight over the table.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook, BaseOperator

from airflow_mesh.backfill import engine
from airflow_mesh.backfill.checkpoint import CheckpointStore
from airflow_mesh.backfill.endpoints import ConnectionFields, make_source, make_target
from airflow_mesh.backfill.plan import BackfillRequest, KeyRange, parse_casts
from airflow_mesh.backfill.sources import Source
from airflow_mesh.backfill.targets import Target
from airflow_mesh.hooks.schema_registry import SchemaRegistryHook

_NOT_GIVEN: Any = None
"""What an operator's request argument defaults to: not given, so ``BackfillRequest``'s default applies."""


def connection_fields(conn_id: str) -> ConnectionFields:
    """An Airflow connection as the backfill engine's endpoint description."""
    conn = BaseHook.get_connection(conn_id)
    return ConnectionFields(conn.conn_type, conn.host, conn.port, conn.login, conn.password, conn.schema,
                            conn.extra_dejson)


def default_checkpoint_path() -> Path:
    """``$AIRFLOW_HOME/airflow-mesh/backfill-checkpoints.sqlite`` (set ``checkpoint_path`` to a shared
    volume when retries may land on another worker)."""
    airflow_home = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))
    return airflow_home / "airflow-mesh" / "backfill-checkpoints.sqlite"


class _BackfillOperator(BaseOperator):
    """What every backfill operator takes: where from, where to, and the request.

    A Kafka target writes Avro when ``value_format`` is ``avro`` or a ``schema_registry_conn_id`` is
    given (``avro`` alone uses ``schema_registry_default``), else JSON; both are templated, and an
    empty string means not given (as a form's empty field renders).

    ``cast`` (a dict ``{"amount": "numeric(38,20)"}``, or ``["amount=numeric(38,20)"]``) and
    ``exclude`` (``["notes"]``) override columns (see ``BackfillRequest``); templated, and None or
    empty means none.

    The request's settings (``mode``, ``range_size``, ``parallelism``, ``plan_only``, ``cursor_lag``,
    ``deep``...) left out, None or empty take ``BackfillRequest``'s defaults. ``plan_only`` is the
    request's ``dry_run`` (plan and count only); ``dry_run=`` is accepted for it too (the attribute
    is ``plan_only``, so that ``BaseOperator.dry_run()`` stays Airflow's).
    """

    template_fields: Sequence[str] = ("source_conn_id", "table", "target_conn_id", "target_name", "key", "mode",
                                      "cursor_column", "cursor_after", "where", "range_size", "parallelism",
                                      "plan_only", "value_format", "schema_registry_conn_id", "cast", "exclude",
                                      "cursor_lag", "deep")
    ui_color = "#fdf3e7"

    def __init__(self, *, source_conn_id: str, table: str, target_conn_id: str, target_name: str,
                 key: str | None = None, mode: str | None = _NOT_GIVEN, cursor_column: str | None = None,
                 cursor_after: str | None = None, where: str | None = None, range_size: int | str | None = _NOT_GIVEN,
                 parallelism: int | str | None = _NOT_GIVEN, plan_only: bool | str | None = _NOT_GIVEN,
                 value_format: str | None = None, schema_registry_conn_id: str | None = None,
                 cast: dict[str, str] | list[str] | None = None, exclude: list[str] | None = None,
                 cursor_lag: float | str | None = _NOT_GIVEN, deep: bool | str | None = _NOT_GIVEN,
                 dry_run: bool | str | None = _NOT_GIVEN, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if dry_run is not None and plan_only is not None:
            raise ValueError(f"{self.task_id}: plan_only and dry_run are the same setting; give one of them")
        self.cursor_lag = cursor_lag
        self.deep = deep
        self.cast = cast
        self.exclude = exclude
        self.value_format = value_format
        self.schema_registry_conn_id = schema_registry_conn_id
        self.source_conn_id = source_conn_id
        self.table = table
        self.target_conn_id = target_conn_id
        self.target_name = target_name
        self.key = key
        self.mode = mode
        self.cursor_column = cursor_column
        self.cursor_after = cursor_after
        self.where = where
        self.range_size = range_size
        self.parallelism = parallelism
        self.plan_only = plan_only if plan_only is not None else dry_run

    @staticmethod
    def _given(value: Any) -> bool:
        """Whether a setting was given: None and an empty string (a form's empty field) were not."""
        return value is not None and value != ""

    def request(self) -> BackfillRequest:
        """The request, from what was given (rendered); what was not takes ``BackfillRequest``'s defaults.

        Raises:
            pydantic.ValidationError: a setting is out of bounds or malformed.
        """
        given = {"key": self.key, "mode": self.mode, "cursor_column": self.cursor_column,
                 "cursor_after": self.cursor_after, "where": self.where}
        fields: dict[str, Any] = {name: value for name, value in given.items() if self._given(value)}
        conversions: tuple[tuple[str, Any, Callable[[Any], Any]], ...] = (
            ("range_size", self.range_size, int), ("parallelism", self.parallelism, int),
            ("dry_run", self.plan_only, self._as_bool),
            ("cursor_lag", self.cursor_lag, float), ("deep", self.deep, self._as_bool))
        for name, value, convert in conversions:
            if self._given(value):
                fields[name] = convert(value)
        return BackfillRequest(table=self.table, casts=parse_casts(self.cast), exclude=self._names(self.exclude),
                               **fields)

    @staticmethod
    def _names(value: Any) -> list[str]:
        """Column names from a list, or one name or comma-separated names (as a template may render)."""
        if not value:
            return []
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return [str(name) for name in value]

    @staticmethod
    def _as_bool(value: Any) -> bool:
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")

    def endpoints(self) -> tuple[Source, Target]:
        """The source and the target, from their connections (and the schema registry's, for Avro).

        A value format or schema registry given for a target that is not Kafka (e.g. left filled in
        the trigger form after switching targets) is ignored, with one warning in the task's log.

        Raises:
            PlanError: a connection cannot be a source or target, or bad Kafka options.
        """
        value_format = (self.value_format or "").strip().lower() or None
        registry_id = (self.schema_registry_conn_id or "").strip() or None
        target = connection_fields(self.target_conn_id)
        if target.conn_type != "kafka" and (value_format or registry_id):
            options = (("value_format", value_format), ("schema_registry_conn_id", registry_id))
            given = ", ".join(f"{name} {value!r}" for name, value in options if value)
            self.log.warning("Ignored %s: they apply to kafka targets only, and target connection %s is %s",
                             given, self.target_conn_id, target.conn_type)
            value_format = registry_id = None
        if registry_id is None and value_format == "avro":
            registry_id = SchemaRegistryHook.default_conn_name
        registry = connection_fields(registry_id) if registry_id else None
        return (make_source(connection_fields(self.source_conn_id)),
                make_target(target, self.target_name, value_format=value_format, schema_registry=registry))


class BackfillOperator(_BackfillOperator):
    """Copy a table from one datastore to another, resumable and verified, in one task.

    Args:
        source_conn_id: A ``postgres``, ``mysql`` or ``iceberg`` connection.
        table: The source table.
        target_conn_id: A ``postgres``, ``iceberg``, ``elasticsearch`` or ``kafka`` connection.
        target_name: The target table, index or topic.
        mode: ``full`` (every row), ``incremental`` (the rows at or past the stream's mark by
            ``cursor_column``: it does not see deletes, nor updates that leave the cursor alone) or
            ``sync`` (compare both sides and repair what differs, deletes included).
        key, cursor_column, cursor_after, where, range_size, parallelism, cursor_lag, deep:
            see ``airflow_mesh.backfill.plan.BackfillRequest`` (left out: its defaults).
        plan_only: Plan and count only, write nothing (``BackfillRequest.dry_run``; ``dry_run=``
            is accepted for it too).
        cast: Column overrides, ``{"amount": "numeric(38,20)"}`` or ``["amount=numeric(38,20)"]``:
            the source selects ``CAST(amount AS numeric(38,20))`` (a value it would change fails the
            run, naming the column). None or empty: none.
        exclude: Columns neither read nor written, e.g. ``["notes"]``. None or empty: none.
        value_format: For a Kafka target: ``json`` or ``avro`` (default: Avro when a schema registry
            is named, else JSON).
        schema_registry_conn_id: For a Kafka target in Avro: the ``schema_registry`` connection its
            key and value schemas are registered in (``<topic>-key``, ``<topic>-value``); default
            ``schema_registry_default`` when ``value_format`` is ``avro``.
        verify: Compare row counts and checksums of every range at the end.
        checkpoint_path: The checkpoint store (default: ``default_checkpoint_path()``).
        restart: Forget the job's checkpoints (and incremental mark) first and copy everything again,
            e.g. after the target was dropped (a run refuses to skip ranges the target no longer holds).

    Returns (XCom):
        The run's summary: rows, ranges, seconds, checksums per range.
    """

    template_fields: Sequence[str] = (*_BackfillOperator.template_fields, "restart")

    def __init__(self, *, verify: bool = True, checkpoint_path: str | None = None, restart: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.verify = verify
        self.checkpoint_path = checkpoint_path
        self.restart = restart

    def execute(self, context: Any) -> dict[str, Any]:
        request = self.request()
        source, target = self.endpoints()
        store = CheckpointStore(self.checkpoint_path or default_checkpoint_path())
        self.log.info("Backfill of %s into %s; checkpoints in %s", request.table, target.name, store.path)
        summary = engine.run(source, target, request, store, verify=self.verify, restart=self._as_bool(self.restart))
        self.log.info("Backfill %s: %d rows in %d ranges (%d resumed from checkpoints) in %.1fs, verified=%s",
                      summary.job, summary.rows, summary.ranges, summary.ranges_skipped, summary.seconds,
                      summary.verified)
        return summary.to_dict()


class PlanBackfillOperator(_BackfillOperator):
    """Plan a fanned-out backfill: check the target (create it, or verify its schema) and cut the ranges.

    Returns (XCom):
        ``parallelism`` groups of ranges (``[[{"lo": ..., "hi": ...}, ...], ...]``, dealt round-robin)
        to ``.expand()`` the range tasks over: one mapped task per group. Empty for a dry run.
    """

    def execute(self, context: Any) -> list[list[dict[str, int]]]:
        request = self.request()
        source, target = self.endpoints()
        the_plan = engine.plan(source, target, request)
        self.log.info("Backfill %s of %s: %d rows in %d ranges", the_plan.job, request.table, the_plan.rows,
                      len(the_plan.ranges))
        if request.dry_run:
            return []
        target.prepare(the_plan.info.schema, the_plan.keys)
        engine.remove_orphans(target, the_plan.job)  # what range tasks of an earlier, failed run staged
        # Each range carries the plan's row estimate for it, for the range tasks' progress lines.
        per_range = the_plan.rows // max(1, len(the_plan.ranges))
        groups = [[{**r.to_dict(), "rows": per_range} for r in the_plan.ranges[i::request.parallelism]]
                  for i in range(request.parallelism)]
        return [group for group in groups if group]


class BackfillRangeOperator(_BackfillOperator):
    """Move a group of key ranges (a mapped task). An Iceberg target's data is staged, not committed.

    Args:
        key_ranges: ``[{"lo": ..., "hi": ...}, ...]``, one group from PlanBackfillOperator.

    Returns (XCom):
        ``[{"lo", "hi", "rows", "checksum", "staged_file"}, ...]``.
    """

    template_fields: Sequence[str] = (*_BackfillOperator.template_fields, "key_ranges")

    def __init__(self, *, key_ranges: list[dict[str, Any]],
                 map_index_template: str | None = "{{ task.range_label }}", **kwargs: Any) -> None:
        # Mapped tasks are shown by their key ranges in the UI, not as [0], [1], ... (Airflow reads
        # this default from the signature for .partial()).
        super().__init__(map_index_template=map_index_template, **kwargs)
        self.key_ranges = key_ranges

    @property
    def range_label(self) -> str:
        """The task's ranges in a few words, e.g. ``3 ranges: 1-5001, 15001-20001, 30001-35001``."""
        ranges = (
            [KeyRange.from_dict(r).label for r in self.key_ranges or []] if isinstance(self.key_ranges, list) else []
        )
        if not ranges:
            return "no ranges"
        shown = ", ".join(ranges[:3]) + (f", and {len(ranges) - 3} more" if len(ranges) > 3 else "")
        return shown if len(ranges) == 1 else f"{len(ranges)} ranges: {shown}"

    def execute(self, context: Any) -> list[dict[str, Any]]:
        request = self.request()
        source, target = self.endpoints()
        the_plan = engine.describe(source, target, request)
        target.prepare(the_plan.info.schema, the_plan.keys)
        expected = sum(int(r.get("rows") or 0) for r in self.key_ranges)
        progress = engine.Progress(expected, log_every=10.0)
        results = []
        for number, spec in enumerate(self.key_ranges, 1):
            key_range = KeyRange.from_dict(spec)
            started = time.monotonic()
            moved = engine.move_range(source, target, the_plan, request, key_range, progress)
            results.append(moved.to_dict())
            seconds = time.monotonic() - started
            self.log.info("Range %d of %d (%s): %s rows in %.1fs (%.0f rows/s); this task: %s of about %s rows",
                          number, len(self.key_ranges), key_range.label, f"{moved.rows:,}", seconds,
                          moved.rows / max(seconds, 1e-9), f"{progress.done:,}", f"{progress.total:,}")
            progress.log_line()
        return results


class CommitBackfillOperator(_BackfillOperator):
    """Commit what the range tasks staged (one Iceberg commit for all of them) and verify every range.

    Args:
        results: The range tasks' XComs, one list per task (e.g. the mapped task's ``.output``).
        verify: Compare every range's rows and checksum with the target.

    Returns (XCom):
        ``{"rows", "ranges", "verified"}``.
    """

    template_fields: Sequence[str] = (*_BackfillOperator.template_fields, "results")

    def __init__(self, *, results: Any, verify: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.results = results
        self.verify = verify

    def execute(self, context: Any) -> dict[str, Any]:
        moved = [engine.MovedRange.from_dict(result) for group in (self.results or []) for result in group]
        source, target = self.endpoints()
        request = self.request()
        the_plan = engine.describe(source, target, request)
        target.prepare(the_plan.info.schema, the_plan.keys)
        engine.commit_and_verify(source, target, the_plan, request, moved, verify=self.verify)
        return {"rows": sum(m.rows for m in moved), "ranges": len(moved), "verified": self.verify}
