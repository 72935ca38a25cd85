"""Operators that signal a running Debezium connector: start or stop an incremental snapshot (an online backfill).

A signal is a row written to the connector's signal table (``signal.data.collection``) through an
Airflow connection to the captured database; the connector reads it from its own change stream.
Before writing, each operator reads the connector's deployed config from Kafka Connect and checks
that the connector will act on the signal and captures every table named in it; that the Airflow
connection's type fits the connector; and (``IncrementalSnapshotOperator``) that the database plans
a read of each table with its filter. ``SignalDatabase`` is that one connection: the checks in a
read-only transaction, the signal row, and the clean-up and diagnosis ``IncrementalSnapshotSensor``
does once the snapshot has ended.

Supported: Debezium's PostgreSQL connector (a ``postgres`` connection, through psycopg) and its
MariaDB and MySQL connectors (a ``mysql`` connection, through PyMySQL); ``CONNECTORS`` maps each
connector's SQL dialect to its driver.
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import closing
from functools import cached_property
from types import TracebackType
from typing import Any

import psycopg
import pymysql
from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook
from airflow.sdk import BaseHook, BaseOperator
from psycopg.conninfo import make_conninfo

from airflow_mesh.backfill.explain import explain
from airflow_mesh.connectors.snapshots import (
    INCREMENTAL_SNAPSHOT,
    MARIADB,
    POSTGRES,
    WINDOW_CLOSE,
    WINDOW_OPEN,
    FilterCheckError,
    NotificationSource,
    Signal,
    SignalDatabaseError,
    SignallingConfigError,
    SignalTarget,
    SqlDialect,
    check_captured,
    check_connection_type,
    execute_snapshot_signal,
    notification_source,
    parse_filters,
    signal_target,
    stale_windows,
    stop_snapshot_signal,
)
from airflow_mesh.hooks.kafka_connect import KafkaConnectHook
from airflow_mesh.triggers.debezium import NotificationReader

# libpq settings an Airflow ``postgres`` connection may carry in its extra.
LIBPQ_EXTRAS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "application_name", "options")


def _connect_postgres(conn_id: str, conn: Any) -> psycopg.Connection:
    """An autocommitting psycopg connection to the PostgreSQL database of an Airflow ``postgres`` connection."""
    extra = conn.extra_dejson
    conninfo = make_conninfo(host=conn.host, port=conn.port, user=conn.login, password=conn.password,
                             dbname=conn.schema, **{key: str(extra[key]) for key in LIBPQ_EXTRAS if key in extra})
    return psycopg.connect(conninfo, autocommit=True)


# MySQL's --ssl-mode values (mysqlclient's ``ssl_mode`` extra), weakest first.
MYSQL_SSL_MODES = ("DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
# Keys of the ``ssl`` extra (mysqlclient's dict, as MySqlHook passes it on; ``password`` decrypts the key).
MYSQL_SSL_DICT_KEYS = ("ca", "capath", "cert", "key", "cipher", "password", "check_hostname")
# Other extras passed on to PyMySQL as they are.
MYSQL_PLAIN_EXTRAS = ("charset", "unix_socket")


def _flag(conn_id: str, key: str, value: Any) -> bool:
    """A boolean extra, which arrives as a string when the connection is a URI."""
    if isinstance(value, bool | int):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"connection {conn_id}: extra {key} must be true or false, got {value!r}")


def _mysql_tls(conn_id: str, extra: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The TLS mode asked for by a ``mysql`` connection's extra, and PyMySQL's arguments for it.

    Both of MySqlHook's clients' spellings are read: mysqlclient's ``ssl`` dict (``ca``, ``capath``,
    ``cert``, ``key``, ``cipher``; also ``password`` of the key and ``check_hostname``) and its
    ``ssl_mode``; mysql-connector-python's ``ssl_ca``, ``ssl_cert``, ``ssl_key``, ``ssl_verify_cert``,
    ``ssl_verify_identity``, ``ssl_disabled`` (and PyMySQL's ``ssl_key_password``).

    ``ssl_mode`` (DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY) decides when given.
    Otherwise ``ssl_disabled`` turns TLS off, and any other TLS setting makes it required: with a CA
    (``ca``/``capath``/``ssl_ca``) the server's certificate and host name are verified
    (VERIFY_IDENTITY); ``ssl_verify_identity: false`` (or the dict's ``check_hostname: false``)
    verifies the certificate only, and ``ssl_verify_cert: false`` as well encrypts without verifying.
    Without a CA, verification uses the system's trusted CAs. With none of these settings the
    driver's default applies.

    Returns:
        ``(mode, kwargs)``: one of ``MYSQL_SSL_MODES`` or None (nothing asked: the driver's default),
        and the ``ssl`` (an ``ssl.SSLContext``) or ``ssl_disabled`` argument.
    """
    options = extra.get("ssl") or {}
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except ValueError as exc:
            raise ValueError(f"connection {conn_id}: extra ssl is not a JSON object: {exc}") from None
    if not isinstance(options, dict):
        raise ValueError(f"connection {conn_id}: extra ssl must be an object, got {type(options).__name__}")
    unknown = sorted(set(options) - set(MYSQL_SSL_DICT_KEYS))
    if unknown:
        raise ValueError(f"connection {conn_id}: unknown key(s) {', '.join(unknown)} in extra ssl; "
                         f"known: {', '.join(MYSQL_SSL_DICT_KEYS)}")
    files = {name: options.get(name) or extra.get(f"ssl_{name}")
             for name in ("ca", "capath", "cert", "key", "cipher")}
    files["password"] = options.get("password") or extra.get("ssl_key_password")
    has_ca = bool(files["ca"] or files["capath"])

    if extra.get("ssl_mode"):
        mode = str(extra["ssl_mode"]).strip().upper().replace("-", "_")
        if mode not in MYSQL_SSL_MODES:
            raise ValueError(f"connection {conn_id}: extra ssl_mode is {extra['ssl_mode']!r}; "
                             f"one of {', '.join(MYSQL_SSL_MODES)}")
    elif _flag(conn_id, "ssl_disabled", extra.get("ssl_disabled", False)):
        mode = "DISABLED"
    elif options or any(files.values()) or "ssl_verify_cert" in extra or "ssl_verify_identity" in extra:
        identity = _flag(conn_id, "ssl_verify_identity",
                         extra.get("ssl_verify_identity", options.get("check_hostname", has_ca)))
        verify = identity or _flag(conn_id, "ssl_verify_cert", extra.get("ssl_verify_cert", has_ca))
        mode = "VERIFY_IDENTITY" if identity else "VERIFY_CA" if verify else "REQUIRED"
    else:
        return None, {}

    if mode == "DISABLED":
        return mode, {"ssl_disabled": True}
    if mode == "PREFERRED":
        return mode, {}  # PyMySQL's default (recent releases try TLS, unverified, and fall back to plaintext)
    if files["key"] and not files["cert"]:
        raise ValueError(f"connection {conn_id}: a client key (ssl key) needs its certificate (ssl cert)")
    context = ssl.create_default_context(cafile=files["ca"], capath=files["capath"])
    context.check_hostname = mode == "VERIFY_IDENTITY"
    context.verify_mode = ssl.CERT_NONE if mode == "REQUIRED" else ssl.CERT_REQUIRED
    if files["cert"]:
        context.load_cert_chain(files["cert"], keyfile=files["key"], password=files["password"])
    if files["cipher"]:
        context.set_ciphers(files["cipher"])
    return mode, {"ssl": context}


