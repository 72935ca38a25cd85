"""FlinkJobHealthSensor and FlinkJobHealthTrigger without a real Flink: requests-mock for the
JobManager's answers, a closed local port for a JobManager that is not there."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred

from airflow_mesh.sensors.flink import FlinkJobHealthSensor
from airflow_mesh.triggers.flink import FlinkJobHealthTrigger

CONN_ID = "flink_sensor_test"
URL = "http://flink.test:8081"


@pytest.fixture(autouse=True)
def connection(monkeypatch: pytest.MonkeyPatch):
    def define(host: str = "flink.test", port: int = 8081) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}",
                           json.dumps({"conn_type": "flink", "host": host, "port": port}))
    define()
    return define


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def mock_flink(requests_mock, *, state: str = "RUNNING", vertex: str = "RUNNING", running_since_s: float = 60,
               ack_ago_s: float | None = 1, failures_ago_s: tuple[float, ...] = (), restarts: int = 0) -> int:
    """A job j1 whose answers are computed at request time; returns the JobManager's 'now' at set-up (ms)."""
    start = int(time.time() * 1000)

    def now() -> int:
        return int(time.time() * 1000)

    requests_mock.get(f"{URL}/jobs/j1", json=lambda request, context: {
        "jid": "j1", "name": "orders", "state": state, "now": now(), "start-time": start - 900_000,
        "timestamps": {"RUNNING": start - int(running_since_s * 1000)},
        "vertices": [{"id": "v1", "status": vertex}]})
    requests_mock.get(f"{URL}/jobs/j1/metrics", json=[{"id": "numRestarts", "value": str(restarts)}])
    requests_mock.get(f"{URL}/jobs/j1/exceptions", json={"exceptionHistory": {"entries": [
        {"exceptionName": "java.lang.RuntimeException", "stacktrace": "java.lang.RuntimeException: boom",
         "timestamp": start - int(ago * 1000)} for ago in failures_ago_s]}})
    requests_mock.get(f"{URL}/jobs/j1/checkpoints/config", json={"interval": 1_000, "timeout": 60_000})
    requests_mock.get(f"{URL}/jobs/j1/checkpoints", json=lambda request, context: {"latest": {"completed": None if
                      ack_ago_s is None else {"id": 9, "latest_ack_timestamp": now() - int(ack_ago_s * 1000),
                                              "external_path": "file:/cp/j1/chk-9"}}})
    return start


def sensor(**kwargs: Any) -> FlinkJobHealthSensor:
    kwargs.setdefault("deferrable", False)
    kwargs.setdefault("job_id", "j1")
    return FlinkJobHealthSensor(task_id="health", flink_conn_id=CONN_ID, **kwargs)


class TestTrigger:
    def test_serialize_round_trip(self):
        trigger = FlinkJobHealthTrigger(job_name="orders", flink_conn_id=CONN_ID, poll_interval=2, max_restarts=1,
                                        restart_window=60, checkpoint_age_factor=None, max_checkpoint_age=40,
                                        healthy_for=3, since_ms=1_234)
        classpath, kwargs = trigger.serialize()
        module, _, name = classpath.rpartition(".")
        rebuilt = getattr(__import__(module, fromlist=[name]), name)(**kwargs)
        assert rebuilt.serialize() == (classpath, kwargs)
        assert kwargs["since_ms"] == 1_234 and kwargs["checkpoint_age_factor"] is None

    def test_a_healthy_job_ends_the_wait(self, requests_mock):
        mock_flink(requests_mock, ack_ago_s=0)
        trigger = FlinkJobHealthTrigger(job_id="j1", flink_conn_id=CONN_ID, poll_interval=0.1, healthy_for=0,
                                        since_ms=int(time.time() * 1000) - 5_000)
        event = asyncio.run(anext(trigger.run()))
        assert event.payload["status"] == "healthy", event.payload

    def test_a_failed_job_fails_the_wait_with_flinks_cause(self, requests_mock):
        mock_flink(requests_mock, state="FAILED", vertex="FAILED", failures_ago_s=(1,))
        trigger = FlinkJobHealthTrigger(job_id="j1", flink_conn_id=CONN_ID, poll_interval=0.1)
        event = asyncio.run(anext(trigger.run()))
        assert event.payload["status"] == "failed"
        assert "java.lang.RuntimeException: boom" in event.payload["message"]

    def test_an_unreachable_jobmanager_is_waited_for(self, connection):
        connection("127.0.0.1", closed_port())
        trigger = FlinkJobHealthTrigger(job_id="j1", flink_conn_id=CONN_ID, poll_interval=0.1)

        async def first_event_within(seconds: float):
            return await asyncio.wait_for(anext(trigger.run()), seconds)

        with pytest.raises(TimeoutError):  # no event: it keeps waiting (the task's defer timeout bounds it)
            asyncio.run(first_event_within(3))


