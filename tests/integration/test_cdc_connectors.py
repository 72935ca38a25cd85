"""CDC connectors deployed from the shipped specs onto the real Kafka Connect, Debezium and databases."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from airflow.sdk.exceptions import AirflowException
from confluent_kafka import Consumer

from airflow_mesh.hooks.kafka_connect import ConnectorNotFoundError, KafkaConnectHook
from airflow_mesh.operators.kafka_connect import (
    DeleteConnectorOperator,
    DeployConnectorOperator,
    PauseConnectorOperator,
    ResetConnectorOffsetsOperator,
    RestartConnectorOperator,
    ResumeConnectorOperator,
    StopConnectorOperator,
)
from airflow_mesh.sensors.kafka_connect import ConnectorHealthSensor

ROOT = Path(__file__).resolve().parents[2]
PG_SPEC = ROOT / "connectors" / "postgres_mesh_cdc.yaml"
MARIADB_SPEC = ROOT / "connectors" / "mariadb_mesh_cdc.yaml"
PG_TOPIC = "mesh.pg.public.orders"
MARIADB_TOPIC = "mesh.mariadb.mesh.shipments"


@pytest.fixture
def connect() -> KafkaConnectHook:
    return KafkaConnectHook()


def remove_connector(hook: KafkaConnectHook, name: str) -> None:
    """Stop, forget the offsets (so a later deploy starts afresh), and delete a connector."""
    if not hook.connector_exists(name):
        return
    ResetConnectorOffsetsOperator(task_id="reset", connector_name=name, resume=False).execute({})
    hook.delete_connector(name)


def drop_slot(conninfo: str, slot: str) -> None:
    deadline = time.monotonic() + 30
    with psycopg.connect(conninfo, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
            if row is None:
                return
            if not row[0]:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                return
            time.sleep(0.5)
    raise AssertionError(f"replication slot {slot} still active after its connector was deleted")


@pytest.fixture
def pg_connector(connect, postgres_conninfo) -> Iterator[str]:
    """The shipped PostgreSQL spec's connector, removed (with its slot) before and after the test."""
    name, slot = "mesh-postgres-cdc", yaml.safe_load(PG_SPEC.read_text())["config"]["slot.name"]
    remove_connector(connect, name)
    drop_slot(postgres_conninfo, slot)
    yield name
    remove_connector(connect, name)
    drop_slot(postgres_conninfo, slot)


@pytest.fixture
def mariadb_connector(connect, kafka_admin) -> Iterator[str]:
    name = "mesh-mariadb-cdc"
    history = yaml.safe_load(MARIADB_SPEC.read_text())["config"]["schema.history.internal.kafka.topic"]

    def clean() -> None:
        remove_connector(connect, name)
        if history in kafka_admin.list_topics(timeout=10).topics:
            kafka_admin.delete_topics([history])[history].result(timeout=30)

    clean()
    yield name
    clean()


def deploy(spec: Path | str, **kwargs) -> list[dict[str, str]]:
    return DeployConnectorOperator(task_id="deploy", spec_path=str(spec), **kwargs).execute({})


def wait_healthy(name: str, timeout: float = 120, **kwargs) -> None:
    ConnectorHealthSensor(task_id="healthy", connector_name=name, poke_interval=1, timeout=timeout,
                          **kwargs).execute({})


