"""FlinkHook: a Flink session cluster over its REST API (the provider never imports PyFlink)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import requests

from airflow_mesh.hooks.rest import RestApiHook
from airflow_mesh.http import DEFAULT_TIMEOUT

PYTHON_DRIVER = "org.apache.flink.client.python.PythonDriver"
SQL_RUNNER = Path(__file__).resolve().parent.parent / "flink_runtime" / "sql_job.py"


class FlinkError(Exception):
    """Base class of the errors FlinkHook raises."""


class FlinkApiError(FlinkError):
    """Flink's REST API answered with an error.

    Attributes:
        status: The HTTP status code.
        errors: The ``errors`` list of Flink's answer (its message and, often, a Java stack trace).
    """

    def __init__(self, method: str, url: str, status: int, errors: list[str]) -> None:
        self.status = status
        self.errors = errors
        first = errors[0].strip().splitlines()[0] if errors else "no error message"
        super().__init__(f"Flink {method} {url} returned {status}: {first}")


class FlinkHook(RestApiHook):
    """Talk to a Flink session cluster's REST API.

    The connection locates the JobManager's REST endpoint as RestApiHook describes (basic auth
    and TLS settings serve a proxy in front of Flink). Further extras: ``python_jar`` (path of ``flink-python-*.jar`` to upload when the cluster has none yet),
    ``sql_runner`` (path of airflow_mesh's ``sql_job.py`` as the JobManager sees it; defaults to
    this installation's copy, right when Airflow and the JobManager share a filesystem).

    Args:
        flink_conn_id: The Airflow connection to use.
        timeout: Seconds to wait for each HTTP answer.
        retries: Retries (with backoff) on connection errors and 5xx answers.
    """

    conn_name_attr = "flink_conn_id"
    default_conn_name = "flink_default"
    conn_type = "flink"
    hook_name = "Apache Flink (REST)"
    default_port = 8081

    def __init__(self, flink_conn_id: str = default_conn_name, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = 5) -> None:
        super().__init__(flink_conn_id, timeout, retries)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabel the connection form for Flink's REST endpoint."""
        return {
            "hidden_fields": [],
            "relabeling": {"host": "JobManager REST host", "schema": "Scheme (http/https)"},
            "placeholders": {"host": "flink-jobmanager", "port": "8081", "schema": "http",
                             "extra": '{"python_jar": "/opt/flink/opt/flink-python-2.2.1.jar"}'},
        }

    def _error_for(self, response: requests.Response) -> FlinkApiError:
        try:
            errors = response.json().get("errors", [])
        except ValueError:
            errors = [response.text]
        return FlinkApiError(response.request.method, response.url, response.status_code, errors)

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
        """``GET /jobs/overview``: every job the cluster knows, with ``jid``, ``name`` and ``state``."""
        return self._request("GET", "/jobs/overview")["jobs"]

    def get_job(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/{id}``: state and per-vertex status of one job.

        Raises:
            FlinkApiError: 404 when the cluster does not know the job.
        """
        return self._request("GET", f"/jobs/{job_id}")

    def get_exceptions(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/{id}/exceptions``: the job's exception history."""
        return self._request("GET", f"/jobs/{job_id}/exceptions")

    def cancel_job(self, job_id: str) -> None:
        """``PATCH /jobs/{id}?mode=cancel``."""
        self._request("PATCH", f"/jobs/{job_id}", params={"mode": "cancel"})

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
        """``POST /jars/{id}/run`` and return the new job's id."""
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
                f"connection {self.flink_conn_id!r}: the cluster has no flink-python jar uploaded and the "
                "connection has no 'python_jar' extra naming one to upload"
            )
        return self.upload_jar(python_jar)

    def submit_python(self, program: str, args: list[str] | None = None, **run_options: Any) -> str:
        """Run a PyFlink program (a path the JobManager can read) through Flink's PythonDriver.

        Returns:
            The new job's id.
        """
        return self.run_jar(self.python_jar_id(), entry_class=PYTHON_DRIVER,
                            args=["-py", program, *(args or [])], **run_options)

    def submit_sql(self, script: str, job_name: str | None = None, **run_options: Any) -> str:
        """Run a Flink SQL script (DDL, then INSERTs run as one job) on the session cluster.

        Returns:
            The new job's id.
        """
        runner = self._conn.extra_dejson.get("sql_runner") or str(SQL_RUNNER)
        args = ["--sql-base64", base64.b64encode(script.encode()).decode()]
        if job_name:
            args += ["--job-name", job_name]
        return self.submit_python(runner, args, **run_options)

    @staticmethod
    def is_fully_running(job: dict[str, Any]) -> bool:
        """True when the job and every one of its vertices are RUNNING (a job says RUNNING before its tasks do)."""
        vertices = job.get("vertices", [])
        return job.get("state") == "RUNNING" and bool(vertices) and all(v["status"] == "RUNNING" for v in vertices)
