"""Incremental snapshots: checking a connector's config, building signals, judging notifications."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_mesh.connectors.snapshots import (
    MARIADB,
    POSTGRES,
    Notification,
    NotificationSource,
    SignallingConfigError,
    SnapshotRequestError,
    SnapshotWatch,
    UncapturedTableError,
    check_captured,
    execute_snapshot_signal,
    notification_source,
    parse_notification,
    signal_target,
    stop_snapshot_signal,
)
from airflow_mesh.connectors.spec import ConnectionInfo, load_spec, render_config

ROOT = Path(__file__).resolve().parents[3]
STACK_DB = ConnectionInfo("127.0.0.1", 55432, "mesh", "secret", "mesh")


@pytest.fixture
def config() -> dict[str, str]:
    """The shipped PostgreSQL spec, rendered as it is deployed."""
    return render_config(load_spec(ROOT / "connectors" / "postgres_mesh_cdc.yaml"), lambda _: STACK_DB)


# ---------------------------------------------------------------- the connector's config


def test_the_shipped_spec_takes_signals_and_publishes_notifications(config):
    target = signal_target("mesh-postgres-cdc", config)
    assert (target.signal_table, target.dialect) == ("public.debezium_signal", POSTGRES)
    assert notification_source("mesh-postgres-cdc", config) == NotificationSource("mesh.pg.__debezium-notifications",
                                                                                   "mesh.pg")
    check_captured("mesh-postgres-cdc", config, ["public.orders", "public.customers", "PUBLIC.Orders"])


@pytest.mark.parametrize("table", ["public.shipments", "public.orders_archive", "audit.orders", "publicXorders"])
def test_a_table_outside_the_include_list_is_refused_by_name(config, table):
    with pytest.raises(UncapturedTableError) as error:
        check_captured("mesh-postgres-cdc", config, ["public.orders", table])
    assert error.value.tables == [table]
    assert error.value.connector_name == "mesh-postgres-cdc"
    assert str(error.value).startswith(f"connector mesh-postgres-cdc does not capture {table} (table.include.list: ")


@pytest.mark.parametrize(
    ("filters", "table", "captured"),
    [
        ({"table.exclude.list": r"public\.secrets"}, "public.secrets", False),
        ({"table.exclude.list": r"public\.secrets"}, "public.orders", True),
        ({"schema.include.list": "sales"}, "public.orders", False),
        ({"schema.include.list": "sales,public"}, "public.orders", True),
        ({"schema.exclude.list": "pub.*"}, "public.orders", False),
        ({"database.include.list": "mesh"}, "mesh.shipments", True),
        ({"table.include.list": r"public\.a\,b, public\.c"}, "public.a,b", True),  # \, escapes a comma
        ({"table.include.list": r"public\.a\,b, public\.c"}, "public.c", True),
        ({}, "anything.at_all", True),
    ],
)
def test_capture_follows_debezium_filters(filters, table, captured):
    if captured:
        check_captured("c", filters, [table])
    else:
        with pytest.raises(UncapturedTableError):
            check_captured("c", filters, [table])


def test_an_unreadable_filter_pattern_is_a_config_error():
    with pytest.raises(SignallingConfigError, match=r"^connector c: table.include.list: cannot read pattern 'orders"):
        check_captured("c", {"table.include.list": "orders("}, ["public.orders"])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"signal.data.collection": None}, "has no signal.data.collection"),
        ({"signal.enabled.channels": "kafka"}, "signal.enabled.channels is 'kafka': add 'source'"),
        ({"table.include.list": r"public\.orders"}, "does not capture its signal table public.debezium_signal"),
        ({"connector.class": "io.debezium.connector.oracle.OracleConnector"}, "cannot write signals for connector"),
    ],
)
def test_a_connector_that_would_ignore_signals_is_refused(config, change, reason):
    for key, value in change.items():
        config.pop(key) if value is None else config.__setitem__(key, value)
    with pytest.raises(SignallingConfigError, match=reason) as error:
        signal_target("mesh-postgres-cdc", config)
    assert error.value.connector_name == "mesh-postgres-cdc"


def test_signal_channels_may_include_source_among_others(config):
    config["signal.enabled.channels"] = "kafka, source"
    assert signal_target("mesh-postgres-cdc", config).signal_table == "public.debezium_signal"


@pytest.mark.parametrize("change", [{"notification.enabled.channels": "log"}, {"notification.sink.topic.name": ""}])
def test_a_connector_without_the_sink_channel_has_no_notification_source(config, change):
    config.update(change)
    with pytest.raises(SignallingConfigError, match="publishes no notifications to Kafka"):
        notification_source("mesh-postgres-cdc", config)


# ---------------------------------------------------------------- signals


def test_signal_sql_quotes_each_part_of_the_name():
    assert POSTGRES.insert_signal("public.debezium_signal") == \
        'INSERT INTO "public"."debezium_signal" (id, type, data) VALUES (%s, %s, %s)'
    assert MARIADB.insert_signal("mesh.debezium_signal") == \
        "INSERT INTO `mesh`.`debezium_signal` (id, type, data) VALUES (%s, %s, %s)"
    assert POSTGRES.quote('odd."name') == '"odd"."""name"'