def change_events(bootstrap: str, topic: str, key_field: str, key, count: int, timeout: float = 90) -> list[dict]:
    """The Debezium events (value JSON, tombstones as None) for one row key, in topic order."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{random.random()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    events: list[dict | None] = []
    deadline = time.monotonic() + timeout
    try:
        while len(events) < count and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error() or message.key() is None:
                continue
            if json.loads(message.key()).get(key_field) == key:
                events.append(json.loads(message.value()) if message.value() else None)
    finally:
        consumer.close()
    return events


def test_postgres_changes_arrive_as_debezium_events(pg_connector, postgres_conninfo, bootstrap_servers):
    assert deploy(PG_SPEC) == [{"name": pg_connector, "action": "created"}]
    wait_healthy(pg_connector)
    key = random.randint(10**9, 2 * 10**9)
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute("INSERT INTO orders (id, customer_id, status, amount) VALUES (%s, 7, 'new', 12.50)", (key,))
        conn.execute("UPDATE orders SET status = 'paid', amount = 13.75 WHERE id = %s", (key,))
        conn.execute("DELETE FROM orders WHERE id = %s", (key,))

    create, update, delete, tombstone = change_events(bootstrap_servers, PG_TOPIC, "id", key, 4)

    assert (create["op"], create["before"]) == ("c", None)
    assert {k: create["after"][k] for k in ("id", "customer_id", "status", "amount")} == \
        {"id": key, "customer_id": 7, "status": "new", "amount": "12.50"}
    assert update["op"] == "u"
    assert (update["before"]["status"], update["before"]["amount"]) == ("new", "12.50")
    assert (update["after"]["status"], update["after"]["amount"]) == ("paid", "13.75")
    assert (delete["op"], delete["after"]) == ("d", None)
    assert delete["before"]["status"] == "paid"
    assert delete["source"]["table"] == "orders" and delete["source"]["db"] == "mesh"
    assert tombstone is None


def test_mariadb_changes_arrive_as_debezium_events(mariadb_connector, bootstrap_servers):
    import subprocess

    assert deploy(MARIADB_SPEC) == [{"name": mariadb_connector, "action": "created"}]
    wait_healthy(mariadb_connector)
    key = random.randint(10**9, 2 * 10**9)
    sql = (f"INSERT INTO mesh.shipments VALUES ({key}, 42, 'dhl', 'packed', NULL);"
           f"UPDATE mesh.shipments SET status = 'shipped', shipped_at = '2026-11-26 10:00:00' WHERE id = {key};"
           f"DELETE FROM mesh.shipments WHERE id = {key};")
    subprocess.run(["mariadb", f"--defaults-file={ROOT / '.stack' / 'conf' / 'mariadb.cnf'}", "-u", "root",
                    "-e", sql], check=True)

    create, update, delete, tombstone = change_events(bootstrap_servers, MARIADB_TOPIC, "id", key, 4)

    assert (create["op"], create["before"]) == ("c", None)
    assert create["after"] == {"id": key, "order_id": 42, "carrier": "dhl", "status": "packed", "shipped_at": None}
    assert update["op"] == "u"
    assert update["before"]["status"] == "packed" and update["after"]["status"] == "shipped"
    assert update["after"]["shipped_at"] is not None
    assert (delete["op"], delete["after"], delete["before"]["status"]) == ("d", None, "shipped")
    assert tombstone is None


def test_redeploy_unchanged_is_a_no_op_and_a_change_is_an_update(pg_connector, connect, tmp_path):
    assert deploy(PG_SPEC)[0]["action"] == "created"
    wait_healthy(pg_connector)
    before = connect.get_connector_config(pg_connector)

    assert deploy(PG_SPEC)[0]["action"] == "unchanged"
    assert connect.get_connector_config(pg_connector) == before

    changed = yaml.safe_load(PG_SPEC.read_text())
    changed["config"]["heartbeat.interval.ms"] = 2500
    spec = tmp_path / "pg.yaml"
    spec.write_text(yaml.safe_dump(changed))
    assert deploy(spec)[0]["action"] == "updated"
    assert connect.get_connector_config(pg_connector)["heartbeat.interval.ms"] == "2500"
    wait_healthy(pg_connector)


def pg_superuser_conninfo(postgres_conninfo: str) -> str:
    """The stack's superuser over its Unix socket (trust auth): only it may create replication roles."""
    port = next(part for part in postgres_conninfo.split() if part.startswith("port="))
    return f"host={ROOT / '.stack' / 'postgres' / 'run'} {port} user=postgres dbname=mesh"


