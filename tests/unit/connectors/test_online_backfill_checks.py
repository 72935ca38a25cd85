"""Online backfills, the pure checks around a signal: filters, connection types, watermark rows,
the database's message in a Kafka Connect task trace, and when a snapshot has really ended."""

from __future__ import annotations

import json

import pytest

from airflow_mesh.connectors.snapshots import (
    MARIADB,
    POSTGRES,
    ConnectionMismatchError,
    FilterCheckError,
    SnapshotRequestError,
    SnapshotWatch,
    check_connection_type,
    database_error_in_trace,
    parse_filters,
    parse_notification,
    signal_filters,
    stale_windows,
    task_failure,
)

PG_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
MARIADB_CLASS = "io.debezium.connector.mariadb.MariaDbConnector"

# ---------------------------------------------------------------- filters


def test_filters_are_parsed_in_the_connectors_dialect_and_written_back_in_parentheses():
    assert parse_filters({"public.t": "id % 10 = 0 AND label <> 'x'"}, POSTGRES) == {
        "public.t": "(id % 10 = 0 AND label <> 'x')"}
    assert parse_filters({"shop.t": "`Order Date` > '2026-01-01'"}, MARIADB) == {
        "shop.t": "(`Order Date` > '2026-01-01')"}
    assert parse_filters({}, POSTGRES) == {} and parse_filters(None, MARIADB) == {}


@pytest.mark.parametrize(("condition", "reason"), [
    ("id >> AND 5", "is not an SQL expression"),
    ("id < 10) OR (true", "is not an SQL expression"),
    ("1; DROP TABLE orders", "holds 2 statements"),
    ("id IN (WITH d AS (DELETE FROM x RETURNING id) SELECT id FROM d)", "a filter only reads"),
    ("42", "is not a condition"),
])
def test_a_filter_that_is_not_one_condition_is_refused_naming_the_table(condition, reason):
    with pytest.raises(SnapshotRequestError, match=r"^filters\[public\.t\]: filter ") as refused:
        parse_filters({"public.t": condition, "public.u": "id > 0"}, POSTGRES)
    assert reason in str(refused.value) and repr(condition[:77]) in str(refused.value)


def test_a_filter_must_be_text():
    with pytest.raises(SnapshotRequestError, match=r"^filters\[public\.t\]: must be an SQL condition \(text\)"):
        parse_filters({"public.t": 5}, POSTGRES)


def test_a_refused_filter_names_what_the_user_wrote_and_what_would_have_been_signalled():
    error = FilterCheckError("pg", "public.t", "id > 5 label", "(id > 5 AS label)", 'syntax error at or near "AS"')
    assert str(error) == ("filter 'id > 5 label' on public.t (as signalled: (id > 5 AS label)): the database "
                          "(connection pg) refuses it: syntax error at or near \"AS\"; nothing was signalled: "
                          "fix the filter")
    plain = FilterCheckError("pg", "public.t", "id > 5", "(id > 5)", "permission denied for table t")
    assert str(plain).startswith("filter 'id > 5' on public.t: the database (connection pg) refuses it: permission")
    table = FilterCheckError("pg", "public.gone", None, None, 'relation "public.gone" does not exist')
    assert str(table).startswith('table public.gone: the database (connection pg) refuses it: relation "public.gone"')


def test_the_filters_of_a_signal_row():
    data = json.dumps({"data-collections": ["public.a", "public.b"], "type": "incremental",
                       "additional-conditions": [{"data-collection": "public.a", "filter": "(id > 1)"}]})
    assert signal_filters(data) == {"public.a": "(id > 1)"}
    assert signal_filters(json.dumps({"data-collections": ["public.a"]})) == {}
    assert signal_filters("not json") == {} and signal_filters(None) == {}


# ---------------------------------------------------------------- the connection's type


@pytest.fixture
def pg_config() -> dict[str, str]:
    return {"connector.class": PG_CLASS, "database.hostname": "db.prod", "database.port": "5432",
            "database.dbname": "shop"}


def test_a_connection_of_the_right_type_passes(pg_config):
    check_connection_type("cdc", pg_config, "pg", "postgres")
    check_connection_type("cdc", {"connector.class": MARIADB_CLASS}, "maria", "mysql")
    check_connection_type("cdc", {"connector.class": "io.debezium.connector.mysql.MySqlConnector"}, "my", "mysql")


