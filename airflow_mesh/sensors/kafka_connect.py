"""ConnectorHealthSensor: wait until a connector and all its tasks run; fail fast when one fails."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowException

from airflow_mesh.connectors.health import ConnectorHealth, HealthWatch, Step, assess, not_yet_reported
from airflow_mesh.hooks.kafka_connect import ConnectorNotFoundError, KafkaConnectHook
from airflow_mesh.triggers.kafka_connect import ConnectorHealthTrigger


class ConnectorHealthSensor(BaseSensorOperator):
    """Succeed when the connector and every task are RUNNING; fail at once, with the task's stack
    trace, when one is FAILED (after restarting failed tasks up to ``restart_failed_tasks`` times).

    Args:
        connector_name: The connector to watch (templated).
        kafka_connect_conn_id: The Kafka Connect connection.
        restart_failed_tasks: How many times to restart failed tasks before failing.
        healthy_for: Seconds the connector must stay healthy before the sensor succeeds (a task that
            fails while snapshotting reports RUNNING for a moment first).
        deferrable: Hand the wait to a trigger that polls asynchronously and holds no worker slot
            (default: Airflow's ``[operators] default_deferrable``, read when the sensor is created).
    """

    template_fields: Sequence[str] = ("connector_name", "kafka_connect_conn_id")
    ui_color = "#e8f1fb"

    def __init__(self, *, connector_name: str, kafka_connect_conn_id: str = KafkaConnectHook.default_conn_name,
                 restart_failed_tasks: int = 0, healthy_for: float = 5.0,
                 deferrable: bool | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("poke_interval", 5)
        super().__init__(**kwargs)
        self.connector_name = connector_name
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self.restart_failed_tasks = restart_failed_tasks
        self.healthy_for = healthy_for
        self.deferrable = (conf.getboolean("operators", "default_deferrable", fallback=False)
                           if deferrable is None else deferrable)
        self._watch = HealthWatch(restart_failed_tasks, healthy_for)

    @cached_property
    def hook(self) -> KafkaConnectHook:
        return KafkaConnectHook(self.kafka_connect_conn_id)

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        self.defer(
            trigger=ConnectorHealthTrigger(
                connector_name=self.connector_name,
                kafka_connect_conn_id=self.kafka_connect_conn_id,
                poll_interval=self.poke_interval,
                restart_failed_tasks=self.restart_failed_tasks,
                healthy_for=self.healthy_for,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def _health(self) -> ConnectorHealth:
        try:
            return assess(self.hook.get_connector_status(self.connector_name))
        except ConnectorNotFoundError:
            if self.hook.connector_exists(self.connector_name):
                return not_yet_reported(self.connector_name)
            raise

    def poke(self, context: Any) -> bool:
        health = self._health()
        step = self._watch.observe(health, time.monotonic())
        self.log.info("%s", health.summary())
        if step is Step.RESTART:
            self.log.warning("Restarting failed tasks of %s (%d of %d):\n%s", self.connector_name,
                             self._watch.restarts_done, self.restart_failed_tasks, health.failure_message())
            self.hook.restart_connector(self.connector_name, include_tasks=True, only_failed=True)
        elif step is Step.FAIL:
            raise AirflowException(health.failure_message())
        return step is Step.DONE

    def execute_complete(self, context: Any, event: dict[str, Any]) -> str:
        """Resume after the trigger: succeed on ``healthy``, fail with the trigger's message otherwise."""
        if event.get("status") != "healthy":
            raise AirflowException(event.get("message", f"connector {self.connector_name}: {event}"))
        self.log.info("%s", event["message"])
        return event["message"]
