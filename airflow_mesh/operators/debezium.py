"""Operators that signal a running Debezium connector: start or stop an incremental snapshot (an online backfill).

A signal is a row written to the connector's signal table (``signal.data.collection``) through an
Airflow connection to the captured database; the connector reads it from its own change stream.
Before writing, each operator reads the connector's deployed config from Kafka Connect and checks
that the connector will act on the signal and captures every table named in it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from airflow.sdk import BaseHook, BaseOperator

from airflow_mesh.connectors.snapshots import (
    POSTGRES,
    Signal,
    SignallingConfigError,
    SqlDialect,
    check_captured,
    execute_snapshot_signal,
    notification_source,
    signal_target,
    stop_snapshot_signal,
)
from airflow_mesh.hooks.kafka_connect import KafkaConnectHook

# libpq settings an Airflow ``postgres`` connection may carry in its extra.
LIBPQ_EXTRAS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "application_name", "options")


def _execute_postgres(conn_id: str, statement: str, params: tuple[str, ...]) -> None:
    """Run one statement, committed, on the PostgreSQL database of an Airflow connection."""
    conn = BaseHook.get_connection(conn_id)
    extra = conn.extra_dejson
    conninfo = make_conninfo(host=conn.host, port=conn.port, user=conn.login, password=conn.password,
                             dbname=conn.schema, **{key: str(extra[key]) for key in LIBPQ_EXTRAS if key in extra})
    with psycopg.connect(conninfo, autocommit=True) as db:
        db.execute(statement, params)


# How to run a statement on each database whose signal table an operator can write to.
SIGNAL_WRITERS: dict[SqlDialect, Callable[[str, str, tuple[str, ...]], None]] = {POSTGRES: _execute_postgres}


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

    def _send(self, signal: Signal, tables: Sequence[str] | None) -> int:
        """Check the connector's config, then insert the signal row into its signal table.

        Returns:
            When the row was written (epoch ms, taken just before the INSERT).
        """
        config = self.hook.get_connector_config(self.connector_name)
        target = signal_target(self.connector_name, config)
        if tables:
            check_captured(self.connector_name, config, tables)
        write = SIGNAL_WRITERS.get(target.dialect)
        if write is None:
            raise SignallingConfigError(self.connector_name, f"writing signals to {target.dialect.name} is not "
                                                             "supported yet")
        try:
            notification_source(self.connector_name, config)
        except SignallingConfigError as exc:
            self.log.warning("%s; IncrementalSnapshotSensor cannot follow its snapshots", exc)
        self.log.info("Signalling connector %s through %s: %s %s %s", self.connector_name, target.signal_table,
                      signal.type, signal.id, signal.data)
        written_at_ms = time.time_ns() // 1_000_000
        write(self.database_conn_id, target.dialect.insert_signal(target.signal_table), signal.row())
        return written_at_ms


class IncrementalSnapshotOperator(_SnapshotSignalOperator):
    """Ask a running Debezium connector for an incremental snapshot of some tables (an online backfill).

    Debezium then reads the tables in primary-key chunks while it keeps streaming changes, and emits
    each row as a read event (``op=r``, ``source.snapshot=incremental``) interleaved with the live
    changes, so that the topic applied in order reproduces the table. Nothing is written unless the
    connector captures every table and its signal table. ``IncrementalSnapshotSensor`` waits for the
    snapshot's end.

    Every connector that captures the same signal table acts on the signal too (a signal row names
    no connector): give each connector a signal table of its own.

    Args:
        connector_name: The Kafka Connect connector to signal (templated).
        database_conn_id: The Airflow connection to the database the connector captures; its user
            needs INSERT on the signal table (templated).
        tables: Qualified names (``schema.table``) of the tables to read (templated).
        filters: Per table, an SQL condition limiting the rows read, Debezium's
            ``additional-conditions``, e.g. ``{"public.orders": "status = 'open'"}`` (templated).
        signal_id: The signal's id, which identifies the snapshot (templated); default: a new UUID.
        kafka_connect_conn_id: The Kafka Connect connection.

    Returns (XCom):
        ``{"signal_id": ..., "connector_name": ..., "data_collections": [...], "signaled_at_ms": ...}``:
        the snapshot's id, the tables asked for, and when the signal was written (epoch ms), which
        are the sensor's ``snapshot_id``, ``data_collections`` and ``since_ms``. Each key is also
        pushed on its own (``multiple_outputs``), e.g. ``operator.output["signal_id"]``.

    Raises:
        UncapturedTableError: a table is not captured by the connector (nothing is written).
        SnapshotRequestError: the request is malformed (nothing is written).
        SignallingConfigError: the connector does not read signals from its signal table.
        ConnectorNotFoundError: Kafka Connect has no such connector.
        psycopg.Error: the database refused the row (e.g. an id already used, no INSERT privilege).
    """

    template_fields: Sequence[str] = (*_SnapshotSignalOperator.template_fields, "tables", "filters")

    def __init__(self, *, tables: Sequence[str], filters: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tables = tables
        self.filters = filters

    def execute(self, context: Any) -> dict[str, Any]:
        signal = execute_snapshot_signal(self._new_signal_id(), self.tables, self.filters)
        signaled_at_ms = self._send(signal, self.tables)
        return {"signal_id": signal.id, "connector_name": self.connector_name,
                "data_collections": list(self.tables), "signaled_at_ms": signaled_at_ms}


class StopIncrementalSnapshotOperator(_SnapshotSignalOperator):
    """Stop a running incremental snapshot, or stop it reading some of its tables (``stop-snapshot``).

    A sensor waiting for that snapshot then fails, naming the tables left unread.

    Args:
        connector_name: The Kafka Connect connector to signal (templated).
        database_conn_id: The Airflow connection to the database the connector captures; its user
            needs INSERT on the signal table (templated).
        tables: The tables to stop reading (templated); None stops the whole snapshot.
        signal_id: The signal's id (templated); default: a new UUID.
        kafka_connect_conn_id: The Kafka Connect connection.

    Returns (XCom):
        ``{"signal_id": ..., "connector_name": ..., "data_collections": [...] or None, "signaled_at_ms": ...}``.

    Raises:
        UncapturedTableError: a table is not captured by the connector (nothing is written).
        SnapshotRequestError: a table name is malformed (nothing is written).
        SignallingConfigError: the connector does not read signals from its signal table.
        ConnectorNotFoundError: Kafka Connect has no such connector.
        psycopg.Error: the database refused the row (e.g. an id already used, no INSERT privilege).
    """

    template_fields: Sequence[str] = (*_SnapshotSignalOperator.template_fields, "tables")

    def __init__(self, *, tables: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tables = tables

    def execute(self, context: Any) -> dict[str, Any]:
        signal = stop_snapshot_signal(self._new_signal_id(), self.tables)
        signaled_at_ms = self._send(signal, self.tables)
        return {"signal_id": signal.id, "connector_name": self.connector_name,
                "data_collections": None if self.tables is None else list(self.tables),
                "signaled_at_ms": signaled_at_ms}
