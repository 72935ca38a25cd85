"""FlinkHook: a Flink session cluster over its REST API (the provider never imports PyFlink)."""

from __future__ import annotations

import base64
import re
import time
import uuid
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any

import requests
from asgiref.sync import sync_to_async

from airflow_mesh.flink.checkpoints import JobRecord, latest_checkpoint, record_path, storage_path
from airflow_mesh.flink.health import (
    ENDED_STATES,
    Health,
    HealthPolicy,
    JobHealth,
    Observation,
    SourceProgress,
    Verdict,
    assess,
    checkpoint_interval,
)
from airflow_mesh.flink_runtime.sql_job import parse_error_line
from airflow_mesh.hooks.forms import FLINK
from airflow_mesh.hooks.rest import RestApiError, RestApiHook, ServiceUnreachableError
from airflow_mesh.http import DEFAULT_TIMEOUT

PYTHON_DRIVER = "org.apache.flink.client.python.PythonDriver"
# A source operator's records waiting in its input, e.g. ``Source__orders[1].pendingRecords``.
_SOURCE_PENDING = re.compile(r"^Source__.+\.pendingRecords$")
SQL_RUNNER = Path(__file__).resolve().parent.parent / "flink_runtime" / "sql_job.py"
# Flink's answer when a program run through the PythonDriver exits with an error before making a job.
PYTHON_PROCESS_FAILED = "Python process exits with code"
# Flink's answer when it lost the id of the job a program submitted (the job runs nonetheless).
NO_JOBS_IN_APPLICATION = "No jobs included in application"


def stack_trace_summary(stack_trace: str) -> str:
    """The headline of a Java stack trace and of each of its causes, one per line.

    Args:
        stack_trace: A stack trace as Flink's REST API reports it.

    Returns:
        The lines that name an exception and its message (``Caused by: `` removed), without the
        ``at ...`` frames, e.g. ``org.apache.flink.runtime.JobException: Recovery is suppressed``
        then ``java.lang.NumberFormatException: For input string: 'abc'``.
    """
    lines = [line.strip().removeprefix("Caused by: ") for line in stack_trace.strip().splitlines()]
    return "\n".join(line for line in lines if line and not line.startswith(("at ", "... ")))


class FlinkError(Exception):
    """Base class of the errors FlinkHook raises."""


class FlinkApiError(FlinkError, RestApiError):
    """Flink's REST API answered with an error.

    Attributes:
        method: The HTTP method of the request.
        url: The URL of the request.
        status: The HTTP status code.
        errors: The ``errors`` list of Flink's answer (its message and, often, a Java stack trace).
        message: Flink's message: the headline of each exception of the first error's stack trace.
    """

    def __init__(self, method: str, url: str, status: int, errors: list[str]) -> None:
        self.errors = errors
        RestApiError.__init__(self, "Flink", method, url, status,
                              stack_trace_summary(errors[0]) if errors else "no error message")


class FlinkJobNotFoundError(FlinkApiError):
    """Flink answered 404: the cluster does not know the job (never did, or has forgotten it)."""


class FlinkProgramError(FlinkError):
    """The program submitted to run a job failed before it made one (e.g. Flink refused a SQL statement).

    Attributes:
        statement: The SQL statement Flink refused, when the program is airflow-mesh's SQL runner.
        cause: Flink's message.
    """

    def __init__(self, cause: str, statement: str | None = None) -> None:
        self.cause = cause
        self.statement = statement
        super().__init__(f"the Flink program failed: {cause}" + (f"\nin statement:\n{statement}" if statement else ""))


class SavepointError(FlinkError):
    """Flink could not take a savepoint (or stop the job with one).

    Attributes:
        job_id: The job.
        cause: Flink's account of the failure.
    """

    def __init__(self, job_id: str, cause: str) -> None:
        self.job_id = job_id
        self.cause = cause
        super().__init__(f"savepoint of Flink job {job_id} failed: {cause}")


class FlinkJobFailedError(FlinkError):
    """A job failed, ended, or restarted more than allowed while someone waited for it to be healthy.

    Attributes:
        health: The assessment that showed it, with Flink's account of the failure when known.
    """

    def __init__(self, health: JobHealth) -> None:
        self.health = health
        super().__init__(health.failure_message())


class FlinkTimeoutError(FlinkError, TimeoutError):
    """A wait (for a savepoint, for a job to be healthy or to end) ran out of time."""


