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
    unavailable: str | None = None  # why Connect could not tell (unreachable, starting, rebalancing)

    def summary(self) -> str:
        """One line: the connector's state and each task's, or why Connect could not tell."""
        if self.unavailable:
            return f"connector {self.name} not yet healthy: {self.unavailable}"
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


def service_unavailable(name: str, reason: str) -> ConnectorHealth:
    """The health of a connector whose Kafka Connect cannot tell now (unreachable, starting, rebalancing).

    Args:
        name: The connector's name.
        reason: One line, e.g. ``Kafka Connect at http://127.0.0.1:8083 unreachable (connection refused)``.

    Returns:
        A PENDING health: a waiter keeps waiting (until its own timeout).
    """
    return ConnectorHealth(name, Health.PENDING, "UNKNOWN", {}, unavailable=reason)


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
    for ``healthy_for`` seconds of consecutive observations before the wait is over. Any other
    observation (pending, unavailable, failed) starts that period again.

    The state that must outlive one process (a sensor in reschedule mode pokes from a new process
    each time) round-trips through ``to_state``/``from_state`` as JSON-able values; its times then
    come from a wall clock, since a monotonic clock is per machine and boot.

    Args:
        max_restarts: How many times failed tasks may be restarted before the wait fails.
        healthy_for: Seconds the connector must stay healthy.
        restarts_done: Restarts made so far.
        healthy_since: When the connector was first seen healthy in the current healthy streak.
        polls: Observations so far.
    """

    max_restarts: int = 0
    healthy_for: float = 0.0
    restarts_done: int = 0
    healthy_since: float | None = None
    polls: int = 0

    def to_state(self) -> dict[str, Any]:
        """What ``from_state`` needs to continue this watch: JSON-able values.

        Returns:
            ``{"restarts_done", "healthy_since", "polls"}``.
        """
        return {"restarts_done": self.restarts_done, "healthy_since": self.healthy_since, "polls": self.polls}

    @classmethod
    def from_state(cls, max_restarts: int, healthy_for: float, state: dict[str, Any] | None) -> HealthWatch:
        """A watch with these settings that continues from ``to_state``'s values (a fresh one for None).

        Args:
            max_restarts: How many times failed tasks may be restarted before the wait fails.
            healthy_for: Seconds the connector must stay healthy.
            state: What ``to_state`` returned, or None.

        Returns:
            The watch.
        """
        state = state or {}
        return cls(max_restarts, healthy_for, int(state.get("restarts_done", 0)), state.get("healthy_since"),
                   int(state.get("polls", 0)))

    def healthy_seconds(self, now: float) -> float:
        """Seconds of the current healthy streak (0 when not healthy)."""
        return 0.0 if self.healthy_since is None else max(0.0, now - self.healthy_since)

    def observe(self, health: ConnectorHealth, now: float) -> Step:
        """Record one observation and return the next step.

        Args:
            health: The assessed status.
            now: The time in seconds, from the same clock for every observation of this watch.

        Returns:
            DONE once healthy for ``healthy_for`` seconds; RESTART for a failure within the restart
            budget (counted here); FAIL for one beyond it; WAIT otherwise.
        """
        self.polls += 1
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