def test_a_mysql_connection_for_a_postgres_connector_says_what_to_use(pg_config):
    with pytest.raises(ConnectionMismatchError) as refused:
        check_connection_type("cdc", pg_config, "maria", "mysql")
    assert str(refused.value) == (f"connection maria is a 'mysql' connection, but connector cdc ({PG_CLASS}) captures "
                                  "a PostgreSQL database: give as database_conn_id a 'postgres' connection to "
                                  "db.prod:5432/shop")
    assert (refused.value.conn_id, refused.value.conn_type, refused.value.expected) == ("maria", "mysql", "postgres")


def test_a_postgres_connection_for_a_mariadb_connector_is_refused():
    config = {"connector.class": MARIADB_CLASS, "database.hostname": "${env:DB_HOST}", "database.port": "3306"}
    with pytest.raises(ConnectionMismatchError, match=r"captures a MariaDB/MySQL database: give as database_conn_id "
                                                      r"a 'mysql' connection$"):
        check_connection_type("cdc", config, "pg", "postgres")  # a config-provider reference says nothing useful


@pytest.mark.parametrize("conn_type", ["", None, "generic", "postgresql"])
def test_any_other_type_is_refused(pg_config, conn_type):
    with pytest.raises(ConnectionMismatchError, match="give as database_conn_id a 'postgres' connection"):
        check_connection_type("cdc", pg_config, "c", conn_type)


# ---------------------------------------------------------------- the signal table's SQL


def test_the_statements_on_the_signal_table_quote_names():
    assert POSTGRES.explain_select("public.my table") == 'EXPLAIN SELECT * FROM "public"."my table"'
    assert MARIADB.explain_select("shop.t", "(id % 2 = 0)") == "EXPLAIN SELECT * FROM `shop`.`t` WHERE (id % 2 = 0)"
    assert POSTGRES.count_where("public.t", "(id > 1)") == 'SELECT count(*) FROM "public"."t" WHERE (id > 1)'
    assert POSTGRES.select_signal("public.sig%s") == 'SELECT data FROM "public"."sig%%s" WHERE id = %s'
    assert MARIADB.delete_signals("shop.sig", 2) == "DELETE FROM `shop`.`sig` WHERE id IN (%s, %s)"
    assert POSTGRES.select_windows("public.sig") == ('SELECT id, type, data FROM "public"."sig" WHERE type IN '
                                                     '(%s, %s)')
    assert POSTGRES.begin_read_only == "BEGIN READ ONLY" and MARIADB.begin_read_only == "START TRANSACTION READ ONLY"


# ---------------------------------------------------------------- watermark rows


def window(chunk: str, kind: str, opened: str, closed: str | None = None) -> tuple[str, str, str]:
    data = {"openWindowTimestamp": opened, **({"closeWindowTimestamp": closed} if closed else {})}
    return (f"{chunk}-{kind}", f"snapshot-window-{kind}", json.dumps(data))


def test_watermark_rows_of_windows_opened_before_the_end_are_stale():
    # Debezium's own text: an Instant with nanoseconds; the end is a notification's epoch milliseconds.
    end_ms = 1796413713000  # 2026-12-04T19:48:33Z
    rows = [window("a", "open", "2026-12-04T19:48:31.819887306Z"),
            window("b", "open", "2026-12-04T19:48:32.100Z"),
            window("b", "close", "2026-12-04T19:48:32.100Z", "2026-12-04T19:48:32.200Z"),
            window("c", "open", "2026-12-04T19:48:33Z"),           # opened at the end: may be a new snapshot's
            window("d", "open", "2026-12-04T19:49:00.5Z"),         # a later snapshot's window, maybe in flight
            ("e-open", "snapshot-window-open", "not json"),        # nothing to go by: left alone
            ("f-open", "snapshot-window-open", None)]
    assert stale_windows(rows, end_ms) == ["a-open", "b-open", "b-close"]
    assert stale_windows(rows, None) == []


# ---------------------------------------------------------------- task traces

PG_TRACE = """org.apache.kafka.connect.errors.ConnectException: An exception occurred in the change event producer. This connector will be stopped.
\tat io.debezium.pipeline.ErrorHandler.setProducerThrowable(ErrorHandler.java:67)
\tat java.base/java.lang.Thread.run(Thread.java:840)
Caused by: org.postgresql.util.PSQLException: Database connection failed when reading from copy
\tat org.postgresql.core.v3.QueryExecutorImpl.readFromCopy(QueryExecutorImpl.java:1339)
\t... 10 more
Caused by: java.io.EOFException
\tat org.postgresql.core.PGStream.receiveChar(PGStream.java:489)
\t... 17 more
"""  # noqa: E501 - a real Connect task trace, kept verbatim