class FlinkHook(RestApiHook):
    """Talk to a Flink session cluster's REST API.

    The connection locates the JobManager's REST endpoint as RestApiHook describes (basic auth
    and TLS settings serve a proxy in front of Flink). Further extras: ``python_jar`` (path of
    ``flink-python-*.jar`` to upload when the cluster has none yet), ``sql_runner`` (path of
    airflow_mesh's ``sql_job.py`` as the JobManager sees it; defaults to this installation's copy,
    right when Airflow and the JobManager share a filesystem).

    Args:
        flink_conn_id: The Airflow connection to use.
        timeout: Seconds to wait for each HTTP answer.
        retries: Retries (with backoff) on connection errors and 502/503/504 answers.
    """

    conn_name_attr = "flink_conn_id"
    default_conn_name = "flink_default"
    conn_type = "flink"
    hook_name = FLINK.hook_name
    service_name = "Flink"
    default_port = 8081
    # Seconds to look for a job by its name when Flink lost the id of the job a program submitted.
    lost_job_wait = 10.0

    def __init__(self, flink_conn_id: str = default_conn_name, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = 5, *, connect_timeout: float | None = None, deadline: float | None = None) -> None:
        super().__init__(flink_conn_id, timeout, retries, connect_timeout=connect_timeout, deadline=deadline)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form's labels and placeholders (the same as in provider info)."""
        return FLINK.ui_field_behaviour()

    def _error_for(self, response: requests.Response) -> FlinkApiError:
        try:
            errors = response.json().get("errors", [])
        except ValueError:
            errors = [response.text]
        job_missing = response.status_code == 404 and any("NotFoundException" in error for error in errors)
        error_class = FlinkJobNotFoundError if job_missing else FlinkApiError
        return error_class(response.request.method or "?", response.url, response.status_code, errors)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        return response.json() if response.content else {}

    def test_connection(self) -> tuple[bool, str]:
        """Check that the cluster answers and report its version and free slots."""
        try:
            overview = self.overview()
        except (FlinkError, requests.RequestException) as exc:
            return False, str(exc)
        return True, (f"Flink {overview.get('flink-version')}: {overview.get('taskmanagers')} TaskManagers, "
                      f"{overview.get('slots-available')} free slots")

    # ---------------------------------------------------------------- cluster and jobs

    def overview(self) -> dict[str, Any]:
        """``GET /overview``: TaskManagers, slots, job counts, Flink version."""
        return self._request("GET", "/overview")

    def list_jobs(self) -> list[dict[str, Any]]:
        """``GET /jobs/overview``: every job the cluster knows, with ``jid``, ``name``, ``state`` and ``start-time``."""
        return self._request("GET", "/jobs/overview")["jobs"]

    def find_jobs(self, name: str, active_only: bool = False) -> list[dict[str, Any]]:
        """The jobs of that name, newest first.

        Args:
            name: The job name (``pipeline.name``).
            active_only: Leave out jobs that have ended or are ending (FAILED, CANCELED, FINISHED,
                CANCELLING).

        Returns:
            ``GET /jobs/overview`` entries.
        """
        jobs = [job for job in self.list_jobs()
                if job["name"] == name and not (active_only and job["state"] in ENDED_STATES)]
        return sorted(jobs, key=lambda job: job["start-time"], reverse=True)

    def latest_job_id(self, name: str) -> str | None:
        """The job of that name that runs (the newest, if several do), else the newest that ran.

        Args:
            name: The job name.

        Returns:
            Its id, None when the cluster knows no job of that name.
        """
        jobs = self.find_jobs(name)
        active = [job for job in jobs if job["state"] not in ENDED_STATES]
        return (active or jobs)[0]["jid"] if jobs else None

    def get_job(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/{id}``: one job's details.

        Args:
            job_id: The job.

        Returns:
            Flink's answer: ``jid``, ``name``, ``state``, ``start-time``, ``now`` (the JobManager's
            clock), ``vertices`` (each with its ``status``) and more.

        Raises:
            FlinkJobNotFoundError: the cluster does not know the job.
        """
        return self._request("GET", f"/jobs/{job_id}")

    def get_exceptions(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/{id}/exceptions``: the job's exception history.

        Args:
            job_id: The job.

        Returns:
            ``{"exceptionHistory": {"entries": [...], "truncated": ...}}``, newest entry first, each
            with ``exceptionName``, ``stacktrace``, ``timestamp`` and, for a task's failure, ``taskName``.

        Raises:
            FlinkJobNotFoundError: the cluster does not know the job.
        """
        return self._request("GET", f"/jobs/{job_id}/exceptions")

    def failure_cause(self, job_id: str) -> str | None:
        """Flink's account of the job's latest failure: the headline of each exception in its chain.

        Args:
            job_id: The job.

        Returns:
            e.g. ``org.apache.flink.runtime.JobException: Recovery is suppressed by
            NoRestartBackoffTimeStrategy`` then the causes down to the root one, one per line, with
            the failing task when Flink names one; None when the job has no exception.

        Raises:
            FlinkJobNotFoundError: the cluster does not know the job.
        """
        entries = self.get_exceptions(job_id).get("exceptionHistory", {}).get("entries", [])
        if not entries:
            return None
        latest = entries[0]
        summary = stack_trace_summary(latest.get("stacktrace") or latest.get("exceptionName", ""))
        return summary + (f"\n(in task {latest['taskName']})" if latest.get("taskName") else "")

    def get_checkpoints(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/{id}/checkpoints``: the job's checkpoint statistics.

        Args:
            job_id: The job.

        Returns:
            ``counts``, ``latest`` (``completed``, ``savepoint``, ``failed`` and ``restored``, each
            None or a checkpoint with ``latest_ack_timestamp`` and ``external_path``) and ``history``.

        Raises:
            FlinkJobNotFoundError: the cluster does not know the job.
        """
        return self._request("GET", f"/jobs/{job_id}/checkpoints")

    def get_restarts(self, job_id: str) -> int:
        """How many times the job restarted since it was submitted (Flink's count never goes down).

        Args:
            job_id: The job.

        Returns:
            Its ``numRestarts`` metric; 0 before Flink reports it.

        Raises:
            FlinkJobNotFoundError: the cluster does not know the job.
        """
        metrics = self._request("GET", f"/jobs/{job_id}/metrics", params={"get": "numRestarts"})
        return next((int(m["value"]) for m in metrics if m.get("id") == "numRestarts"), 0)

    def get_checkpoint_config(self, job_id: str) -> dict[str, Any] | None:
        """``GET /jobs/{id}/checkpoints/config``: the job's checkpointing settings.

        Args:
            job_id: The job.

        Returns:
            Flink's answer (``interval`` and ``timeout`` in ms, ``externalization``, ...); None when
            the job does not checkpoint.

        Raises:
            FlinkJobNotFoundError: the cluster does not know the job.
        """
        try:
            return self._request("GET", f"/jobs/{job_id}/checkpoints/config")
        except FlinkJobNotFoundError:
            raise
        except FlinkApiError as exc:
            if exc.status == 404 and "not enabled" in " ".join(exc.errors).lower():
                return None
            raise

    def source_progress(self, job: dict[str, Any]) -> tuple[SourceProgress, ...]:
        """Each source operator's records waiting and read rate (``pendingRecords``, ``numRecordsOutPerSecond``).

        Args:
            job: ``GET /jobs/{id}`` of a running job.

        Returns:
            One entry per source operator that reports ``pendingRecords`` (Kafka's sources do).
        """
        progress = []
        for vertex in job.get("vertices", []):
            if not vertex.get("name", "").startswith("Source"):
                continue
            path = f"/jobs/{job['jid']}/vertices/{vertex['id']}/subtasks"
            names = [metric["id"] for metric in self._request("GET", f"{path}/0/metrics")]
            for pending in (name for name in names if _SOURCE_PENDING.match(name)):
                operator = pending.rsplit(".", 1)[0]
                rate = f"{operator}.numRecordsOutPerSecond"
                values = {metric["id"]: metric.get("sum", 0.0) for metric in
                          self._request("GET", f"{path}/metrics", params={"get": f"{pending},{rate}"})}
                if values.get(pending, -1) >= 0:
                    progress.append(SourceProgress(operator, values[pending], values.get(rate, 0.0)))
        return tuple(progress)

    def observe(self, job_id: str, progress: bool = False) -> Observation:
        """Flink's answers about a job that ``assess`` judges: details, restarts, failures, checkpoints.

        Args:
            job_id: The job.
            progress: Also fetch its sources' progress (for ``HealthPolicy.progress_check``).

        Raises:
            FlinkJobNotFoundError: the cluster does not know the job.
        """
        job = self.get_job(job_id)
        interval = checkpoint_interval(self.get_checkpoint_config(job_id))
        return Observation(
            job=job,
            restarts=self.get_restarts(job_id),
            exceptions=self.get_exceptions(job_id).get("exceptionHistory", {}).get("entries", []),
            checkpoints=self.get_checkpoints(job_id) if interval is not None else None,
            checkpoint_interval=interval,
            sources=self.source_progress(job) if progress and job.get("state") == "RUNNING" else (),
        )

    def job_health(self, job_id: str, policy: HealthPolicy, since_ms: int | None = None) -> JobHealth:
        """Assess a job (``airflow_mesh.flink.health.assess``), with Flink's failure cause when it failed.

        Args:
            job_id: The job.
            policy: The thresholds.
            since_ms: When the wait began (ms since the epoch); the healthy period starts no earlier.

        Returns:
            The assessment; a failed one carries ``failure_cause`` as its ``failure``.

        Raises:
            FlinkJobNotFoundError: the cluster does not know the job.
        """
        health = assess(self.observe(job_id, policy.progress_check), policy, since_ms)
        if health.health is Health.FAILED:
            health = replace(health, failure=self.failure_cause(job_id))
        return health

    def wait_until_healthy(self, job_id: str, policy: HealthPolicy | None = None, timeout: float = 300.0,
                           poll_interval: float = 1.0) -> JobHealth:
        """Poll a job until it has been healthy for the policy's ``healthy_for`` seconds, proved by a checkpoint.

        An unreachable JobManager counts as not yet healthy until the timeout.

        Args:
            job_id: The job.
            policy: The thresholds (default: ``HealthPolicy()``).
            timeout: Seconds to wait in all.
            poll_interval: Seconds between polls.

        Returns:
            The last assessment (healthy).

        Raises:
            FlinkJobFailedError: the job failed, ended, or failed more often than the policy allows.
            FlinkTimeoutError: it was not healthy in time (the message says why).
            FlinkJobNotFoundError: the cluster does not know the job.
        """
        policy = policy or HealthPolicy()
        since_ms, deadline = int(time.time() * 1000), time.monotonic() + timeout
        last = "no answer yet"
        while True:
            try:
                health = self.job_health(job_id, policy, since_ms)
            except ServiceUnreachableError as exc:
                last = str(exc)
                self.log.warning("Flink job %s not yet healthy: %s", job_id, last)
            else:
                verdict = health.verdict()
                if verdict is Verdict.DONE:
                    return health
                if verdict is Verdict.FAIL:
                    raise FlinkJobFailedError(health)
                last = f"{health.summary()}; {health.waiting_for()}"
            if time.monotonic() > deadline:
                raise FlinkTimeoutError(f"Flink job {job_id} not healthy after {timeout:.0f}s: {last}")
            time.sleep(poll_interval)

    # ---------------------------------------------------------------- retained checkpoints

    def cluster_config(self) -> dict[str, str]:
        """``GET /jobmanager/config``: the cluster's configuration, as key to value."""
        return {item["key"]: item["value"] for item in self._request("GET", "/jobmanager/config")}

    def checkpoint_dir(self) -> str | None:
        """The cluster's checkpoint directory URI (``execution.checkpointing.dir``), None when it has none.

        Read from the cluster once per hook: a task's records and checkpoints all live under it.
        """
        return self._checkpoint_dir

    @cached_property
    def _checkpoint_dir(self) -> str | None:
        config = self.cluster_config()
        return config.get("execution.checkpointing.dir") or config.get("state.checkpoints.dir")

    def _storage(self, uri: str) -> tuple[Any, str]:
        from pyarrow import fs  # the filesystems Flink's checkpoint storage may be on (local, S3, GCS, HDFS)

        pyarrow_uri, path = storage_path(uri)
        filesystem, _ = fs.FileSystem.from_uri(pyarrow_uri)
        return filesystem, path

    def latest_retained_checkpoint(self, job_id: str) -> str | None:
        """The latest complete checkpoint a job left in the cluster's checkpoint directory.

        Reads the checkpoint storage itself (this machine must reach it: a shared filesystem, or an
        object store with credentials in the environment), so it works for a job the cluster forgot.

        Args:
            job_id: The job.

        Returns:
            Its URI (``<checkpoint dir>/<job id>/chk-<n>``), to resubmit from; None when none is there.
        """
        from pyarrow import fs

        root = self.checkpoint_dir()
        if not root:
            return None
        filesystem, path = self._storage(root)
        job_dir = f"{path.rstrip('/')}/{job_id}"
        found = filesystem.get_file_info(fs.FileSelector(job_dir, allow_not_found=True))
        entries = {}
        for info in found:
            if info.type == fs.FileType.Directory and info.base_name.startswith("chk-"):
                entries[info.base_name] = filesystem.get_file_info(f"{info.path}/_metadata").type == fs.FileType.File
        latest = latest_checkpoint(job_dir, entries)
        return None if latest is None else f"{root.rstrip('/')}/{job_id}/{latest.rsplit('/', 1)[1]}"

    def read_job_record(self, job_name: str) -> JobRecord | None:
        """The record of the job a name last ran as, kept beside the cluster's checkpoints.

        Args:
            job_name: The job's name.

        Returns:
            The record; None when there is none (or the cluster has no checkpoint directory).
        """
        root = self.checkpoint_dir()
        if not root:
            return None
        filesystem, path = self._storage(root)
        try:
            with filesystem.open_input_stream(record_path(path, job_name)) as stream:
                return JobRecord.from_json(stream.read().decode())
        except (FileNotFoundError, OSError):
            return None

    def write_job_record(self, record: JobRecord) -> bool:
        """Record the job a name runs as, beside the cluster's checkpoints.

        Args:
            record: The record.

        Returns:
            False when the cluster has no checkpoint directory to keep it in.
        """
        root = self.checkpoint_dir()
        if not root:
            return False
        filesystem, path = self._storage(root)
        target = record_path(path, record.job_name)
        filesystem.create_dir(target.rsplit("/", 1)[0], recursive=True)
        with filesystem.open_output_stream(target) as stream:
            stream.write(record.to_json().encode())
        return True

    def wait_until_ended(self, job_id: str, timeout: float = 60.0, poll_interval: float = 0.5) -> str:
        """Poll a job until it has FAILED, been CANCELED or FINISHED.

        Args:
            job_id: The job.
            timeout: Seconds to wait.
            poll_interval: Seconds between polls.

        Returns:
            The final state.

        Raises:
            FlinkTimeoutError: it had not ended in time.
            FlinkJobNotFoundError: the cluster does not know the job.
        """
        deadline = time.monotonic() + timeout
        while (state := self.get_job(job_id)["state"]) not in {"FAILED", "CANCELED", "FINISHED"}:
            if time.monotonic() > deadline:
                raise FlinkTimeoutError(f"Flink job {job_id} still {state} after {timeout:.0f}s")
            time.sleep(poll_interval)
        return state

    def cancel_job(self, job_id: str) -> None:
        """``PATCH /jobs/{id}?mode=cancel``: cancel the job without a savepoint (its state is lost).

        Flink accepts it for a job that has already ended, and does nothing then.

        Args:
            job_id: The job.

        Raises:
            FlinkJobNotFoundError: the cluster does not know the job.
        """
        self._request("PATCH", f"/jobs/{job_id}", params={"mode": "cancel"})

    def vanished_message(self, job_name: str | None, job_id: str | None) -> str:
        """Why a job the cluster does not know is missing, and where its state is, for a task's error.

        Args:
            job_name: The job's name, when it was looked up by name.
            job_id: The job's id, when it was looked up by id.

        Returns:
            One paragraph naming the job, the cluster, and its latest retained checkpoint if any.
        """
        what = f"Flink job {job_name or job_id!r}"
        try:
            if job_id is None and job_name is not None:
                record = self.read_job_record(job_name)
                job_id = record.job_id if record else None
            checkpoint = self.latest_retained_checkpoint(job_id) if job_id else None
        except (FlinkError, requests.RequestException, OSError) as exc:
            return (f"{what} is unknown to the Flink cluster at {self.base_url}; its checkpoints could not be "
                    f"read: {exc}")
        where = (f"its latest retained checkpoint is {checkpoint}: SubmitFlinkJobOperator resumes it from there"
                 if checkpoint else "no retained checkpoint of it was found")
        last = f" (it last ran as {job_id})" if job_id and job_name else ""
        return (f"{what}{last} is unknown to the Flink cluster at {self.base_url}: the JobManager lost it "
                f"(restarted without high availability?); {where}")

    # ---------------------------------------------------------------- savepoints

    def trigger_savepoint(self, job_id: str, target_directory: str | None = None, cancel_job: bool = False) -> str:
        """``POST /jobs/{id}/savepoints``: start taking a savepoint of a running job.

        Args:
            job_id: The job.
            target_directory: Where to write it (default: the cluster's ``execution.checkpointing.savepoint-dir``).
            cancel_job: Cancel the job once the savepoint is taken.

        Returns:
            The trigger id to follow with ``wait_for_savepoint``.

        Raises:
            FlinkJobNotFoundError: the cluster does not know the job.
        """
        body: dict[str, Any] = {"cancel-job": cancel_job}
        if target_directory:
            body["target-directory"] = target_directory
        return self._request("POST", f"/jobs/{job_id}/savepoints", json=body)["request-id"]

    def stop_job(self, job_id: str, target_directory: str | None = None, drain: bool = False) -> str:
        """``POST /jobs/{id}/stop``: start stopping the job with a savepoint; it then ends FINISHED.

        Args:
            job_id: The job.
            target_directory: Where to write the savepoint (default: the cluster's savepoint dir).
            drain: Emit MAX_WATERMARK first, flushing event-time windows (for a job not resumed later).

        Returns:
            The trigger id to follow with ``wait_for_savepoint``.

        Raises:
            FlinkJobNotFoundError: the cluster does not know the job.
        """
        body: dict[str, Any] = {"drain": drain}
        if target_directory:
            body["targetDirectory"] = target_directory
        return self._request("POST", f"/jobs/{job_id}/stop", json=body)["request-id"]

    def get_savepoint_status(self, job_id: str, trigger_id: str) -> dict[str, Any]:
        """``GET /jobs/{id}/savepoints/{trigger id}``: where a savepoint (or a stop with one) stands.

        Args:
            job_id: The job.
            trigger_id: What ``trigger_savepoint`` or ``stop_job`` returned.

        Returns:
            ``{"status": {"id": "IN_PROGRESS" | "COMPLETED"}, "operation": {"location": ...} or
            {"failure-cause": {"class", "stack-trace"}}}``.
        """
        return self._request("GET", f"/jobs/{job_id}/savepoints/{trigger_id}")

    def wait_for_savepoint(self, job_id: str, trigger_id: str, timeout: float = 300.0,
                           poll_interval: float = 0.5) -> str:
        """Poll a savepoint trigger until it completes.

        Args:
            job_id: The job.
            trigger_id: What ``trigger_savepoint`` or ``stop_job`` returned.
            timeout: Seconds to wait.
            poll_interval: Seconds between polls.

        Returns:
            The savepoint's location, e.g. ``file:/savepoints/savepoint-4cb1e0-9e5c0a8f2b4c``.

        Raises:
            SavepointError: Flink reports a failure (its cause in the message).
            FlinkTimeoutError: the savepoint was not done in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            answer = self.get_savepoint_status(job_id, trigger_id)
            if answer["status"]["id"] == "COMPLETED":
                operation = answer.get("operation", {})
                if "location" in operation:
                    return operation["location"]
                cause = operation.get("failure-cause", {})
                raise SavepointError(job_id, stack_trace_summary(cause.get("stack-trace", str(cause))))
            if time.monotonic() > deadline:
                raise FlinkTimeoutError(f"savepoint of Flink job {job_id} not done after {timeout:.0f}s")
            time.sleep(poll_interval)

    def savepoint(self, job_id: str, target_directory: str | None = None, timeout: float = 300.0) -> str:
        """Take a savepoint of a running job, which keeps running.

        Args:
            job_id: The job.
            target_directory: Where to write it (default: the cluster's savepoint dir).
            timeout: Seconds to wait for it.

        Returns:
            The savepoint's location.

        Raises:
            SavepointError: Flink could not take it.
            FlinkTimeoutError: it was not done in ``timeout`` seconds.
        """
        return self.wait_for_savepoint(job_id, self.trigger_savepoint(job_id, target_directory), timeout)

    def stop_with_savepoint(self, job_id: str, target_directory: str | None = None, drain: bool = False,
                            timeout: float = 300.0) -> str:
        """Stop a job with a savepoint and wait until it has ended (FINISHED).

        Args:
            job_id: The job.
            target_directory: Where to write the savepoint (default: the cluster's savepoint dir).
            drain: Flush event-time windows first (for a job not resumed later).
            timeout: Seconds for the savepoint and the end of the job together.

        Returns:
            The savepoint's location, to resubmit from (``savepoint_path``).

        Raises:
            SavepointError: Flink could not take the savepoint; the job keeps running.
            FlinkTimeoutError: the savepoint, or the end of the job, took longer than ``timeout`` seconds.
        """
        started = time.monotonic()
        location = self.wait_for_savepoint(job_id, self.stop_job(job_id, target_directory, drain), timeout)
        self.wait_until_ended(job_id, timeout=max(1.0, timeout - (time.monotonic() - started)))
        return location

    # ---------------------------------------------------------------- submission

    def list_jars(self) -> list[dict[str, Any]]:
        """``GET /jars``: jars uploaded to the cluster (``id``, ``name``)."""
        return self._request("GET", "/jars")["files"]

    def upload_jar(self, path: str | Path) -> str:
        """Upload a jar and return the id to run it with.

        Raises:
            FileNotFoundError: the jar does not exist here.
            FlinkApiError: Flink refused the upload.
        """
        path = Path(path)
        with path.open("rb") as jar:
            answer = self._request("POST", "/jars/upload",
                                   files={"jarfile": (path.name, jar, "application/x-java-archive")})
        return Path(answer["filename"]).name

    def delete_jar(self, jar_id: str) -> None:
        """``DELETE /jars/{id}``: remove an uploaded jar (jobs it started keep running).

        Args:
            jar_id: What ``upload_jar`` returned.

        Raises:
            FlinkApiError: the cluster has no such jar.
        """
        self._request("DELETE", f"/jars/{jar_id}")

    def run_jar(
        self,
        jar_id: str,
        *,
        entry_class: str | None = None,
        args: list[str] | None = None,
        parallelism: int | None = None,
        savepoint_path: str | None = None,
        allow_non_restored_state: bool = False,
        flink_configuration: dict[str, str] | None = None,
    ) -> str:
        """``POST /jars/{id}/run``: run an uploaded jar's program, which submits a job.

        Args:
            jar_id: The uploaded jar.
            entry_class: The program's main class (default: the jar manifest's).
            args: The program's arguments.
            parallelism: The job's default parallelism.
            savepoint_path: Restore the job's state from this savepoint.
            allow_non_restored_state: Start even when some savepoint state maps to no operator.
            flink_configuration: Settings for this job (e.g. ``pipeline.name``, ``restart-strategy.type``).

        Returns:
            The new job's id.

        Raises:
            FlinkApiError: Flink refused the run, or the program failed (Flink's message says why).
        """
        body: dict[str, Any] = {"programArgsList": args or [], "allowNonRestoredState": allow_non_restored_state}
        if entry_class:
            body["entryClass"] = entry_class
        if parallelism:
            body["parallelism"] = parallelism
        if savepoint_path:
            body["savepointPath"] = savepoint_path
        if flink_configuration:
            body["flinkConfiguration"] = flink_configuration
        return self._request("POST", f"/jars/{jar_id}/run", json=body)["jobid"]

    def python_jar_id(self) -> str:
        """The id of an uploaded ``flink-python`` jar, uploading the connection's ``python_jar`` if none is.

        Raises:
            FlinkError: no flink-python jar on the cluster and no ``python_jar`` extra to upload.
        """
        for jar in self.list_jars():
            if jar["name"].startswith("flink-python"):
                return jar["id"]
        python_jar = self._conn.extra_dejson.get("python_jar")
        if not python_jar:
            raise FlinkError(
                f"connection {self.conn_id!r}: the cluster has no flink-python jar uploaded and the "
                "connection has no 'python_jar' extra naming one to upload"
            )
        return self.upload_jar(python_jar)

    def submit_python(self, program: str, args: list[str] | None = None, **run_options: Any) -> str:
        """Run a PyFlink program (a path the JobManager can read) through Flink's PythonDriver.

        Args:
            program: The program's path, as the JobManager sees it.
            args: The program's arguments.
            run_options: ``run_jar``'s keyword arguments (savepoint, configuration, ...).

        Returns:
            The new job's id.

        Raises:
            FlinkApiError: Flink refused the run, or the program exited with an error (Flink then
                reports only its exit code; the program's output is in the JobManager's log).
        """
        return self.run_jar(self.python_jar_id(), entry_class=PYTHON_DRIVER,
                            args=["-py", program, *(args or [])], **run_options)

    def submit_sql(self, script: str, job_name: str | None = None, **run_options: Any) -> str:
        """Run a Flink SQL script (SET statements, DDL, then INSERTs run as one job) on the session cluster.

        Args:
            script: The statements, each ending with a semicolon at the end of a line.
            job_name: The job's name.
            run_options: ``run_jar``'s keyword arguments (savepoint, configuration, ...).

        Returns:
            The new job's id.

        Raises:
            FlinkProgramError: Flink refused a statement (the message has Flink's reason and the
                statement, read from the JobManager's log).
            FlinkApiError: Flink refused the run.
        """
        runner = self._conn.extra_dejson.get("sql_runner") or str(SQL_RUNNER)
        submission_id = uuid.uuid4().hex
        args = ["--sql-base64", base64.b64encode(script.encode()).decode(), "--submission-id", submission_id]
        if job_name:
            args += ["--job-name", job_name]
        started_ms = int(time.time() * 1000) - 1000
        try:
            return self.submit_python(runner, args, **run_options)
        except FlinkApiError as exc:
            if NO_JOBS_IN_APPLICATION in exc.message and job_name:
                # Flink 2.2's jar-run handler sometimes loses the id of the job the program submitted
                # (a race with the Python process exiting): the job runs; find it by its name.
                job_id = self._job_submitted_since(job_name, started_ms)
                if job_id is None:
                    raise
                self.log.warning("Flink answered %r but the program had submitted job %s (%s): using it",
                                 exc.message, job_name, job_id)
                return job_id
            if PYTHON_PROCESS_FAILED not in exc.message:
                raise
            report = self._sql_runner_report(submission_id)
            if report is None:
                raise
            raise FlinkProgramError(stack_trace_summary(report["error"]), report.get("statement")) from exc

    def _job_submitted_since(self, job_name: str, since_ms: int) -> str | None:
        """The newest job of that name started since ``since_ms`` (waiting up to ``lost_job_wait`` s for it), if any."""
        deadline = time.monotonic() + self.lost_job_wait
        while True:
            jobs = [job for job in self.find_jobs(job_name) if job["start-time"] >= since_ms]
            if jobs or time.monotonic() > deadline:
                return jobs[0]["jid"] if jobs else None
            time.sleep(0.5)

    def _sql_runner_report(self, submission_id: str) -> dict[str, Any] | None:
        """What the SQL runner logged about a failed submission, from the JobManager's log (None if absent)."""
        try:
            log = self._send("GET", "/jobmanager/log").text
        except (FlinkError, requests.RequestException) as exc:
            self.log.warning("Cannot read the JobManager's log for the SQL runner's error: %s", exc)
            return None
        return next((report for line in reversed(log.splitlines())
                     if (report := parse_error_line(line, submission_id)) is not None), None)

    @staticmethod
    def is_fully_running(job: dict[str, Any]) -> bool:
        """True when the job and every one of its vertices are RUNNING (a job says RUNNING before its tasks do)."""
        vertices = job.get("vertices", [])
        return job.get("state") == "RUNNING" and bool(vertices) and all(v["status"] == "RUNNING" for v in vertices)

    # ---------------------------------------------------------------- async, for triggers
    # Each runs its sync twin in the event loop's default executor (thread_sensitive=False), so a
    # slow JobManager holds up no other trigger sharing the loop.

    async def ajob_health(self, job_id: str, policy: HealthPolicy, since_ms: int | None = None) -> JobHealth:
        """``job_health`` without blocking the event loop (same retries and errors)."""
        return await sync_to_async(self.job_health, thread_sensitive=False)(job_id, policy, since_ms)

    async def avanished_message(self, job_name: str | None, job_id: str | None) -> str:
        """``vanished_message`` without blocking the event loop."""
        return await sync_to_async(self.vanished_message, thread_sensitive=False)(job_name, job_id)

    async def alatest_job_id(self, name: str) -> str | None:
        """``latest_job_id`` without blocking the event loop (same retries and errors)."""
        return await sync_to_async(self.latest_job_id, thread_sensitive=False)(name)
