"""Judging a running Flink job from Flink's REST answers: healthy, not yet, or failed.

Everything is judged on the JobManager's clock from what Flink itself records (when the job last
became RUNNING, the timestamps of its exception history, its checkpoints), so the verdict needs no
memory of earlier observations and holds the same in a sensor that is rescheduled between pokes,
in a trigger, or in an operator's wait.

Healthy means:

- the job RUNNING and every one of its vertices RUNNING (a job reports RUNNING before its tasks do,
  and restoring state happens before a task runs);
- not failing over and over: at most ``max_restarts`` failures in the last ``restart_window``
  seconds, unless a checkpoint completed after the latest failure (the job recovered: a
  TaskManager loss makes Flink restart a job several times while it waits for slots, and Flink's
  own restart count never goes down);
- with checkpointing on, a checkpoint completed in the last ``checkpoint_age_factor`` times the
  job's own checkpoint interval (a stalled job, or a sink that cannot write, e.g. during a Kafka
  outage, completes none);
- for a wait to be over (``Verdict.DONE``): healthy for ``healthy_for`` seconds since the later of
  the job's last failure and the start of the wait, and, with checkpointing on, a checkpoint
  completed after that: only a completed checkpoint proves every task alive, and a TaskManager
  that died is noticed by Flink only after its heartbeat fails (about 10-15 s), while the job still
  shows every vertex RUNNING.

Pure logic: the caller fetches the answers.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Flink job states from which a job never runs again.
ENDED_STATES = frozenset({"FAILED", "CANCELED", "FINISHED", "CANCELLING"})
# Failures of the cluster rather than of the job (a TaskManager lost, no slot for a restart): Flink
# restarts the job for each while the cluster recovers, so they say nothing of the job's own health
# and are not counted against its restart budget; the job is pending until it runs again.
CLUSTER_FAILURES = (
    "NoResourceAvailableException",
    "is no longer reachable",
    "Heartbeat of TaskManager",
    "heartbeat of TaskManager",
    "TaskManager with id",
    "Connection unexpectedly closed by remote task manager",
    "The TaskExecutor is shutting down",
    "Disconnect from JobManager",
    "RemoteTransportException",
    "PartitionConnectionException",
)
# What Flink reports as the interval of a job without checkpointing (Long.MAX_VALUE).
NO_CHECKPOINTING = 2**63 - 1


class Health(str, enum.Enum):
    """Where a job stands for someone waiting for it to run."""

    HEALTHY = "healthy"
    PENDING = "pending"
    FAILED = "failed"


class Verdict(str, enum.Enum):
    """What a waiter (sensor, trigger, operator) does after an observation."""

    DONE = "done"
    WAIT = "wait"
    FAIL = "fail"


@dataclass(frozen=True)
class HealthPolicy:
    """What healthy requires beyond every vertex RUNNING.

    Attributes:
        max_restarts: Failures the job may have had in the last ``restart_window`` seconds and
            still count as healthy; more, with no checkpoint completed since the latest, mean it
            is failing over and over, which counts as failed.
        restart_window: Seconds back from now in which failures are counted.
        checkpoint_age_factor: With checkpointing on, the latest completed checkpoint may be at most
            this many times the job's checkpoint interval old (since the job last became RUNNING,
            when none has completed since); None skips the check.
        max_checkpoint_age: Seconds the latest completed checkpoint may be old, instead of the
            factor; None: use the factor.
        healthy_for: Seconds the job must have been healthy for a wait to be over.
        progress_check: Also require progress: a source with records waiting in its input
            (Flink's ``pendingRecords``, e.g. Kafka lag) must have read some in the last minute
            (its ``numRecordsOutPerSecond``, a one-minute rate). Catches a job that runs and
            checkpoints but reads nothing while its topic grows.
    """

    max_restarts: int = 3
    restart_window: float = 600.0
    checkpoint_age_factor: float | None = 3.0
    max_checkpoint_age: float | None = None
    healthy_for: float = 5.0
    progress_check: bool = False

    def checkpoint_age_limit(self, interval: float | None) -> float | None:
        """Seconds the latest checkpoint may be old for a job checkpointing every ``interval`` seconds.

        Args:
            interval: The job's checkpoint interval in seconds; None when checkpointing is off.

        Returns:
            The limit; None when the age is not checked.
        """
        if self.max_checkpoint_age is not None:
            return self.max_checkpoint_age
        if interval is None or self.checkpoint_age_factor is None:
            return None
        return self.checkpoint_age_factor * interval


@dataclass(frozen=True)
class SourceProgress:
    """What one source operator of a job reports about its input.

    Attributes:
        name: The operator's name in Flink's metrics (e.g. ``Source__orders[1]``).
        pending: Records waiting in its input (Flink's ``pendingRecords``, summed over subtasks).
        rate: Records it read per second over the last minute (``numRecordsOutPerSecond``, summed).
    """

    name: str
    pending: float
    rate: float


@dataclass(frozen=True)
class Observation:
    """Flink's answers about one job at one moment.

    Attributes:
        job: ``GET /jobs/{id}`` (``jid``, ``name``, ``state``, ``now``, ``start-time``,
            ``timestamps``, ``vertices``).
        restarts: The job's ``numRestarts`` metric (every restart since it was submitted).
        exceptions: ``GET /jobs/{id}/exceptions``'s ``exceptionHistory.entries``, newest first.
        checkpoints: ``GET /jobs/{id}/checkpoints``; None when checkpointing is off.
        checkpoint_interval: The job's checkpoint interval in seconds; None when checkpointing is off.
        sources: Each source operator's progress, when fetched (for ``HealthPolicy.progress_check``).
    """

    job: dict[str, Any]
    restarts: int = 0
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: dict[str, Any] | None = None
    checkpoint_interval: float | None = None
    sources: tuple[SourceProgress, ...] = ()


def checkpoint_interval(config: dict[str, Any] | None) -> float | None:
    """The checkpoint interval in seconds from ``GET /jobs/{id}/checkpoints/config``.

    Args:
        config: Flink's answer; None when Flink said checkpointing is not enabled.

    Returns:
        Seconds; None when checkpointing is off.
    """
    if not config:
        return None
    interval = config.get("interval")
    if not interval or interval >= NO_CHECKPOINTING:
        return None
    return interval / 1000


@dataclass(frozen=True)
class JobHealth:
    """The assessment of one job at one moment.

    Attributes:
        job_id: The job's id.
        name: The job's name.
        state: The job's state (RUNNING, FAILED, ...).
        health: The verdict on the job now.
        vertex_states: How many vertices are in each status.
        restarts: How many times the job restarted since it was submitted (Flink's count).
        recent_failures: Failures of the job itself (not of the cluster: CLUSTER_FAILURES) in the restart window.
        healthy_seconds: Seconds the job has been healthy, on the JobManager's clock, since the
            later of its last failure (or becoming RUNNING) and the start of the wait; 0 when not healthy.
        checkpoint_age: Seconds since the latest completed checkpoint (since the job became RUNNING
            when none has), None when checkpointing is off.
        checkpoint_proves: With checkpointing on, whether a checkpoint completed after the healthy
            period began (True when checkpointing is off: nothing to prove).
        latest_checkpoint: The latest completed checkpoint's location (``external_path``), if any.
        healthy_for: Seconds it must be healthy for a wait to be over (the policy's).
        reasons: Why the job is not healthy, or not yet done (empty when it is).
        notes: What a reader should know although the job is healthy (e.g. it recovered).
        failure: Flink's account of the job's latest failure, when the caller attached it.
    """

    job_id: str
    name: str
    state: str
    health: Health
    vertex_states: dict[str, int]
    restarts: int
    recent_failures: int = 0
    healthy_seconds: float = 0.0
    checkpoint_age: float | None = None
    checkpoint_proves: bool = True
    latest_checkpoint: str | None = None
    healthy_for: float = 0.0
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    failure: str | None = field(default=None, compare=False)

    def summary(self) -> str:
        """One line: the job, its state, its vertices, and why it is not healthy."""
        vertices = ", ".join(f"{count} {status}" for status, count in sorted(self.vertex_states.items())) or "none"
        line = (f"Flink job {self.name} ({self.job_id}) is {self.state}, vertices: {vertices}; "
                f"restarts: {self.restarts} ({self.recent_failures} recent)")
        if self.checkpoint_age is not None:
            line += f"; latest checkpoint {self.checkpoint_age:.0f}s ago"
        details = [*self.reasons, *self.notes]
        return line + (f" ({'; '.join(details)})" if details else "")

    def failure_message(self) -> str:
        """The summary followed by Flink's account of the failure, when known."""
        return self.summary() + (f"\n{self.failure}" if self.failure else "")

    def verdict(self) -> Verdict:
        """What a waiter does: DONE once healthy for ``healthy_for`` seconds with a checkpoint to prove it."""
        if self.health is Health.FAILED:
            return Verdict.FAIL
        if self.health is Health.HEALTHY and self.healthy_seconds >= self.healthy_for and self.checkpoint_proves:
            return Verdict.DONE
        return Verdict.WAIT

    def waiting_for(self) -> str:
        """Why a waiter still waits (for its log), or an empty string when it does not."""
        if self.health is not Health.HEALTHY:
            return "; ".join(self.reasons)
        waits = []
        if self.healthy_seconds < self.healthy_for:
            waits.append(f"healthy for {self.healthy_seconds:.0f}s of {self.healthy_for:.0f}s")
        if not self.checkpoint_proves:
            waits.append("waiting for a checkpoint to complete after the job became healthy")
        return "; ".join(waits)


def _latest_completed(checkpoints: dict[str, Any] | None) -> dict[str, Any] | None:
    return ((checkpoints or {}).get("latest") or {}).get("completed")


def checkpoint_age(job: dict[str, Any], checkpoints: dict[str, Any]) -> float:
    """Seconds, by the JobManager's clock, since the latest completed checkpoint, or since the job
    started when none has completed.

    Args:
        job: Flink's ``GET /jobs/{id}`` answer (its ``now`` and ``start-time``).
        checkpoints: Flink's ``GET /jobs/{id}/checkpoints`` answer.

    Returns:
        Seconds, never negative.
    """
    completed = _latest_completed(checkpoints)
    since = completed["latest_ack_timestamp"] if completed else job["start-time"]
    return max(0.0, (job["now"] - since) / 1000)


def assess(observation: Observation, policy: HealthPolicy, since_ms: int | None = None) -> JobHealth:
    """Judge one job.

    Args:
        observation: Flink's answers.
        policy: The thresholds.
        since_ms: When the wait began, in ms since the epoch (the JobManager's clock is taken to
            agree with the caller's); the healthy period starts no earlier. None: since the job's
            last failure or its becoming RUNNING.

    Returns:
        FAILED when the job has ended (FAILED, CANCELED, FINISHED, or on its way) or failed more
        than allowed in the window without recovering; HEALTHY when it and every vertex are RUNNING
        and its checkpoints are fresh enough; PENDING otherwise.
    """
    job = observation.job
    now, state = job["now"], job["state"]
    vertex_states = dict(Counter(vertex["status"] for vertex in job.get("vertices", [])))
    failure_times = [entry["timestamp"] for entry in observation.exceptions if entry.get("timestamp")]
    last_failure = max(failure_times, default=0)
    recent = sum(1 for entry in observation.exceptions
                 if entry.get("timestamp") and now - entry["timestamp"] <= policy.restart_window * 1000
                 and not is_cluster_failure(entry))
    completed = _latest_completed(observation.checkpoints)
    ack = completed["latest_ack_timestamp"] if completed else None
    checkpointing = observation.checkpoint_interval is not None
    running_since = max((job.get("timestamps") or {}).get("RUNNING") or 0, job.get("start-time") or 0)
    reasons: list[str] = []
    notes: list[str] = []
    recovered = checkpointing and ack is not None and ack > last_failure
    if state in ENDED_STATES:
        reasons.append(f"the job is {state}, it no longer runs")
    if recent > policy.max_restarts:
        if recovered and completed is not None:
            notes.append(f"recovered: {recent} failures in the last {policy.restart_window:.0f}s, "
                         f"checkpoint {completed['id']} completed after the latest")
        else:
            reasons.append(f"it failed {recent} times in the last {policy.restart_window:.0f}s, "
                           f"more than the {policy.max_restarts} allowed")
    age = None
    if checkpointing:  # since the latest checkpoint, or since the job last became RUNNING when none has since
        age = max(0.0, (now - max(ack or 0, running_since)) / 1000)
    if reasons:
        return JobHealth(job["jid"], job.get("name", "?"), state, Health.FAILED, vertex_states,
                         observation.restarts, recent, 0.0, age, False,
                         completed.get("external_path") if completed else None, policy.healthy_for,
                         tuple(reasons), tuple(notes))
    if state != "RUNNING" or set(vertex_states) != {"RUNNING"}:
        running = vertex_states.get("RUNNING", 0)
        reasons.append(f"{running} of {sum(vertex_states.values())} vertices RUNNING")
    limit = policy.checkpoint_age_limit(observation.checkpoint_interval)
    if age is not None and limit is not None and age > limit:
        reasons.append(f"no checkpoint completed in the last {age:.0f}s "
                       f"(more than {limit:.0f}s, {_interval_text(observation.checkpoint_interval)})")
    if policy.progress_check:
        reasons += [f"source {source.name} has {source.pending:.0f} records waiting and read none in the last minute"
                    for source in observation.sources if source.pending > 0 and source.rate == 0]
    healthy_since = max(running_since, last_failure, since_ms or 0)
    health = Health.PENDING if reasons else Health.HEALTHY
    healthy_seconds = max(0.0, (now - healthy_since) / 1000) if health is Health.HEALTHY else 0.0
    proves = not checkpointing or (ack is not None and ack >= healthy_since + policy.healthy_for * 1000)
    return JobHealth(job["jid"], job.get("name", "?"), state, health, vertex_states, observation.restarts, recent,
                     healthy_seconds, age, proves, completed.get("external_path") if completed else None,
                     policy.healthy_for, tuple(reasons), tuple(notes))


def is_cluster_failure(entry: dict[str, Any]) -> bool:
    """Whether an exception history entry is a failure of the cluster (a lost TaskManager, no slot), not of the job.

    Args:
        entry: One entry of ``GET /jobs/{id}/exceptions``'s ``exceptionHistory.entries``.
    """
    text = f"{entry.get('exceptionName', '')}\n{(entry.get('stacktrace') or '')[:4000]}"
    return any(marker in text for marker in CLUSTER_FAILURES)


def _interval_text(interval: float | None) -> str:
    return f"the job checkpoints every {interval:g}s" if interval is not None else "no checkpointing"
