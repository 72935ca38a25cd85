"""Operators that submit, stop, cancel and upgrade Flink jobs on a session cluster, and the programs they run.

A program says what a job runs: ``FlinkSql`` (a SQL script), ``FlinkProcessor`` (a processor of the
SDK, by registered name or as an object, compiled to SQL), ``PyFlinkProgram`` or ``FlinkJar``. The
job's name identifies it across runs: submitting a name that already runs reconnects to that job,
and upgrading a name replaces the job that runs under it.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NoReturn

from airflow.sdk import BaseHook, BaseOperator, ResumableJobMixin
from airflow.sdk.exceptions import AirflowException

from airflow_mesh.hooks.flink import FlinkHook, FlinkJobNotFoundError
from airflow_mesh.processors import (
    Deployment,
    KafkaCluster,
    Processor,
    RegisteredProcessor,
    compile_sql,
    create_processor,
)
from airflow_mesh.processors.health import ENDED_STATES, HealthPolicy
from airflow_mesh.processors.registry import ProcessorFactory

KAFKA_DEFAULT = "kafka_default"


@dataclass
class RunSettings:
    """How a program is run: the job's name and what ``FlinkHook.run_jar`` takes besides the program.

    Attributes:
        job_name: The job's name (``pipeline.name``).
        savepoint_path: A savepoint to restore the job's state from.
        allow_non_restored_state: Start even when some savepoint state maps to no operator.
        parallelism: The job's default parallelism.
        flink_configuration: Further settings of the job.
    """

    job_name: str
    savepoint_path: str | None = None
    allow_non_restored_state: bool = False
    parallelism: int | None = None
    flink_configuration: dict[str, str] = field(default_factory=dict)

    def run_options(self) -> dict[str, Any]:
        """``run_jar``'s keyword arguments, the job's name included in its configuration."""
        return {"savepoint_path": self.savepoint_path, "allow_non_restored_state": self.allow_non_restored_state,
                "parallelism": self.parallelism,
                "flink_configuration": {"pipeline.name": self.job_name, **self.flink_configuration}}


class FlinkProgram(ABC):
    """What a Flink job runs. Its ``template_fields`` are rendered with the operator's."""

    template_fields: Sequence[str] = ()

    def check(self, job_name: str) -> None:  # noqa: B027 - most programs have nothing to check here
        """Fail before anything is submitted when the program cannot run (default: nothing to check).

        Args:
            job_name: The name the job will have.
        """

    @abstractmethod
    def submit(self, hook: FlinkHook, settings: RunSettings) -> str:
        """Submit the program as a job.

        Returns:
            The new job's id.
        """

    @abstractmethod
    def describe(self) -> str:
        """One line naming the program, for logs."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in vars(self).items())
        return f"{type(self).__name__}({fields})"


class FlinkSql(FlinkProgram):
    """A Flink SQL script: SET statements, DDL, then INSERTs that run as one job.

    Args:
        script: The statements, each ending with a semicolon at the end of a line (templated).
    """

    template_fields = ("script",)

    def __init__(self, script: str) -> None:
        self.script = script

    def submit(self, hook: FlinkHook, settings: RunSettings) -> str:
        return hook.submit_sql(self.script, job_name=settings.job_name, **settings.run_options())

    def describe(self) -> str:
        return f"Flink SQL script ({len(self.script.splitlines())} lines)"


class FlinkProcessor(FlinkProgram):
    """A processor of the SDK, compiled to Flink SQL at submission.

    Args:
        processor: A registered processor's name, a ``package.module:factory`` reference, a
            factory (e.g. a function of the DAG file), or a ``Processor`` object.
        params: The factory's keyword parameters, for a name, reference or factory (templated).
        kafka_conn_id: The Kafka connection whose ``bootstrap.servers`` the processor's topics live on.
        kafka_properties: Further Kafka client settings for Flink's connectors (Java client names,
            e.g. ``{"security.protocol": "SASL_SSL"}``).
    """

    # Not ``processor``: Airflow would call a factory in a template field to render it.
    template_fields = ("params", "kafka_conn_id")

    def __init__(self, processor: str | ProcessorFactory | Processor, params: dict[str, Any] | None = None,
                 kafka_conn_id: str = KAFKA_DEFAULT, kafka_properties: dict[str, str] | None = None) -> None:
        self.processor = processor
        self.params = params
        self.kafka_conn_id = kafka_conn_id
        self.kafka_properties = kafka_properties

    def declaration(self) -> Processor:
        """The processor object: as given, or created by its factory with ``params``.

        Raises:
            RegistryError: no such processor, or the parameters do not fit it.
        """
        if isinstance(self.processor, Processor):
            return self.processor
        if callable(self.processor):
            return RegisteredProcessor(self.processor.__name__, self.processor, "DAG").create(self.params)
        return create_processor(self.processor, self.params)

    def sql(self, job_name: str) -> str:
        """The compiled script for a job of that name.

        Raises:
            RegistryError: no such processor, or the parameters do not fit it.
            DeclarationError: the declaration is invalid.
            AirflowException: the Kafka connection has no ``bootstrap.servers``.
        """
        extra = BaseHook.get_connection(self.kafka_conn_id).extra_dejson
        if not extra.get("bootstrap.servers"):
            raise AirflowException(f"Kafka connection {self.kafka_conn_id!r} has no 'bootstrap.servers' extra")
        kafka = KafkaCluster(extra["bootstrap.servers"], dict(self.kafka_properties or {}))
        return compile_sql(self.declaration(), Deployment(job_name, kafka))

    def check(self, job_name: str) -> None:
        self.sql(job_name)

    def submit(self, hook: FlinkHook, settings: RunSettings) -> str:
        return hook.submit_sql(self.sql(settings.job_name), job_name=settings.job_name, **settings.run_options())

    def describe(self) -> str:
        if isinstance(self.processor, Processor):
            return f"processor {self.processor.name}"
        return f"processor {getattr(self.processor, '__name__', self.processor)}"


class PyFlinkProgram(FlinkProgram):
    """A PyFlink program, run by Flink's PythonDriver.

    Args:
        path: The program's path as the JobManager sees it (templated).
        args: The program's arguments (templated).
    """

    template_fields = ("path", "args")

    def __init__(self, path: str, args: Sequence[str] = ()) -> None:
        self.path = path
        self.args = args

    def submit(self, hook: FlinkHook, settings: RunSettings) -> str:
        return hook.submit_python(self.path, list(self.args), **settings.run_options())

    def describe(self) -> str:
        return f"PyFlink program {self.path}"


class FlinkJar(FlinkProgram):
    """A jar on this machine, uploaded for each submission and removed from the cluster after it.

    Args:
        jar: The jar's local path (templated).
        entry_class: The program's main class (default: the jar manifest's).
        args: The program's arguments (templated).
    """

    template_fields = ("jar", "entry_class", "args")

    def __init__(self, jar: str, entry_class: str | None = None, args: Sequence[str] = ()) -> None:
        self.jar = jar
        self.entry_class = entry_class
        self.args = args

    def check(self, job_name: str) -> None:
        if not Path(self.jar).is_file():
            raise FileNotFoundError(f"jar {self.jar} does not exist")

    def submit(self, hook: FlinkHook, settings: RunSettings) -> str:
        jar_id = hook.upload_jar(self.jar)
        try:
            return hook.run_jar(jar_id, entry_class=self.entry_class, args=list(self.args), **settings.run_options())
        finally:
            hook.delete_jar(jar_id)

    def describe(self) -> str:
        return f"jar {Path(self.jar).name}" + (f" ({self.entry_class})" if self.entry_class else "")


class _FlinkOperator(BaseOperator):
    """Base of the operators talking to one Flink cluster."""

    ui_color = "#f3e8fd"

    def __init__(self, *, flink_conn_id: str = FlinkHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.flink_conn_id = flink_conn_id

    @cached_property
    def hook(self) -> FlinkHook:
        return FlinkHook(self.flink_conn_id)


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

    Idempotent twice over: a job of that name that is not ended is reconnected to rather than
    submitted again, and a retry of the task reconnects to the job its earlier try submitted (the
    job id is kept in the task's ``task_state_store``, Airflow 3.3's ``ResumableJobMixin``). Killing
    the task cancels the job it submitted, which is then no orphan; a job it only reconnected to
    keeps running.

    Args:
        job_name: The job's name (templated).
        program: What the job runs (its fields are templated).
        savepoint_path: Restore the job's state from this savepoint (templated).
        allow_non_restored_state: Start even when some savepoint state maps to no operator.
        parallelism: The job's default parallelism.
        flink_configuration: Further settings of the job, e.g. ``{"restart-strategy.type": "none"}`` (templated).
        wait_until_healthy: Wait until the job is healthy; else return once it is submitted.
        healthy_for: Seconds the job must stay healthy (a job failing on its first records looks
            healthy for a moment).
        max_restarts: Restarts the job may have had and still count as healthy.
        startup_timeout: Seconds to wait for the job to be healthy.
        flink_conn_id: The Flink connection.
        durable: Keep the job id across retries (``ResumableJobMixin``).

    Returns (XCom):
        The job's id.
    """

    template_fields: Sequence[str] = ("job_name", "program", "savepoint_path", "flink_configuration",
                                      "flink_conn_id")
    external_id_key = "flink_job"

    def __init__(self, *, program: FlinkProgram, savepoint_path: str | None = None,
                 allow_non_restored_state: bool = False, wait_until_healthy: bool = True, healthy_for: float = 5.0,
                 max_restarts: int = 3, startup_timeout: float = 300.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.program = program
        self.savepoint_path = savepoint_path
        self.allow_non_restored_state = allow_non_restored_state
        self.wait_until_healthy = wait_until_healthy
        self.healthy_for = healthy_for
        self.max_restarts = max_restarts
        self.startup_timeout = startup_timeout
        self._job: dict[str, Any] | None = None

    def execute(self, context: Any) -> str:
        self.program.check(self.job_name)
        self.execute_resumable(context)
        return self._job["job_id"]

    def submit_job(self, context: Any) -> dict[str, Any]:
        """Submit the program, unless a job of that name is not ended: then that job is the one.

        Returns:
            ``{"job_id": ..., "submitted": True}`` for a new job, ``"submitted": False`` for one
            that already ran under the name.
        """
        running = self.hook.find_jobs(self.job_name, active_only=True)
        if running:
            job = running[0]
            self.log.info("Flink job %s is already %s as %s: reconnecting to it instead of submitting another",
                          self.job_name, job["state"], job["jid"])
            return {"job_id": job["jid"], "submitted": False}
        started = time.monotonic()
        job_id = self.program.submit(self.hook, self._settings(self.savepoint_path, self.allow_non_restored_state))
        restore = f" from savepoint {self.savepoint_path}" if self.savepoint_path else ""
        self.log.info("Submitted %s as Flink job %s (%s) in %.1fs%s", self.program.describe(), self.job_name, job_id,
                      time.monotonic() - started, restore)
        self._job = {"job_id": job_id, "submitted": True}
        return self._job

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
        """Never: a stream job that ended is not running, so a retry submits it again."""
        return False

    def poll_until_complete(self, external_id: Any, context: Any) -> None:
        """Wait until the job is healthy (unless ``wait_until_healthy`` is off).

        Raises:
            FlinkJobFailedError: the job failed, ended, or restarted more than ``max_restarts``.
            FlinkTimeoutError: it was not healthy within ``startup_timeout``.
        """
        self._job = external_id
        if not self.wait_until_healthy:
            return
        started = time.monotonic()
        health = self.hook.wait_until_healthy(external_id["job_id"], HealthPolicy(self.max_restarts),
                                              self.healthy_for, self.startup_timeout)
        self.log.info("%s; healthy %.1fs after the wait began", health.summary(), time.monotonic() - started)

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
            jobs = [job["jid"] for job in self.hook.find_jobs(self.job_name, active_only=True)]
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
    Killing the task leaves whichever version it started running: cancelling it would leave none.

    Args:
        job_name: The name the job runs under (templated).
        program: The new version (its fields are templated).
        previous_program: The version that runs now, to roll back to (its fields are templated).
        allow_non_restored_state: Let the new version drop savepoint state it has no operator for.
        savepoint_directory: Where to write the savepoint (default: the cluster's) (templated).
        parallelism: The jobs' default parallelism.
        flink_configuration: Further settings of the jobs (templated).
        healthy_for: Seconds a version must stay healthy.
        max_restarts: Restarts a version may have had and still count as healthy.
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
        if len(running) != 1:
            raise AirflowException(f"expected one running Flink job named {self.job_name!r}, found {len(running)}")
        previous_job = running[0]["jid"]
        started = time.monotonic()
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
            requests.RequestException: Flink did not answer.
        """
        job_id = program.submit(self.hook, self._settings(savepoint, allow_non_restored_state))
        self.log.info("Submitted %s as %s from %s", program.describe(), job_id, savepoint)
        try:
            self.hook.wait_until_healthy(job_id, HealthPolicy(self.max_restarts), self.healthy_for, self.timeout)
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
