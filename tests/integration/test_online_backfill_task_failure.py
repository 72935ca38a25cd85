"""A connector task that fails while an incremental snapshot runs: the sensor fails at once with the
database's message from the task's trace in Kafka Connect, instead of waiting for notifications that
will never come. The connector (errors.max.retries 0, so that the failure shows as a FAILED task)
is this module's own; its replication connection is the one terminated."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from airflow_mesh.connectors.snapshots import SnapshotFailedError
from airflow_mesh.hooks.kafka_connect import KafkaConnectHook
from tests.integration.test_cdc_connectors import wait_healthy
from tests.integration.test_incremental_snapshot import (
    SnapshotConnector,
    request_snapshot,
    snapshot_connector,
    snapshot_sensor,
    wait_for_progress,
    wait_in_triggerer,
)


@pytest.fixture(scope="module")
def cdc(postgres_conninfo, bootstrap_servers, tmp_path_factory) -> Iterator[SnapshotConnector]:
    with snapshot_connector(postgres_conninfo, bootstrap_servers, tmp_path_factory.mktemp("specs"), {"big": 100_000},
                            config={"errors.max.retries": 0}) as connector:
        yield connector


def terminate_streaming(conninfo: str, cdc: SnapshotConnector) -> None:
    """End the connector's replication connection from the server side, as a failover or an admin would."""
    slot = f"snaptest_{cdc.topic_prefix.removeprefix('snaptest')}"
    with psycopg.connect(conninfo, autocommit=True) as db:
        (pid,) = db.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
        assert pid is not None, f"slot {slot} is not streaming"
        assert db.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)


def wait_failed(cdc: SnapshotConnector, timeout: float = 60) -> None:
    hook = KafkaConnectHook()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(task["state"] == "FAILED" for task in hook.get_connector_status(cdc.name)["tasks"]):
            return
        time.sleep(1)
    raise AssertionError(f"no task of {cdc.name} FAILED within {timeout}s")


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_a_task_that_fails_during_the_snapshot_fails_the_sensor_with_the_database_message(
        cdc, postgres_conninfo, deferrable):
    request = request_snapshot(cdc, "big")
    wait_for_progress(cdc, request["signal_id"])
    terminate_streaming(postgres_conninfo, cdc)
    wait_failed(cdc)
    sensor = snapshot_sensor(cdc, request, deferrable=deferrable)
    started = time.monotonic()
    with pytest.raises(SnapshotFailedError, match=rf"^incremental snapshot {request['signal_id']} of "
                                                  rf"{cdc.topic_prefix} cannot go on: connector {cdc.name} task 0 is "
                                                  r"FAILED: .*Database connection failed when reading from copy"):
        wait_in_triggerer(sensor, cdc) if deferrable else sensor.execute({})
    assert time.monotonic() - started < 60, "the sensor waited for notifications that could not come"
    # The next case needs the connector streaming again: restarting the task resumes the snapshot.
    wait_healthy(cdc.name, restart_failed_tasks=3)
