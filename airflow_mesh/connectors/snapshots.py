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
from typing import Any

from airflow_mesh.connectors.spec import MARIADB_CONNECTOR, MYSQL_CONNECTOR, POSTGRES_CONNECTOR

INCREMENTAL_SNAPSHOT = "Incremental Snapshot"

# TABLE_SCAN_COMPLETED statuses (Debezium's TableScanCompletionStatus) that mean the table was read.
SCANNED_STATUSES = frozenset({"SUCCEEDED", "EMPTY"})

# What each failed TABLE_SCAN_COMPLETED status means, for the error message.
SCAN_FAILURES = {
    "SQL_EXCEPTION": "a chunk query failed (an invalid additional-conditions filter?); the connector's log has "
                     "the SQL error",
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
    """How to write the signal row in one database's SQL (the DB-API driver's ``%s`` placeholders)."""

    name: str
    identifier_quote: str

    def quote(self, qualified_name: str) -> str:
        """Quote each dot-separated part of a name, e.g. ``public.debezium_signal``."""
        q = self.identifier_quote
        return ".".join(f"{q}{part.replace(q, q + q)}{q}" for part in qualified_name.split("."))

    def insert_signal(self, signal_table: str) -> str:
        """The INSERT of one signal row into ``signal_table``, with placeholders for id, type and data.

        A ``%`` in the name is doubled: psycopg and PyMySQL alike read ``%%`` as a literal ``%``.
        """
        table = self.quote(signal_table).replace("%", "%%")
        return f"INSERT INTO {table} (id, type, data) VALUES (%s, %s, %s)"


POSTGRES = SqlDialect("postgresql", '"')
MARIADB = SqlDialect("mariadb", "`")
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
    return Notification(body["id"], body["aggregate_type"], body["type"],
                        {str(k): str(v) for k, v in extra.items()} if isinstance(extra, dict) else {})


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

    The rules rely on reading the topic in the order Debezium wrote it (one partition).

    Args:
        snapshot_id: The snapshot's signal id.
        logical_name: The connector's ``topic.prefix``.
        data_collections: The tables asked for.
    """

    snapshot_id: str
    logical_name: str
    data_collections: Sequence[str]
    taken_up: bool = False
    scans: dict[str, TableScan] = field(default_factory=dict)
    progress: str | None = None

    def observe(self, notification: Notification) -> SnapshotResult | None:
        """Take the next notification of the topic into account.

        Args:
            notification: The next notification, in topic order.

        Returns:
            The snapshot's result once it is known, None while it is not.
        """
        data = notification.additional_data
        if notification.aggregate_type != INCREMENTAL_SNAPSHOT or data.get("connector_name") != self.logical_name:
            return None
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
