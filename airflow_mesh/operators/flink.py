"""Operators that submit, stop, cancel and upgrade Flink jobs on a session cluster.

What a job runs is a program of ``airflow_mesh.flink.programs`` (re-exported here): ``FlinkSql``,
``FlinkProcessor``, ``PyFlinkProgram`` or ``FlinkJar``. The job's name identifies it across runs:
submitting a name that already runs reconnects to that job, and upgrading a name replaces the job
that runs under it. The id a name runs as is recorded beside the cluster's checkpoints, so that a
job the JobManager lost (a restart without high availability) is resumed from its latest retained
checkpoint instead of starting over.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any, NoReturn

from airflow.sdk import BaseOperator, ResumableJobMixin
from airflow.sdk.exceptions import AirflowException

from airflow_mesh.flink.checkpoints import JobRecord
from airflow_mesh.flink.health import ENDED_STATES, HealthPolicy, JobHealth
from airflow_mesh.flink.programs import (
    KAFKA_DEFAULT,
    FlinkJar,
    FlinkProcessor,
    FlinkProgram,
    FlinkSql,
    PyFlinkProgram,
    RunSettings,
)
from airflow_mesh.hooks.flink import FlinkHook, FlinkJobNotFoundError

__all__ = [
    "KAFKA_DEFAULT",
    "CancelFlinkJobOperator",
    "FlinkJar",
    "FlinkProcessor",
    "FlinkProgram",
    "FlinkSql",
    "PyFlinkProgram",
    "RunSettings",
    "StopFlinkJobOperator",
    "SubmitFlinkJobOperator",
    "UpgradeFlinkJobOperator",
]


class _FlinkOperator(BaseOperator):
    """Base of the operators talking to one Flink cluster."""

    ui_color = "#f3e8fd"

    def __init__(self, *, flink_conn_id: str = FlinkHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.flink_conn_id = flink_conn_id

    @cached_property
    def hook(self) -> FlinkHook:
        return FlinkHook(self.flink_conn_id)

    def _record(self, job_name: str, job_id: str, checkpoint: str | None = None,
                fingerprint: str | None = None) -> None:
        """Record the id a name runs as (its latest checkpoint, its declaration's digest) beside the checkpoints."""
        try:
            if not self.hook.write_job_record(JobRecord(job_name, job_id, checkpoint, fingerprint)):
                self.log.warning("The Flink cluster has no execution.checkpointing.dir: if its JobManager loses "
                                 "job %s, it cannot be resumed from a checkpoint", job_name)
        except OSError as exc:
            self.log.warning("Cannot record Flink job %s (%s) beside the cluster's checkpoints: %s; if the "
                             "JobManager loses it, it cannot be resumed automatically", job_name, job_id, exc)

    def _lost_job_checkpoint(self, job_name: str) -> tuple[str, str] | None:
        """The job a name last ran as, when the cluster lost it or it failed, and its latest retained checkpoint.

        A job that was cancelled (its state dropped on purpose) or stopped with a savepoint (resumed
        from that savepoint when asked) is not resumed from a checkpoint.

        Returns:
            ``(job id, checkpoint)``; None when there is nothing to resume.
        """
        try:
            record = self.hook.read_job_record(job_name)
        except OSError as exc:
            self.log.warning("Cannot read the record of Flink job %s: %s", job_name, exc)
            return None
        if record is None:
            return None
        try:
            state = self.hook.get_job(record.job_id)["state"]
        except FlinkJobNotFoundError:
            state = None
        if state not in (None, "FAILED"):
            return None
        what = "the cluster no longer knows (its JobManager lost it)" if state is None else "FAILED"
        checkpoint = self.hook.latest_retained_checkpoint(record.job_id)
        if checkpoint is None:
            self.log.warning("Flink job %s last ran as %s, which %s, and left no retained checkpoint: it starts "
                             "from scratch", job_name, record.job_id, what)
            return None
        self.log.warning("Flink job %s last ran as %s, which %s: resuming it from its latest retained "
                         "checkpoint %s", job_name, record.job_id, what, checkpoint)
        return record.job_id, checkpoint


class _ProgramOperator(_FlinkOperator):
    """Base of the operators that submit programs as a named job.

    Args:
        job_name: The job's name.
        parallelism: The job's default parallelism.
        flink_configuration: Further settings of the job.
    """

    def __init__(self, *, job_name: str, parallelism: int | None = None,
                 flink_configuration: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_name = job_name
        self.parallelism = parallelism
        self.flink_configuration = flink_configuration

    def _settings(self, savepoint_path: str | None, allow_non_restored_state: bool) -> RunSettings:
        return RunSettings(self.job_name, savepoint_path, allow_non_restored_state, self.parallelism,
                           dict(self.flink_configuration or {}))


class SubmitFlinkJobOperator(ResumableJobMixin, _ProgramOperator):
    """Submit a program as a named job and wait until it is healthy; reconnect instead when it already runs.

    Idempotent three times over: a job of that name that is not ended is reconnected to rather than
    submitted again, if it runs the same declaration (the digest of its compiled program, recorded
    with the job: a changed declaration fails the task, "declaration changed: use
    UpgradeFlinkJobOperator"); a retry of the task reconnects to the job its earlier try submitted (the job id
    is kept in the task's ``task_state_store``, Airflow 3.3's ``ResumableJobMixin``); and a job the
    cluster lost (its JobManager restarted without high availability) or that FAILED is resumed
    from its latest retained checkpoint, with a log line that says so, instead of starting over
    and reprocessing its input. For that, the id each name runs as is recorded beside the cluster's
    checkpoints (``airflow_mesh.flink.checkpoints``), which this machine must be able to read.
    Killing the task cancels the job it submitted, which is then no orphan; a job it only
    reconnected to keeps running.

    Args:
        job_name: The job's name (templated).
        program: What the job runs (its fields are templated).
        savepoint_path: Restore the job's state from this savepoint (templated); instead of any
            retained checkpoint.
        allow_non_restored_state: Start even when some savepoint state maps to no operator.
        parallelism: The job's default parallelism.
        flink_configuration: Further settings of the job, e.g. ``{"restart-strategy.type": "none"}`` (templated).
        wait_until_healthy: Wait until the job is healthy; else return once it is submitted.
        healthy_for: Seconds the job must stay healthy (a job failing on its first records looks
            healthy for a moment); with checkpointing on, a checkpoint must also complete after them.
        max_restarts: Failures in ``restart_window`` the job may have had and still count as healthy.
        restart_window: Seconds back from now in which failures count.
        startup_timeout: Seconds to wait for the job to be healthy.
        resume_lost_job: Resume a lost or failed job of that name from its latest retained checkpoint.
        flink_conn_id: The Flink connection.
        durable: Keep the job id across retries (``ResumableJobMixin``).

    Returns (XCom):
        The job's id; also pushed under ``checkpoint``: the latest completed checkpoint seen.
    """

    template_fields: Sequence[str] = ("job_name", "program", "savepoint_path", "flink_configuration",
                                      "flink_conn_id")
    external_id_key = "flink_job"

    def __init__(self, *, program: FlinkProgram, savepoint_path: str | None = None,
                 allow_non_restored_state: bool = False, wait_until_healthy: bool = True, healthy_for: float = 5.0,
                 max_restarts: int = 3, restart_window: float = 600.0, startup_timeout: float = 300.0,
                 resume_lost_job: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.program = program
        self.savepoint_path = savepoint_path
        self.allow_non_restored_state = allow_non_restored_state
        self.wait_until_healthy = wait_until_healthy
        self.healthy_for = healthy_for
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.startup_timeout = startup_timeout
        self.resume_lost_job = resume_lost_job
        self._job: dict[str, Any] | None = None
        self._fingerprint: str | None = None

    def execute(self, context: Any) -> str:
        self.program.check(self.job_name)
        return self.execute_resumable(context)

    def submit_job(self, context: Any) -> dict[str, Any]:
        """Submit the program, unless a job of that name is not ended: then that job is the one.

        Returns:
            ``{"job_id": ..., "submitted": True, "restored_from": ...}`` for a new job (restored from
            the savepoint given or the lost job's checkpoint, or None), ``"submitted": False`` for
            one that already ran under the name.
        """
        fingerprint = self.program.fingerprint(self.job_name)
        running = self.hook.find_jobs(self.job_name, active_only=True)
        if running:
            job = running[0]
            self._fingerprint = self._running_declaration(job["jid"], fingerprint)
            self.log.info("Flink job %s is already %s as %s: reconnecting to it instead of submitting another",
                          self.job_name, job["state"], job["jid"])
            self._record(self.job_name, job["jid"], fingerprint=self._fingerprint)
            self._job = {"job_id": job["jid"], "submitted": False, "restored_from": None}
            return self._job
        restore = self.savepoint_path
        if restore is None and self.resume_lost_job and (lost := self._lost_job_checkpoint(self.job_name)):
            restore = lost[1]
        started = time.monotonic()
        job_id = self.program.submit(self.hook, self._settings(restore, self.allow_non_restored_state))
        self.log.info("Submitted %s as Flink job %s (%s) in %.1fs%s", self.program.describe(), self.job_name, job_id,
                      time.monotonic() - started, f", restored from {restore}" if restore else "")
        self._fingerprint = fingerprint
        self._record(self.job_name, job_id, fingerprint=fingerprint)
        self._job = {"job_id": job_id, "submitted": True, "restored_from": restore}
        return self._job

    def _running_declaration(self, job_id: str, fingerprint: str) -> str | None:
        """Check that the job that runs under the name runs this declaration.

        Returns:
            The fingerprint to keep recording: this declaration's when the record says the running
            job runs it, None when the record cannot tell (a job from before fingerprints, or
            submitted by something else).

        Raises:
            AirflowException: the record says the running job runs another declaration.
        """
        try:
            record = self.hook.read_job_record(self.job_name)
        except OSError as exc:
            self.log.warning("Cannot read the record of Flink job %s: %s", self.job_name, exc)
            record = None
        if record is None or record.job_id != job_id or record.fingerprint is None:
            self.log.warning("Cannot tell whether Flink job %s (%s) runs this declaration (no record of it): "
                             "reconnecting to it as it is", self.job_name, job_id)
            return None
        if record.fingerprint != fingerprint:
            raise AirflowException(
                f"declaration changed: Flink job {self.job_name} runs as {job_id} a declaration other than this "
                f"task's ({record.fingerprint}, this task's is {fingerprint}); use UpgradeFlinkJobOperator to "
                "replace it through a savepoint, or stop it first")
        return fingerprint

    def get_job_status(self, external_id: Any, context: Any) -> str:
        """The state of the job a previous try stored (``UNKNOWN`` when the cluster forgot it)."""
        try:
            return self.hook.get_job(external_id["job_id"])["state"]
        except FlinkJobNotFoundError:
            return "UNKNOWN"

    def is_job_active(self, status: str) -> bool:
        """A job that has not ended (nor is ending) is reconnected to."""
        return status not in ENDED_STATES and status != "UNKNOWN"

    def is_job_succeeded(self, status: str) -> bool:
        """Never: a stream job that ended is not running, so a retry submits it again (or resumes it)."""
        return False

    def poll_until_complete(self, external_id: Any, context: Any) -> None:
        """Wait until the job is healthy (unless ``wait_until_healthy`` is off), then record its checkpoint.

        Raises:
            FlinkJobFailedError: the job failed, ended, or failed more than ``max_restarts`` times.
            FlinkTimeoutError: it was not healthy within ``startup_timeout``.
        """
        self._job = external_id
        if not self.wait_until_healthy:
            return
        started = time.monotonic()
        policy = HealthPolicy(self.max_restarts, self.restart_window, healthy_for=self.healthy_for)
        health = self.hook.wait_until_healthy(external_id["job_id"], policy, self.startup_timeout)
        self.log.info("%s; healthy %.1fs after the wait began", health.summary(), time.monotonic() - started)
        self._record_checkpoint(health, context)

    def _record_checkpoint(self, health: JobHealth, context: Any) -> None:
        if health.latest_checkpoint is None:
            return
        self._record(self.job_name, health.job_id, health.latest_checkpoint, self._fingerprint)
        ti = context.get("ti") if hasattr(context, "get") else None
        if ti is not None:
            ti.xcom_push(key="checkpoint", value=health.latest_checkpoint)

    def get_job_result(self, external_id: Any, context: Any) -> str:
        """The job's id."""
        return external_id["job_id"]

    def on_kill(self) -> None:
        """Cancel the job a try of this task submitted, so that a killed task leaves no job behind."""
        if self._job and self._job["submitted"]:
            self.log.info("Cancelling Flink job %s (%s), submitted by this task", self.job_name, self._job["job_id"])
            self.hook.cancel_job(self._job["job_id"])


class _JobOperator(_FlinkOperator):
    """Base of the operators acting on a job given by id or by name.

    Args:
        job_id: The job's id (templated).
        job_name: The job's name: the jobs of that name that have not ended (templated).
        ignore_missing: Succeed when there is no such job, or it has already ended.
    """

    template_fields: Sequence[str] = ("job_id", "job_name", "flink_conn_id")

    def __init__(self, *, job_id: str | None = None, job_name: str | None = None, ignore_missing: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if (job_id is None) == (job_name is None):
            raise ValueError("give exactly one of job_id and job_name")
        self.job_id = job_id
        self.job_name = job_name
        self.ignore_missing = ignore_missing

    def _running_jobs(self) -> list[str]:
        """The ids of the jobs meant that have not ended.

        Raises:
            AirflowException: there is none and ``ignore_missing`` is off.
        """
        if self.job_id:
            try:
                jobs = [self.job_id] if self.hook.get_job(self.job_id)["state"] not in ENDED_STATES else []
            except FlinkJobNotFoundError:
                jobs = []
        else:
            jobs = [job["jid"] for job in self.hook.find_jobs(str(self.job_name), active_only=True)]
        if not jobs and not self.ignore_missing:
            raise AirflowException(f"no running Flink job {self.job_id or self.job_name!r}")
        return jobs


class StopFlinkJobOperator(_JobOperator):
    """Stop a job, by default with a savepoint to resume it from later.

    Args:
        with_savepoint: Stop with a savepoint (the job ends FINISHED); else cancel it (its state is lost).
        savepoint_directory: Where to write the savepoint (default: the cluster's) (templated).
        drain: Flush event-time windows before stopping (for a job not resumed later).
        timeout: Seconds to wait for the savepoint and for the job to end.

    Returns (XCom):
        The savepoint's location; None when cancelled, or when ``ignore_missing`` found no job.
    """

    template_fields: Sequence[str] = (*_JobOperator.template_fields, "savepoint_directory")

    def __init__(self, *, with_savepoint: bool = True, savepoint_directory: str | None = None, drain: bool = False,
                 timeout: float = 300.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.with_savepoint = with_savepoint
        self.savepoint_directory = savepoint_directory
        self.drain = drain
        self.timeout = timeout

    def execute(self, context: Any) -> str | None:
        jobs = self._running_jobs()
        if not jobs:
            self.log.info("No running Flink job %s: nothing to stop", self.job_id or self.job_name)
            return None
        if len(jobs) > 1:
            raise AirflowException(f"{len(jobs)} Flink jobs named {self.job_name!r} run ({', '.join(jobs)}): "
                                   "stop one by its job_id")
        if not self.with_savepoint:
            self.hook.cancel_job(jobs[0])
            self.hook.wait_until_ended(jobs[0], self.timeout)
            return None
        location = self.hook.stop_with_savepoint(jobs[0], self.savepoint_directory, self.drain, self.timeout)
        self.log.info("Stopped Flink job %s with savepoint %s", jobs[0], location)
        return location


class CancelFlinkJobOperator(_JobOperator):
    """Cancel a job (its state is lost), or by name every job of that name that runs.

    Args:
        timeout: Seconds to wait for each job to end.

    Returns (XCom):
        The ids of the jobs cancelled.
    """

    def __init__(self, *, timeout: float = 60.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeout = timeout

    def execute(self, context: Any) -> list[str]:
        jobs = self._running_jobs()
        for job_id in jobs:
            self.hook.cancel_job(job_id)
        for job_id in jobs:
            self.log.info("Flink job %s is %s", job_id, self.hook.wait_until_ended(job_id, self.timeout))
        return jobs


class UpgradeFlinkJobOperator(_ProgramOperator):
    """Replace the job that runs under a name with a new version that keeps its state, or roll back.

    The running job is stopped with a savepoint; the new version is submitted from it and must
    become healthy. If it fails to (Flink refuses it, it fails, restarts, or is not healthy in
    time), it is cancelled, the previous version is submitted again from the same savepoint, and
    the task fails with the reason. Both programs are checked before the running job is touched.
    When no job of that name runs because the JobManager lost it (or it failed), its latest
    retained checkpoint takes the savepoint's place. Killing the task leaves whichever version it
    started running: cancelling it would leave none.

    State is restored operator by operator. A change that keeps the shape of the job (a filter's
    condition, a projection's expressions) keeps every operator's state: processors are compiled
    with stable operator ids. A change that removes or reshapes a stateful operator (an
    aggregation's keys, a join) leaves savepoint state that maps to no operator: Flink refuses the
    new version ("Cannot map checkpoint/savepoint state"), and the upgrade rolls back, unless
    ``allow_non_restored_state`` lets the new version drop that state (it then starts those
    operators empty: an aggregate counts again from zero).

    Args:
        job_name: The name the job runs under (templated).
        program: The new version (its fields are templated).
        previous_program: The version that runs now, to roll back to (its fields are templated).
        allow_non_restored_state: Let the new version drop savepoint state it has no operator for.
        savepoint_directory: Where to write the savepoint (default: the cluster's) (templated).
        parallelism: The jobs' default parallelism.
        flink_configuration: Further settings of the jobs (templated).
        healthy_for: Seconds a version must stay healthy.
        max_restarts: Failures a version may have had and still count as healthy.
        timeout: Seconds for the savepoint, and for each version to become healthy.

    Returns (XCom):
        ``{"job_id", "previous_job_id", "savepoint", "stop_seconds", "start_seconds"}``: the new
        job, the stopped one, the savepoint, and how long stopping and starting took.
    """

    template_fields: Sequence[str] = ("job_name", "program", "previous_program", "savepoint_directory",
                                      "flink_configuration", "flink_conn_id")

    def __init__(self, *, program: FlinkProgram, previous_program: FlinkProgram,
                 allow_non_restored_state: bool = False, savepoint_directory: str | None = None,
                 healthy_for: float = 5.0, max_restarts: int = 0, timeout: float = 300.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.program = program
        self.previous_program = previous_program
        self.allow_non_restored_state = allow_non_restored_state
        self.savepoint_directory = savepoint_directory
        self.healthy_for = healthy_for
        self.max_restarts = max_restarts
        self.timeout = timeout

    def execute(self, context: Any) -> dict[str, Any]:
        self.program.check(self.job_name)
        self.previous_program.check(self.job_name)
        running = self.hook.find_jobs(self.job_name, active_only=True)
        started = time.monotonic()
        if not running and (lost := self._lost_job_checkpoint(self.job_name)):
            # The JobManager lost the job (or it failed): its latest retained checkpoint is the state.
            previous_job, savepoint = lost
        elif len(running) != 1:
            raise AirflowException(f"expected one running Flink job named {self.job_name!r}, found {len(running)}"
                                   + ("" if running else " (and no lost or failed job of that name to resume from "
                                      "a checkpoint)"))
        else:
            previous_job = running[0]["jid"]
            savepoint = self.hook.stop_with_savepoint(previous_job, self.savepoint_directory, timeout=self.timeout)
        stopped = time.monotonic()
        self.log.info("Stopped Flink job %s (%s) with savepoint %s in %.1fs", self.job_name, previous_job, savepoint,
                      stopped - started)
        try:
            job_id = self._start(self.program, savepoint, self.allow_non_restored_state)
        except Exception as exc:  # noqa: BLE001 - whatever stopped the new version, the previous one must run
            self._roll_back(savepoint, exc)
        start_seconds = time.monotonic() - stopped
        self.log.info("The new version of %s runs as %s, healthy %.1fs after the savepoint", self.job_name, job_id,
                      start_seconds)
        return {"job_id": job_id, "previous_job_id": previous_job, "savepoint": savepoint,
                "stop_seconds": round(stopped - started, 3), "start_seconds": round(start_seconds, 3)}

    def _start(self, program: FlinkProgram, savepoint: str, allow_non_restored_state: bool) -> str:
        """Submit a version from the savepoint and wait until it is healthy; cancel it if it is not.

        Raises:
            FlinkError: it could not be submitted, or did not become healthy (then it is cancelled).
            ServiceUnreachableError: Flink did not answer.
        """
        job_id = program.submit(self.hook, self._settings(savepoint, allow_non_restored_state))
        self._record(self.job_name, job_id, fingerprint=program.fingerprint(self.job_name))
        self.log.info("Submitted %s as %s from %s", program.describe(), job_id, savepoint)
        try:
            self.hook.wait_until_healthy(job_id, HealthPolicy(self.max_restarts, healthy_for=self.healthy_for),
                                         self.timeout)
        except Exception:
            if self.hook.get_job(job_id)["state"] not in ENDED_STATES:
                self.hook.cancel_job(job_id)
                self.hook.wait_until_ended(job_id)
            raise
        return job_id

    def _roll_back(self, savepoint: str, failure: Exception) -> NoReturn:
        """Run the previous version again from the savepoint, then fail with the reason of the failure.

        Raises:
            AirflowException: always: the upgrade failed (and the rollback too, if it did).
        """
        self.log.error("The new version of %s failed to start: %s\nRolling back to the previous version",
                       self.job_name, failure)
        try:
            job_id = self._start(self.previous_program, savepoint, allow_non_restored_state=False)
        except Exception as rollback_failure:  # noqa: BLE001 - reported with the upgrade's own failure
            raise AirflowException(
                f"upgrade of Flink job {self.job_name} failed: {failure}\nand the rollback failed too: "
                f"{rollback_failure}\nno version runs; the state is in savepoint {savepoint}") from failure
        raise AirflowException(
            f"upgrade of Flink job {self.job_name} failed: {failure}\nrolled back: the previous version runs again "
            f"as job {job_id} from savepoint {savepoint}") from failure
