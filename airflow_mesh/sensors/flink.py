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

from airflow_mesh.flink.health import HealthPolicy, Verdict
from airflow_mesh.hooks.flink import FlinkHook, FlinkJobNotFoundError
from airflow_mesh.hooks.rest import ServiceUnreachableError
from airflow_mesh.triggers.flink import FlinkJobHealthTrigger

# Each REST call of a poke is bounded: the poke interval is the retry.
POKE_REQUEST_TIMEOUT = 10.0


class FlinkJobHealthSensor(BaseSensorOperator):
    """Succeed when a job has been healthy for ``healthy_for`` seconds; fail when it fails.

    Judged on Flink's own timestamps (``airflow_mesh.flink.health``), so the sensor keeps no state
    between pokes and works the same in ``poke``, ``reschedule`` and deferrable mode:

    - healthy: the job and every vertex RUNNING; at most ``max_restarts`` failures in the last
      ``restart_window`` seconds unless a checkpoint completed after the latest (a job that
      recovered by itself is healthy); with checkpointing on, a checkpoint completed in the last
      ``checkpoint_age_factor`` checkpoint intervals (a stalled job, or a sink that cannot write,
      completes none);
    - the wait is over once healthy for ``healthy_for`` seconds since the later of the job's last
      failure and the first poke, and a checkpoint completed after that (a lost TaskManager shows
      as RUNNING until Flink's heartbeat notices, but completes no checkpoint);
    - failed: the job FAILED, was cancelled or finished, failed too often, or vanished (the
      JobManager lost it): the sensor fails with Flink's account of the latest exception, or says
      where the job's latest retained checkpoint is.

    An unreachable JobManager counts as "not yet healthy" (logged as such) until the sensor's
    ``timeout``, measured from the first poke.

    Args:
        job_id: The job to watch (templated).
        job_name: Instead of ``job_id``: the job of that name that runs (or, when none runs, the
            newest that ran), looked up at every poke (templated).
        flink_conn_id: The Flink connection.
        max_restarts: Failures allowed in the window.
        restart_window: Seconds back from now in which failures count.
        checkpoint_age_factor: How many checkpoint intervals old the latest checkpoint may be; None
            skips the check.
        max_checkpoint_age: Seconds the latest checkpoint may be old, instead of the factor.
        healthy_for: Seconds the job must stay healthy.
        progress_check: Also require each source with records waiting to have read some in the
            last minute (catches a job that runs and checkpoints but reads nothing while its topic grows).
        deferrable: Hand the wait to a trigger that polls asynchronously and holds no worker slot
            (default: Airflow's ``[operators] default_deferrable``, read when the sensor is created).

    Returns (XCom):
        The last health summary.
    """

    template_fields: Sequence[str] = ("job_id", "job_name", "flink_conn_id")
    ui_color = "#f3e8fd"

    def __init__(self, *, job_id: str | None = None, job_name: str | None = None,
                 flink_conn_id: str = FlinkHook.default_conn_name, max_restarts: int = 3,
                 restart_window: float = 600.0, checkpoint_age_factor: float | None = 3.0,
                 max_checkpoint_age: float | None = None, healthy_for: float = 5.0, progress_check: bool = False,
                 deferrable: bool | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("poke_interval", 5)
        super().__init__(**kwargs)
        if (job_id is None) == (job_name is None):
            raise ValueError("give exactly one of job_id and job_name")
        self.job_id = job_id
        self.job_name = job_name
        self.flink_conn_id = flink_conn_id
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.checkpoint_age_factor = checkpoint_age_factor
        self.max_checkpoint_age = max_checkpoint_age
        self.healthy_for = healthy_for
        self.progress_check = progress_check
        self.deferrable = (conf.getboolean("operators", "default_deferrable", fallback=False)
                           if deferrable is None else deferrable)
        self._first_poke_ms: int | None = None

    @cached_property
    def hook(self) -> FlinkHook:
        return FlinkHook.for_polling(self.flink_conn_id, POKE_REQUEST_TIMEOUT)

    @property
    def policy(self) -> HealthPolicy:
        """The sensor's thresholds."""
        return HealthPolicy(self.max_restarts, self.restart_window, self.checkpoint_age_factor,
                            self.max_checkpoint_age, self.healthy_for, self.progress_check)

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
                restart_window=self.restart_window,
                checkpoint_age_factor=self.checkpoint_age_factor,
                max_checkpoint_age=self.max_checkpoint_age,
                healthy_for=self.healthy_for,
                progress_check=self.progress_check,
                since_ms=int(time.time() * 1000),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def _since_ms(self, context: Any) -> int:
        """When the wait began: the first poke (in reschedule mode, the first try's, which Airflow keeps)."""
        if self.reschedule and context.get("ti") is not None:
            first = context["ti"].get_first_reschedule_date(context)
            if first is not None:
                return int(first.timestamp() * 1000)
        if self._first_poke_ms is None:
            self._first_poke_ms = int(time.time() * 1000)
        return self._first_poke_ms

    def poke(self, context: Any) -> bool:
        since_ms = self._since_ms(context)
        try:
            job_id = self.job_id or self.hook.latest_job_id(str(self.job_name))
            if job_id is None:
                raise AirflowException(self.hook.vanished_message(self.job_name, None))
            health = self.hook.job_health(job_id, self.policy, since_ms)
        except FlinkJobNotFoundError as exc:
            raise AirflowException(self.hook.vanished_message(self.job_name, self.job_id)) from exc
        except ServiceUnreachableError as exc:
            self.log.warning("Not yet healthy: %s", exc)
            return False
        verdict = health.verdict()
        if verdict is Verdict.FAIL:
            raise AirflowException(health.failure_message())
        waiting = health.waiting_for()
        self.log.info("%s%s", health.summary(), f"; waiting: {waiting}" if waiting else "")
        return verdict is Verdict.DONE

    def execute_complete(self, context: Any, event: dict[str, Any]) -> str:
        """Resume after the trigger: succeed on ``healthy``, fail with the trigger's message otherwise."""
        if event.get("status") != "healthy":
            raise AirflowException(event.get("message", f"Flink job {self.job_id or self.job_name}: {event}"))
        self.log.info("%s", event["message"])
        return event["message"]
