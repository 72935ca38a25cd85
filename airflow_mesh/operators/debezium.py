"""Operators that signal a running Debezium connector: start or stop an incremental snapshot (an online backfill).

A signal is a row written to the connector's signal table (``signal.data.collection``) through an
Airflow connection to the captured database; the connector reads it from its own change stream.
Before writing, each operator reads the connector's deployed config from Kafka Connect and checks
that the connector will act on the signal and captures every table named in it; that the Airflow
connection's type fits the connector; and (``IncrementalSnapshotOperator``) that the database plans
a read of each table with its filter. The database is reached through
``airflow_mesh.hooks.debezium.SignalTableHook`` (its ``SignalDatabase`` runs the checks in a
read-only transaction and writes the signal row), Kafka Connect through ``KafkaConnectHook``, the
notification topic through ``airflow_mesh.hooks.kafka.NotificationReader``.

Supported: Debezium's PostgreSQL connector (a ``postgres`` connection) and its MariaDB and MySQL
connectors (a ``mysql`` connection).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook
from airflow.sdk import BaseOperator

from airflow_mesh.connectors.snapshots import (
    INCREMENTAL_SNAPSHOT,
    NotificationSource,
    Signal,
    SignallingConfigError,
    SignalTarget,
    check_captured,
    execute_snapshot_signal,
    notification_source,
    parse_filters,
    signal_target,
    stop_snapshot_signal,
)
from airflow_mesh.hooks.debezium import SignalDatabase, SignalTableHook
from airflow_mesh.hooks.kafka import NotificationReader
from airflow_mesh.hooks.kafka_connect import KafkaConnectHook
from airflow_mesh.hooks.mysql import mysql_connect_kwargs

__all__ = ["IncrementalSnapshotOperator", "SignalDatabase", "StopIncrementalSnapshotOperator", "await_notification",
           "mysql_connect_kwargs"]


class _SnapshotSignalOperator(BaseOperator):
    """Base of the operators that write one incremental-snapshot signal for a named connector."""

    template_fields: Sequence[str] = ("connector_name", "database_conn_id", "signal_id", "kafka_connect_conn_id")
    ui_color = "#e8f1fb"

    def __init__(self, *, connector_name: str, database_conn_id: str, signal_id: str | None = None,
                 kafka_connect_conn_id: str = KafkaConnectHook.default_conn_name, **kwargs: Any) -> None:
        kwargs.setdefault("multiple_outputs", True)  # so that ``operator.output["signal_id"]`` works
        super().__init__(**kwargs)
        self.connector_name = connector_name
        self.database_conn_id = database_conn_id
        self.signal_id = signal_id
        self.kafka_connect_conn_id = kafka_connect_conn_id

    @cached_property
    def hook(self) -> KafkaConnectHook:
        return KafkaConnectHook(self.kafka_connect_conn_id)

    def _new_signal_id(self) -> str:
        return self.signal_id or str(uuid.uuid4())

    def _target(self, tables: Sequence[str] | None) -> tuple[dict[str, str], SignalTarget, NotificationSource | None]:
        """The connector's deployed config, checked: its signal table and dialect, and where it notifies.

        Raises:
            SignallingConfigError: the connector does not read signals from its signal table.
            UncapturedTableError: a table is not captured.
        """
        config = self.hook.get_connector_config(self.connector_name)
        target = signal_target(self.connector_name, config)
        if tables:
            check_captured(self.connector_name, config, tables)
        try:
            notifications = notification_source(self.connector_name, config)
        except SignallingConfigError as exc:
            self.log.warning("%s; IncrementalSnapshotSensor cannot follow its snapshots", exc)
            notifications = None
        return config, target, notifications

    def _write(self, db: SignalDatabase, signal: Signal) -> int:
        self.log.info("Signalling connector %s through %s: %s %s %s", self.connector_name, db.target.signal_table,
                      signal.type, signal.id, signal.data)
        return db.insert(signal)


class IncrementalSnapshotOperator(_SnapshotSignalOperator):
    """Ask a running Debezium connector for an incremental snapshot of some tables (an online backfill).

    Debezium then reads the tables in primary-key chunks while it keeps streaming changes, and emits
    each row as a read event (``op=r``, ``source.snapshot=incremental``) interleaved with the live
    changes, so that the topic applied in order reproduces the table. ``IncrementalSnapshotSensor``
    waits for the snapshot's end (and removes the signal row once Debezium has acted on it).

    Nothing is written unless every check passes, in this order: the request's shape; the connector
    (from Kafka Connect) captures every table and its signal table; each filter is one boolean
    condition of the database's dialect (parsed with sqlglot, as the backfill's ``where``, and
    signalled as written back from the parse tree, in parentheses); the Airflow connection's type
    fits the connector (``postgres`` for PostgreSQL, ``mysql`` for MariaDB/MySQL); and, on that same
    connection in a read-only transaction, the database plans ``EXPLAIN SELECT * FROM <table>`` and
    ``... WHERE <filter>`` for every table (the database's own message when it refuses). A filter
    can still fail while it runs (e.g. a division by zero on some row): the sensor then fails with
    the database's message.

    Every connector that captures the same signal table acts on the signal too (a signal row names
    no connector): give each connector a signal table of its own.

    Args:
        connector_name: The Kafka Connect connector to signal (templated).
        database_conn_id: The Airflow connection to the database the connector captures, a
            ``postgres`` connection for a PostgreSQL connector, a ``mysql`` one for MariaDB/MySQL
            (host, port, login, password, schema; TLS settings in the extra, see
            ``mysql_connect_kwargs``); its user needs INSERT on the signal table and SELECT on the
            tables (templated).
        tables: Qualified names of the tables to read, ``schema.table`` (PostgreSQL) or
            ``database.table`` (MariaDB/MySQL) (templated).
        filters: Per table, an SQL condition in the database's own dialect limiting the rows read,
            Debezium's ``additional-conditions``, e.g. ``{"public.orders": "status = 'open'"}`` (templated).
        signal_id: The signal's id, which identifies the snapshot (templated); default: a new UUID.
        kafka_connect_conn_id: The Kafka Connect connection.

    Returns (XCom):
        ``{"signal_id": ..., "connector_name": ..., "data_collections": [...], "signaled_at_ms": ...}``:
        the snapshot's id, the tables asked for, and when the signal was written (epoch ms), which
        are the sensor's ``snapshot_id``, ``data_collections`` and ``since_ms``. Each key is also
        pushed on its own (``multiple_outputs``), e.g. ``operator.output["signal_id"]``.

    Raises:
        SnapshotRequestError: the request is malformed, or a filter is not one read-only condition
            (nothing is contacted).
        UncapturedTableError: a table is not captured by the connector (nothing is written).
        ConnectionMismatchError: the connection's type does not fit the connector (nothing is contacted).
        FilterCheckError: the database refused a table or a filter (nothing is written).
        SignalDatabaseError: connecting failed, or the database refused the row (e.g. an id already
            used, no INSERT privilege); the database's message on one line.
        SignallingConfigError: the connector does not read signals from its signal table.
        ConnectorNotFoundError: Kafka Connect has no such connector.
        ValueError: the ``mysql`` connection's TLS extras are malformed (nothing is written).
    """

    template_fields: Sequence[str] = (*_SnapshotSignalOperator.template_fields, "tables", "filters")

    def __init__(self, *, tables: Sequence[str], filters: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tables = tables
        self.filters = filters

    def execute(self, context: Any) -> dict[str, Any]:
        signal_id = self._new_signal_id()
        execute_snapshot_signal(signal_id, self.tables, self.filters)  # the request's shape, before any network
        config, target, _ = self._target(self.tables)
        conditions = parse_filters(self.filters, target.dialect)
        signal = execute_snapshot_signal(signal_id, self.tables, conditions)
        with SignalTableHook(self.database_conn_id).open(self.connector_name, config, target) as db:
            db.check_tables(self.tables, dict(self.filters or {}), conditions)
            signaled_at_ms = self._write(db, signal)
        return {"signal_id": signal.id, "connector_name": self.connector_name,
                "data_collections": list(self.tables), "signaled_at_ms": signaled_at_ms}


def await_notification(reader: NotificationReader, logical_name: str, types: Iterable[str], timeout: float) -> bool:
    """Read on until the connector publishes an incremental-snapshot notification of one of ``types``.

    Args:
        reader: A reader positioned where to begin (e.g. at the topic's end before a signal was written).
        logical_name: The connector's ``topic.prefix``.
        types: The notification types awaited, e.g. ``ABORTED``.
        timeout: Seconds to wait at most.

    Returns:
        Whether one came in time.
    """
    wanted = set(types)
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        for notification in reader.poll(min(left, 1.0)):
            if (notification.aggregate_type == INCREMENTAL_SNAPSHOT and notification.type in wanted
                    and notification.additional_data.get("connector_name") == logical_name):
                return True
    return False


class StopIncrementalSnapshotOperator(_SnapshotSignalOperator):
    """Stop a running incremental snapshot, or stop it reading some of its tables (``stop-snapshot``).

    A sensor waiting for that snapshot then fails, naming the tables left unread. Once Debezium has
    acted on the signal (its ABORTED notification, read from the connector's notification topic),
    the operator deletes its signal row again. Without such a notification within
    ``acknowledge_timeout`` seconds (no snapshot was running, which Debezium ignores silently, or the
    connector lags) it deletes the row all the same: Debezium reads signals from the change log, not
    from the table, so the signal still takes effect when the connector reaches it.

    Args:
        connector_name: The Kafka Connect connector to signal (templated).
        database_conn_id: The Airflow connection to the database the connector captures, a
            ``postgres`` connection for a PostgreSQL connector, a ``mysql`` one for MariaDB/MySQL
            (host, port, login, password, schema; TLS settings in the extra, see
            ``mysql_connect_kwargs``); its user needs INSERT and DELETE on the signal table (templated).
        tables: The tables to stop reading (templated); None stops the whole snapshot.
        signal_id: The signal's id (templated); default: a new UUID.
        kafka_connect_conn_id: The Kafka Connect connection.
        kafka_config_id: The Airflow ``kafka`` connection of the cluster holding the notification topic.
        acknowledge_timeout: Seconds to wait for Debezium's notification before deleting the row; 0
            deletes it at once.

    Returns (XCom):
        ``{"signal_id": ..., "connector_name": ..., "data_collections": [...] or None, "signaled_at_ms": ...,
        "acknowledged": bool}``.

    Raises:
        UncapturedTableError: a table is not captured by the connector (nothing is written).
        SnapshotRequestError: a table name is malformed (nothing is written).
        ConnectionMismatchError: the connection's type does not fit the connector (nothing is contacted).
        SignalDatabaseError: connecting failed, or the database refused the row; the database's
            message on one line.
        SignallingConfigError: the connector does not read signals from its signal table.
        ConnectorNotFoundError: Kafka Connect has no such connector.
        ValueError: the ``mysql`` connection's TLS extras are malformed (nothing is written).
    """

    template_fields: Sequence[str] = (*_SnapshotSignalOperator.template_fields, "tables", "kafka_config_id")

    def __init__(self, *, tables: Sequence[str] | None = None,
                 kafka_config_id: str = KafkaBaseHook.default_conn_name, acknowledge_timeout: float = 60,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tables = tables
        self.kafka_config_id = kafka_config_id
        self.acknowledge_timeout = acknowledge_timeout

    def execute(self, context: Any) -> dict[str, Any]:
        signal = stop_snapshot_signal(self._new_signal_id(), self.tables)
        config, target, notifications = self._target(self.tables)
        acknowledged = False
        with SignalTableHook(self.database_conn_id).open(self.connector_name, config, target) as db:
            reader = None
            if notifications is not None and self.acknowledge_timeout > 0:
                reader = NotificationReader(self.kafka_config_id, notifications.topic, from_end=True)
                reader.poll(0)  # positioned at the topic's end before the signal exists
            try:
                signaled_at_ms = self._write(db, signal)
                if reader is not None and notifications is not None:  # a reader only with notifications
                    acknowledged = await_notification(reader, notifications.logical_name, ("ABORTED",),
                                                      self.acknowledge_timeout)
            finally:
                if reader is not None:
                    reader.close()
            if not acknowledged:
                self.log.warning("No ABORTED notification from %s within %ss: no incremental snapshot was running "
                                 "(Debezium then ignores the signal), or the connector is behind (it still acts on "
                                 "the signal when it reaches it in the change log)", self.connector_name,
                                 self.acknowledge_timeout)
            db.delete_signals([signal.id])
            self.log.info("Removed signal %s from %s", signal.id, target.signal_table)
        return {"signal_id": signal.id, "connector_name": self.connector_name,
                "data_collections": None if self.tables is None else list(self.tables),
                "signaled_at_ms": signaled_at_ms, "acknowledged": acknowledged}
