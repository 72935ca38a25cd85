"""Online backfills of MariaDB tables: Debezium incremental snapshots signalled through PyMySQL, on the real stack.

One connector (a copy of the shipped MariaDB spec under unique names: connector, topic prefix,
``database.server.id``, schema history topic; snapshot.mode no_data, so that only incremental
snapshots produce reads) captures this module's own tables and its own signal table (every
connector capturing a signal table acts on every signal written to it). It is removed with its
offsets, tables and topics afterwards.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest
import yaml
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from pymysql.cursors import DictCursor

from airflow_mesh.connectors.snapshots import (
    ConnectionMismatchError,
    FilterCheckError,
    SignalDatabaseError,
    SnapshotFailedError,
    UncapturedTableError,
)
from airflow_mesh.hooks.kafka_connect import KafkaConnectHook
from airflow_mesh.operators.debezium import IncrementalSnapshotOperator, StopIncrementalSnapshotOperator
from airflow_mesh.sensors.debezium import IncrementalSnapshotSensor
from tests.integration.test_cdc_connectors import deploy, remove_connector, wait_healthy
from tests.integration.test_incremental_snapshot import read_events, wait_for_progress, wait_in_triggerer
from tests.integration.test_online_backfill_dag import load_dag

ROOT = Path(__file__).resolve().parents[2]
MARIADB_SPEC = ROOT / "connectors" / "mariadb_mesh_cdc.yaml"
DATABASE_CONN_ID = "mariadb_mesh"


def stack_connection() -> dict[str, Any]:
    """The stack's ``mariadb_mesh`` Airflow connection (JSON form, from .stack/connections.env)."""
    value = os.environ.get(f"AIRFLOW_CONN_{DATABASE_CONN_ID.upper()}")
    if value is None:
        pytest.fail(f"connection {DATABASE_CONN_ID!r} is not defined: start the stack with `make up`")
    return json.loads(value)


@pytest.fixture(scope="module")
def mariadb() -> dict[str, Any]:
    """PyMySQL's connect() arguments for the stack's MariaDB database (autocommit)."""
    conn = stack_connection()
    return {"host": conn["host"], "port": int(conn["port"]), "user": conn["login"], "password": conn["password"],
            "database": conn["schema"], "autocommit": True}


@dataclass(frozen=True)
class SnapshotConnector:
    """A deployed connector capturing its own tables, and what identifies it."""

    name: str
    topic_prefix: str
    notification_topic: str
    database: str
    signal_table: str  # qualified
    tables: dict[str, str]  # role -> unqualified table name

    def qualified(self, role: str) -> str:
        return f"{self.database}.{self.tables[role]}"

    def topic(self, role: str) -> str:
        return f"{self.topic_prefix}.{self.qualified(role)}"

    def signal_id(self, label: str) -> str:
        return f"{self.topic_prefix}-{label}-{uuid.uuid4().hex[:8]}"


def signal_rows(mariadb: dict[str, Any], cdc: SnapshotConnector, signal_id: str) -> list[tuple[str, str]]:
    with pymysql.connect(**mariadb) as db, db.cursor() as cursor:
        cursor.execute(f"SELECT type, data FROM {cdc.signal_table} WHERE id = %s", (signal_id,))
        return list(cursor.fetchall())


def signal_table_rows(mariadb: dict[str, Any], cdc: SnapshotConnector) -> list[tuple[str, str, str | None]]:
    """Every row of the connector's signal table, by id."""
    with pymysql.connect(**mariadb) as db, db.cursor() as cursor:
        cursor.execute(f"SELECT id, type, data FROM {cdc.signal_table} ORDER BY id")
        return list(cursor.fetchall())


def leftovers(mariadb: dict[str, Any], cdc: SnapshotConnector, *signal_ids: str) -> list[tuple[str, str]]:
    """What a finished snapshot must not leave in the signal table: Debezium's watermark rows, the given signals."""
    return [(row_id, kind) for row_id, kind, _ in signal_table_rows(mariadb, cdc)
            if kind.startswith("snapshot-window-") or row_id in signal_ids]


def signal_as_captured(bootstrap: str, cdc: SnapshotConnector, signal_id: str) -> tuple[str, str]:
    """``(type, data)`` of a signal row as its insert reached the signal table's topic (the row itself may be gone)."""
    events = read_events(bootstrap, f"{cdc.topic_prefix}.{cdc.signal_table}", until_key=signal_id)
    (after,) = [event["after"] for key, event in events if key == signal_id and event and event["op"] == "c"]
    return after["type"], after["data"]