def test_execute_snapshot_signal():
    signal = execute_snapshot_signal("s-1", ["public.orders", "public.customers"])
    assert (signal.id, signal.type) == ("s-1", "execute-snapshot")
    assert json.loads(signal.data) == {"data-collections": ["public.orders", "public.customers"], "type": "incremental"}
    assert signal.row() == ("s-1", "execute-snapshot", signal.data)


def test_execute_snapshot_signal_with_filters():
    signal = execute_snapshot_signal("s-2", ["public.orders", "public.customers"], {"public.orders": "id > 1000"})
    assert json.loads(signal.data)["additional-conditions"] == [{"data-collection": "public.orders",
                                                                  "filter": "id > 1000"}]


@pytest.mark.parametrize(
    ("tables", "filters", "message"),
    [
        ([], None, "at least one table"),
        ("public.orders", None, "must be a list of names"),
        (["orders"], None, r"qualified names \(schema.table\), got orders"),
        (["public.orders", "public.orders"], None, "asked for twice: public.orders"),
        (["public.orders"], {"public.customers": "id > 1"}, "filters for tables that are not requested: public.cu"),
    ],
)
def test_a_malformed_request_is_refused(tables, filters, message):
    with pytest.raises(SnapshotRequestError, match=message):
        execute_snapshot_signal("s", tables, filters)


def test_stop_snapshot_signal():
    assert json.loads(stop_snapshot_signal("x").data) == {"type": "incremental"}
    assert json.loads(stop_snapshot_signal("y", ["public.orders"]).data) == {"type": "incremental",
                                                                            "data-collections": ["public.orders"]}
    with pytest.raises(SnapshotRequestError, match="pass None to stop the whole snapshot"):
        stop_snapshot_signal("z", [])


# ---------------------------------------------------------------- notifications
# Records as Debezium 3.6.1 wrote them to the sink topic of a connector with topic.prefix "explore".


def record(id_: str, type_: str, aggregate: str = "Incremental Snapshot", connector: str = "explore", **data) -> bytes:
    return json.dumps({"id": id_, "type": type_, "aggregate_type": aggregate,
                       "additional_data": {"connector_name": connector, **data}, "timestamp": 1795710829998}).encode()


def started(id_: str, tables: str) -> bytes:
    return record(id_, "STARTED", data_collections=tables)


def in_progress(id_: str, table: str, last: int, maximum: int = 500) -> bytes:
    return record(id_, "IN_PROGRESS", current_collection_in_progress=table, data_collections=table,
                  maximum_key=str(maximum), last_processed_key=str(last))