@pytest.mark.parametrize(("trace", "message"), [
    (PG_TRACE, "Database connection failed when reading from copy"),
    (("io.debezium.DebeziumException: Snapshotting of table public.t failed\n\tat x.y(Z.java:1)\n"
      "Caused by: org.postgresql.util.PSQLException: ERROR: relation \"public.t\" does not exist\n  Position: 15\n"
      "\tat a.b(C.java:2)\n"), 'relation "public.t" does not exist'),
    (("org.apache.kafka.connect.errors.ConnectException: boom\nCaused by: java.sql.SQLSyntaxErrorException: "
      "(conn=1234) You have an error in your SQL syntax near 'AND 5)' at line 1\n\tat q.r(S.java:3)\n"),
     "You have an error in your SQL syntax near 'AND 5)' at line 1"),
    ("org.apache.kafka.connect.errors.ConnectException: The db history topic is missing.\n\tat a.b(C.java:1)\n",
     "The db history topic is missing."),
    (("org.apache.kafka.connect.errors.ConnectException: outer\nCaused by: java.lang.IllegalStateException: inner\n"
      "Caused by: java.io.EOFException\n"), "inner"),
])
def test_the_database_message_in_a_task_trace(trace, message):
    assert database_error_in_trace(trace) == message


def test_a_failed_task_is_a_failure_message_and_a_running_one_is_none():
    status = {"name": "cdc", "connector": {"state": "RUNNING"},
              "tasks": [{"id": 0, "state": "FAILED", "worker_id": "w:8083", "trace": PG_TRACE}]}
    assert task_failure(status) == ("connector cdc task 0 is FAILED: Database connection failed when reading from copy "
                                    "(restart the task, e.g. with RestartConnectorOperator: the snapshot resumes "
                                    "from the connector's offsets)")
    status["tasks"][0] = {"id": 0, "state": "RUNNING", "worker_id": "w:8083"}
    assert task_failure(status) is None
    assert task_failure({"name": "cdc", "connector": {"state": "FAILED", "trace": PG_TRACE}, "tasks": []}) == (
        "connector cdc is FAILED: Database connection failed when reading from copy (restart the task, e.g. with "
        "RestartConnectorOperator: the snapshot resumes from the connector's offsets)")


# ---------------------------------------------------------------- when a snapshot has ended


def notification(id_: str, type_: str, timestamp: int, **data: str) -> bytes:
    return json.dumps({"id": id_, "type": type_, "aggregate_type": "Incremental Snapshot", "timestamp": timestamp,
                       "additional_data": {"connector_name": "explore", **data}}).encode()


def test_a_notification_carries_debeziums_time():
    assert parse_notification(notification("s", "COMPLETED", 1796413713000)).timestamp == 1796413713000
    assert parse_notification(b'{"id": "s", "type": "COMPLETED", "aggregate_type": "A"}').timestamp is None


def test_a_failure_settles_when_debezium_completes_the_snapshot():
    watch = SnapshotWatch("s", "explore", ["public.t"])
    assert watch.observe(parse_notification(notification("old", "COMPLETED", 900))) is None
    assert watch.end_ms == 900 and not watch.settled  # an earlier snapshot's end: windows before it are done
    watch.observe(parse_notification(notification("s", "STARTED", 1000, data_collections="public.t")))
    verdict = watch.observe(parse_notification(notification("s", "TABLE_SCAN_COMPLETED", 1001, status="SQL_EXCEPTION",
                                                            scanned_collection="public.t", total_rows_scanned="0")))
    assert verdict is not None and not verdict.succeeded and not watch.settled
    assert watch.observe(parse_notification(notification("s", "COMPLETED", 1002))) is None  # the verdict stands
    assert watch.settled and watch.end_ms == 1002 and watch.result is verdict


def test_a_success_is_settled_at_once():
    watch = SnapshotWatch("s", "explore", ["public.t"])
    for record in (notification("s", "STARTED", 1), notification("s", "TABLE_SCAN_COMPLETED", 2, status="SUCCEEDED",
                                                                  scanned_collection="public.t",
                                                                  total_rows_scanned="5")):
        assert watch.observe(parse_notification(record)) is None
    assert watch.observe(parse_notification(notification("s", "COMPLETED", 3))).succeeded
    assert watch.settled and watch.end_ms == 3