def wait_streaming(mariadb: dict[str, Any], bootstrap: str, cdc: SnapshotConnector, timeout: float = 90) -> None:
    """Wait until the connector reads the binlog: a ``log`` signal row written now reaches the signal table's topic.

    (Debezium acts on the row too: it writes the message to its log, nothing else.)
    """
    signal_id = cdc.signal_id("ready")
    with pymysql.connect(**mariadb) as db, db.cursor() as cursor:
        cursor.execute(f"INSERT INTO {cdc.signal_table} (id, type, data) VALUES (%s, 'log', %s)",
                       (signal_id, json.dumps({"message": f"test connector {cdc.name} streams"})))
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([f"{cdc.topic_prefix}.{cdc.signal_table}"])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error() or message.key() is None:
                continue
            if json.loads(message.key())["id"] == signal_id:
                return
    finally:
        consumer.close()
    raise AssertionError(f"connector {cdc.name} did not stream the signal table within {timeout}s")


@contextmanager
def snapshot_connector(mariadb: dict[str, Any], bootstrap: str, folder: Path, roles: dict[str, int],
                       config: dict[str, Any] | None = None) -> Iterator[SnapshotConnector]:
    """Create one table per role (with that many rows), deploy a connector capturing them, clean up after.

    Each table: ``id bigint`` primary key, ``label varchar(64)``, ``qty int``, ``note text`` (nullable).
    The connector's signal table is its own too. ``config`` overrides settings of the connector's config.
    """
    suffix = uuid.uuid4().hex[:8]
    prefix = f"snaptestmaria{suffix}"
    database = mariadb["database"]
    connector = SnapshotConnector(f"mesh-snaptest-mariadb-{suffix}", prefix, f"{prefix}.__debezium-notifications",
                                  database, f"{database}.snap_{suffix}_signal",
                                  {role: f"snap_{suffix}_{role}" for role in roles})
    spec = yaml.safe_load(MARIADB_SPEC.read_text())
    spec["name"] = connector.name
    spec["config"].update({
        "topic.prefix": prefix, "snapshot.mode": "no_data",
        # A replication client of its own: two binlog readers with one server id disconnect each other.
        "database.server.id": random.randint(10_000_000, 2**31 - 1),
        "schema.history.internal.kafka.topic": f"{prefix}.__schema-history",
        "table.include.list": ",".join(re.escape(table) for table in [*map(connector.qualified, roles),
                                                                       connector.signal_table]),
        "signal.data.collection": connector.signal_table,
        "incremental.snapshot.chunk.size": 100, "notification.sink.topic.name": connector.notification_topic,
        # Only the captured tables' DDL: a table of someone else's in the shared database whose DDL
        # Debezium cannot parse (e.g. a column of type inet4) must not keep this connector from starting.
        "schema.history.internal.store.only.captured.tables.ddl": True,
        **(config or {}),
    })
    spec_file = folder / f"{connector.name}.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    hook = KafkaConnectHook()
    try:
        with pymysql.connect(**mariadb) as db, db.cursor() as cursor:
            cursor.execute(f"CREATE TABLE {connector.signal_table} (id varchar(64) PRIMARY KEY, "
                           f"type varchar(32) NOT NULL, data varchar(2048))")
            for role, rows in roles.items():
                table = connector.qualified(role)
                cursor.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, label varchar(64) NOT NULL, "
                               f"qty int NOT NULL, note text)")
                cursor.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s, %s)",
                                   [(g, uuid.uuid5(uuid.NAMESPACE_OID, str(g)).hex, g % 97,
                                     None if g % 5 == 0 else f"n{g}") for g in range(1, rows + 1)])
        assert deploy(spec_file) == [{"name": connector.name, "action": "created"}]
        wait_healthy(connector.name)
        wait_streaming(mariadb, bootstrap, connector)
        yield connector
    finally:
        remove_connector(hook, connector.name)
        with pymysql.connect(**mariadb) as db, db.cursor() as cursor:
            for table in [*map(connector.qualified, roles), connector.signal_table]:
                cursor.execute(f"DROP TABLE IF EXISTS {table}")
        admin = AdminClient({"bootstrap.servers": bootstrap})
        # `prefix` itself holds the schema changes; Debezium names the heartbeat topic after it.
        ours = {prefix, f"__debezium-heartbeat.{prefix}"}
        topics = [topic for topic in admin.list_topics(timeout=10).topics
                  if topic in ours or topic.startswith(f"{prefix}.")]
        for future in (admin.delete_topics(topics).values() if topics else []):
            future.result(timeout=30)


