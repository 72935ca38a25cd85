"""Judging a running processor's Flink job from Flink's REST answers: healthy, not yet, or failed.

Healthy means: the job RUNNING and every one of its vertices RUNNING (a job reports RUNNING before
its tasks do, and restoring state happens before a task runs), restarts within a threshold, and the
latest completed checkpoint younger than a threshold. Pure logic: the caller fetches the answers.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Flink job states from which a job never runs again.
ENDED_STATES = frozenset({"FAILED", "CANCELED", "FINISHED", "CANCELLING"})


class Health(str, enum.Enum):
    """Where a job stands for someone waiting for it to run."""

    HEALTHY = "healthy"
    PENDING = "pending"
    FAILED = "failed"


@dataclass(frozen=True)
class HealthPolicy:
    """What healthy requires beyond every vertex RUNNING.

    Attributes:
        max_restarts: Restarts the job may have had (Flink's ``numRestarts``) and still be healthy;
            more mean it is failing over and over, which counts as failed.
        max_checkpoint_age: Seconds the latest completed checkpoint may be old (since the job
            started, when none has completed yet); None skips the check (e.g. no checkpointing).
    """

    max_restarts: int = 0
    max_checkpoint_age: float | None = None


@dataclass(frozen=True)
class JobHealth:
    """The assessment of one job at one moment.

    Attributes:
        job_id: The job's id.
        name: The job's name.
        state: The job's state (RUNNING, FAILED, ...).
        health: The verdict.
        vertex_states: How many vertices are in each status.
        restarts: How many times the job restarted.
        checkpoint_age: Seconds since the latest completed checkpoint (since the job started when
            none has), None when not checked.
        reasons: Why the job is not healthy (empty when it is).
        failure: Flink's account of the job's latest failure, when the caller attached it.
    """

    job_id: str
    name: str
    state: str
    health: Health
    vertex_states: dict[str, int]
    restarts: int
    checkpoint_age: float | None = None
    reasons: tuple[str, ...] = ()
    failure: str | None = field(default=None, compare=False)

    def summary(self) -> str:
        """One line: the job, its state, its vertices and why it is not healthy."""
        vertices = ", ".join(f"{count} {status}" for status, count in sorted(self.vertex_states.items())) or "none"
        line = f"Flink job {self.name} ({self.job_id}) is {self.state}, vertices: {vertices}; restarts: {self.restarts}"
        if self.checkpoint_age is not None:
            line += f"; latest checkpoint {self.checkpoint_age:.0f}s ago"
        return line + (f" ({'; '.join(self.reasons)})" if self.reasons else "")

    def failure_message(self) -> str:
        """The summary followed by Flink's account of the failure, when known."""
        return self.summary() + (f"\n{self.failure}" if self.failure else "")


def checkpoint_age(job: dict[str, Any], checkpoints: dict[str, Any]) -> float:
    """Seconds, by the JobManager's clock, since the latest completed checkpoint, or since the job
    started when none has completed.

    Args:
        job: Flink's ``GET /jobs/{id}`` answer (its ``now`` and ``start-time``).
        checkpoints: Flink's ``GET /jobs/{id}/checkpoints`` answer.
    """
    completed = (checkpoints.get("latest") or {}).get("completed")
    since = completed["latest_ack_timestamp"] if completed else job["start-time"]
    return max(0.0, (job["now"] - since) / 1000)


def assess(job: dict[str, Any], restarts: int, policy: HealthPolicy,
           checkpoints: dict[str, Any] | None = None) -> JobHealth:
    """Judge one job.

    Args:
        job: Flink's ``GET /jobs/{id}`` answer.
        restarts: The job's ``numRestarts`` metric.
        policy: The thresholds.
        checkpoints: Flink's ``GET /jobs/{id}/checkpoints`` answer; needed when the policy has a
            ``max_checkpoint_age``.

    Returns:
        FAILED when the job has ended (FAILED, CANCELED, FINISHED, or on its way) or restarted more
        than allowed; HEALTHY when it and every vertex are RUNNING and the checkpoint is fresh
        enough; PENDING otherwise.
    """
    state = job["state"]
    vertex_states = dict(Counter(vertex["status"] for vertex in job.get("vertices", [])))
    age = None
    if policy.max_checkpoint_age is not None and checkpoints is not None:
        age = checkpoint_age(job, checkpoints)
    reasons = []
    if state in ENDED_STATES:
        reasons.append(f"the job is {state}, it no longer runs")
    if restarts > policy.max_restarts:
        reasons.append(f"it restarted {restarts} times, more than the {policy.max_restarts} allowed")
    if reasons:
        health = Health.FAILED
    else:
        if state != "RUNNING" or set(vertex_states) != {"RUNNING"}:
            running = vertex_states.get("RUNNING", 0)
            reasons.append(f"{running} of {sum(vertex_states.values())} vertices RUNNING")
        if age is not None and age > policy.max_checkpoint_age:
            reasons.append(f"no checkpoint completed in the last {policy.max_checkpoint_age:.0f}s")
        health = Health.PENDING if reasons else Health.HEALTHY
    return JobHealth(job["jid"], job.get("name", "?"), state, health, vertex_states, restarts, age, tuple(reasons))


class Verdict(str, enum.Enum):
    """What a waiter (sensor, trigger, operator) does after an observation."""

    DONE = "done"
    WAIT = "wait"
    FAIL = "fail"


@dataclass
class HealthWatch:
    """The state a waiter keeps between observations of a job, and its verdict on each.

    A job that fails on its first records shows every vertex RUNNING for a moment first, so healthy
    must hold for ``healthy_for`` seconds of consecutive observations of the same job.

    Args:
        healthy_for: Seconds the job must stay healthy.
    """

    healthy_for: float = 0.0
    healthy_since: float | None = None
    job_id: str | None = None

    def observe(self, health: JobHealth, now: float) -> Verdict:
        """Record one observation (``now`` from a monotonic clock) and return the verdict."""
        if health.job_id != self.job_id:
            self.job_id, self.healthy_since = health.job_id, None
        if health.health is Health.FAILED:
            return Verdict.FAIL
        if health.health is Health.PENDING:
            self.healthy_since = None
            return Verdict.WAIT
        if self.healthy_since is None:
            self.healthy_since = now
        return Verdict.DONE if now - self.healthy_since >= self.healthy_for else Verdict.WAIT
