"""Debezium incremental snapshots (online backfills): the signals that start and stop them, the notifications.

Debezium implements the watermark algorithm; this module only speaks its protocol:

* **Signals.** A row ``(id, type, data)`` inserted into the connector's signal table
  (``signal.data.collection``, a table the connector captures) asks it to ``execute-snapshot`` or
  ``stop-snapshot``. ``signal_target`` and ``check_captured`` check a deployed connector's config
  before anything is written; ``execute_snapshot_signal``, ``stop_snapshot_signal`` and
  ``SqlDialect.insert_signal`` build the row and its INSERT. A signal row names no connector:
  every connector that captures the table acts on it (a stop-snapshot stops each one's snapshot),
  so give each connector a signal table of its own.
* **Notifications.** With ``notification.enabled.channels: sink``, Debezium publishes JSON records
  to ``notification.sink.topic.name``, as observed on Debezium 3.6.1::

      {"id": "<signal id>", "aggregate_type": "Incremental Snapshot", "type": "TABLE_SCAN_COMPLETED",
       "additional_data": {"connector_name": "<topic.prefix>", "data_collections": "public.a,public.b",
                           "scanned_collection": "public.a", "total_rows_scanned": "3000",
                           "status": "SUCCEEDED"},
       "timestamp": 1795710829998}

  Types: STARTED, PAUSED, RESUMED, IN_PROGRESS (one per chunk), TABLE_SCAN_COMPLETED (one per
  table, with a status), COMPLETED, ABORTED. ``SnapshotWatch`` decides from them whether a snapshot
  succeeded; see its docstring for the traps (COMPLETED also ends failed and stopped snapshots, and a
  snapshot requested while another runs is merged into it under the newer signal's id).

Pure logic: nothing here imports Airflow or touches the network.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from airflow_mesh.backfill.errors import PlanError
from airflow_mesh.backfill.filters import parse_filter
from airflow_mesh.connectors.spec import MARIADB_CONNECTOR, MYSQL_CONNECTOR, POSTGRES_CONNECTOR

INCREMENTAL_SNAPSHOT = "Incremental Snapshot"

# The types of the rows Debezium's watermarking writes to the signal table: insert_insert leaves both
# (``<chunk id>-open`` and ``<chunk id>-close``) for every chunk, insert_delete deletes the open row
# when it closes the window, which a chunk whose query failed never does on PostgreSQL.
WINDOW_OPEN = "snapshot-window-open"
WINDOW_CLOSE = "snapshot-window-close"

# TABLE_SCAN_COMPLETED statuses (Debezium's TableScanCompletionStatus) that mean the table was read.
SCANNED_STATUSES = frozenset({"SUCCEEDED", "EMPTY"})

# What each failed TABLE_SCAN_COMPLETED status means, for the error message.
SCAN_FAILURES = {
    "SQL_EXCEPTION": "a chunk query failed (its filter, or the table, as the database read it then)",
    "UNKNOWN_SCHEMA": "the connector knows no such table (not captured, or dropped)",
    "NO_PRIMARY_KEY": "the table has no primary key, so it cannot be read in key-ordered chunks",
    "SKIPPED": "Debezium skipped the table",
}


class SnapshotError(Exception):
    """Base class of the errors about incremental snapshots."""


class SnapshotRequestError(SnapshotError, ValueError):
    """A snapshot request is malformed; nothing was signalled.

    E.g. no table, a table not schema-qualified, a filter for a table that is not requested.
    """


class UncapturedTableError(SnapshotRequestError):
    """Tables asked for are not captured by the connector; nothing was signalled.

    Attributes:
        connector_name: The Kafka Connect connector.
        tables: The tables its filters exclude.
    """

    def __init__(self, connector_name: str, tables: Sequence[str], exclusions: str) -> None:
        self.connector_name = connector_name
        self.tables = list(tables)
        super().__init__(f"connector {connector_name} does not capture {', '.join(tables)} ({exclusions}): "
                         "an incremental snapshot can only read tables the connector captures")


class SignallingConfigError(SnapshotError, ValueError):
    """A connector's config does not let it take signals or publish notifications.

    Attributes:
        connector_name: The Kafka Connect connector.
    """

    def __init__(self, connector_name: str, reason: str) -> None:
        self.connector_name = connector_name
        super().__init__(f"connector {connector_name}: {reason}")


class ConnectionMismatchError(SnapshotRequestError):
    """The Airflow connection given for a connector's database is of the wrong type; nothing was signalled.

    Attributes:
        conn_id: The Airflow connection.
        conn_type: Its type.
        connector_name: The Kafka Connect connector.
        expected: The connection type the connector's database needs.
    """

    def __init__(self, conn_id: str, conn_type: str, connector_name: str, connector_class: str, expected: str,
                 database: str, where: str | None) -> None:
        self.conn_id = conn_id
        self.conn_type = conn_type
        self.connector_name = connector_name
        self.expected = expected
        at = f" to {where}" if where else ""
        super().__init__(f"connection {conn_id} is a {conn_type or 'typeless'!r} connection, but connector "
                         f"{connector_name} ({connector_class}) captures a {database} database: give as "
                         f"database_conn_id a {expected!r} connection{at}")


class FilterCheckError(SnapshotRequestError):
    """The database refused a requested table, or its filter, when checked before signalling; nothing was signalled.

    Attributes:
        table: The table.
        text: The filter as the user wrote it (None: the table itself was refused).
        condition: The filter as it would have been signalled (``parse_filters``' rewrite), or None.
        server_message: The database's own message.
    """

    def __init__(self, conn_id: str, table: str, text: str | None, condition: str | None,
                 server_message: str) -> None:
        self.table = table
        self.text = text
        self.condition = condition
        self.server_message = server_message
        if text is None:
            what, fix = f"table {table}", "check the table's name (schema.table, as the database spells it)"
        else:
            rewritten = condition is not None and condition.strip() not in (text.strip(), f"({text.strip()})")
            what = f"filter {text!r} on {table}" + (f" (as signalled: {condition})" if rewritten else "")
            fix = "fix the filter"
        super().__init__(f"{what}: the database (connection {conn_id}) refuses it: {server_message}; nothing was "
                         f"signalled: {fix}")


class SignalDatabaseError(SnapshotError):
    """Connecting to a connector's database, or a statement on its signal table, failed.

    Attributes:
        conn_id: The Airflow connection.
        doing: What was being done, e.g. ``connecting to PostgreSQL at db:5432/shop``.
        server_message: The database's (or the driver's) own message.
    """

    def __init__(self, conn_id: str, doing: str, server_message: str) -> None:
        self.conn_id = conn_id
        self.doing = doing
        self.server_message = server_message
        super().__init__(f"connection {conn_id}: {doing}: {server_message}")


class NotificationTopicError(SnapshotError):
    """A notification topic cannot be read in the order Debezium wrote it (it has several partitions)."""


class SnapshotFailedError(SnapshotError):
    """Debezium reported that an incremental snapshot did not read every table asked for.

    Attributes:
        snapshot_id: The snapshot (its signal's id).
    """

    def __init__(self, snapshot_id: str, message: str) -> None:
        self.snapshot_id = snapshot_id
        super().__init__(message)


# ---------------------------------------------------------------- the connector's config


@dataclass(frozen=True)
class SqlDialect:
    """How to speak to one kind of captured database about its signal table and the tables it captures.

    Statements with placeholders use the DB-API drivers' ``%s`` (psycopg and PyMySQL alike), so a
    ``%`` in a name is doubled there; statements without parameters are sent as they are.

    Attributes:
        name: A short name (``postgresql``, ``mariadb``).
        identifier_quote: The character that quotes identifiers.
        title: The database's name in messages.
        sqlglot: sqlglot's name of the dialect, to parse filters in.
        conn_type: The Airflow connection type that reaches such a database.
        begin_read_only: The statement that opens a read-only transaction.
        timeouts: Statements that limit how long one statement may run, ``{seconds}`` to be
            formatted (each is tried; MariaDB and MySQL spell it differently).
    """

    name: str
    identifier_quote: str
    title: str
    sqlglot: str
    conn_type: str
    begin_read_only: str
    timeouts: tuple[str, ...]

    def quote(self, qualified_name: str) -> str:
        """Quote each dot-separated part of a name, e.g. ``public.debezium_signal``."""
        q = self.identifier_quote
        return ".".join(f"{q}{part.replace(q, q + q)}{q}" for part in qualified_name.split("."))

    def _table(self, qualified_name: str) -> str:
        """The quoted name, in a statement that has placeholders."""
        return self.quote(qualified_name).replace("%", "%%")

    def insert_signal(self, signal_table: str) -> str:
        """The INSERT of one signal row into ``signal_table``, with placeholders for id, type and data.

        A ``%`` in the name is doubled: psycopg and PyMySQL alike read ``%%`` as a literal ``%``.
        """
        return f"INSERT INTO {self._table(signal_table)} (id, type, data) VALUES (%s, %s, %s)"

    def explain_select(self, table: str, condition: str | None = None) -> str:
        """``EXPLAIN`` of reading a table, filtered by ``condition`` (already parsed), without parameters."""
        where = f" WHERE {condition}" if condition else ""
        return f"EXPLAIN SELECT * FROM {self.quote(table)}{where}"

    def count_where(self, table: str, condition: str) -> str:
        """A count of the rows ``condition`` admits, which evaluates it on every row; without parameters."""
        return f"SELECT count(*) FROM {self.quote(table)} WHERE {condition}"

    def select_signal(self, signal_table: str) -> str:
        """The ``data`` of one signal row, the id a placeholder."""
        return f"SELECT data FROM {self._table(signal_table)} WHERE id = %s"

    def delete_signals(self, signal_table: str, count: int) -> str:
        """The DELETE of ``count`` signal rows by id, each a placeholder."""
        return f"DELETE FROM {self._table(signal_table)} WHERE id IN ({', '.join(['%s'] * count)})"

    def select_windows(self, signal_table: str) -> str:
        """The watermark rows of the signal table, their two types placeholders (``WINDOW_OPEN``, ``WINDOW_CLOSE``)."""
        return f"SELECT id, type, data FROM {self._table(signal_table)} WHERE type IN (%s, %s)"


POSTGRES = SqlDialect("postgresql", '"', "PostgreSQL", "postgres", "postgres", "BEGIN READ ONLY",
                      ("SET LOCAL statement_timeout = '{seconds}s'",))
MARIADB = SqlDialect("mariadb", "`", "MariaDB/MySQL", "mysql", "mysql", "START TRANSACTION READ ONLY",
                     ("SET SESSION max_statement_time = {seconds}",            # MariaDB
                      "SET SESSION max_execution_time = {seconds}000"))        # MySQL
DIALECTS: dict[str, SqlDialect] = {POSTGRES_CONNECTOR: POSTGRES, MARIADB_CONNECTOR: MARIADB, MYSQL_CONNECTOR: MARIADB}


@dataclass(frozen=True)
class SignalTarget:
    """Where signals for a connector go: its signal table, in its database's dialect."""

    signal_table: str
    dialect: SqlDialect


@dataclass(frozen=True)
class NotificationSource:
    """Where a connector publishes its notifications, and the name it signs them with.

    Attributes:
        topic: ``notification.sink.topic.name``.
        logical_name: The connector's ``topic.prefix``, which Debezium puts in each notification's
            ``additional_data.connector_name`` (not the Kafka Connect connector name).
    """

    topic: str
    logical_name: str


def _split_list(value: str) -> list[str]:
    r"""A comma-separated Debezium list as Debezium splits it: ``\,`` escapes a comma, parts are trimmed."""
    parts = re.split(r"(?<!\\),", value)
    return [part.strip().replace("\\,", ",") for part in parts if part.strip()]


def _matches(connector_name: str, key: str, patterns: str, name: str) -> bool:
    """Whether any regex of a Debezium filter list matches the whole name, ignoring case, as Debezium does.

    Python's ``re`` reads the patterns; it agrees with Java's regexes on what filter lists use
    (literals, escaped dots, classes, alternations, quantifiers).
    """
    for pattern in _split_list(patterns):
        try:
            if re.fullmatch(pattern, name, re.IGNORECASE):
                return True
        except re.error as exc:
            raise SignallingConfigError(connector_name, f"{key}: cannot read pattern {pattern!r}: {exc}") from None
    return False


def _exclusion(connector_name: str, config: Mapping[str, str], table: str) -> str | None:
    """The setting that keeps a ``namespace.table`` out of the connector's capture, None when it is captured.

    Follows Debezium's filters: ``schema.*`` (PostgreSQL) or ``database.*`` (MySQL, MariaDB) lists
    match the namespace, ``table.*`` lists the qualified name; an include list admits only what it
    matches, an exclude list removes what it matches.
    """
    namespace = table.rpartition(".")[0]
    for key, name in (("schema", namespace), ("database", namespace), ("table", table)):
        include, exclude = config.get(f"{key}.include.list"), config.get(f"{key}.exclude.list")
        if include and not _matches(connector_name, f"{key}.include.list", include, name):
            return f"{key}.include.list: {include}"
        if exclude and _matches(connector_name, f"{key}.exclude.list", exclude, name):
            return f"{key}.exclude.list: {exclude}"
    return None


def check_captured(connector_name: str, config: Mapping[str, str], tables: Iterable[str]) -> None:
    """Check that the connector captures every table, as its include/exclude lists say.

    Args:
        connector_name: The Kafka Connect connector (for the message).
        config: Its deployed config (``GET /connectors/{name}/config``).
        tables: Qualified names, ``schema.table`` (PostgreSQL) or ``database.table`` (MariaDB).

    Raises:
        UncapturedTableError: naming every table that is not captured and the filter that excludes it.
        SignallingConfigError: a filter's pattern is not a valid regular expression.
    """
    excluded = {table: reason for table in tables if (reason := _exclusion(connector_name, config, table))}
    if excluded:
        raise UncapturedTableError(connector_name, list(excluded), "; ".join(sorted(set(excluded.values()))))


def signal_target(connector_name: str, config: Mapping[str, str]) -> SignalTarget:
    """Where to write signals for a deployed connector, checking that it will act on them.

    Args:
        connector_name: The Kafka Connect connector (for messages).
        config: Its deployed config.

    Returns:
        Its signal table and SQL dialect.

    Raises:
        SignallingConfigError: no ``signal.data.collection``; ``signal.enabled.channels`` lacks
            ``source``; the connector does not capture its own signal table (it would never see the
            row); or the connector class has no known SQL dialect.
    """
    connector_class = config.get("connector.class", "")
    dialect = DIALECTS.get(connector_class)
    if dialect is None:
        raise SignallingConfigError(connector_name, f"cannot write signals for connector class {connector_class!r}; "
                                                    f"supported: {', '.join(sorted(DIALECTS))}")
    signal_table = config.get("signal.data.collection")
    if not signal_table:
        raise SignallingConfigError(connector_name, "has no signal.data.collection: set it to its signal table "
                                                    "(a table it captures) to take incremental snapshot signals")
    channels = _split_list(config.get("signal.enabled.channels", "source"))
    if "source" not in channels:
        raise SignallingConfigError(connector_name, f"signal.enabled.channels is {','.join(channels)!r}: add "
                                                    "'source' so that it reads signals from its signal table")
    reason = _exclusion(connector_name, config, signal_table)
    if reason:
        raise SignallingConfigError(connector_name, f"does not capture its signal table {signal_table} ({reason}), "
                                                    "so it would never see a signal")
    return SignalTarget(signal_table, dialect)


def notification_source(connector_name: str, config: Mapping[str, str]) -> NotificationSource:
    """Where a deployed connector publishes its notifications.

    Args:
        connector_name: The Kafka Connect connector (for messages).
        config: Its deployed config.

    Returns:
        The notification topic and the logical name the notifications carry.

    Raises:
        SignallingConfigError: the ``sink`` notification channel is not enabled, or has no topic.
    """
    channels = _split_list(config.get("notification.enabled.channels", ""))
    topic = config.get("notification.sink.topic.name")
    if "sink" not in channels or not topic:
        raise SignallingConfigError(connector_name, "publishes no notifications to Kafka: set "
                                                    "notification.enabled.channels to include 'sink' and "
                                                    "notification.sink.topic.name to a topic")
    return NotificationSource(topic, config.get("topic.prefix", ""))


def _captured_database(config: Mapping[str, str]) -> str | None:
    """``host:port/dbname`` of the database a connector reads, as its config says; None when not known."""
    host, port, dbname = (config.get(f"database.{key}") for key in ("hostname", "port", "dbname"))
    if not host or "${" in str(host):  # a config-provider reference names no address
        return None
    where = f"{host}:{port}" if port and "${" not in str(port) else str(host)
    return f"{where}/{dbname}" if dbname and "${" not in str(dbname) else where


def check_connection_type(connector_name: str, config: Mapping[str, str], conn_id: str, conn_type: str | None) -> None:
    """Check that an Airflow connection is of the type the connector's database needs, before connecting.

    A PostgreSQL connector needs a ``postgres`` connection; MariaDB and MySQL connectors a ``mysql`` one.

    Args:
        connector_name: The Kafka Connect connector.
        config: Its deployed config (``connector.class``, and ``database.*`` to say where to connect).
        conn_id: The Airflow connection given for its database.
        conn_type: That connection's type.

    Raises:
        ConnectionMismatchError: the types differ; the message says which connection and type,
            which connector, and what to use instead.
        SignallingConfigError: the connector's class has no known SQL dialect.
    """
    connector_class = config.get("connector.class", "")
    dialect = DIALECTS.get(connector_class)
    if dialect is None:
        raise SignallingConfigError(connector_name, f"cannot write signals for connector class {connector_class!r}; "
                                                    f"supported: {', '.join(sorted(DIALECTS))}")
    if conn_type != dialect.conn_type:
        raise ConnectionMismatchError(conn_id, conn_type or "", connector_name, connector_class, dialect.conn_type,
                                      dialect.title, _captured_database(config))


def parse_filters(filters: Mapping[str, Any] | None, dialect: SqlDialect) -> dict[str, str]:
    """Each table's filter parsed as one boolean condition of the database's dialect, written back in parentheses.

    The backfill's ``parse_filter`` (sqlglot) does the parsing: a second statement, a write, a value
    that is not a condition, or text that would escape Debezium's parentheses around the filter
    (``id < 10) OR (true``) is refused before anything is contacted.

    Args:
        filters: Per table, the SQL condition as the user wrote it.
        dialect: The captured database's dialect.

    Returns:
        Per table, the condition to signal (and to check on the database).

    Raises:
        SnapshotRequestError: a filter is not one read-only condition; the message names the table.
    """
    parsed = {}
    for table, text in (filters or {}).items():
        if not isinstance(text, str):
            raise SnapshotRequestError(f"filters[{table}]: must be an SQL condition (text), got {text!r}")
        try:
            parsed[table] = parse_filter(text, dialect.sqlglot)
        except PlanError as exc:
            raise SnapshotRequestError(f"filters[{table}]: {exc}; nothing was signalled") from None
    return parsed


def signal_filters(data: str | None) -> dict[str, str]:
    """The ``additional-conditions`` of an ``execute-snapshot`` signal's data, per table (empty when unreadable)."""
    try:
        body = json.loads(data or "")
    except ValueError:
        return {}
    conditions = body.get("additional-conditions") if isinstance(body, dict) else None
    return {item["data-collection"]: item["filter"] for item in conditions or []
            if isinstance(item, dict) and isinstance(item.get("data-collection"), str)
            and isinstance(item.get("filter"), str)}


_INSTANT = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z")


def _instant_ms(text: str) -> int | None:
    """Epoch milliseconds of a Java ``Instant`` as Debezium writes it (``2026-12-04T19:48:31.819887306Z``)."""
    found = _INSTANT.fullmatch(text.strip())
    if not found:
        return None
    seconds = datetime.fromisoformat(found.group(1)).replace(tzinfo=timezone.utc).timestamp()
    return int(seconds) * 1000 + int((found.group(2) or "0")[:3].ljust(3, "0"))


def stale_windows(rows: Iterable[tuple[str, str, str | None]], end_ms: int | None) -> list[str]:
    """The watermark rows that no running snapshot can still need: those of windows opened before a snapshot's end.

    A connector runs one incremental snapshot at a time and reads its chunks one window at a time,
    so a window opened before a COMPLETED notification was closed (or given up) by then; a window
    opened later may belong to a snapshot still in flight, and is left alone, as is a row whose
    ``data`` does not say when its window opened.

    Args:
        rows: ``(id, type, data)`` of the signal table's watermark rows.
        end_ms: Debezium's time (epoch ms) of the connector's last COMPLETED notification; None: none seen.

    Returns:
        The ids of the rows to delete.
    """
    if end_ms is None:
        return []
    stale = []
    for row_id, kind, data in rows:
        if kind not in (WINDOW_OPEN, WINDOW_CLOSE):
            continue
        try:
            opened = json.loads(data or "").get("openWindowTimestamp")
        except (ValueError, AttributeError):
            continue
        opened_ms = _instant_ms(opened) if isinstance(opened, str) else None
        if opened_ms is not None and opened_ms < end_ms:
            stale.append(row_id)
    return stale


# Exceptions of the JDBC drivers (and of JDBC itself) whose messages are the database's words.
_DRIVER_EXCEPTIONS = ("org.postgresql.", "java.sql.", "org.mariadb.jdbc.", "com.mysql.")
_TRACE_HEADER = re.compile(r"(?:Caused by: )?([\w.$]+(?:Exception|Error|Throwable))(?:: (.*))?")


def database_error_in_trace(trace: str | None) -> str | None:
    """The database's message in a Java stack trace that Kafka Connect reports for a failed task.

    Reads the exception lines (the first line and each ``Caused by:``) and takes the innermost
    exception of a JDBC driver that has a message, else the innermost exception with one, without
    the driver's decoration (``ERROR:``, ``(conn=12)``).

    Args:
        trace: The task's ``trace``.

    Returns:
        The message, or None when the trace has none.
    """
    if not trace:
        return None
    headers = []
    for number, line in enumerate(trace.splitlines()):
        if number and not line.startswith("Caused by: "):
            continue  # a frame, or a continuation of a message
        found = _TRACE_HEADER.fullmatch(line.strip())
        if found and (found.group(2) or "").strip():
            headers.append((found.group(1), found.group(2).strip()))
    driver = [text for name, text in headers if name.startswith(_DRIVER_EXCEPTIONS)]
    text = (driver or [text for _, text in headers] or [None])[-1]
    if text is None:
        return None
    return re.sub(r"^(?:(?:ERROR|FATAL):\s+|\(conn=\d+\)\s*)+", "", text)


def task_failure(status: Mapping[str, Any]) -> str | None:
    """What a connector's status says about a failure that stops its snapshot: None when nothing is FAILED.

    Args:
        status: Kafka Connect's ``GET /connectors/{name}/status``.

    Returns:
        One line per failed part (the connector, each FAILED task) with the database's message from its
        trace, and what to do.
    """
    name = status.get("name", "?")
    failures = []
    connector = status.get("connector") or {}
    if connector.get("state") == "FAILED":
        failures.append(f"connector {name} is FAILED: "
                        f"{database_error_in_trace(connector.get('trace')) or 'no trace reported'}")
    failures += [f"connector {name} task {task.get('id')} is FAILED: "
                 f"{database_error_in_trace(task.get('trace')) or 'no trace reported'}"
                 for task in status.get("tasks") or [] if task.get("state") == "FAILED"]
    if not failures:
        return None
    return ("; ".join(failures) + " (restart the task, e.g. with RestartConnectorOperator: the snapshot resumes "
            "from the connector's offsets)")


# ---------------------------------------------------------------- signals


@dataclass(frozen=True)
class Signal:
    """One row of a signal table."""

    id: str
    type: str
    data: str

    def row(self) -> tuple[str, str, str]:
        """The values for ``SqlDialect.insert_signal``'s placeholders."""
        return (self.id, self.type, self.data)


def _requested(tables: Sequence[str]) -> list[str]:
    if isinstance(tables, str):
        raise SnapshotRequestError(f"tables must be a list of names, got the string {tables!r}")
    unqualified = [table for table in tables if not re.fullmatch(r"[^.\s]+\.[^.\s]+", table)]
    if unqualified:
        raise SnapshotRequestError(f"tables must be qualified names (schema.table), got {', '.join(unqualified)}")
    duplicates = sorted(table for table, count in Counter(tables).items() if count > 1)
    if duplicates:
        raise SnapshotRequestError(f"tables asked for twice: {', '.join(duplicates)}")
    return list(tables)


def execute_snapshot_signal(signal_id: str, tables: Sequence[str], filters: Mapping[str, str] | None = None) -> Signal:
    """The ``execute-snapshot`` signal of an incremental snapshot.

    Args:
        signal_id: The signal's id; Debezium's notifications about the snapshot carry it.
        tables: Qualified names of the tables to read (literal names, not patterns).
        filters: Per table, an SQL condition that limits the rows read (Debezium's
            ``additional-conditions``), e.g. ``{"public.orders": "created_at > '2026-01-01'"}``.

    Returns:
        The signal row.

    Raises:
        SnapshotRequestError: no table, a table not qualified or given twice, or a filter for a
            table not in ``tables``.
    """
    requested = _requested(tables)
    if not requested:
        raise SnapshotRequestError("an incremental snapshot needs at least one table")
    filters = dict(filters or {})
    strays = sorted(set(filters) - set(requested))
    if strays:
        raise SnapshotRequestError(f"filters for tables that are not requested: {', '.join(strays)}")
    data: dict[str, Any] = {"data-collections": requested, "type": "incremental"}
    if filters:
        data["additional-conditions"] = [{"data-collection": table, "filter": condition}
                                         for table, condition in filters.items()]
    return Signal(signal_id, "execute-snapshot", json.dumps(data))


def stop_snapshot_signal(signal_id: str, tables: Sequence[str] | None = None) -> Signal:
    """The ``stop-snapshot`` signal: stop reading some tables, or end the running incremental snapshot.

    Args:
        signal_id: The signal's id.
        tables: The tables to stop reading; None stops the whole snapshot.

    Returns:
        The signal row.

    Raises:
        SnapshotRequestError: a table not qualified or given twice, or an empty list.
    """
    data: dict[str, Any] = {"type": "incremental"}
    if tables is not None:
        requested = _requested(tables)
        if not requested:
            raise SnapshotRequestError("tables is empty: pass None to stop the whole snapshot")
        data["data-collections"] = requested
    return Signal(signal_id, "stop-snapshot", json.dumps(data))


# ---------------------------------------------------------------- notifications


@dataclass(frozen=True)
class Notification:
    """One Debezium notification."""

    id: str
    aggregate_type: str
    type: str
    additional_data: dict[str, str] = field(default_factory=dict)
    timestamp: int | None = None  # when Debezium sent it (epoch ms, the Connect worker's clock)

    def data_collections(self) -> list[str]:
        """The tables ``additional_data.data_collections`` lists (Debezium joins them with commas)."""
        return [part for part in self.additional_data.get("data_collections", "").split(",") if part]


def parse_notification(value: bytes | str | None) -> Notification | None:
    """Read one record value of a notification topic.

    Accepts the JsonConverter's output with or without schemas (``{"schema", "payload"}``).

    Args:
        value: The record's value.

    Returns:
        The notification, or None for anything else (a tombstone, a value that is not a
        notification's JSON).
    """
    if value is None:
        return None
    try:
        body = json.loads(value)
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("payload"), dict) and "schema" in body:
        body = body["payload"]
    if not isinstance(body, dict):
        return None
    if not all(isinstance(body.get(key), str) for key in ("id", "aggregate_type", "type")):
        return None
    extra = body.get("additional_data")
    stamp = body.get("timestamp")
    timestamp = stamp if isinstance(stamp, int) and not isinstance(stamp, bool) else (
        int(stamp) if isinstance(stamp, str) and stamp.isdigit() else None)
    return Notification(body["id"], body["aggregate_type"], body["type"],
                        {str(k): str(v) for k, v in extra.items()} if isinstance(extra, dict) else {}, timestamp)


