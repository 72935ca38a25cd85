"""Online backfills: Debezium incremental snapshots signalled and awaited by the provider, on the real stack.

One connector (a copy of the shipped PostgreSQL spec under unique names, snapshot.mode no_data, so
that only incremental snapshots produce reads) captures this module's own tables; it is removed
with its offsets, slot, publication, tables and topics afterwards. It has its own signal table too:
every connector capturing a signal table acts on every signal written to it, so signals written to
the shared public.debezium_signal would reach the other connectors of the stack.
"""

from __future__ import annotations

import asyncio
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

import psycopg
import pytest
import yaml
from airflow.sdk.exceptions import TaskDeferred
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from psycopg.rows import dict_row

from airflow_mesh.connectors.snapshots import (
    ConnectionMismatchError,
    FilterCheckError,
    SignalDatabaseError,
    SnapshotFailedError,
    SnapshotRequestError,
    UncapturedTableError,
)
from airflow_mesh.hooks.kafka import NotificationReader
from airflow_mesh.hooks.kafka_connect import KafkaConnectHook
from airflow_mesh.operators.debezium import IncrementalSnapshotOperator, StopIncrementalSnapshotOperator
from airflow_mesh.sensors.debezium import IncrementalSnapshotSensor
from tests.integration.test_cdc_connectors import deploy, drop_slot, remove_connector, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
PG_SPEC = ROOT / "connectors" / "postgres_mesh_cdc.yaml"
DATABASE_CONN_ID = "postgres_mesh"


@dataclass(frozen=True)
class SnapshotConnector:
    """A deployed connector capturing its own tables, and what identifies it."""

    name: str
    topic_prefix: str
    notification_topic: str
    signal_table: str  # qualified
    tables: dict[str, str]  # role -> unqualified table name

    def qualified(self, role: str) -> str:
        return f"public.{self.tables[role]}"

    def topic(self, role: str) -> str:
        return f"{self.topic_prefix}.{self.qualified(role)}"

    def signal_id(self, label: str) -> str:
        return f"{self.topic_prefix}-{label}-{uuid.uuid4().hex[:8]}"


