"""Debezium's signal table, in the database a connector captures: the signal rows, and the checks around them.

A signal is a row written to the connector's signal table (``signal.data.collection``) through an
Airflow connection to the captured database; the connector reads it from its own change stream.
``SignalTableHook`` opens ``SignalDatabase``, one connection to that database: the checks the
incremental-snapshot operators make before writing (``EXPLAIN`` of each table and filter, in a
read-only transaction), the signal row itself, and the clean-up and diagnosis
``IncrementalSnapshotSensor`` does once the snapshot has ended.

Supported: Debezium's PostgreSQL connector (a ``postgres`` connection, through psycopg) and its
MariaDB and MySQL connectors (a ``mysql`` connection, through PyMySQL and
``airflow_mesh.hooks.mysql.MySqlHook``); ``CONNECTORS`` maps each connector's SQL dialect to its driver.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import closing, suppress
from types import TracebackType
from typing import Any

import psycopg
import pymysql
from airflow.sdk import BaseHook
from psycopg.conninfo import make_conninfo

from airflow_mesh.backfill.explain import explain
from airflow_mesh.connectors.snapshots import (
    MARIADB,
    POSTGRES,
    WINDOW_CLOSE,
    WINDOW_OPEN,
    FilterCheckError,
    Signal,
    SignalDatabaseError,
    SignalTarget,
    SqlDialect,
    check_connection_type,
    signal_target,
    stale_windows,
)
from airflow_mesh.hooks.mysql import MySqlHook, mysql_connect_kwargs

__all__ = ["CONNECTORS", "DIAGNOSIS_TIMEOUT", "SignalDatabase", "SignalTableHook", "mysql_connect_kwargs"]

# libpq settings an Airflow ``postgres`` connection may carry in its extra.
LIBPQ_EXTRAS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "application_name", "options")


def _connect_postgres(conn_id: str, conn: Any) -> psycopg.Connection:
    """An autocommitting psycopg connection to the PostgreSQL database of an Airflow ``postgres`` connection."""
    extra = conn.extra_dejson
    conninfo = make_conninfo(host=conn.host, port=conn.port, user=conn.login, password=conn.password,
                             dbname=conn.schema, **{key: str(extra[key]) for key in LIBPQ_EXTRAS if key in extra})
    return psycopg.connect(conninfo, autocommit=True)


def _connect_mysql(conn_id: str, conn: Any) -> pymysql.Connection:
    """An autocommitting PyMySQL connection to the MariaDB/MySQL database of an Airflow ``mysql`` connection.

    Raises:
        pymysql.err.OperationalError: also when the connection asks for TLS and the session is not encrypted.
    """
    return MySqlHook(conn_id).get_tls_checked_conn()


# How to connect to each database whose signal table an operator can write to (autocommit on).
CONNECTORS: dict[SqlDialect, Callable[[str, Any], Any]] = {
    POSTGRES: _connect_postgres,
    MARIADB: _connect_mysql,  # MariaDB and MySQL connectors alike
}
DEFAULT_PORTS = {POSTGRES: 5432, MARIADB: 3306}
# What the drivers raise for a database's answer or a lost connection.
DRIVER_ERRORS = (psycopg.Error, pymysql.Error, OSError)
# Seconds a statement re-running a failed snapshot's query may take before the database stops it.
DIAGNOSIS_TIMEOUT = 60


def _timed_out(exc: BaseException) -> bool:
    """Whether the database stopped a statement for running too long (not an error of the statement)."""
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return True
    return isinstance(exc, pymysql.Error) and bool(exc.args) and exc.args[0] in (1969, 3024)


class SignalDatabase:
    """One connection to the database a connector captures, through the Airflow connection given for it.

    ``open`` checks the connection's type against the connector's class before connecting. Reading
    checks run in a read-only transaction (``EXPLAIN`` plans a statement without running it), and
    nothing but the signal table is ever written. Every failure of the driver is one line with the
    database's own message (``airflow_mesh.backfill.explain``).

    Args:
        conn_id: The Airflow connection.
        target: The connector's signal table and dialect.
        db: The driver's connection (autocommit on).
        address: Where it leads, for messages (``PostgreSQL at host:port/db``).
    """

    def __init__(self, conn_id: str, target: SignalTarget, db: Any, address: str) -> None:
        self.conn_id = conn_id
        self.target = target
        self.dialect = target.dialect
        self.address = address
        self._db = db

    @classmethod
    def open(cls, conn_id: str, connector_name: str, config: Mapping[str, str],
             target: SignalTarget | None = None) -> SignalDatabase:
        """Connect to the database of a connector through an Airflow connection.

        Args:
            conn_id: The Airflow connection to the database.
            connector_name: The Kafka Connect connector (for messages).
            config: Its deployed config.
            target: Its signal table and dialect, when already known (else read from ``config``).

        Returns:
            The open connection; close it (or use it as a context manager).

        Raises:
            ConnectionMismatchError: the connection's type does not fit the connector (nothing contacted).
            SignalDatabaseError: connecting failed (the driver's and the server's words, on one line).
            SignallingConfigError: the connector does not read signals from a signal table.
            ValueError: the ``mysql`` connection's TLS extras are malformed.
        """
        target = target or signal_target(connector_name, config)
        conn = BaseHook.get_connection(conn_id)
        check_connection_type(connector_name, config, conn_id, conn.conn_type)
        port = conn.port or DEFAULT_PORTS[target.dialect]
        address = f"{target.dialect.title} at {conn.host or 'localhost'}:{port}" + (f"/{conn.schema}"
                                                                                     if conn.schema else "")
        try:
            db = CONNECTORS[target.dialect](conn_id, conn)
        except DRIVER_ERRORS as exc:
            raise SignalDatabaseError(conn_id, f"connecting to {address}", explain(exc)) from exc
        return cls(conn_id, target, db, address)

    def __enter__(self) -> SignalDatabase:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def _execute(self, statement: str, params: Sequence[Any] | None = None) -> tuple[list[tuple[Any, ...]], int]:
        """Run one statement; its rows (if any) and the number of rows it touched."""
        with closing(self._db.cursor()) as cursor:
            cursor.execute(statement, params)
            rows = list(cursor.fetchall()) if cursor.description else []
            return rows, cursor.rowcount

    def _run(
        self, doing: str, statement: str, params: Sequence[Any] | None = None
    ) -> tuple[list[tuple[Any, ...]], int]:
        """``_execute``, with a driver's failure as a ``SignalDatabaseError`` saying what was being done."""
        try:
            return self._execute(statement, params)
        except DRIVER_ERRORS as exc:
            raise SignalDatabaseError(self.conn_id, f"{doing} ({self.address})", explain(exc)) from exc

    def _read_only(self) -> _ReadOnly:
        return _ReadOnly(self)

    def check_tables(self, tables: Iterable[str], texts: Mapping[str, str], conditions: Mapping[str, str]) -> None:
        """Have the database plan a read of each table, and of it with its filter, without running either.

        ``EXPLAIN SELECT * FROM <table> [WHERE <filter>]``, in a read-only transaction: the database
        parses the filter, resolves its columns, functions and types, and the table, so that what it
        would refuse in Debezium's chunk queries is refused here, before any signal is written.

        Args:
            tables: The qualified names to read.
            texts: Per table, the filter as the user wrote it (for the message).
            conditions: Per table, the filter as it is signalled (``parse_filters``).

        Raises:
            FilterCheckError: the database refused a table or a filter (its message, the table, the filter).
            SignalDatabaseError: the transaction itself failed.
        """
        with self._read_only():
            for table in tables:
                for condition in (None, conditions.get(table)) if conditions.get(table) else (None,):
                    try:
                        self._execute(self.dialect.explain_select(table, condition))
                    except DRIVER_ERRORS as exc:
                        text = texts.get(table) if condition else None
                        raise FilterCheckError(self.conn_id, table, text, condition, explain(exc)) from exc

    def insert(self, signal: Signal) -> int:
        """Write one signal row into the signal table.

        Returns:
            When the row was written (epoch ms, taken just before the INSERT).

        Raises:
            SignalDatabaseError: the database refused the row (e.g. an id already used, no INSERT privilege).
        """
        written_at_ms = time.time_ns() // 1_000_000
        self._run(f"writing the {signal.type} signal {signal.id} to {self.target.signal_table}",
                  self.dialect.insert_signal(self.target.signal_table), signal.row())
        return written_at_ms

    def signal_data(self, signal_id: str) -> str | None:
        """The ``data`` of a signal row, None when there is no such row.

        Raises:
            SignalDatabaseError: the read failed.
        """
        rows, _ = self._run(f"reading signal {signal_id} from {self.target.signal_table}",
                            self.dialect.select_signal(self.target.signal_table), (signal_id,))
        return rows[0][0] if rows else None

    def delete_signals(self, signal_ids: Sequence[str]) -> int:
        """Delete signal rows by id.

        Returns:
            How many rows were deleted.

        Raises:
            SignalDatabaseError: the database refused (e.g. no DELETE privilege on the signal table).
        """
        if not signal_ids:
            return 0
        _, count = self._run(f"deleting signal {', '.join(signal_ids)} from {self.target.signal_table}",
                             self.dialect.delete_signals(self.target.signal_table, len(signal_ids)), tuple(signal_ids))
        return count

    def delete_stale_windows(self, end_ms: int | None) -> int:
        """Delete Debezium's watermark rows of windows opened before a snapshot's end (``stale_windows``).

        Args:
            end_ms: Debezium's time of the connector's last COMPLETED notification; None deletes nothing.

        Returns:
            How many rows were deleted.

        Raises:
            SignalDatabaseError: the database refused.
        """
        if end_ms is None:
            return 0
        rows, _ = self._run(f"reading the watermark rows of {self.target.signal_table}",
                            self.dialect.select_windows(self.target.signal_table), (WINDOW_OPEN, WINDOW_CLOSE))
        stale = stale_windows(rows, end_ms)
        deleted = 0
        for start in range(0, len(stale), 500):
            deleted += self.delete_signals(stale[start:start + 500])
        return deleted

    def find_error(self, table: str, condition: str | None, timeout: int = DIAGNOSIS_TIMEOUT) -> str | None:
        """Ask the database again what a failed snapshot's query of a table ran into.

        In a read-only transaction: ``EXPLAIN`` of reading the table (a table dropped or renamed), of
        it with its filter (what the database refuses to plan), then a count of the rows the filter
        admits, which evaluates it on every row (what fails only at run time, e.g. a division by
        zero or a failed cast), stopped by the database after ``timeout`` seconds.

        Args:
            table: The table.
            condition: The filter Debezium used (as signalled), or None.
            timeout: Seconds the count may take.

        Returns:
            The database's message (one line), or None when every statement went through (or the
            count was stopped for time).

        Raises:
            SignalDatabaseError: the transaction itself failed.
        """
        statements = [self.dialect.explain_select(table)]
        if condition:
            statements += [self.dialect.explain_select(table, condition), self.dialect.count_where(table, condition)]
        with self._read_only():
            for setting in self.dialect.timeouts:
                with suppress(*DRIVER_ERRORS):  # the other server's spelling
                    self._execute(setting.format(seconds=int(timeout)))
            for statement in statements:
                try:
                    self._execute(statement)
                except DRIVER_ERRORS as exc:
                    return None if _timed_out(exc) else explain(exc)
        return None


