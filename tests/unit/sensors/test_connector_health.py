"""ConnectorHealthSensor and ConnectorHealthTrigger without a real Connect: requests-mock for the
answers' shapes, real local sockets (a closed port, a black hole) for a Connect that is not there."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred

from airflow_mesh.hooks.kafka_connect import ConnectorNotFoundError
from airflow_mesh.sensors.kafka_connect import STATE_KEY, ConnectorHealthSensor
from airflow_mesh.triggers.kafka_connect import ConnectorHealthTrigger

CONN_ID = "kc_sensor_test"
URL = "http://connect.test:8083"
STATUS = f"{URL}/connectors/orders-cdc/status"


def connect_status(*tasks: str, connector: str = "RUNNING") -> dict[str, Any]:
    return {"name": "orders-cdc", "connector": {"state": connector, "worker_id": "w:8083"},
            "tasks": [{"id": i, "state": s, "worker_id": "w:8083", **({"trace": "java.lang.Boom"} if s == "FAILED"
                                                                       else {})} for i, s in enumerate(tasks)]}


@pytest.fixture
def connection(monkeypatch: pytest.MonkeyPatch):
    def define(host: str = "connect.test", port: int = 8083) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}",
                           json.dumps({"conn_type": "kafka_connect", "host": host, "port": port}))
    define()
    return define


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def black_hole(connection) -> Iterator[int]:
    """A TCP socket that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        connection("127.0.0.1", port)
        yield port


def sensor(**kwargs: Any) -> ConnectorHealthSensor:
    kwargs.setdefault("deferrable", False)
    return ConnectorHealthSensor(task_id="wait", connector_name="orders-cdc", kafka_connect_conn_id=CONN_ID, **kwargs)


