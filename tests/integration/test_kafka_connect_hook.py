"""KafkaConnectHook against the stack's real Kafka Connect, deploying Debezium PostgreSQL connectors."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from airflow_mesh.connectors.spec import validation_errors
from airflow_mesh.hooks.kafka_connect import ConnectorNotFoundError, KafkaConnectApiError, KafkaConnectHook

PG = "io.debezium.connector.postgresql.PostgresConnector"


@dataclass
class CdcSource:
    """A table of the test's own and a Debezium connector's configuration capturing it."""

    name: str
    table: str
    config: dict[str, str]


@pytest.fixture
def hook() -> KafkaConnectHook:
    return KafkaConnectHook()


@pytest.fixture
def postgres(postgres_conninfo: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        yield conn


@pytest.fixture
def cdc(hook, postgres, postgres_conninfo, kafka_admin) -> Iterator[CdcSource]:
    """A CdcSource; afterwards its connector, replication slot, publication, topics and table are gone."""
    suffix = uuid.uuid4().hex[:10]
    table, slot, prefix = f"kc_hook_{suffix}", f"kc_hook_{suffix}", f"kc-hook-{suffix}"
    postgres.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, item text)").format(sql.Identifier(table)))
    postgres.execute(sql.SQL("INSERT INTO {} VALUES (1, 'first'), (2, 'second')").format(sql.Identifier(table)))
    db = conninfo_to_dict(postgres_conninfo)
    config = {
        "connector.class": PG,
        "tasks.max": "1",
        "database.hostname": db["host"],
        "database.port": str(db["port"]),
        "database.user": db["user"],
        "database.password": db["password"],
        "database.dbname": db["dbname"],
        "topic.prefix": prefix,
        "plugin.name": "pgoutput",
        "slot.name": slot,
        "publication.name": slot,
        "publication.autocreate.mode": "filtered",
        "table.include.list": f"public.{table}",
    }
    source = CdcSource(name=f"kc-hook-{suffix}", table=table, config=config)
    try:
        yield source
    finally:
        with contextlib.suppress(ConnectorNotFoundError):
            hook.delete_connector(source.name)
        drop_replication_slot(postgres, slot)
        postgres.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(slot)))
        postgres.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
        topics = [t for t in kafka_admin.list_topics(timeout=30).topics if t.startswith(f"{prefix}.")]
        for future in (kafka_admin.delete_topics(topics).values() if topics else []):
            future.result(timeout=30)


def drop_replication_slot(postgres: psycopg.Connection, slot: str, timeout: float = 30.0) -> None:
    """Drop the slot once the deleted connector's task, which stops asynchronously, let go of it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            postgres.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                             "WHERE slot_name = %s", (slot,))
            return
        except psycopg.errors.ObjectInUse:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def wait_for_state(hook: KafkaConnectHook, name: str, state: str, timeout: float = 90.0) -> dict:
    """Poll until the connector and each of its tasks are in ``state`` (a STOPPED connector has no tasks)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = hook.get_connector_status(name)
        except ConnectorNotFoundError:  # Connect records a new connector's status a moment after creating it
            status = {"connector": {"state": "UNASSIGNED"}, "tasks": []}
        states = [status["connector"]["state"], *(task["state"] for task in status["tasks"])]
        if set(states) == {state} and (len(states) > 1 or state == "STOPPED"):
            return status
        if "FAILED" in states:
            traces = [status["connector"].get("trace"), *(task.get("trace") for task in status["tasks"])]
            pytest.fail(f"{name} FAILED while waiting for {state}: {[t for t in traces if t]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{name} not {state} after {timeout}s: {status}")
        time.sleep(0.5)


def test_test_connection_reports_the_version(hook):
    ok, message = hook.test_connection()
    assert ok, message
    assert message.startswith("Kafka Connect 4.")


def test_list_plugins_has_the_debezium_postgres_connector(hook):
    connectors = hook.list_plugins()
    assert PG in {plugin["class"] for plugin in connectors}
    assert {plugin["type"] for plugin in connectors} <= {"source", "sink"}
    assert "transformation" in {plugin["type"] for plugin in hook.list_plugins(connectors_only=False)}


def test_validate_config_reports_bad_values_and_passes_a_good_config(hook, cdc):
    good = {**cdc.config, "name": cdc.name}
    answer = hook.validate_config(PG, good)
    assert (answer["name"], answer["error_count"]) == (PG, 0)
    assert validation_errors(answer) == {}

    bad = hook.validate_config(PG, {**good, "snapshot.mode": "sometimes"})
    assert bad["error_count"] == 1
    assert list(validation_errors(bad)) == ["snapshot.mode"]

    no_prefix = {key: value for key, value in good.items() if key != "topic.prefix"}
    assert list(validation_errors(hook.validate_config(PG, no_prefix))) == ["topic.prefix"]
    # Connect counts a missing name as an error too.
    assert list(validation_errors(hook.validate_config(PG, cdc.config))) == ["name"]


def test_put_connector_config_refuses_a_name_that_differs_from_the_url(hook, cdc):
    with pytest.raises(KafkaConnectApiError) as raised:
        hook.put_connector_config(cdc.name, {**cdc.config, "name": "another-name"})
    assert raised.value.status == 400
    assert "doesn't match connector name in the URL" in raised.value.message
    assert not hook.connector_exists(cdc.name)


def test_put_connector_config_of_an_invalid_config_is_a_500_on_connect_4_3(hook, cdc):
    # Unlike the docs' 400, Connect's error reporting throws a NullPointerException on Debezium's
    # validation result; no retries here, a 500 is otherwise retried.
    with pytest.raises(KafkaConnectApiError) as raised:
        KafkaConnectHook(retries=0).put_connector_config(cdc.name, {**cdc.config, "snapshot.mode": "sometimes"})
    assert raised.value.status == 500
    assert not hook.connector_exists(cdc.name)


def test_put_connector_config_creates_then_updates(hook, cdc):
    assert not hook.connector_exists(cdc.name)
    assert hook.put_connector_config(cdc.name, cdc.config) is True
    assert hook.connector_exists(cdc.name)
    assert cdc.name in hook.list_connectors()
    assert hook.get_connector(cdc.name)["type"] == "source"
    assert hook.get_connector_config(cdc.name) == {**cdc.config, "name": cdc.name}
    wait_for_state(hook, cdc.name, "RUNNING")

    updated = {**cdc.config, "poll.interval.ms": "250"}
    assert hook.put_connector_config(cdc.name, updated) is False
    assert hook.get_connector_config(cdc.name) == {**updated, "name": cdc.name}
    status = wait_for_state(hook, cdc.name, "RUNNING")

    async def read_back():
        return await asyncio.gather(hook.aget_connector_status(cdc.name), hook.aget_connector_config(cdc.name))

    async_status, async_config = asyncio.run(read_back())
    assert async_status["connector"]["state"] == "RUNNING"
    assert [task["id"] for task in async_status["tasks"]] == [task["id"] for task in status["tasks"]]
    assert async_config == {**updated, "name": cdc.name}


def test_pause_resume_stop_and_offsets(hook, cdc):
    hook.put_connector_config(cdc.name, cdc.config)
    wait_for_state(hook, cdc.name, "RUNNING")
    hook.pause_connector(cdc.name)
    wait_for_state(hook, cdc.name, "PAUSED")
    hook.resume_connector(cdc.name)
    wait_for_state(hook, cdc.name, "RUNNING")

    with pytest.raises(KafkaConnectApiError, match="STOPPED state") as raised:
        hook.reset_offsets(cdc.name)
    assert raised.value.status == 400

    hook.stop_connector(cdc.name)
    wait_for_state(hook, cdc.name, "STOPPED")
    (offset,) = hook.get_offsets(cdc.name)["offsets"]
    assert offset["partition"] == {"server": cdc.config["topic.prefix"]}
    assert offset["offset"]["lsn"] > 0

    rewound = {**offset, "offset": {**offset["offset"], "lsn": offset["offset"]["lsn"] - 1}}
    assert "altered successfully" in hook.alter_offsets(cdc.name, [rewound])["message"]
    assert hook.get_offsets(cdc.name)["offsets"] == [rewound]

    assert "reset successfully" in hook.reset_offsets(cdc.name)["message"]
    assert hook.get_offsets(cdc.name) == {"offsets": []}

    hook.resume_connector(cdc.name)
    wait_for_state(hook, cdc.name, "RUNNING")


def test_restarts_then_delete(hook, cdc):
    hook.put_connector_config(cdc.name, cdc.config)
    wait_for_state(hook, cdc.name, "RUNNING")

    hook.restart_connector(cdc.name, include_tasks=True)
    wait_for_state(hook, cdc.name, "RUNNING")
    hook.restart_connector(cdc.name)
    hook.restart_task(cdc.name, 0)
    wait_for_state(hook, cdc.name, "RUNNING")
    with pytest.raises(ConnectorNotFoundError, match="Unknown task"):
        hook.restart_task(cdc.name, 7)

    hook.delete_connector(cdc.name)
    with pytest.raises(ConnectorNotFoundError):
        hook.get_connector(cdc.name)
    assert not hook.connector_exists(cdc.name)
    assert cdc.name not in hook.list_connectors()
    with pytest.raises(ConnectorNotFoundError):
        hook.delete_connector(cdc.name)
