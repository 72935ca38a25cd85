"""FlinkJobHealthSensor: wait until a Flink job is healthy; fail at once, with Flink's exception, when it fails."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowException

from airflow_mesh.hooks.flink import FlinkHook
from airflow_mesh.processors.health import HealthPolicy, HealthWatch, Verdict
from airflow_mesh.triggers.flink import FlinkJobHealthTrigger


class FlinkJobHealthSensor(BaseSensorOperator):
    """Succeed when a job has been healthy for ``healthy_for`` seconds; fail when it fails.

    Healthy: the job and every one of its vertices RUNNING, at most ``max_restarts`` restarts, and
    (with ``max_checkpoint_age``) a checkpoint completed in the last ``max_checkpoint_age`` seconds.
    A job that FAILED, was cancelled or finished, or restarted more often fails the sensor with
    Flink's account of its latest exception (``/jobs/{id}/exceptions``).

    Args:
        job_id: The job to watch (templated).
        job_name: Instead of ``job_id``: the job of that name that runs (or, when none runs, the
            newest that ran), looked up at every poke (templated).
        flink_conn_id: The Flink connection.
        max_restarts: Restarts the job may have had and still count as healthy.
        max_checkpoint_age: Seconds the latest completed checkpoint may be old; None skips the check.
        healthy_for: Seconds the job must stay healthy (one failing on its first records looks
            healthy for a moment).
        deferrable: Hand the wait to a trigger that polls asynchronously and holds no worker slot
            (default: Airflow's ``[operators] default_deferrable``, read when the sensor is created).

    Returns (XCom):
        The last health summary.
    """

    template_fields: Sequence[str] = ("job_id", "job_name", "flink_conn_id")
    ui_color = "#f3e8fd"

    def __init__(self, *, job_id: str | None = None, job_name: str | None = None,
                 flink_conn_id: str = FlinkHook.default_conn_name, max_restarts: int = 3,
                 max_checkpoint_age: float | None = None, healthy_for: float = 5.0, deferrable: bool | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("poke_interval", 5)
        super().__init__(**kwargs)
        if (job_id is None) == (job_name is None):
            raise ValueError("give exactly one of job_id and job_name")
        self.job_id = job_id
        self.job_name = job_name
        self.flink_conn_id = flink_conn_id
        self.max_restarts = max_restarts
        self.max_checkpoint_age = max_checkpoint_age
        self.healthy_for = healthy_for
        self.deferrable = (conf.getboolean("operators", "default_deferrable", fallback=False)
                           if deferrable is None else deferrable)
        self._watch = HealthWatch(healthy_for)

    @cached_property
    def hook(self) -> FlinkHook:
        return FlinkHook(self.flink_conn_id)

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        self.defer(
            trigger=FlinkJobHealthTrigger(
                job_id=self.job_id,
                job_name=self.job_name,
                flink_conn_id=self.flink_conn_id,
                poll_interval=self.poke_interval,
                max_restarts=self.max_restarts,
                max_checkpoint_age=self.max_checkpoint_age,
                healthy_for=self.healthy_for,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def poke(self, context: Any) -> bool:
        job_id = self.job_id or self.hook.latest_job_id(self.job_name)
        if job_id is None:
            raise AirflowException(f"no Flink job named {self.job_name!r}")
        health = self.hook.job_health(job_id, HealthPolicy(self.max_restarts, self.max_checkpoint_age))
        self.log.info("%s", health.summary())
        verdict = self._watch.observe(health, time.monotonic())
        if verdict is Verdict.FAIL:
            raise AirflowException(health.failure_message())
        return verdict is Verdict.DONE

    def execute_complete(self, context: Any, event: dict[str, Any]) -> str:
        """Resume after the trigger: succeed on ``healthy``, fail with the trigger's message otherwise."""
        if event.get("status") != "healthy":
            raise AirflowException(event.get("message", f"Flink job {self.job_id or self.job_name}: {event}"))
        self.log.info("%s", event["message"])
        return event["message"]