@dataclass(frozen=True)
class TableScan:
    """A TABLE_SCAN_COMPLETED notification's verdict on one table."""

    table: str
    status: str
    rows_scanned: int

    @property
    def scanned(self) -> bool:
        """Whether the table was read (SUCCEEDED, or EMPTY)."""
        return self.status in SCANNED_STATUSES

    def describe(self) -> str:
        """One phrase: the status and the row count, and what a failed status means."""
        text = f"{self.table}: {self.status} ({self.rows_scanned} rows)"
        return text if self.scanned else f"{text}: {SCAN_FAILURES.get(self.status, 'not read')}"


@dataclass(frozen=True)
class SnapshotResult:
    """How an incremental snapshot ended, for the tables asked for."""

    snapshot_id: str
    succeeded: bool
    message: str
    scans: dict[str, TableScan]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, for XCom: ``{"snapshot_id", "tables": {table: {"status", "rows_scanned"}}}``."""
        return {"snapshot_id": self.snapshot_id,
                "tables": {t: {"status": s.status, "rows_scanned": s.rows_scanned} for t, s in self.scans.items()}}

    @classmethod
    def from_dict(cls, succeeded: bool, message: str, data: Mapping[str, Any]) -> SnapshotResult:
        """The result again from ``as_dict()`` (e.g. carried by a trigger's event)."""
        scans = {table: TableScan(table, scan["status"], int(scan["rows_scanned"]))
                 for table, scan in (data.get("tables") or {}).items()}
        return cls(data["snapshot_id"], succeeded, message, scans)

    @property
    def unread(self) -> list[TableScan]:
        """The scans Debezium reported as failed (SQL_EXCEPTION, UNKNOWN_SCHEMA, ...)."""
        return [scan for scan in self.scans.values() if not scan.scanned]


@dataclass
class SnapshotWatch:
    """The state a waiter keeps while reading a notification topic in order, and its verdict.

    Debezium 3.6.1's notifications do not say plainly how a snapshot ended, so the verdict follows
    what the connector actually publishes:

    * Notifications of other connectors (``additional_data.connector_name`` is a ``topic.prefix``)
      and of other kinds (initial snapshots) are ignored, and so is everything before the first
      notification carrying ``snapshot_id``: until then Debezium has not taken the signal up.
    * A snapshot requested while another runs is merged into the running one, and from then on
      every notification carries the *newest* signal's id. So once ``snapshot_id`` has been seen,
      table scans and the end are taken whatever their id.
    * COMPLETED ends every snapshot, including one whose chunk query failed (its table reported
      SQL_EXCEPTION) and one that a stop-snapshot signal stopped (its tables never reported a scan;
      an ABORTED with a random id follows). The snapshot succeeded only if every table asked for
      reported SUCCEEDED or EMPTY before COMPLETED; a failed scan, or an ABORTED naming a table not
      scanned yet, fails it at once.

    * Every COMPLETED of the connector (of any snapshot) moves ``end_ms``, Debezium's time of it:
      every watermark window opened before it is over (see ``stale_windows``).

    The rules rely on reading the topic in the order Debezium wrote it (one partition).

    Args:
        snapshot_id: The snapshot's signal id.
        logical_name: The connector's ``topic.prefix``.
        data_collections: The tables asked for.

    Attributes:
        result: The verdict, once known.
        end_ms: Debezium's time of the last COMPLETED notification of the connector seen, or None.
    """

    snapshot_id: str
    logical_name: str
    data_collections: Sequence[str]
    taken_up: bool = False
    scans: dict[str, TableScan] = field(default_factory=dict)
    progress: str | None = None
    result: SnapshotResult | None = None
    end_ms: int | None = None
    _settled: bool = False

    @property
    def settled(self) -> bool:
        """Whether the snapshot has ended in Debezium too: the verdict is known and a COMPLETED came with or after it.

        A failed table gives the verdict at once, while Debezium may still read other tables; its
        watermark rows can be removed only once it has completed.
        """
        return self._settled

    def observe(self, notification: Notification) -> SnapshotResult | None:
        """Take the next notification of the topic into account.

        After the verdict, further notifications only move ``end_ms`` and ``settled``.

        Args:
            notification: The next notification, in topic order.

        Returns:
            The snapshot's result when this notification decides it, None otherwise.
        """
        data = notification.additional_data
        if notification.aggregate_type != INCREMENTAL_SNAPSHOT or data.get("connector_name") != self.logical_name:
            return None
        if notification.type == "COMPLETED":
            if notification.timestamp is not None:
                self.end_ms = max(self.end_ms or 0, notification.timestamp)
            self._settled = self.result is not None
        if self.result is not None:
            return None
        verdict = self._judge(notification)
        if verdict is not None:
            self.result = verdict
            self._settled = notification.type == "COMPLETED"
        return verdict

    def _judge(self, notification: Notification) -> SnapshotResult | None:
        data = notification.additional_data
        if not self.taken_up:
            if notification.id != self.snapshot_id:
                return None
            self.taken_up = True
        if notification.type == "IN_PROGRESS":
            self.progress = (f"{data.get('current_collection_in_progress')}: read up to key "
                             f"{data.get('last_processed_key')} of {data.get('maximum_key')}")
        elif notification.type == "TABLE_SCAN_COMPLETED":
            return self._scan_completed(notification)
        elif notification.type == "ABORTED":
            stopped = set(notification.data_collections()) or set(self.data_collections)
            pending = [table for table in self.data_collections if table not in self.scans and table in stopped]
            if pending:
                return self._failed(f"stopped (stop-snapshot signal) before reading {', '.join(pending)}")
        elif notification.type == "COMPLETED":
            return self._completed()
        return None

    def _scan_completed(self, notification: Notification) -> SnapshotResult | None:
        table = notification.additional_data.get("scanned_collection", "")
        if table not in self.data_collections:
            return None
        rows = notification.additional_data.get("total_rows_scanned", "0")
        status = notification.additional_data.get("status", "UNKNOWN")
        scan = TableScan(table, status, int(rows) if rows.isdigit() else 0)
        self.scans[table] = scan
        return None if scan.scanned else self._failed(scan.describe())

    def _completed(self) -> SnapshotResult:
        unread = [table for table in self.data_collections if table not in self.scans]
        if unread:
            return self._failed(f"ended without reading {', '.join(unread)}: a stop-snapshot signal stopped it")
        tables = "; ".join(self.scans[table].describe() for table in self.data_collections)
        return SnapshotResult(self.snapshot_id, True, f"incremental snapshot {self.snapshot_id} of {self.logical_name} "
                                                      f"completed: {tables}", dict(self.scans))

    def _failed(self, reason: str) -> SnapshotResult:
        return SnapshotResult(self.snapshot_id, False, f"incremental snapshot {self.snapshot_id} of "
                                                       f"{self.logical_name} failed: {reason}", dict(self.scans))
