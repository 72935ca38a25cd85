"""FlinkJobHealthTrigger: the asynchronous wait behind ``FlinkJobHealthSensor(deferrable=True)``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_mesh.hooks.flink import FlinkHook
from airflow_mesh.processors.health import HealthPolicy, HealthWatch, Verdict


class FlinkJobHealthTrigger(BaseTrigger):
    """Poll a Flink job until it is healthy or has failed for good.

    Args:
        job_id: The job to watch.
        job_name: Instead of ``job_id``: watch the job of that name that runs (or, when none runs,
            the newest that ran), looked up at every poll.
        flink_conn_id: The Flink connection.
        poll_interval: Seconds between polls.
        max_restarts: Restarts the job may have had and still count as healthy.
        max_checkpoint_age: Seconds the latest completed checkpoint may be old; None skips the check.
        healthy_for: Seconds the job must stay healthy before the wait is over.

    Yields:
        One event: ``{"status": "healthy" | "failed" | "error", "message": ..., "job_id": ...}``.
    """

    def __init__(self, job_id: str | None = None, job_name: str | None = None,
                 flink_conn_id: str = FlinkHook.default_conn_name, poll_interval: float = 5.0,
                 max_restarts: int = 3, max_checkpoint_age: float | None = None, healthy_for: float = 0.0) -> None:
        super().__init__()
        self.job_id = job_id
        self.job_name = job_name
        self.flink_conn_id = flink_conn_id
        self.poll_interval = poll_interval
        self.max_restarts = max_restarts
        self.max_checkpoint_age = max_checkpoint_age
        self.healthy_for = healthy_for

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_id": self.job_id,
                "job_name": self.job_name,
                "flink_conn_id": self.flink_conn_id,
                "poll_interval": self.poll_interval,
                "max_restarts": self.max_restarts,
                "max_checkpoint_age": self.max_checkpoint_age,
                "healthy_for": self.healthy_for,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = FlinkHook(self.flink_conn_id)
        policy = HealthPolicy(self.max_restarts, self.max_checkpoint_age)
        watch = HealthWatch(self.healthy_for)
        try:
            while True:
                job_id = self.job_id or await hook.alatest_job_id(self.job_name)
                if job_id is None:
                    yield TriggerEvent({"status": "failed", "message": f"no Flink job named {self.job_name!r}",
                                        "job_id": None})
                    return
                health = await hook.ajob_health(job_id, policy)
                verdict = watch.observe(health, time.monotonic())
                if verdict is Verdict.DONE:
                    yield TriggerEvent({"status": "healthy", "message": health.summary(), "job_id": job_id})
                    return
                if verdict is Verdict.FAIL:
                    yield TriggerEvent({"status": "failed", "message": health.failure_message(), "job_id": job_id})
                    return
                await asyncio.sleep(self.poll_interval)
        except Exception as exc:  # noqa: BLE001 - reported to the task, which fails with the reason
            yield TriggerEvent({"status": "error", "message": f"Flink job {self.job_id or self.job_name}: {exc}",
                                "job_id": self.job_id})
