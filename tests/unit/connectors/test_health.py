"""Reading a connector's status and deciding what a waiter does next."""

from __future__ import annotations

import pytest

from airflow_mesh.connectors.health import Health, Step, assess, next_step


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
def test_next_step(answer, done, allowed, step):
    assert next_step(assess(answer), done, allowed) is step
