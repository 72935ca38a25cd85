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
