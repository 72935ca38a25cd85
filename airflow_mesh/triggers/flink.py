"""FlinkJobHealthTrigger: the asynchronous wait behind ``FlinkJobHealthSensor(deferrable=True)``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_mesh.flink.health import HealthPolicy, Verdict
from airflow_mesh.hooks.flink import FlinkHook, FlinkJobNotFoundError
from airflow_mesh.hooks.rest import ServiceUnreachableError

# Each REST call of a poll is bounded: the poll interval is the retry.
POLL_REQUEST_TIMEOUT = 10.0


class FlinkJobHealthTrigger(BaseTrigger):
    """Poll a Flink job until it is healthy or has failed for good (``FlinkJobHealthSensor`` says what that means).

    The verdict is judged on Flink's own timestamps from ``since_ms`` on, so a trigger that runs
    again (after a triggerer restart) judges exactly as the one before it. An unreachable JobManager
    counts as not yet healthy, logged as such, until the task's defer timeout.

    Args:
        job_id: The job to watch.
        job_name: Instead of ``job_id``: watch the job of that name that runs (or, when none runs,
            the newest that ran), looked up at every poll.
        flink_conn_id: The Flink connection.
        poll_interval: Seconds between polls.
        max_restarts: Failures allowed in the window.
        restart_window: Seconds back from now in which failures count.
        checkpoint_age_factor: How many checkpoint intervals old the latest checkpoint may be.
        max_checkpoint_age: Seconds the latest checkpoint may be old, instead of the factor.
        healthy_for: Seconds the job must stay healthy before the wait is over.
        progress_check: Also require each source with records waiting to have read some in the last minute.
        since_ms: When the wait began (ms since the epoch); default: when the trigger was made.

    Yields:
        One event: ``{"status": "healthy" | "failed" | "error", "message": ..., "job_id": ...}``.
    """

    def __init__(self, job_id: str | None = None, job_name: str | None = None,
                 flink_conn_id: str = FlinkHook.default_conn_name, poll_interval: float = 5.0,
                 max_restarts: int = 3, restart_window: float = 600.0, checkpoint_age_factor: float | None = 3.0,
                 max_checkpoint_age: float | None = None, healthy_for: float = 5.0, progress_check: bool = False,
                 since_ms: int | None = None) -> None:
        super().__init__()
        self.job_id = job_id
        self.job_name = job_name
        self.flink_conn_id = flink_conn_id
        self.poll_interval = poll_interval
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.checkpoint_age_factor = checkpoint_age_factor
        self.max_checkpoint_age = max_checkpoint_age
        self.healthy_for = healthy_for
        self.progress_check = progress_check
        self.since_ms = since_ms if since_ms is not None else int(time.time() * 1000)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_id": self.job_id,
                "job_name": self.job_name,
                "flink_conn_id": self.flink_conn_id,
                "poll_interval": self.poll_interval,
                "max_restarts": self.max_restarts,
                "restart_window": self.restart_window,
                "checkpoint_age_factor": self.checkpoint_age_factor,
                "max_checkpoint_age": self.max_checkpoint_age,
                "healthy_for": self.healthy_for,
                "progress_check": self.progress_check,
                "since_ms": self.since_ms,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = FlinkHook.for_polling(self.flink_conn_id, POLL_REQUEST_TIMEOUT)
        policy = HealthPolicy(self.max_restarts, self.restart_window, self.checkpoint_age_factor,
                              self.max_checkpoint_age, self.healthy_for, self.progress_check)
        try:
            while True:
                try:
                    job_id = self.job_id or await hook.alatest_job_id(str(self.job_name))
                    if job_id is None:
                        raise FlinkJobNotFoundError("GET", hook.base_url, 404, [])
                    health = await hook.ajob_health(job_id, policy, self.since_ms)
                except FlinkJobNotFoundError:
                    message = await hook.avanished_message(self.job_name, self.job_id)
                    yield TriggerEvent({"status": "failed", "message": message, "job_id": self.job_id})
                    return
                except ServiceUnreachableError as exc:
                    self.log.warning("Not yet healthy: %s", exc)
                else:
                    verdict = health.verdict()
                    if verdict is Verdict.DONE:
                        yield TriggerEvent({"status": "healthy", "message": health.summary(), "job_id": job_id})
                        return
                    if verdict is Verdict.FAIL:
                        yield TriggerEvent({"status": "failed", "message": health.failure_message(),
                                            "job_id": job_id})
                        return
                    self.log.info("%s; waiting: %s", health.summary(), health.waiting_for())
                await asyncio.sleep(self.poll_interval)
        except Exception as exc:  # noqa: BLE001 - reported to the task, which fails with the reason
            yield TriggerEvent({"status": "error", "message": f"Flink job {self.job_id or self.job_name}: {exc}",
                                "job_id": self.job_id})