class TestSensor:
    def test_deferrable_hands_the_wait_to_the_trigger_with_its_timeout(self):
        with pytest.raises(TaskDeferred) as deferred:
            sensor(deferrable=True, timeout=120, max_restarts=2).execute({})
        trigger, timeout = deferred.value.trigger, deferred.value.timeout
        assert isinstance(trigger, FlinkJobHealthTrigger)
        assert (trigger.job_id, trigger.max_restarts, timeout) == ("j1", 2, timedelta(seconds=120))
        assert abs(trigger.since_ms - time.time() * 1000) < 5_000
        assert deferred.value.method_name == "execute_complete"

    def test_execute_complete(self):
        assert sensor().execute_complete({}, {"status": "healthy", "message": "ok"}) == "ok"
        with pytest.raises(AirflowException, match="boom"):
            sensor().execute_complete({}, {"status": "failed", "message": "boom"})

    def test_poke_waits_for_healthy_for_and_a_checkpoint(self, requests_mock):
        mock_flink(requests_mock, ack_ago_s=0)
        waiting = sensor(healthy_for=30)
        assert waiting.poke({}) is False  # healthy for 0 s of 30 s since the first poke
        assert sensor(healthy_for=0).poke({}) is True

    def test_an_unreachable_jobmanager_is_not_yet_healthy(self, connection, capsys):
        port = closed_port()
        connection("127.0.0.1", port)
        started = time.monotonic()
        assert sensor().poke({}) is False
        assert time.monotonic() - started < 15
        assert f"Not yet healthy: Flink at http://127.0.0.1:{port} is unreachable: connection refused" in \
            capsys.readouterr().out

    def test_a_vanished_job_fails_the_sensor_saying_so(self, requests_mock):
        requests_mock.get(f"{URL}/jobs/j1", status_code=404, json={"errors": [
            "org.apache.flink.runtime.rest.NotFoundException: Job j1 not found"]})
        requests_mock.get(f"{URL}/jobmanager/config", json=[])
        with pytest.raises(AirflowException, match=r"Flink job 'j1' is unknown to the Flink cluster at "
                                                   r"http://flink.test:8081: the JobManager lost it"):
            sensor().poke({})

    def test_reschedule_mode_counts_from_the_first_try(self, requests_mock):
        """No state on the object: in reschedule mode the healthy period starts at Airflow's first reschedule."""
        mock_flink(requests_mock, ack_ago_s=0)

        class TI:
            def __init__(self, first: datetime) -> None:
                self.first = first

            def get_first_reschedule_date(self, context: Any) -> datetime:
                return self.first

        long_ago = datetime.now(timezone.utc) - timedelta(seconds=60)
        assert sensor(mode="reschedule", healthy_for=30).poke({"ti": TI(long_ago)}) is True
        just_now = datetime.now(timezone.utc)
        assert sensor(mode="reschedule", healthy_for=30).poke({"ti": TI(just_now)}) is False