@contextmanager
def snapshot_connector(conninfo: str, bootstrap: str, folder: Path, roles: dict[str, int],
                       config: dict[str, Any] | None = None) -> Iterator[SnapshotConnector]:
    """Create one table per role (with that many rows), deploy a connector capturing them, clean up after.

    Each table: ``id bigint`` primary key, ``label text``, ``qty integer``, ``note text`` (nullable),
    REPLICA IDENTITY FULL, owned by the stack's user. The connector's signal table is its own too.
    ``config`` overrides settings of the connector's config.
    """
    suffix = uuid.uuid4().hex[:8]
    prefix = f"snaptest{suffix}"
    connector = SnapshotConnector(f"mesh-snaptest-{suffix}", prefix, f"{prefix}.__debezium-notifications",
                                  f"public.snap_{suffix}_signal", {role: f"snap_{suffix}_{role}" for role in roles})
    slot = f"snaptest_{suffix}"
    spec = yaml.safe_load(PG_SPEC.read_text())
    spec["name"] = connector.name
    spec["config"].update({
        "topic.prefix": prefix, "slot.name": slot, "publication.name": slot, "snapshot.mode": "no_data",
        "table.include.list": ",".join(re.escape(table) for table in [*map(connector.qualified, roles),
                                                                       connector.signal_table]),
        "signal.data.collection": connector.signal_table,
        "incremental.snapshot.chunk.size": 100, "notification.sink.topic.name": connector.notification_topic,
        **(config or {}),
    })
    spec_file = folder / f"{connector.name}.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    hook = KafkaConnectHook()
    try:
        with psycopg.connect(conninfo, autocommit=True) as db:
            db.execute(f"CREATE TABLE {connector.signal_table} (id varchar(64) PRIMARY KEY, type varchar(32) NOT NULL, "
                       f"data varchar(2048))")
            for role, rows in roles.items():
                table = connector.tables[role]
                db.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, label text NOT NULL, qty integer NOT NULL, "
                           f"note text)")
                db.execute(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
                db.execute(f"INSERT INTO {table} SELECT g, md5(g::text), g %% 97, "
                           f"CASE WHEN g %% 5 = 0 THEN NULL ELSE 'n' || g END FROM generate_series(1, %s) g", (rows,))
        assert deploy(spec_file) == [{"name": connector.name, "action": "created"}]
        wait_healthy(connector.name)
        wait_slot_active(conninfo, slot)
        yield connector
    finally:
        remove_connector(hook, connector.name)
        drop_slot(conninfo, slot)
        with psycopg.connect(conninfo, autocommit=True) as db:
            db.execute(f"DROP PUBLICATION IF EXISTS {slot}")
            for table in [*connector.tables.values(), connector.signal_table]:
                db.execute(f"DROP TABLE IF EXISTS {table}")
        admin = AdminClient({"bootstrap.servers": bootstrap})
        # Debezium names the heartbeat topic after the prefix.
        topics = [topic for topic in admin.list_topics(timeout=10).topics
                  if topic.startswith(f"{prefix}.") or topic == f"__debezium-heartbeat.{prefix}"]
        for future in (admin.delete_topics(topics).values() if topics else []):
            future.result(timeout=30)


def wait_slot_active(conninfo: str, slot: str, timeout: float = 60) -> None:
    """Wait until the connector streams from its replication slot: every later commit reaches the topics."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(conninfo, autocommit=True) as db:
        while time.monotonic() < deadline:
            row = db.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
            if row and row[0]:
                return
            time.sleep(0.5)
    raise AssertionError(f"replication slot {slot} not active after {timeout}s")


@pytest.fixture(scope="module")
def cdc(postgres_conninfo, bootstrap_servers, tmp_path_factory) -> Iterator[SnapshotConnector]:
    roles = {"exact": 3000, "filtered": 1000, "misc": 20000, "doomed": 20000}
    folder = tmp_path_factory.mktemp("specs")
    with snapshot_connector(postgres_conninfo, bootstrap_servers, folder, roles) as connector:
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
                                     poke_interval=1, timeout=120, **kwargs)


def signal_table_rows(conninfo: str, cdc: SnapshotConnector) -> list[tuple[str, str, str | None]]:
    """Every row of the connector's signal table, by id."""
    with psycopg.connect(conninfo) as db:
        return db.execute(f"SELECT id, type, data FROM {cdc.signal_table} ORDER BY id").fetchall()


def leftovers(conninfo: str, cdc: SnapshotConnector, *signal_ids: str) -> list[tuple[str, str]]:
    """What a finished snapshot must not leave in the signal table: Debezium's watermark rows, the given signals."""
    return [(row_id, kind) for row_id, kind, _ in signal_table_rows(conninfo, cdc)
            if kind.startswith("snapshot-window-") or row_id in signal_ids]


def wait_for_progress(cdc: SnapshotConnector, signal_id: str, timeout: float = 60) -> None:
    """Wait until Debezium reports a chunk read by the snapshot ``signal_id``."""
    reader = NotificationReader("kafka_default", cdc.notification_topic)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if any(n.id == signal_id and n.type == "IN_PROGRESS" for n in reader.poll(1.0)):
                return
    finally:
        reader.close()
    raise AssertionError(f"no IN_PROGRESS notification of {signal_id} within {timeout}s")


def table_rows(conninfo: str, table: str) -> dict[int, dict[str, Any]]:
    with psycopg.connect(conninfo) as db, db.cursor(row_factory=dict_row) as cursor:
        return {row["id"]: row for row in cursor.execute(f"SELECT id, label, qty, note FROM {table}")}


def read_events(bootstrap: str, topic: str, until_key: int, timeout: float = 60) -> list[tuple[int, dict | None]]:
    """``(key, value)`` of every record of the topic, in order, up to the first one with key ``until_key``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    events: list[tuple[int, dict | None]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            assert not message.error(), message.error()
            key = json.loads(message.key())["id"]
            events.append((key, json.loads(message.value()) if message.value() else None))
            if key == until_key:
                return events
    finally:
        consumer.close()
    raise AssertionError(f"no record with key {until_key} on {topic} within {timeout}s ({len(events)} read)")


class Writer(threading.Thread):
    """Random inserts, updates and deletes, each committed on its own or a few together, until stopped."""

    def __init__(self, conninfo: str, table: str, ids: set[int], seed: int) -> None:
        super().__init__(daemon=True)
        self.conninfo, self.table, self.live = conninfo, table, sorted(ids)
        self.next_id = max(ids) + 1
        self.random = random.Random(seed)
        self.stopping = threading.Event()
        self.operations = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.conninfo, autocommit=True) as db:
                db.execute("SET synchronous_commit = off")  # many small commits, no fsync wait each
                while not self.stopping.is_set():
                    with db.transaction():
                        for _ in range(self.random.choice((1, 1, 1, 3))):
                            self._change(db)
                    time.sleep(0.001)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            self.error = exc

    def _change(self, db: psycopg.Connection) -> None:
        roll = self.random.random()
        if roll < 0.3 or not self.live:
            db.execute(f"INSERT INTO {self.table} VALUES (%s, %s, %s, %s)",
                       (self.next_id, f"new-{self.next_id}", self.random.randint(0, 99), None))
            self.live.append(self.next_id)
            self.next_id += 1
        elif roll < 0.75:
            key = self.random.choice(self.live)
            note = None if self.random.random() < 0.2 else f"upd-{self.operations}"
            db.execute(f"UPDATE {self.table} SET qty = qty + 1, note = %s WHERE id = %s", (note, key))
        else:
            key = self.live.pop(self.random.randrange(len(self.live)))
            db.execute(f"DELETE FROM {self.table} WHERE id = %s", (key,))
        self.operations += 1

    def stop(self) -> int:
        self.stopping.set()
        self.join(timeout=30)
        if self.error:
            raise self.error
        return self.operations


def test_backfill_under_concurrent_writes_reproduces_the_table(cdc, postgres_conninfo, bootstrap_servers):
    table = cdc.qualified("exact")
    writer = Writer(postgres_conninfo, table, set(table_rows(postgres_conninfo, table)), seed=6)
    writer.start()
    while writer.operations < 100 and writer.is_alive():
        time.sleep(0.05)
    try:
        request = request_snapshot(cdc, "exact")
        result = snapshot_sensor(cdc, request, deferrable=False).execute({})
    finally:
        operations = writer.stop()
    # A last commit after every other: once its event is on the topic, so is every earlier change.
    with psycopg.connect(postgres_conninfo, autocommit=True) as db:
        db.execute(f"INSERT INTO {table} VALUES (0, 'end', 0, NULL)")

    assert request["data_collections"] == [table]
    assert result["snapshot_id"] == request["signal_id"]
    assert result["tables"][table]["status"] == "SUCCEEDED" and result["tables"][table]["rows_scanned"] > 0

    events = read_events(bootstrap_servers, cdc.topic("exact"), until_key=0)
    replica: dict[int, dict] = {}
    for key, event in events:
        if event is None:  # the tombstone after a delete
            continue
        if event["op"] == "d":
            replica.pop(key, None)
        else:
            replica[key] = event["after"]
    assert replica == table_rows(postgres_conninfo, table)

    # Only the incremental snapshot read rows (snapshot.mode no_data), while live changes flowed.
    kinds = ["read" if e["op"] == "r" else "live" for _, e in events if e is not None]
    reads = [e for _, e in events if e is not None and e["op"] == "r"]
    assert {e["source"]["snapshot"] for e in reads} == {"incremental"}
    # A row changed while its chunk was in flight is dropped from the chunk: the change log wins.
    assert 0 < len(reads) <= result["tables"][table]["rows_scanned"]
    first, last = kinds.index("read"), len(kinds) - 1 - kinds[::-1].index("read")
    assert "live" in kinds[first:last], "no live change between the first and the last read of the snapshot"
    assert operations > 100
    # Debezium has acted on the signal: the sensor removed it (and the watermark rows are gone).
    assert leftovers(postgres_conninfo, cdc, request["signal_id"]) == []


async def first_event_and_longest_stall(trigger: Any) -> tuple[Any, float]:
    """The trigger's first event, and the longest the event loop was held up meanwhile (seconds)."""
    stalls = [0.0]

    async def tick() -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.05)
            stalls.append(time.monotonic() - before - 0.05)

    ticker = asyncio.create_task(tick())
    try:
        async for event in trigger.run():
            return event, max(stalls)
    finally:
        ticker.cancel()
    raise AssertionError("the trigger ended without an event")


