"""ConnectorHealthTrigger: the asynchronous wait behind ``ConnectorHealthSensor(deferrable=True)``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_mesh.connectors.health import ConnectorHealth, HealthWatch, Step, assess, not_yet_reported
from airflow_mesh.hooks.kafka_connect import ConnectorNotFoundError, KafkaConnectHook


class ConnectorHealthTrigger(BaseTrigger):
    """Poll a connector's status until it is healthy or has failed for good.

    Args:
        connector_name: The connector to watch.
        kafka_connect_conn_id: The Kafka Connect connection.
        poll_interval: Seconds between polls.
        restart_failed_tasks: How many times to restart failed tasks before reporting failure.
        healthy_for: Seconds the connector must stay healthy before the wait is over.

    Yields:
        One event: ``{"status": "healthy" | "failed" | "error", "message": ...}``.
    """

    def __init__(self, connector_name: str, kafka_connect_conn_id: str = KafkaConnectHook.default_conn_name,
                 poll_interval: float = 5.0, restart_failed_tasks: int = 0, healthy_for: float = 0.0) -> None:
        super().__init__()
        self.connector_name = connector_name
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self.poll_interval = poll_interval
        self.restart_failed_tasks = restart_failed_tasks
        self.healthy_for = healthy_for

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "connector_name": self.connector_name,
                "kafka_connect_conn_id": self.kafka_connect_conn_id,
                "poll_interval": self.poll_interval,
                "restart_failed_tasks": self.restart_failed_tasks,
                "healthy_for": self.healthy_for,
            },
        )

    async def _health(self, hook: KafkaConnectHook) -> ConnectorHealth:
        try:
            return assess(await hook.aget_connector_status(self.connector_name))
        except ConnectorNotFoundError:
            if await hook.aconnector_exists(self.connector_name):
                return not_yet_reported(self.connector_name)
            raise

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = KafkaConnectHook(self.kafka_connect_conn_id)
        watch = HealthWatch(self.restart_failed_tasks, self.healthy_for)
        try:
            while True:
                health = await self._health(hook)
                step = watch.observe(health, time.monotonic())
                if step is Step.DONE:
                    yield TriggerEvent({"status": "healthy", "message": health.summary()})
                    return
                if step is Step.FAIL:
                    yield TriggerEvent({"status": "failed", "message": health.failure_message()})
                    return
                if step is Step.RESTART:
                    self.log.warning("Restarting failed tasks of %s (%d of %d)", self.connector_name,
                                     watch.restarts_done, self.restart_failed_tasks)
                    await hook.arestart_connector(self.connector_name, include_tasks=True, only_failed=True)
                await asyncio.sleep(self.poll_interval)
        except Exception as exc:  # noqa: BLE001 - reported to the task, which fails with the reason
            yield TriggerEvent({"status": "error", "message": f"connector {self.connector_name}: {exc}"})
