"""IncrementalSnapshotSensor: wait until a Debezium incremental snapshot has read every table asked for."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook
from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowException

from airflow_mesh.connectors.snapshots import (
    NotificationSource,
    SnapshotError,
    SnapshotFailedError,
    SnapshotResult,
    SnapshotWatch,
    notification_source,
    signal_filters,
    signal_target,
    task_failure,
)
from airflow_mesh.hooks.debezium import SignalDatabase, SignalTableHook
from airflow_mesh.hooks.kafka import NotificationReader
from airflow_mesh.hooks.kafka_connect import KafkaConnectHook
from airflow_mesh.triggers.debezium import IncrementalSnapshotTrigger, settle, stalled_message


class IncrementalSnapshotSensor(BaseSensorOperator):
    """Wait until Debezium reports that an incremental snapshot read every table asked for.

    It fails at once when Debezium reports a table it could not read, when a stop-snapshot signal
    stopped the snapshot, or when the connector (or a task of it) is FAILED, which no notification
    would tell. The sensor reads the connector's notification topic (``notification.enabled.channels``
    with ``sink``, ``notification.sink.topic.name``) with a throw-away consumer that commits nothing,
    from ``since_ms`` (or the beginning), and judges the notifications as
    ``airflow_mesh.connectors.snapshots.SnapshotWatch`` describes. Each poke reads the topic again
    from that point, so the sensor works in ``poke`` and ``reschedule`` mode alike.

    Debezium's notification of a failed table says only its status (SQL_EXCEPTION, UNKNOWN_SCHEMA);
    the database's message stays in the Connect worker's log. So on such a failure the sensor puts
    the database's own words into its error: from the trace of a FAILED task in Kafka Connect, and,
    through ``database_conn_id``, by asking the database again in a read-only transaction
    (``EXPLAIN`` of the table and of its filter, then a count of the rows the filter admits, which
    evaluates it on every row: a division by zero, a failed cast, a table dropped meanwhile).

    Once the snapshot has ended (succeeded, failed or stopped) and Debezium has acted on the signal,
    the sensor deletes, through ``database_conn_id``, the signal row ``snapshot_id`` and the
    watermark rows Debezium leaves in the signal table (``insert_insert`` watermarking leaves two per
    chunk; ``insert_delete`` one when a chunk's query failed), those of windows opened before the
    snapshot's end, so none of a snapshot still running.

    Args:
        connector_name: The Kafka Connect connector running the snapshot (templated).
        snapshot_id: The snapshot's signal id, ``IncrementalSnapshotOperator``'s ``signal_id`` (templated).
        data_collections: The tables asked for, the operator's ``data_collections`` (templated).
        since_ms: Read notifications from this time on (epoch ms, or its string), the operator's
            ``signaled_at_ms`` (templated); None reads the whole topic.
        database_conn_id: The Airflow connection to the captured database, the operator's (its user
            needs DELETE on the signal table, SELECT on the tables); None leaves the signal and
            watermark rows where they are and the database unasked (templated).
        kafka_connect_conn_id: The Kafka Connect connection (to read the connector's config and status).
        kafka_config_id: The Airflow ``kafka`` connection of the cluster holding the notification topic.
        deferrable: Hand the wait to a trigger that reads asynchronously and holds no worker slot
            (default: Airflow's ``[operators] default_deferrable``, read when the sensor is created).

    Returns (XCom):
        ``{"snapshot_id": ..., "tables": {table: {"status": "SUCCEEDED" | "EMPTY", "rows_scanned": n}}}``.

    Raises:
        SnapshotFailedError: Debezium could not read a table (e.g. SQL_EXCEPTION for a filter that
            fails while it runs, UNKNOWN_SCHEMA), with the database's message where it can be had;
            the snapshot was stopped before reading one; or the connector's task FAILED meanwhile.
        SignallingConfigError: the connector publishes no notifications to Kafka.
        NotificationTopicError: the notification topic has more than one partition.
    """

    template_fields: Sequence[str] = ("connector_name", "snapshot_id", "data_collections", "since_ms",
                                      "database_conn_id", "kafka_connect_conn_id", "kafka_config_id")
    ui_color = "#e8f1fb"

    def __init__(self, *, connector_name: str, snapshot_id: str, data_collections: Sequence[str],
                 since_ms: int | str | None = None, database_conn_id: str | None = None,
                 kafka_connect_conn_id: str = KafkaConnectHook.default_conn_name,
                 kafka_config_id: str = KafkaBaseHook.default_conn_name, deferrable: bool | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("poke_interval", 10)
        super().__init__(**kwargs)
        self.connector_name = connector_name
        self.snapshot_id = snapshot_id
        self.data_collections = data_collections
        self.since_ms = since_ms
        self.database_conn_id = database_conn_id
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self.kafka_config_id = kafka_config_id
        self.deferrable = (conf.getboolean("operators", "default_deferrable", fallback=False)
                           if deferrable is None else deferrable)

    @cached_property
    def _hook(self) -> KafkaConnectHook:
        return KafkaConnectHook.for_polling(self.kafka_connect_conn_id)

    @cached_property
    def _config(self) -> dict[str, str]:
        """The connector's deployed config."""
        return self._hook.get_connector_config(self.connector_name)

    @cached_property
    def _notifications(self) -> NotificationSource:
        """The connector's notification topic and logical name, from its deployed config."""
        return notification_source(self.connector_name, self._config)

    @property
    def _since_ms(self) -> int | None:
        # A Jinja template renders the operator's timestamp as a string unless the DAG renders natively.
        return None if self.since_ms is None else int(self.since_ms)

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        self.defer(
            trigger=IncrementalSnapshotTrigger(
                snapshot_id=self.snapshot_id,
                data_collections=list(self.data_collections),
                topic=self._notifications.topic,
                logical_name=self._notifications.logical_name,
                since_ms=self._since_ms,
                kafka_config_id=self.kafka_config_id,
                poll_interval=self.poke_interval,
                connector_name=self.connector_name,
                kafka_connect_conn_id=self.kafka_connect_conn_id,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def poke(self, context: Any) -> PokeReturnValue:
        watch = SnapshotWatch(self.snapshot_id, self._notifications.logical_name, list(self.data_collections))
        with closing(NotificationReader(self.kafka_config_id, self._notifications.topic, self._since_ms)) as reader:
            for notification in reader.read_available():
                watch.observe(notification)
                if watch.settled:
                    break
            if watch.result is not None:
                settle(reader, watch)
                return PokeReturnValue(True, self._finish(watch.result, watch.end_ms))
        failure = task_failure(self._hook.get_connector_status(self.connector_name))
        if failure:
            raise SnapshotFailedError(self.snapshot_id, stalled_message(self.snapshot_id,
                                                                        self._notifications.logical_name, failure))
        if not watch.taken_up:
            self.log.info("Incremental snapshot %s: no notification from %s yet", self.snapshot_id,
                          self._notifications.logical_name)
        else:
            self.log.info("Incremental snapshot %s: %s", self.snapshot_id, watch.progress or "started")
        return PokeReturnValue(False)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger: return the result on success, fail with Debezium's verdict otherwise.

        Raises:
            SnapshotFailedError: the snapshot failed or was stopped, or the connector's task failed.
            AirflowException: the trigger could not read the notifications (the message says why).
        """
        if event["status"] == "error":
            raise AirflowException(event["message"])
        if event["status"] == "task_failed":
            raise SnapshotFailedError(self.snapshot_id, event["message"])
        result = SnapshotResult.from_dict(event["status"] == "succeeded", event["message"], event["result"])
        return self._finish(result, event.get("end_ms"))

    # ---------------------------------------------------------------- after the end

    def _open_database(self) -> SignalDatabase | None:
        if self.database_conn_id is None:
            self.log.warning("No database_conn_id: signal %s and Debezium's watermark rows stay in the signal table "
                             "of %s", self.snapshot_id, self.connector_name)
            return None
        try:
            return SignalTableHook(self.database_conn_id).open(self.connector_name, self._config,
                                                               signal_target(self.connector_name, self._config))
        except (SnapshotError, ValueError) as exc:
            self.log.warning("Cannot clean up after snapshot %s or ask the database about it: %s", self.snapshot_id,
                             exc)
            return None

    def _finish(self, result: SnapshotResult, end_ms: int | None) -> dict[str, Any]:
        """Explain a failure with the database's message, remove the snapshot's rows, return or raise the verdict."""
        db = self._open_database()
        try:
            message = result.message if result.succeeded else self._explain(result, db)
            if db is not None:
                self._clean_up(db, end_ms)
        finally:
            if db is not None:
                db.close()
        if not result.succeeded:
            raise SnapshotFailedError(result.snapshot_id, message)
        self.log.info("%s", message)
        return result.as_dict()

    def _explain(self, result: SnapshotResult, db: SignalDatabase | None) -> str:
        """Debezium's verdict, followed by what Kafka Connect and the database say about each table not read."""
        parts = [result.message]
        try:
            failure = task_failure(self._hook.get_connector_status(self.connector_name))
        except Exception as exc:  # noqa: BLE001 - the verdict stands; this only adds to its message
            self.log.warning("Cannot read the status of %s: %s", self.connector_name, exc)
            failure = None
        if failure:
            parts.append(f"Kafka Connect: {failure}")
        if not result.unread:
            return "; ".join(parts)
        if db is None:
            parts.append("give the sensor database_conn_id to have the database's message here; the Kafka Connect "
                         "worker's log has it")
            return "; ".join(parts)
        try:
            filters = signal_filters(db.signal_data(self.snapshot_id))
            for scan in result.unread:
                condition = filters.get(scan.table)
                found = db.find_error(scan.table, condition)
                how = f"filter {condition} run again" if condition else "the table read again"
                if found:
                    parts.append(f"{scan.table}: the database says: {found} ({how} on connection {db.conn_id})")
                else:
                    parts.append(f"{scan.table}: {how} on connection {db.conn_id} went through (its user may differ "
                                 "from the connector's database.user): the Kafka Connect worker's log has the error")
        except SnapshotError as exc:
            parts.append(f"cannot ask the database: {exc}")
        return "; ".join(parts)

    def _clean_up(self, db: SignalDatabase, end_ms: int | None) -> None:
        """Delete the snapshot's signal row and the watermark rows of windows opened before its end."""
        try:
            signals = db.delete_signals([self.snapshot_id])
            windows = db.delete_stale_windows(end_ms)
        except SnapshotError as exc:
            self.log.warning("Cannot clean up the signal table after snapshot %s: %s", self.snapshot_id, exc)
            return
        self.log.info("Removed from %s: signal %s (%d row), %d watermark row(s)", db.target.signal_table,
                      self.snapshot_id, signals, windows)
