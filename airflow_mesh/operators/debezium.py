"""Operators that signal a running Debezium connector: start or stop an incremental snapshot (an online backfill).

A signal is a row written to the connector's signal table (``signal.data.collection``) through an
Airflow connection to the captured database; the connector reads it from its own change stream.
Before writing, each operator reads the connector's deployed config from Kafka Connect and checks
that the connector will act on the signal and captures every table named in it.

Supported: Debezium's PostgreSQL connector (a ``postgres`` connection, written with psycopg) and its
MariaDB and MySQL connectors (a ``mysql`` connection, written with PyMySQL); ``SIGNAL_WRITERS`` maps
each connector's SQL dialect to its writer.
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any

import psycopg
import pymysql
from psycopg.conninfo import make_conninfo

from airflow.sdk import BaseHook, BaseOperator

from airflow_mesh.connectors.snapshots import (
    MARIADB,
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


def _execute_mysql(conn_id: str, statement: str, params: tuple[str, ...]) -> None:
    """Run one statement, autocommitted, on the MariaDB/MySQL database of an Airflow connection."""
    kwargs, tls_required = mysql_connect_kwargs(conn_id, BaseHook.get_connection(conn_id))
    db = pymysql.connect(**kwargs)
    try:
        with db.cursor() as cursor:
            if tls_required:
                # Older PyMySQL releases go on in plaintext when the server offers no TLS: refuse that.
                cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
                row = cursor.fetchone()
                if not row or not row[1]:
                    raise pymysql.err.OperationalError(2026, f"connection {conn_id} asks for TLS, but the "
                                                             "session is not encrypted (the server offers no TLS)")
            cursor.execute(statement, params)  # the driver escapes the values; the SQL text only names the table
    finally:
        db.close()


# How to run a statement on each database whose signal table an operator can write to.
SIGNAL_WRITERS: dict[SqlDialect, Callable[[str, str, tuple[str, ...]], None]] = {
    POSTGRES: _execute_postgres,
    MARIADB: _execute_mysql,  # MariaDB and MySQL connectors alike
}


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
        database_conn_id: The Airflow connection to the database the connector captures, a
            ``postgres`` connection for a PostgreSQL connector, a ``mysql`` one for MariaDB/MySQL
            (host, port, login, password, schema; TLS settings in the extra, see
            ``mysql_connect_kwargs``); its user needs INSERT on the signal table (templated).
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
        UncapturedTableError: a table is not captured by the connector (nothing is written).
        SnapshotRequestError: the request is malformed (nothing is written).
        SignallingConfigError: the connector does not read signals from its signal table.
        ConnectorNotFoundError: Kafka Connect has no such connector.
        psycopg.Error, pymysql.Error: the database refused the row (e.g. an id already used, no
            INSERT privilege), or the connection failed.
        ValueError: the ``mysql`` connection's TLS extras are malformed (nothing is written).
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
        database_conn_id: The Airflow connection to the database the connector captures, a
            ``postgres`` connection for a PostgreSQL connector, a ``mysql`` one for MariaDB/MySQL
            (host, port, login, password, schema; TLS settings in the extra, see
            ``mysql_connect_kwargs``); its user needs INSERT on the signal table (templated).
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
        psycopg.Error, pymysql.Error: the database refused the row (e.g. an id already used, no
            INSERT privilege), or the connection failed.
        ValueError: the ``mysql`` connection's TLS extras are malformed (nothing is written).
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