class FakeStateStore:
    """The task state store's interface (get/set) over a dict: it stands for the store of the
    Airflow API server, which outlives the sensor's process between reschedules."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.values[key])) if key in self.values else default

    def set(self, key: str, value: Any, *, retention: timedelta | None = None) -> None:
        self.values[key] = json.loads(json.dumps(value))


class FakeTI:
    def __init__(self, try_number: int = 1) -> None:
        self.try_number = try_number


# ---------------------------------------------------------------- poke


class TestPoke:
    def test_healthy_for_long_enough_succeeds(self, connection, requests_mock, monkeypatch):
        requests_mock.get(STATUS, json=connect_status("RUNNING"))
        clock = iter([100.0, 102.0, 106.0])
        monkeypatch.setattr("airflow_mesh.sensors.kafka_connect.wall_clock", lambda: next(clock))
        s = sensor(healthy_for=5)
        assert [s.poke({}), s.poke({}), s.poke({})] == [False, False, True]

    def test_a_failed_task_is_restarted_then_fails_the_sensor_with_its_trace(self, connection, requests_mock):
        requests_mock.get(STATUS, json=connect_status("FAILED"))
        restart = requests_mock.post(f"{URL}/connectors/orders-cdc/restart", status_code=202)
        s = sensor(restart_failed_tasks=1)
        assert s.poke({}) is False
        assert restart.call_count == 1
        with pytest.raises(AirflowException, match=r"java\.lang\.Boom"):
            s.poke({})

    def test_an_unknown_connector_fails(self, connection, requests_mock):
        requests_mock.get(STATUS, status_code=404, json={"error_code": 404, "message": "No status found"})
        requests_mock.get(f"{URL}/connectors/orders-cdc", status_code=404,
                          json={"error_code": 404, "message": "Connector orders-cdc not found"})
        with pytest.raises(ConnectorNotFoundError, match="returned 404"):
            sensor().poke({})

    @pytest.mark.parametrize("answer", [
        {"status_code": 404, "text": "<html><body>Not Found</body></html>"},  # Jetty while the worker starts
        {"status_code": 409, "json": {"error_code": 409, "message": "rebalance in progress"}},
        {"status_code": 503, "text": "Service Unavailable"},
    ])
    def test_a_worker_that_is_not_ready_is_not_yet_healthy(self, connection, requests_mock, answer):
        requests_mock.get(STATUS, **answer)
        requests_mock.get(f"{URL}/connectors/orders-cdc", **answer)
        s = sensor(call_timeout=0.5)
        assert s.poke({}) is False
        assert "not yet healthy: Kafka Connect at http://connect.test:8083 not ready" in s.observe().summary()

    def test_a_refused_connection_is_not_yet_healthy_and_the_poke_is_short(self, connection):
        port = closed_port()
        connection("127.0.0.1", port)
        s = sensor(call_timeout=2)
        started = time.monotonic()
        assert s.poke({}) is False
        assert time.monotonic() - started < 2.5
        assert s.observe().summary() == (f"connector orders-cdc not yet healthy: Kafka Connect at "
                                         f"http://127.0.0.1:{port} unreachable (connection refused)")

    def test_a_connect_that_never_answers_is_not_yet_healthy_within_the_call_timeout(self, black_hole):
        s = sensor(call_timeout=1.5)
        started = time.monotonic()
        health = s.observe()
        assert time.monotonic() - started < 2.5
        assert health.summary().startswith(f"connector orders-cdc not yet healthy: Kafka Connect at "
                                           f"http://127.0.0.1:{black_hole} unreachable (no answer within")


# ---------------------------------------------------------------- reschedule mode


class TestReschedule:
    def test_state_survives_a_new_sensor_object_per_poke(self, connection, requests_mock, monkeypatch):
        """Each poke of a rescheduled sensor runs in a new process: a new object, only the store survives."""
        requests_mock.get(STATUS, json=connect_status("RUNNING"))
        store, ti = FakeStateStore(), FakeTI()
        context = {"task_state_store": store, "ti": ti}
        clock = iter([100.0, 103.0, 106.0])
        monkeypatch.setattr("airflow_mesh.sensors.kafka_connect.wall_clock", lambda: next(clock))
        results = [sensor(mode="reschedule", healthy_for=5).poke(context) for _ in range(3)]
        assert results == [False, False, True]
        assert store.values[STATE_KEY] == {"restarts_done": 0, "healthy_since": 100.0, "polls": 3, "try_number": 1}

    def test_the_restart_budget_survives_and_then_fails(self, connection, requests_mock):
        requests_mock.get(STATUS, json=connect_status("FAILED"))
        restart = requests_mock.post(f"{URL}/connectors/orders-cdc/restart", status_code=202)
        context = {"task_state_store": FakeStateStore(), "ti": FakeTI()}
        assert sensor(mode="reschedule", restart_failed_tasks=1).poke(context) is False
        with pytest.raises(AirflowException, match="FAILED"):
            sensor(mode="reschedule", restart_failed_tasks=1).poke(context)
        assert restart.call_count == 1

    def test_a_new_try_starts_afresh(self, connection, requests_mock):
        requests_mock.get(STATUS, json=connect_status("FAILED"))
        requests_mock.post(f"{URL}/connectors/orders-cdc/restart", status_code=202)
        store = FakeStateStore()
        store.set(STATE_KEY, {"restarts_done": 1, "healthy_since": None, "polls": 9, "try_number": 1})
        assert sensor(mode="reschedule", restart_failed_tasks=1).poke({"task_state_store": store,
                                                                        "ti": FakeTI(2)}) is False
        assert store.values[STATE_KEY]["restarts_done"] == 1 and store.values[STATE_KEY]["try_number"] == 2

    def test_reschedule_without_a_state_store_is_refused(self, connection):
        with pytest.raises(AirflowException, match="use deferrable=True instead"):
            sensor(mode="reschedule").execute({"ti": FakeTI()})

    def test_poke_mode_keeps_nothing_in_the_store(self, connection, requests_mock):
        requests_mock.get(STATUS, json=connect_status("RUNNING"))
        store = FakeStateStore()
        sensor(healthy_for=100).poke({"task_state_store": store, "ti": FakeTI()})
        assert store.values == {}


# ---------------------------------------------------------------- the deferred path


class TestDeferred:
    def test_execute_defers_to_the_trigger_with_the_sensors_timeout(self, connection):
        s = sensor(deferrable=True, timeout=120, poke_interval=3, restart_failed_tasks=2, healthy_for=7,
                   call_timeout=4)
        with pytest.raises(TaskDeferred) as deferred:
            s.execute({})
        assert deferred.value.method_name == "execute_complete"
        assert deferred.value.timeout == timedelta(seconds=120)
        trigger = deferred.value.trigger
        assert isinstance(trigger, ConnectorHealthTrigger)
        assert trigger.serialize()[1] == {"connector_name": "orders-cdc", "kafka_connect_conn_id": CONN_ID,
                                          "poll_interval": 3, "restart_failed_tasks": 2, "healthy_for": 7,
                                          "call_timeout": 4}

    def test_execute_complete_healthy_returns_the_summary(self):
        assert sensor().execute_complete({}, {"status": "healthy", "message": "connector x is RUNNING"}) == \
            "connector x is RUNNING"

    @pytest.mark.parametrize("status", ["failed", "error"])
    def test_execute_complete_otherwise_fails_with_the_message(self, status):
        with pytest.raises(AirflowException, match="task 0 trace"):
            sensor().execute_complete({}, {"status": status, "message": "task 0 trace: java.lang.Boom"})


# ---------------------------------------------------------------- the trigger


def test_trigger_serialize_round_trip():
    trigger = ConnectorHealthTrigger("orders-cdc", CONN_ID, poll_interval=2.5, restart_failed_tasks=3,
                                     healthy_for=9.0, call_timeout=4.0)
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(__import__(module, fromlist=[name]), name)(**kwargs)
    assert type(rebuilt) is ConnectorHealthTrigger
    assert rebuilt.serialize() == (classpath, kwargs)
    assert json.loads(json.dumps(kwargs)) == kwargs


async def first_event(trigger: ConnectorHealthTrigger, within: float) -> dict[str, Any] | None:
    """The trigger's first event, or None when it has yielded none within ``within`` seconds."""
    runner = trigger.run().__anext__()
    try:
        return (await asyncio.wait_for(runner, within)).payload
    except asyncio.TimeoutError:
        return None