class _ReadOnly:
    """A read-only transaction on a ``SignalDatabase``, always rolled back."""

    def __init__(self, database: SignalDatabase) -> None:
        self.database = database

    def __enter__(self) -> None:
        self.database._run("starting a read-only transaction", self.database.dialect.begin_read_only)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if kind is None:
            self.database._run("ending a read-only transaction", "ROLLBACK")
            return
        with suppress(*DRIVER_ERRORS):  # the error that is on its way says more
            self.database._execute("ROLLBACK")


class SignalTableHook(BaseHook):
    """Reach the signal table of a Debezium connector through the Airflow connection to its database.

    The connection is a ``postgres`` one for Debezium's PostgreSQL connector, a ``mysql`` one for its
    MariaDB and MySQL connectors (host, port, login, password, schema; TLS settings in the extra, see
    ``airflow_mesh.hooks.mysql.mysql_connect_kwargs``, and libpq's ``sslmode``, ``sslrootcert``...
    for PostgreSQL).

    Args:
        database_conn_id: The Airflow connection to the database the connector captures.
    """

    conn_name_attr = "database_conn_id"
    hook_name = "Debezium signal table"

    def __init__(self, database_conn_id: str) -> None:
        super().__init__()
        self.database_conn_id = database_conn_id

    def open(self, connector_name: str, config: Mapping[str, str],
             target: SignalTarget | None = None) -> SignalDatabase:
        """Connect to the database of a connector, after checking that the connection's type fits it.

        Args:
            connector_name: The Kafka Connect connector (for messages).
            config: Its deployed config.
            target: Its signal table and dialect, when already known (else read from ``config``).

        Returns:
            The open connection; close it (or use it as a context manager).

        Raises:
            ConnectionMismatchError: the connection's type does not fit the connector (nothing contacted).
            SignalDatabaseError: connecting failed (the driver's and the server's words, on one line).
            SignallingConfigError: the connector does not read signals from a signal table.
            ValueError: the ``mysql`` connection's TLS extras are malformed.
        """
        return SignalDatabase.open(self.database_conn_id, connector_name, config, target)
