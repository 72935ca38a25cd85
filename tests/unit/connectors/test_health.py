"""Reading a connector's status and deciding what a waiter does next."""

from __future__ import annotations

import pytest

from airflow_mesh.connectors.health import Health, HealthWatch, Step, assess


def status(connector: str, *tasks: str, trace: str = "java.lang.Boom") -> dict:
    return {
        "name": "c",
        "connector": {"state": connector, "worker_id": "w:8083", **({"trace": trace} if connector == "FAILED" else {})},
        "tasks": [{"id": i, "state": s, "worker_id": "w:8083", **({"trace": f"{trace} {i}"} if s == "FAILED" else {})}
                  for i, s in enumerate(tasks)],
    }


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (status("RUNNING", "RUNNING", "RUNNING"), Health.HEALTHY),
        (status("RUNNING"), Health.PENDING),  # no task assigned yet
        (status("RUNNING", "RUNNING", "UNASSIGNED"), Health.PENDING),
        (status("UNASSIGNED"), Health.PENDING),
        (status("PAUSED", "PAUSED"), Health.PENDING),
        (status("STOPPED"), Health.PENDING),
        (status("RUNNING", "RUNNING", "FAILED"), Health.FAILED),
        (status("FAILED"), Health.FAILED),
    ],
)
def test_assess(answer, expected):
    assert assess(answer).health is expected


def test_failure_message_carries_each_trace():
    health = assess(status("RUNNING", "RUNNING", "FAILED", trace="org.postgresql.util.PSQLException: password"))
    message = health.failure_message()
    assert "connector c is RUNNING (task 0 RUNNING, task 1 FAILED)" in message
    assert "task 1 on w:8083 trace:\norg.postgresql.util.PSQLException: password 1" in message


@pytest.mark.parametrize(
    ("answer", "done", "allowed", "step"),
    [
        (status("RUNNING", "RUNNING"), 0, 0, Step.DONE),
        (status("RUNNING", "UNASSIGNED"), 0, 3, Step.WAIT),
        (status("RUNNING", "FAILED"), 0, 0, Step.FAIL),
        (status("RUNNING", "FAILED"), 1, 2, Step.RESTART),
        (status("RUNNING", "FAILED"), 2, 2, Step.FAIL),
    ],
)
def test_watch_decides_the_next_step(answer, done, allowed, step):
    watch = HealthWatch(max_restarts=allowed, restarts_done=done)
    assert watch.observe(assess(answer), now=0.0) is step
    assert watch.restarts_done == done + (step is Step.RESTART)


def test_watch_wants_health_to_last():
    watch = HealthWatch(healthy_for=5)
    healthy, failing = assess(status("RUNNING", "RUNNING")), assess(status("RUNNING", "FAILED"))
    assert watch.observe(healthy, now=0) is Step.WAIT
    assert watch.observe(healthy, now=4) is Step.WAIT
    assert watch.observe(healthy, now=5) is Step.DONE
    # A failure in between starts the clock again (and, with no restarts left, fails).
    watch = HealthWatch(healthy_for=5, max_restarts=1)
    assert watch.observe(healthy, now=0) is Step.WAIT
    assert watch.observe(failing, now=3) is Step.RESTART
    assert watch.observe(healthy, now=6) is Step.WAIT
    assert watch.observe(healthy, now=11) is Step.DONE


# ---------------------------------------------------------------- the watch's state across polls and processes


def test_a_watch_continues_from_its_state_in_another_process():
    first = HealthWatch(max_restarts=2, healthy_for=10)
    assert first.observe(assess(status("RUNNING", "FAILED")), now=100.0) is Step.RESTART
    assert first.observe(assess(status("RUNNING", "RUNNING")), now=105.0) is Step.WAIT
    state = first.to_state()
    assert state == {"restarts_done": 1, "healthy_since": 105.0, "polls": 2}
    second = HealthWatch.from_state(2, 10, state)  # e.g. the next poke of a rescheduled sensor
    assert second.observe(assess(status("RUNNING", "RUNNING")), now=115.0) is Step.DONE
    assert second.polls == 3


def test_the_restart_budget_survives_the_round_trip():
    watch = HealthWatch.from_state(1, 0, {"restarts_done": 1, "healthy_since": None, "polls": 4})
    assert watch.observe(assess(status("RUNNING", "FAILED")), now=1.0) is Step.FAIL


def test_no_state_is_a_fresh_watch():
    assert HealthWatch.from_state(3, 5.0, None) == HealthWatch(3, 5.0)


def test_connect_unavailable_is_pending_and_restarts_the_healthy_period():
    from airflow_mesh.connectors.health import service_unavailable

    watch = HealthWatch(healthy_for=10)
    assert watch.observe(assess(status("RUNNING", "RUNNING")), now=0.0) is Step.WAIT
    down = service_unavailable("c", "Kafka Connect at http://127.0.0.1:8083 unreachable (connection refused)")
    assert down.health is Health.PENDING
    assert down.summary() == ("connector c not yet healthy: "
                              "Kafka Connect at http://127.0.0.1:8083 unreachable (connection refused)")
    assert watch.observe(down, now=5.0) is Step.WAIT
    assert watch.healthy_since is None
    assert watch.observe(assess(status("RUNNING", "RUNNING")), now=12.0) is Step.WAIT  # a new period from 12
    assert watch.observe(assess(status("RUNNING", "RUNNING")), now=22.0) is Step.DONE