def scanned(id_: str, table: str, status: str = "SUCCEEDED", rows: int = 500, tables: str | None = None) -> bytes:
    return record(id_, "TABLE_SCAN_COMPLETED", scanned_collection=table, total_rows_scanned=str(rows), status=status,
                  data_collections=tables or table)


def completed(id_: str) -> bytes:
    return record(id_, "COMPLETED")


def aborted(id_: str, tables: str) -> bytes:
    return record(id_, "ABORTED", data_collections=tables)


def watch_through(watch: SnapshotWatch, *records: bytes):
    """Feed records in order; the first verdict and how many records it took."""
    for count, value in enumerate(records, 1):
        result = watch.observe(parse_notification(value))
        if result is not None:
            return result, count
    return None, len(records)


def test_parse_a_real_notification():
    value = (b'{"id":"snap-1","type":"TABLE_SCAN_COMPLETED","aggregate_type":"Incremental Snapshot","additional_data":'
             b'{"scanned_collection":"public.explore_snap","connector_name":"explore","total_rows_scanned":"500",'
             b'"status":"SUCCEEDED","data_collections":"public.explore_snap"},"timestamp":1795710829998}')
    assert parse_notification(value) == Notification(
        "snap-1", "Incremental Snapshot", "TABLE_SCAN_COMPLETED",
        {"scanned_collection": "public.explore_snap", "connector_name": "explore", "total_rows_scanned": "500",
         "status": "SUCCEEDED", "data_collections": "public.explore_snap"}, 1795710829998)


def test_parse_a_notification_written_with_schemas():
    payload = json.loads(completed("snap-1"))
    enveloped = json.dumps({"schema": {"type": "struct", "fields": []}, "payload": payload})
    assert parse_notification(enveloped) == parse_notification(completed("snap-1"))


@pytest.mark.parametrize("value", [None, b"", b"not json", b"[1, 2]", b'{"id": "x"}', (b'{"id": 1, "type": "T", '
                                   b'"aggregate_type": "A"}')])
def test_what_is_not_a_notification_is_skipped(value):
    assert parse_notification(value) is None


def test_a_snapshot_that_reads_every_table_succeeds():
    watch = SnapshotWatch("snap-1", "explore", ["public.explore_snap"])
    result, count = watch_through(
        watch,
        record("b2c2", "SKIPPED", aggregate="Initial Snapshot"),
        started("snap-1", "public.explore_snap"),
        in_progress("snap-1", "public.explore_snap", 100),
        in_progress("snap-1", "public.explore_snap", 500),
        scanned("snap-1", "public.explore_snap"),
        completed("snap-1"),
    )
    assert (result.succeeded, count) == (True, 6)
    assert result.message == ("incremental snapshot snap-1 of explore completed: "
                              "public.explore_snap: SUCCEEDED (500 rows)")
    assert result.as_dict() == {"snapshot_id": "snap-1",
                                "tables": {"public.explore_snap": {"status": "SUCCEEDED", "rows_scanned": 500}}}
    assert watch.progress == "public.explore_snap: read up to key 500 of 500"


def test_an_empty_table_counts_as_read():
    watch = SnapshotWatch("s", "explore", ["public.a", "public.b"])
    result, _ = watch_through(watch, started("s", "public.a,public.b"),
                              scanned("s", "public.a", status="EMPTY", rows=0), scanned("s", "public.b"),
                              completed("s"))
    assert result.succeeded
    assert result.scans["public.a"].rows_scanned == 0


def test_notifications_of_earlier_snapshots_and_other_connectors_are_ignored():
    watch = SnapshotWatch("snap-2", "explore", ["public.t"])
    result, _ = watch_through(
        watch,
        scanned("snap-1", "public.t"), completed("snap-1"),  # an earlier snapshot of the same table
        started("snap-2", "public.t"),
        record("other", "TABLE_SCAN_COMPLETED", connector="elsewhere", scanned_collection="public.t",
               total_rows_scanned="9", status="SUCCEEDED"),
        record("other", "COMPLETED", connector="elsewhere"),  # another connector sharing the topic
    )
    assert result is None and watch.taken_up and not watch.scans
    assert watch.observe(parse_notification(scanned("snap-2", "public.t"))) is None
    assert watch.observe(parse_notification(completed("snap-2"))).succeeded


