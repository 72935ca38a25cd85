"""Reading a Kafka Connect connector's status: healthy, failed, or not there yet."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Health(str, enum.Enum):
    """Where a connector stands, from the point of view of someone waiting for it to run."""

    HEALTHY = "healthy"  # the connector and every task are RUNNING
    FAILED = "failed"  # the connector or a task is FAILED
    PENDING = "pending"  # anything else: UNASSIGNED, RESTARTING, PAUSED, STOPPED, no task yet


@dataclass(frozen=True)
class FailedTask:
    """A FAILED task with the stack trace Kafka Connect reports for it."""

    task_id: int
    worker_id: str
    trace: str


@dataclass(frozen=True)
class ConnectorHealth:
    """The assessment of one ``GET /connectors/{name}/status`` answer."""

    name: str
    health: Health
    connector_state: str
    task_states: dict[int, str]
    failed_tasks: list[FailedTask] = field(default_factory=list)
    connector_trace: str | None = None

    def summary(self) -> str:
        """One line: the connector's state and each task's."""
        tasks = ", ".join(f"task {tid} {state}" for tid, state in sorted(self.task_states.items())) or "no tasks"
        return f"connector {self.name} is {self.connector_state} ({tasks})"

    def failure_message(self) -> str:
        """The summary followed by the real error text of every failed part."""
        parts = [self.summary()]
        if self.connector_trace:
            parts.append(f"connector trace:\n{self.connector_trace}")
        parts += [f"task {task.task_id} on {task.worker_id} trace:\n{task.trace}" for task in self.failed_tasks]
        return "\n".join(parts)


def not_yet_reported(name: str) -> ConnectorHealth:
    """The health of a connector that exists but has no status yet (just created, or rebalancing)."""
    return ConnectorHealth(name, Health.PENDING, "NOT YET REPORTED", {})


def assess(status: dict[str, Any]) -> ConnectorHealth:
    """Judge a connector's status answer.

    Args:
        status: Kafka Connect's ``GET /connectors/{name}/status`` JSON.

    Returns:
        HEALTHY when the connector and at least one task are RUNNING and no task is otherwise;
        FAILED when the connector or any task is FAILED; PENDING in every other case.
    """
    connector = status.get("connector", {})
    tasks = status.get("tasks", [])
    task_states = {task["id"]: task["state"] for task in tasks}
    failed = [FailedTask(task["id"], task.get("worker_id", "?"), task.get("trace", "(no trace)"))
              for task in tasks if task["state"] == "FAILED"]
    connector_state = connector.get("state", "UNKNOWN")
    if connector_state == "FAILED" or failed:
        health = Health.FAILED
    elif connector_state == "RUNNING" and tasks and all(state == "RUNNING" for state in task_states.values()):
        health = Health.HEALTHY
    else:
        health = Health.PENDING
    trace = connector.get("trace") if connector_state == "FAILED" else None
    return ConnectorHealth(status.get("name", "?"), health, connector_state, task_states, failed, trace)


class Step(str, enum.Enum):
    """What a waiter (sensor or trigger) does next with an assessed connector."""

    DONE = "done"
    WAIT = "wait"
    RESTART = "restart"
    FAIL = "fail"


@dataclass
class HealthWatch:
    """The state a waiter keeps between polls, and its decision for each observation.

    A task that fails while snapshotting reports RUNNING for a moment first, so "healthy" must hold
    for ``healthy_for`` seconds of consecutive observations before the wait is over.

    Args:
        max_restarts: How many times failed tasks may be restarted before the wait fails.
        healthy_for: Seconds the connector must stay healthy.
    """

    max_restarts: int = 0
    healthy_for: float = 0.0
    restarts_done: int = 0
    healthy_since: float | None = None

    def observe(self, health: ConnectorHealth, now: float) -> Step:
        """Record one observation (``now`` from a monotonic clock) and return the next step."""
        if health.health is Health.HEALTHY:
            if self.healthy_since is None:
                self.healthy_since = now
            return Step.DONE if now - self.healthy_since >= self.healthy_for else Step.WAIT
        self.healthy_since = None
        if health.health is Health.FAILED:
            if self.restarts_done < self.max_restarts:
                self.restarts_done += 1
                return Step.RESTART
            return Step.FAIL
        return Step.WAIT