def wait_in_triggerer(sensor: IncrementalSnapshotSensor, cdc: SnapshotConnector) -> dict[str, Any]:
    """Run a deferrable sensor as Airflow does: execute, rebuild the trigger from its serialization,
    run it until its event, resume the sensor with it."""
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    classpath, kwargs = deferred.value.trigger.serialize()
    assert classpath == "airflow_mesh.triggers.debezium.IncrementalSnapshotTrigger"
    assert (kwargs["topic"], kwargs["logical_name"]) == (cdc.notification_topic, cdc.topic_prefix)
    trigger = type(deferred.value.trigger)(**kwargs)
    event, stall = asyncio.run(asyncio.wait_for(first_event_and_longest_stall(trigger), timeout=90))
    assert stall < 0.5, f"the trigger held the event loop for {stall:.2f}s"
    return getattr(sensor, deferred.value.method_name)({}, event.payload)


def test_filtered_backfill_waited_for_in_the_triggerer(cdc, bootstrap_servers):
    table = cdc.qualified("filtered")
    request = request_snapshot(cdc, "filtered", filters={table: "id % 10 = 0"})

    result = wait_in_triggerer(snapshot_sensor(cdc, request, deferrable=True), cdc)

    assert result == {"snapshot_id": request["signal_id"], "tables": {table: {"status": "SUCCEEDED",
                                                                              "rows_scanned": 100}}}
    reads = read_events(bootstrap_servers, cdc.topic("filtered"), until_key=1000)
    assert sorted(key for key, event in reads if event and event["op"] == "r") == list(range(10, 1001, 10))