@pytest.mark.parametrize(
    ("status", "explanation"),
    [
        ("SQL_EXCEPTION", "a chunk query failed (its filter, or the table, as the database read it then)"),
        ("UNKNOWN_SCHEMA", "the connector knows no such table"),
        ("NO_PRIMARY_KEY", "the table has no primary key"),
    ],
)
def test_a_table_debezium_could_not_read_fails_the_snapshot_at_once(status, explanation):
    # Debezium 3.6.1 still ends such a snapshot with COMPLETED: the table scan's status is the verdict.
    result, count = watch_through(SnapshotWatch("snap-2", "explore", ["public.t", "public.u"]),
                                  started("snap-2", "public.t,public.u"),
                                  scanned("snap-2", "public.t", status=status, rows=0),
                                  scanned("snap-2", "public.u"), completed("snap-2"))
    assert (result.succeeded, count) == (False, 2)
    assert result.message.startswith(f"incremental snapshot snap-2 of explore failed: public.t: {status} (0 rows): "
                                     f"{explanation}")


def test_a_stopped_snapshot_fails_although_debezium_says_completed():
    # stop-snapshot of a whole snapshot: COMPLETED with the snapshot's id, then ABORTED with a random id.
    result, count = watch_through(SnapshotWatch("snap-9", "explore", ["public.t"]),
                                  started("snap-9", "public.t"), in_progress("snap-9", "public.t", 100, 1000),
                                  completed("snap-9"), aborted("1e32e010-65f6", "public.t"))
    assert (result.succeeded, count) == (False, 3)
    assert result.message.endswith("failed: ended without reading public.t: a stop-snapshot signal stopped it")


def test_stopping_one_of_the_tables_fails_at_once():
    # stop-snapshot of some tables: ABORTED with the snapshot's id naming them, then the rest goes on.
    result, count = watch_through(SnapshotWatch("snap-8", "explore", ["public.a", "public.b"]),
                                  started("snap-8", "public.a,public.b"), aborted("snap-8", "public.b"),
                                  scanned("snap-8", "public.a"), completed("snap-8"))
    assert (result.succeeded, count) == (False, 2)
    assert result.message.endswith("failed: stopped (stop-snapshot signal) before reading public.b")


def test_stopping_a_table_already_read_or_not_asked_for_changes_nothing():
    result, _ = watch_through(SnapshotWatch("s", "explore", ["public.a"]), started("s", "public.a,public.b"),
                              scanned("s", "public.a", tables="public.a,public.b"), aborted("s", "public.a,public.b"),
                              completed("s"))
    assert result.succeeded


def test_a_snapshot_merged_into_a_running_one_ends_with_it():
    # snap-5 was signalled while snap-4 ran: Debezium merged them, and every later notification
    # carries snap-5's id (observed on 3.6.1). Both waits end at the merged snapshot's COMPLETED.
    records = (started("snap-4", "public.big"),
               in_progress("snap-4", "public.big", 11800, 100000),
               in_progress("snap-5", "public.big", 11900, 100000),
               scanned("snap-5", "public.big", rows=100000, tables="public.big,public.small"),
               scanned("snap-5", "public.small", rows=300),
               completed("snap-5"))
    first, count = watch_through(SnapshotWatch("snap-4", "explore", ["public.big"]), *records)
    assert (first.succeeded, count) == (True, 6)
    assert first.scans["public.big"].rows_scanned == 100000
    second, _ = watch_through(SnapshotWatch("snap-5", "explore", ["public.small"]), *records)
    assert second.succeeded and list(second.scans) == ["public.small"]