@pytest.fixture(scope="module")
def cdc(mariadb, bootstrap_servers, tmp_path_factory) -> Iterator[SnapshotConnector]:
    roles = {"exact": 3000, "filtered": 1000, "misc": 20000, "dag": 500, "doomed": 20000}
    folder = tmp_path_factory.mktemp("specs")
    with snapshot_connector(mariadb, bootstrap_servers, folder, roles) as connector:
        yield connector


def request_snapshot(cdc: SnapshotConnector, role: str, **kwargs: Any) -> dict[str, Any]:
    operator = IncrementalSnapshotOperator(task_id="snapshot", connector_name=cdc.name,
                                           database_conn_id=DATABASE_CONN_ID, tables=[cdc.qualified(role)],
                                           signal_id=cdc.signal_id(role), **kwargs)
    return operator.execute({})


def snapshot_sensor(cdc: SnapshotConnector, request: dict[str, Any], **kwargs: Any) -> IncrementalSnapshotSensor:
    kwargs.setdefault("database_conn_id", DATABASE_CONN_ID)  # as dags/online_backfill.py gives it
    return IncrementalSnapshotSensor(task_id="wait", connector_name=cdc.name, snapshot_id=request["signal_id"],
                                     data_collections=request["data_collections"], since_ms=request["signaled_at_ms"],
                                     poke_interval=1, timeout=180, **kwargs)


def table_rows(mariadb: dict[str, Any], table: str) -> dict[int, dict[str, Any]]:
    with pymysql.connect(**mariadb, cursorclass=DictCursor) as db, db.cursor() as cursor:
        cursor.execute(f"SELECT id, label, qty, note FROM {table}")
        return {row["id"]: row for row in cursor.fetchall()}


class Writer(threading.Thread):
    """Random inserts, updates and deletes, each committed on its own or a few together, until stopped."""

    def __init__(self, mariadb: dict[str, Any], table: str, ids: set[int], seed: int) -> None:
        super().__init__(daemon=True)
        self.mariadb, self.table, self.live = mariadb, table, sorted(ids)
        self.next_id = max(ids) + 1
        self.random = random.Random(seed)
        self.stopping = threading.Event()
        self.operations = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with pymysql.connect(**self.mariadb) as db, db.cursor() as cursor:
                while not self.stopping.is_set():
                    db.begin()
                    for _ in range(self.random.choice((1, 1, 1, 3))):
                        self._change(cursor)
                    db.commit()
                    time.sleep(0.001)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            self.error = exc

    def _change(self, cursor: Any) -> None:
        roll = self.random.random()
        if roll < 0.3 or not self.live:
            cursor.execute(f"INSERT INTO {self.table} VALUES (%s, %s, %s, %s)",
                           (self.next_id, f"new-{self.next_id}", self.random.randint(0, 99), None))
            self.live.append(self.next_id)
            self.next_id += 1
        elif roll < 0.75:
            key = self.random.choice(self.live)
            note = None if self.random.random() < 0.2 else f"upd-{self.operations}"
            cursor.execute(f"UPDATE {self.table} SET qty = qty + 1, note = %s WHERE id = %s", (note, key))
        else:
            key = self.live.pop(self.random.randrange(len(self.live)))
            cursor.execute(f"DELETE FROM {self.table} WHERE id = %s", (key,))
        self.operations += 1

    def stop(self) -> int:
        self.stopping.set()
        self.join(timeout=30)
        if self.error:
            raise self.error
        return self.operations