class TestTrigger:
    def test_healthy(self, connection, requests_mock):
        requests_mock.get(STATUS, json=connect_status("RUNNING", "RUNNING"))
        event = asyncio.run(first_event(ConnectorHealthTrigger("orders-cdc", CONN_ID, poll_interval=0.05), 5))
        assert event == {"status": "healthy", "message": "connector orders-cdc is RUNNING "
                                                         "(task 0 RUNNING, task 1 RUNNING)"}

    def test_failed_after_the_restart_budget(self, connection, requests_mock):
        requests_mock.get(STATUS, json=connect_status("FAILED"))
        restart = requests_mock.post(f"{URL}/connectors/orders-cdc/restart", status_code=202)
        trigger = ConnectorHealthTrigger("orders-cdc", CONN_ID, poll_interval=0.05, restart_failed_tasks=2)
        event = asyncio.run(first_event(trigger, 5))
        assert event is not None and event["status"] == "failed" and "java.lang.Boom" in event["message"]
        assert restart.call_count == 2

    def test_an_unreachable_connect_keeps_the_trigger_waiting(self, connection):
        connection("127.0.0.1", closed_port())
        trigger = ConnectorHealthTrigger("orders-cdc", CONN_ID, poll_interval=0.1, call_timeout=1)
        assert asyncio.run(first_event(trigger, 2.0)) is None  # no "error" event: still waiting

    def test_a_connect_that_never_answers_keeps_the_trigger_waiting(self, black_hole):
        trigger = ConnectorHealthTrigger("orders-cdc", CONN_ID, poll_interval=0.1, call_timeout=0.5)
        assert asyncio.run(first_event(trigger, 2.0)) is None

    def test_a_real_error_ends_the_wait(self, connection, requests_mock):
        requests_mock.get(STATUS, status_code=401, text="Unauthorized")
        event = asyncio.run(first_event(ConnectorHealthTrigger("orders-cdc", CONN_ID, poll_interval=0.05), 5))
        assert event == {"status": "error", "message": f"connector orders-cdc: Kafka Connect GET {STATUS} "
                                                       "returned 401: Unauthorized"}