def mysql_connect_kwargs(conn_id: str, conn: Any) -> tuple[dict[str, Any], bool]:
    """PyMySQL's ``connect()`` arguments for an Airflow ``mysql`` connection, autocommit on.

    Host, port (default 3306), login, password and schema (the default database) come from the
    connection; from its extra, the TLS settings (see ``_mysql_tls``), ``charset``, ``unix_socket``
    and ``connect_timeout``.

    Returns:
        The arguments, and whether TLS is required (to be checked once connected).
    """
    extra = conn.extra_dejson
    kwargs: dict[str, Any] = {"host": conn.host or "localhost", "port": int(conn.port or 3306),
                              "user": conn.login, "password": conn.password or "", "database": conn.schema or None,
                              "autocommit": True}
    kwargs.update({key: extra[key] for key in MYSQL_PLAIN_EXTRAS if extra.get(key)})
    if extra.get("connect_timeout"):
        kwargs["connect_timeout"] = int(extra["connect_timeout"])
    mode, tls = _mysql_tls(conn_id, extra)
    kwargs.update(tls)
    return kwargs, mode in ("REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")


def _connect_mysql(conn_id: str, conn: Any) -> pymysql.Connection:
    """An autocommitting PyMySQL connection to the MariaDB/MySQL database of an Airflow ``mysql`` connection.

    Raises:
        pymysql.err.OperationalError: also when the connection asks for TLS and the session is not encrypted.
    """
    kwargs, tls_required = mysql_connect_kwargs(conn_id, conn)
    db = pymysql.connect(**kwargs)
    if tls_required:
        # Older PyMySQL releases go on in plaintext when the server offers no TLS: refuse that.
        with db.cursor() as cursor:
            cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            row = cursor.fetchone()
        if not row or not row[1]:
            db.close()
            raise pymysql.err.OperationalError(2026, f"connection {conn_id} asks for TLS, but the session is not "
                                                     "encrypted (the server offers no TLS)")
    return db


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

    def _run(self, doing: str, statement: str, params: Sequence[Any] | None = None) -> tuple[list[tuple[Any, ...]], int]:
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
                try:
                    self._execute(setting.format(seconds=int(timeout)))
                except DRIVER_ERRORS:
                    pass  # the other server's spelling
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
        try:
            self.database._execute("ROLLBACK")
        except DRIVER_ERRORS:
            pass  # the error that is on its way says more


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
        with SignalDatabase.open(self.database_conn_id, self.connector_name, config, target) as db:
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
        with SignalDatabase.open(self.database_conn_id, self.connector_name, config, target) as db:
            reader = None
            if notifications is not None and self.acknowledge_timeout > 0:
                reader = NotificationReader(self.kafka_config_id, notifications.topic, from_end=True)
                reader.poll(0)  # positioned at the topic's end before the signal exists
            try:
                signaled_at_ms = self._write(db, signal)
                if reader is not None:
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