def test_backfill_under_concurrent_writes_reproduces_the_table(cdc, mariadb, bootstrap_servers):
    table = cdc.qualified("exact")
    writer = Writer(mariadb, table, set(table_rows(mariadb, table)), seed=6)
    writer.start()
    while writer.operations < 100 and writer.is_alive():
        time.sleep(0.05)
    try:
        request = request_snapshot(cdc, "exact")
        result = snapshot_sensor(cdc, request, deferrable=False).execute({})
    finally:
        operations = writer.stop()
    # A last commit after every other: once its event is on the topic, so is every earlier change.
    with pymysql.connect(**mariadb) as db, db.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} VALUES (0, 'end', 0, NULL)")

    assert request["data_collections"] == [table]
    assert signal_as_captured(bootstrap_servers, cdc, request["signal_id"]) == (
        "execute-snapshot", json.dumps({"data-collections": [table], "type": "incremental"}))
    assert result["snapshot_id"] == request["signal_id"]
    assert result["tables"][table]["status"] == "SUCCEEDED" and result["tables"][table]["rows_scanned"] > 0
    # Debezium acted on the signal: the sensor removed it, and no window-open/close rows are left.
    assert leftovers(mariadb, cdc, request["signal_id"]) == []

    events = read_events(bootstrap_servers, cdc.topic("exact"), until_key=0)
    replica: dict[int, dict] = {}
    for key, event in events:
        if event is None:  # the tombstone after a delete
            continue
        if event["op"] == "d":
            replica.pop(key, None)
        else:
            replica[key] = event["after"]
    assert replica == table_rows(mariadb, table)

    # Only the incremental snapshot read rows (snapshot.mode no_data), while live changes flowed.
    kinds = ["read" if e["op"] == "r" else "live" for _, e in events if e is not None]
    reads = [e for _, e in events if e is not None and e["op"] == "r"]
    assert {e["source"]["snapshot"] for e in reads} == {"incremental"}
    # A row changed while its chunk was in flight is dropped from the chunk: the change log wins.
    assert 0 < len(reads) <= result["tables"][table]["rows_scanned"]
    first, last = kinds.index("read"), len(kinds) - 1 - kinds[::-1].index("read")
    assert "live" in kinds[first:last], "no live change between the first and the last read of the snapshot"
    assert operations > 100


def test_filtered_backfill_waited_for_in_the_triggerer(cdc, bootstrap_servers):
    table = cdc.qualified("filtered")
    request = request_snapshot(cdc, "filtered", filters={table: "id % 10 = 0"})

    result = wait_in_triggerer(snapshot_sensor(cdc, request, deferrable=True), cdc)

    assert result == {"snapshot_id": request["signal_id"], "tables": {table: {"status": "SUCCEEDED",
                                                                              "rows_scanned": 100}}}
    reads = read_events(bootstrap_servers, cdc.topic("filtered"), until_key=1000)
    assert sorted(key for key, event in reads if event and event["op"] == "r") == list(range(10, 1001, 10))


def test_a_stop_snapshot_signal_is_written_and_fails_the_sensor(cdc, mariadb, bootstrap_servers):
    request = request_snapshot(cdc, "misc")
    stop = StopIncrementalSnapshotOperator(task_id="stop", connector_name=cdc.name, database_conn_id=DATABASE_CONN_ID,
                                           signal_id=cdc.signal_id("stop")).execute({})
    assert stop["data_collections"] is None
    assert signal_as_captured(bootstrap_servers, cdc, stop["signal_id"]) == (
        "stop-snapshot", json.dumps({"type": "incremental"}))
    with pytest.raises(SnapshotFailedError, match=rf"{request['signal_id']} of {cdc.topic_prefix} failed: ended "
                                                  rf"without reading {cdc.qualified('misc')}: a stop-snapshot"):
        snapshot_sensor(cdc, request, deferrable=False).execute({})
    assert leftovers(mariadb, cdc, request["signal_id"], stop["signal_id"]) == []


@pytest.mark.parametrize(("condition", "database_says"), [
    ("no_such_column > 0", r"Unknown column 'no_such_column' in 'WHERE' (MariaDB error 1054)"),
    # The filter goes to the database as written (in parentheses), its own spelling kept.
    ("no_such_function(id) > 0", ("the database (connection mariadb_mesh) refuses it: FUNCTION mesh.no_such_function "
                                  "does not exist (MariaDB error 1305)")),
], ids=["unknown-column", "unknown-function"])
def test_a_filter_the_database_refuses_is_not_signalled(cdc, mariadb, condition, database_says):
    table = cdc.qualified("misc")
    before = signal_table_rows(mariadb, cdc)
    with pytest.raises(FilterCheckError) as refused:
        request_snapshot(cdc, "misc", filters={table: condition})
    message = str(refused.value)
    assert f"filter {condition!r} on {table}" in message and database_says in message, message
    assert "\n" not in message
    assert signal_table_rows(mariadb, cdc) == before