def test_a_stopped_backfill_fails_the_sensor(cdc, postgres_conninfo):
    request = request_snapshot(cdc, "misc")
    stop = StopIncrementalSnapshotOperator(task_id="stop", connector_name=cdc.name, database_conn_id=DATABASE_CONN_ID,
                                           signal_id=cdc.signal_id("stop")).execute({})
    assert stop["data_collections"] is None
    with pytest.raises(SnapshotFailedError, match=rf"{request['signal_id']} of {cdc.topic_prefix} failed: ended "
                                                  rf"without reading {cdc.qualified('misc')}: a stop-snapshot"):
        snapshot_sensor(cdc, request, deferrable=False).execute({})
    # The stop operator removed its signal once Debezium acted on it, the sensor its own.
    assert leftovers(postgres_conninfo, cdc, request["signal_id"], stop["signal_id"]) == []


def test_a_stray_word_after_a_condition_is_refused_before_the_database_is_asked(cdc, postgres_conninfo):
    before = signal_table_rows(postgres_conninfo, cdc)
    with pytest.raises(SnapshotRequestError, match="reads as a column alias"):
        request_snapshot(cdc, "misc", filters={cdc.qualified("misc"): "id > 5 label"})
    assert signal_table_rows(postgres_conninfo, cdc) == before


@pytest.mark.parametrize(("condition", "database_says"), [
    ("no_such_column > 0", 'column "no_such_column" does not exist'),
    ("label > 5", "operator does not exist: text > integer"),
], ids=["unknown-column", "type-mismatch"])
def test_a_filter_the_database_refuses_is_not_signalled(cdc, postgres_conninfo, condition, database_says):
    table = cdc.qualified("misc")
    before = signal_table_rows(postgres_conninfo, cdc)
    with pytest.raises(FilterCheckError) as refused:
        request_snapshot(cdc, "misc", filters={table: condition})
    message = str(refused.value)
    assert f"filter {condition!r} on {table}" in message and database_says in message, message
    assert refused.value.table == table and database_says in refused.value.server_message
    assert "\n" not in message
    assert signal_table_rows(postgres_conninfo, cdc) == before  # nothing written, not even a watermark


@pytest.mark.parametrize("condition", ["id >> AND 5", "id < 10) OR (true", "1; DELETE FROM orders"])
def test_a_filter_that_is_not_one_condition_is_refused_before_connecting(cdc, monkeypatch, condition):
    # The connection cannot even be reached: the filter is refused before any connection is made.
    monkeypatch.setenv("AIRFLOW_CONN_PG_NOWHERE", json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 1,
                                                              "login": "x", "password": "y", "schema": "z"}))
    table = cdc.qualified("misc")
    operator = IncrementalSnapshotOperator(task_id="snapshot", connector_name=cdc.name, database_conn_id="pg_nowhere",
                                           tables=[table], filters={table: condition}, signal_id=cdc.signal_id("bad"))
    with pytest.raises(SnapshotRequestError, match=rf"^filters\[{re.escape(table)}\]: filter "):
        operator.execute({})


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_a_filter_that_fails_at_run_time_fails_the_sensor_with_the_database_error(cdc, postgres_conninfo, deferrable):
    # EXPLAIN plans it, but every row divides by zero: Debezium's max-key query fails, its notification
    # says only SQL_EXCEPTION, and its failed window leaves a snapshot-window-open row behind.
    table = cdc.qualified("misc")
    request = request_snapshot(cdc, "misc", filters={table: "id / (id - id) > 0"})
    sensor = snapshot_sensor(cdc, request, deferrable=deferrable)
    with pytest.raises(SnapshotFailedError, match=rf"{table}: SQL_EXCEPTION \(0 rows\).*division by zero"):
        wait_in_triggerer(sensor, cdc) if deferrable else sensor.execute({})
    assert leftovers(postgres_conninfo, cdc, request["signal_id"]) == []


