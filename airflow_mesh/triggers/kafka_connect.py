"""ConnectorHealthTrigger: the asynchronous wait behind ``ConnectorHealthSensor(deferrable=True)``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_mesh.connectors.health import (
    ConnectorHealth,
    HealthWatch,
    Step,
    assess,
    not_yet_reported,
    service_unavailable,
)
from airflow_mesh.hooks.kafka_connect import ConnectorNotFoundError, KafkaConnectHook, unavailability


async def observe_connector(hook: KafkaConnectHook, name: str) -> ConnectorHealth:
    """One look at a connector, without blocking the event loop; Connect being down is an observation.

    Args:
        hook: A hook built with ``KafkaConnectHook.for_polling`` (each call bounded to a few seconds).
        name: The connector's name.

    Returns:
        The assessed status; PENDING (``unavailable`` says why) when Connect is unreachable or not
        ready, or has no status yet for a connector that exists.

    Raises:
        ConnectorNotFoundError: Connect says there is no such connector.
        KafkaConnectApiError: any other error answer.
    """
    try:
        try:
            return assess(await hook.aget_connector_status(name))
        except ConnectorNotFoundError:
            if await hook.aconnector_exists(name):
                return not_yet_reported(name)
            raise
    except Exception as exc:
        reason = unavailability(exc)
        if reason is None:
            raise
        return service_unavailable(name, reason)


class ConnectorHealthTrigger(BaseTrigger):
    """Poll a connector's status until it is healthy or has failed for good.

    Kafka Connect being unreachable or not ready (starting, rebalancing) is logged as "not yet
    healthy" and the polling goes on: the task's defer timeout bounds the wait. Each call to
    Connect takes at most ``call_timeout`` seconds. A triggerer that restarts runs the trigger
    again from its serialized arguments: the healthy period and the restart budget start over.

    Args:
        connector_name: The connector to watch.
        kafka_connect_conn_id: The Kafka Connect connection.
        poll_interval: Seconds between polls.
        restart_failed_tasks: How many times to restart failed tasks before reporting failure.
        healthy_for: Seconds the connector must stay healthy before the wait is over.
        call_timeout: Seconds one call to Kafka Connect may take, retries included.

    Yields:
        One event: ``{"status": "healthy" | "failed" | "error", "message": ...}``.
    """

    def __init__(self, connector_name: str, kafka_connect_conn_id: str = KafkaConnectHook.default_conn_name,
                 poll_interval: float = 5.0, restart_failed_tasks: int = 0, healthy_for: float = 0.0,
                 call_timeout: float = 5.0) -> None:
        super().__init__()
        self.connector_name = connector_name
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self.poll_interval = poll_interval
        self.restart_failed_tasks = restart_failed_tasks
        self.healthy_for = healthy_for
        self.call_timeout = call_timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The trigger's class path and the arguments that rebuild it."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "connector_name": self.connector_name,
                "kafka_connect_conn_id": self.kafka_connect_conn_id,
                "poll_interval": self.poll_interval,
                "restart_failed_tasks": self.restart_failed_tasks,
                "healthy_for": self.healthy_for,
                "call_timeout": self.call_timeout,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until healthy (for ``healthy_for``) or failed beyond the restart budget."""
        hook = KafkaConnectHook.for_polling(self.kafka_connect_conn_id, self.call_timeout)
        watch = HealthWatch(self.restart_failed_tasks, self.healthy_for)
        try:
            while True:
                health = await observe_connector(hook, self.connector_name)
                step = watch.observe(health, time.monotonic())
                if step is Step.DONE:
                    yield TriggerEvent({"status": "healthy", "message": health.summary()})
                    return
                if step is Step.FAIL:
                    yield TriggerEvent({"status": "failed", "message": health.failure_message()})
                    return
                if health.unavailable:
                    self.log.info("%s", health.summary())
                if step is Step.RESTART:
                    self.log.warning("Restarting failed tasks of %s (%d of %d)", self.connector_name,
                                     watch.restarts_done, self.restart_failed_tasks)
                    try:
                        await hook.arestart_connector(self.connector_name, include_tasks=True, only_failed=True)
                    except Exception as exc:
                        if (reason := unavailability(exc)) is None:
                            raise
                        self.log.warning("Could not restart %s: %s", self.connector_name, reason)
                await asyncio.sleep(self.poll_interval)
        except Exception as exc:  # noqa: BLE001 - reported to the task, which fails with the reason
            yield TriggerEvent({"status": "error", "message": f"connector {self.connector_name}: {exc}"})