def test_a_postgres_connection_for_a_mariadb_connector_is_refused_in_one_line(cdc, mariadb):
    before = signal_table_rows(mariadb, cdc)
    operator = IncrementalSnapshotOperator(task_id="snapshot", connector_name=cdc.name,
                                           database_conn_id="postgres_mesh", tables=[cdc.qualified("misc")],
                                           signal_id=cdc.signal_id("mismatch"))
    with pytest.raises(ConnectionMismatchError, match=rf"^connection postgres_mesh is a 'postgres' connection, but "
                                                      rf"connector {cdc.name} \(io.debezium.connector.mariadb."
                                                      r"MariaDbConnector\) captures a MariaDB/MySQL database: give as "
                                                      r"database_conn_id a 'mysql' connection to "):
        operator.execute({})
    assert signal_table_rows(mariadb, cdc) == before


def test_an_uncaptured_table_is_refused_before_any_signal(cdc, mariadb):
    signal_id = cdc.signal_id("refused")
    operator = IncrementalSnapshotOperator(task_id="snapshot", connector_name=cdc.name,
                                           database_conn_id=DATABASE_CONN_ID, signal_id=signal_id,
                                           tables=[cdc.qualified("misc"), "mesh.shipments"])
    with pytest.raises(UncapturedTableError, match=rf"connector {cdc.name} does not capture mesh.shipments "
                                                   r"\(table.include.list: "):
        operator.execute({})
    assert signal_rows(mariadb, cdc, signal_id) == []


def test_a_connection_demanding_tls_writes_nothing_to_a_server_without_it(cdc, mariadb, monkeypatch):
    # The stack's MariaDB offers no TLS: a connection whose extra demands it must fail, not fall back.
    conn = stack_connection()
    monkeypatch.setenv("AIRFLOW_CONN_MARIADB_TLS", json.dumps({**conn, "extra": {"ssl_mode": "REQUIRED"}}))
    signal_id = cdc.signal_id("tls")
    operator = StopIncrementalSnapshotOperator(task_id="stop", connector_name=cdc.name,
                                               database_conn_id="mariadb_tls", signal_id=signal_id)
    with pytest.raises(SignalDatabaseError, match=r"^connection mariadb_tls: connecting to MariaDB/MySQL at "
                                                  r"[\w.]+:\d+/\w+: .*(SSL|TLS)"):
        operator.execute({})
    assert signal_rows(mariadb, cdc, signal_id) == []


def test_the_online_backfill_dag_backfills_a_mariadb_table(airflow_db, cdc, mariadb, monkeypatch, caplog, capsys):
    # dags/online_backfill.py is database-neutral: its parameters name the connector, connection and tables.
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    table = cdc.qualified("dag")

    run = load_dag().test(run_conf={"connector_name": cdc.name, "database_conn_id": DATABASE_CONN_ID,
                                    "tables": [table], "filters": {table: "id > 100"}})

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert caplog.text.count("[DAG TEST] Trigger completed") == 2
    assert f"of {cdc.topic_prefix} completed: {table}: SUCCEEDED (400 rows)" in capsys.readouterr().out
    # The sensor removed the DAG's signal once Debezium had acted on it.
    assert [row for row in signal_table_rows(mariadb, cdc) if row[1] == "execute-snapshot" and table in row[2]] == []


# Last in the module: Debezium 3.6.1 resets its row counter only after a table read in full, so the next
# table's total_rows_scanned would include the rows read from this one before it was dropped.
def test_a_table_dropped_while_it_is_read_fails_the_sensor_with_the_database_error(cdc, mariadb):
    table = cdc.qualified("doomed")
    request = request_snapshot(cdc, "doomed")
    wait_for_progress(cdc, request["signal_id"])
    with pymysql.connect(**mariadb) as db, db.cursor() as cursor:
        cursor.execute(f"DROP TABLE {table}")
    sensor = snapshot_sensor(cdc, request, deferrable=False)
    with pytest.raises(SnapshotFailedError, match=rf"{table}: SQL_EXCEPTION .*Table '{table}' doesn't exist"):
        sensor.execute({})
    assert leftovers(mariadb, cdc, request["signal_id"]) == []