@pytest.fixture
def unprivileged_role(postgres_conninfo) -> Iterator[str]:
    """A role that may replicate but may not read the tables: a CDC login set up wrong."""
    role = "mesh_cdc_unprivileged"
    with psycopg.connect(pg_superuser_conninfo(postgres_conninfo), autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} LOGIN REPLICATION PASSWORD '{role}'")
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:  # as the tables' owner
        conn.execute("CREATE PUBLICATION mesh_postgres_cdc FOR TABLE orders, customers, debezium_signal"
                     if not conn.execute("SELECT 1 FROM pg_publication WHERE pubname = 'mesh_postgres_cdc'")
                     .fetchone() else "SELECT 1")
    yield role
    with psycopg.connect(pg_superuser_conninfo(postgres_conninfo), autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")


def test_broken_connector_fails_with_the_real_error_then_recovers(
    pg_connector, connect, unprivileged_role, monkeypatch, tmp_path
):
    stack_conn = json.loads(os.environ["AIRFLOW_CONN_POSTGRES_MESH"])
    monkeypatch.setenv("AIRFLOW_CONN_PG_CDC", json.dumps({**stack_conn, "login": unprivileged_role,
                                                          "password": unprivileged_role}))
    spec_data = yaml.safe_load(PG_SPEC.read_text())
    spec_data["database"]["conn_id"] = "pg_cdc"
    # By default Debezium retries every error forever, its task RUNNING all along: bound the retries.
    spec_data["config"].update({"errors.max.retries": 1, "retriable.restart.connector.wait.ms": 1000})
    spec = tmp_path / "pg.yaml"
    spec.write_text(yaml.safe_dump(spec_data))

    # The login works, so the plugin's validation passes; the snapshot then cannot read the tables.
    assert deploy(spec)[0]["action"] == "created"
    with pytest.raises(AirflowException, match="permission denied for table") as failure:
        wait_healthy(pg_connector, restart_failed_tasks=1)
    assert "task 0 FAILED" in str(failure.value)

    # Fixing the Airflow connection, then redeploy + restart of the failed task, brings it back.
    monkeypatch.setenv("AIRFLOW_CONN_PG_CDC", json.dumps(stack_conn))
    assert deploy(spec)[0]["action"] == "updated"
    RestartConnectorOperator(task_id="restart", connector_name=pg_connector, only_failed=True).execute({})
    assert wait_for_state(connect, pg_connector, "RUNNING", task=True)  # the restart has taken effect
    wait_healthy(pg_connector)


def test_a_wrong_password_is_refused_before_anything_is_deployed(pg_connector, connect, monkeypatch):
    stack_conn = json.loads(os.environ["AIRFLOW_CONN_POSTGRES_MESH"])
    monkeypatch.setenv("AIRFLOW_CONN_POSTGRES_MESH", json.dumps({**stack_conn, "password": "wrong-password"}))
    with pytest.raises(AirflowException, match=r"mesh-postgres-cdc: database.hostname: .*password authentication"):
        deploy(PG_SPEC)
    assert not connect.connector_exists(pg_connector)


def test_pause_resume_stop_and_offset_reset_resnapshots(pg_connector, connect, postgres_conninfo,
                                                         bootstrap_servers):
    key = random.randint(10**9, 2 * 10**9)
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute("INSERT INTO orders (id, customer_id, status, amount) VALUES (%s, 1, 'kept', 1)", (key,))
    try:
        deploy(PG_SPEC)
        wait_healthy(pg_connector)
        assert [e["op"] for e in change_events(bootstrap_servers, PG_TOPIC, "id", key, 1)] == ["r"]

        PauseConnectorOperator(task_id="pause", connector_name=pg_connector).execute({})
        assert wait_for_state(connect, pg_connector, "PAUSED")
        ResumeConnectorOperator(task_id="resume", connector_name=pg_connector).execute({})
        wait_healthy(pg_connector)
        StopConnectorOperator(task_id="stop", connector_name=pg_connector).execute({})
        assert wait_for_state(connect, pg_connector, "STOPPED")
        ResumeConnectorOperator(task_id="resume", connector_name=pg_connector).execute({})
        wait_healthy(pg_connector)

        ResetConnectorOffsetsOperator(task_id="reset", connector_name=pg_connector).execute({})
        wait_healthy(pg_connector)
        # With its offsets gone, snapshot.mode=initial snapshots the table again: a second read event.
        assert [e["op"] for e in change_events(bootstrap_servers, PG_TOPIC, "id", key, 2)] == ["r", "r"]
    finally:
        with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
            conn.execute("DELETE FROM orders WHERE id = %s", (key,))


def wait_for_state(hook: KafkaConnectHook, name: str, state: str, timeout: float = 60, task: bool = False) -> bool:
    """Wait until the connector (or, with ``task``, any of its tasks) reaches ``state``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = hook.get_connector_status(name)
        states = [t["state"] for t in status["tasks"]] if task else [status["connector"]["state"]]
        if state in states:
            return True
        time.sleep(0.5)
    return False


def test_delete_removes_the_connector_and_tolerates_a_missing_one(pg_connector, connect):
    deploy(PG_SPEC)
    DeleteConnectorOperator(task_id="delete", connector_name=pg_connector).execute({})
    assert pg_connector not in connect.list_connectors()
    with pytest.raises(ConnectorNotFoundError):
        connect.get_connector_config(pg_connector)
    DeleteConnectorOperator(task_id="delete", connector_name=pg_connector).execute({})  # nothing to delete
    with pytest.raises(ConnectorNotFoundError):
        DeleteConnectorOperator(task_id="delete", connector_name=pg_connector, ignore_missing=False).execute({})
