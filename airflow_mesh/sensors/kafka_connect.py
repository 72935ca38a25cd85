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

from airflow_mesh.connectors.health import (
    ConnectorHealth,
    Health,
    HealthWatch,
    Step,
    assess,
    not_yet_reported,
    service_unavailable,
)
from airflow_mesh.hooks.kafka_connect import ConnectorNotFoundError, KafkaConnectHook, unavailability
from airflow_mesh.triggers.kafka_connect import ConnectorHealthTrigger

#: The key of the watch's state in the task state store (reschedule mode).
STATE_KEY = "connector_health_watch"


def wall_clock() -> float:
    """Seconds since the epoch: in reschedule mode the watch outlives the process, so no monotonic clock."""
    return time.time()


class ConnectorHealthSensor(BaseSensorOperator):
    """Succeed when the connector and every task are RUNNING; fail at once, with the task's stack
    trace, when one is FAILED (after restarting failed tasks up to ``restart_failed_tasks`` times).

    Kafka Connect being unreachable or not ready (a worker starting or rebalancing) is not a failure:
    it is logged as ``not yet healthy: Kafka Connect at <url> unreachable (...)`` and the wait goes
    on until the sensor's ``timeout``, counted from the first poke. One poke takes at most a few
    times ``call_timeout`` seconds (a status call, at times an existence check or a restart).

    In ``mode="reschedule"`` each poke runs in a new process: the watch's state (when the connector
    was first seen healthy, the restarts made) is kept in Airflow's task state store between pokes
    (Airflow 3.3+; a retry starts afresh). Without a task state store, reschedule mode is refused:
    use ``deferrable=True``.

    Args:
        connector_name: The connector to watch (templated).
        kafka_connect_conn_id: The Kafka Connect connection.
        restart_failed_tasks: How many times to restart failed tasks before failing.
        healthy_for: Seconds the connector must stay healthy before the sensor succeeds (a task that
            fails while snapshotting reports RUNNING for a moment first).
        call_timeout: Seconds one call to Kafka Connect may take, retries included.
        deferrable: Hand the wait to a trigger that polls asynchronously and holds no worker slot
            (default: Airflow's ``[operators] default_deferrable``, read when the sensor is created).
    """

    template_fields: Sequence[str] = ("connector_name", "kafka_connect_conn_id")
    ui_color = "#e8f1fb"

    def __init__(self, *, connector_name: str, kafka_connect_conn_id: str = KafkaConnectHook.default_conn_name,
                 restart_failed_tasks: int = 0, healthy_for: float = 5.0, call_timeout: float = 5.0,
                 deferrable: bool | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("poke_interval", 5)
        super().__init__(**kwargs)
        self.connector_name = connector_name
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self.restart_failed_tasks = restart_failed_tasks
        self.healthy_for = healthy_for
        self.call_timeout = call_timeout
        self.deferrable = (conf.getboolean("operators", "default_deferrable", fallback=False)
                           if deferrable is None else deferrable)
        self._watch = HealthWatch(restart_failed_tasks, healthy_for)

    @cached_property
    def hook(self) -> KafkaConnectHook:
        """A hook whose every call ends within ``call_timeout`` seconds: the poll loop is the retry."""
        return KafkaConnectHook.for_polling(self.kafka_connect_conn_id, self.call_timeout)

    def execute(self, context: Any) -> Any:
        """Poke (or reschedule) until healthy, or defer to ConnectorHealthTrigger when deferrable.

        Raises:
            AirflowException: reschedule mode without a task state store to keep the watch in.
        """
        if not self.deferrable:
            if self.reschedule and context.get("task_state_store") is None:
                raise AirflowException(
                    f"{self.task_id}: mode='reschedule' needs Airflow's task state store (Airflow 3.3+) to keep "
                    "healthy_for and the restart budget between pokes; use deferrable=True instead")
            return super().execute(context)
        self.defer(
            trigger=ConnectorHealthTrigger(
                connector_name=self.connector_name,
                kafka_connect_conn_id=self.kafka_connect_conn_id,
                poll_interval=self.poke_interval,
                restart_failed_tasks=self.restart_failed_tasks,
                healthy_for=self.healthy_for,
                call_timeout=self.call_timeout,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def observe(self) -> ConnectorHealth:
        """One look at the connector; Kafka Connect unreachable or not ready is PENDING with the reason.

        Returns:
            The assessed status.

        Raises:
            ConnectorNotFoundError: Connect says there is no such connector.
            KafkaConnectApiError: any other error answer.
        """
        try:
            try:
                return assess(self.hook.get_connector_status(self.connector_name))
            except ConnectorNotFoundError:
                if self.hook.connector_exists(self.connector_name):
                    return not_yet_reported(self.connector_name)
                raise
        except Exception as exc:
            if (reason := unavailability(exc)) is None:
                raise
            return service_unavailable(self.connector_name, reason)

    def _load_watch(self, context: Any) -> HealthWatch:
        if not self.reschedule:
            return self._watch
        stored = context["task_state_store"].get(STATE_KEY)
        try_number = context["ti"].try_number
        if not isinstance(stored, dict) or stored.get("try_number") != try_number:
            stored = None  # nothing yet, or left by an earlier try: start afresh
        return HealthWatch.from_state(self.restart_failed_tasks, self.healthy_for, stored)

    def _save_watch(self, context: Any, watch: HealthWatch) -> None:
        if self.reschedule:
            state = {**watch.to_state(), "try_number": context["ti"].try_number}
            context["task_state_store"].set(STATE_KEY, state, retention=timedelta(days=7))

    def poke(self, context: Any) -> bool:
        """Observe the connector once; restart failed tasks within the budget, fail beyond it."""
        watch = self._load_watch(context)
        health = self.observe()
        now = wall_clock()
        step = watch.observe(health, now)
        self._save_watch(context, watch)
        if step is Step.WAIT and health.health is Health.HEALTHY:
            self.log.info("%s; healthy for %.1fs of %.1fs", health.summary(), watch.healthy_seconds(now),
                          self.healthy_for)
        else:
            self.log.info("%s", health.summary())
        if step is Step.RESTART:
            self.log.warning("Restarting failed tasks of %s (%d of %d):\n%s", self.connector_name,
                             watch.restarts_done, self.restart_failed_tasks, health.failure_message())
            try:
                self.hook.restart_connector(self.connector_name, include_tasks=True, only_failed=True)
            except Exception as exc:
                if (reason := unavailability(exc)) is None:
                    raise
                self.log.warning("Could not restart %s: %s", self.connector_name, reason)
        elif step is Step.FAIL:
            raise AirflowException(health.failure_message())
        return step is Step.DONE

    def execute_complete(self, context: Any, event: dict[str, Any]) -> str:
        """Resume after the trigger: succeed on ``healthy``, fail with the trigger's message otherwise.

        Args:
            context: The task's context.
            event: The trigger's event.

        Returns:
            The trigger's message (the connector's summary).

        Raises:
            AirflowException: the trigger reported a failure or an error.
        """
        if event.get("status") != "healthy":
            raise AirflowException(event.get("message", f"connector {self.connector_name}: {event}"))
        self.log.info("%s", event["message"])
        return event["message"]