def test_a_snapshot_requested_while_another_runs_completes_with_it(cdc, postgres_conninfo):
    # Debezium merges the second request into the running snapshot; both waits must end in success.
    table = cdc.qualified("misc")
    first = request_snapshot(cdc, "misc")
    second = request_snapshot(cdc, "misc", filters={table: "id <= 400"})
    assert snapshot_sensor(cdc, first, deferrable=False).execute({})["tables"][table]["status"] == "SUCCEEDED"
    assert snapshot_sensor(cdc, second, deferrable=False).execute({})["tables"][table]["status"] == "SUCCEEDED"
    assert leftovers(postgres_conninfo, cdc, first["signal_id"], second["signal_id"]) == []


def test_an_uncaptured_table_is_refused_before_any_signal(cdc, postgres_conninfo):
    signal_id = cdc.signal_id("refused")
    operator = IncrementalSnapshotOperator(task_id="snapshot", connector_name=cdc.name,
                                           database_conn_id=DATABASE_CONN_ID, signal_id=signal_id,
                                           tables=[cdc.qualified("misc"), "public.orders"])
    with pytest.raises(UncapturedTableError, match=rf"connector {cdc.name} does not capture public.orders "):
        operator.execute({})
    with psycopg.connect(postgres_conninfo) as db:
        assert db.execute(f"SELECT count(*) FROM {cdc.signal_table} WHERE id = %s", (signal_id,)).fetchone() == (0,)


def test_a_mysql_connection_for_a_postgres_connector_is_refused_in_one_line(cdc, postgres_conninfo):
    before = signal_table_rows(postgres_conninfo, cdc)
    operator = IncrementalSnapshotOperator(task_id="snapshot", connector_name=cdc.name, database_conn_id="mariadb_mesh",
                                           tables=[cdc.qualified("misc")], signal_id=cdc.signal_id("mismatch"))
    with pytest.raises(ConnectionMismatchError) as refused:
        operator.execute({})
    message = str(refused.value)
    assert message.startswith(f"connection mariadb_mesh is a 'mysql' connection, but connector {cdc.name} "
                              "(io.debezium.connector.postgresql.PostgresConnector) captures a PostgreSQL database: "
                              "give as database_conn_id a 'postgres' connection to "), message
    assert "\n" not in message
    assert signal_table_rows(postgres_conninfo, cdc) == before


@pytest.mark.parametrize(("change", "database_says"), [
    ({"password": "not-the-password"}, r'password authentication failed for user "\w+" \(check the connection'),
    ({"port": 1}, r"Connection refused.*\(is the server running"),
], ids=["wrong-password", "unreachable"])
def test_a_connection_failure_is_one_line_with_the_database_message(cdc, postgres_conninfo, monkeypatch, change,
                                                                   database_says):
    conn = {**json.loads(os.environ["AIRFLOW_CONN_POSTGRES_MESH"]), **change}
    monkeypatch.setenv("AIRFLOW_CONN_PG_BROKEN", json.dumps(conn))
    before = signal_table_rows(postgres_conninfo, cdc)
    operator = IncrementalSnapshotOperator(task_id="snapshot", connector_name=cdc.name, database_conn_id="pg_broken",
                                           tables=[cdc.qualified("misc")], signal_id=cdc.signal_id("broken"))
    with pytest.raises(SignalDatabaseError, match=rf"^connection pg_broken: connecting to PostgreSQL at "
                                                  rf"127\.0\.0\.1:{conn['port']}/{conn['schema']}: .*{database_says}"):
        operator.execute({})
    assert signal_table_rows(postgres_conninfo, cdc) == before


# Last in the module: Debezium 3.6.1 resets its row counter only after a table read in full, so the next
# table's total_rows_scanned would include the rows read from this one before it was dropped.
def test_a_table_dropped_while_it_is_read_fails_the_sensor_with_the_database_error(cdc, postgres_conninfo):
    table = cdc.qualified("doomed")
    request = request_snapshot(cdc, "doomed")
    wait_for_progress(cdc, request["signal_id"])
    with psycopg.connect(postgres_conninfo, autocommit=True) as db:
        db.execute(f"DROP TABLE {table}")
    sensor = snapshot_sensor(cdc, request, deferrable=False)
    with pytest.raises(SnapshotFailedError, match=rf"{table}: SQL_EXCEPTION .*relation \"{table}\" does not exist"):
        sensor.execute({})
    assert leftovers(postgres_conninfo, cdc, request["signal_id"]) == []
