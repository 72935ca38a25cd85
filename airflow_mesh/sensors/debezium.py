"""IncrementalSnapshotSensor: wait until a Debezium incremental snapshot has read every table asked for."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook
from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowException

from airflow_mesh.connectors.snapshots import (
    NotificationSource,
    SnapshotFailedError,
    SnapshotResult,
    SnapshotWatch,
    notification_source,
)
from airflow_mesh.hooks.kafka_connect import KafkaConnectHook
from airflow_mesh.triggers.debezium import IncrementalSnapshotTrigger, NotificationReader


class IncrementalSnapshotSensor(BaseSensorOperator):
    """Wait until Debezium reports that an incremental snapshot read every table asked for.

    It fails at once when Debezium reports a table it could not read, or that a stop-snapshot signal
    stopped the snapshot. The sensor reads the connector's notification topic (``notification.enabled.channels`` with
    ``sink``, ``notification.sink.topic.name``) with a throw-away consumer that commits nothing, from
    ``since_ms`` (or the beginning), and judges the notifications as
    ``airflow_mesh.connectors.snapshots.SnapshotWatch`` describes. Each poke reads the topic again
    from that point, so the sensor works in ``poke`` and ``reschedule`` mode alike.

    Args:
        connector_name: The Kafka Connect connector running the snapshot (templated).
        snapshot_id: The snapshot's signal id, ``IncrementalSnapshotOperator``'s ``signal_id`` (templated).
        data_collections: The tables asked for, the operator's ``data_collections`` (templated).
        since_ms: Read notifications from this time on (epoch ms, or its string), the operator's
            ``signaled_at_ms`` (templated); None reads the whole topic.
        kafka_connect_conn_id: The Kafka Connect connection (to read the connector's config).
        kafka_config_id: The Airflow ``kafka`` connection of the cluster holding the notification topic.
        deferrable: Hand the wait to a trigger that reads asynchronously and holds no worker slot
            (default: Airflow's ``[operators] default_deferrable``, read when the sensor is created).

    Returns (XCom):
        ``{"snapshot_id": ..., "tables": {table: {"status": "SUCCEEDED" | "EMPTY", "rows_scanned": n}}}``.

    Raises:
        SnapshotFailedError: Debezium could not read a table (e.g. SQL_EXCEPTION for an invalid
            filter, UNKNOWN_SCHEMA), or the snapshot was stopped before reading one.
        SignallingConfigError: the connector publishes no notifications to Kafka.
        NotificationTopicError: the notification topic has more than one partition.
    """

    template_fields: Sequence[str] = ("connector_name", "snapshot_id", "data_collections", "since_ms",
                                      "kafka_connect_conn_id", "kafka_config_id")
    ui_color = "#e8f1fb"

    def __init__(self, *, connector_name: str, snapshot_id: str, data_collections: Sequence[str],
                 since_ms: int | str | None = None, kafka_connect_conn_id: str = KafkaConnectHook.default_conn_name,
                 kafka_config_id: str = KafkaBaseHook.default_conn_name, deferrable: bool | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("poke_interval", 10)
        super().__init__(**kwargs)
        self.connector_name = connector_name
        self.snapshot_id = snapshot_id
        self.data_collections = data_collections
        self.since_ms = since_ms
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self.kafka_config_id = kafka_config_id
        self.deferrable = (conf.getboolean("operators", "default_deferrable", fallback=False)
                           if deferrable is None else deferrable)

    @cached_property
    def _notifications(self) -> NotificationSource:
        """The connector's notification topic and logical name, from its deployed config."""
        config = KafkaConnectHook(self.kafka_connect_conn_id).get_connector_config(self.connector_name)
        return notification_source(self.connector_name, config)

    @property
    def _since_ms(self) -> int | None:
        # A Jinja template renders the operator's timestamp as a string unless the DAG renders natively.
        return None if self.since_ms is None else int(self.since_ms)

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        self.defer(
            trigger=IncrementalSnapshotTrigger(
                snapshot_id=self.snapshot_id,
                data_collections=list(self.data_collections),
                topic=self._notifications.topic,
                logical_name=self._notifications.logical_name,
                since_ms=self._since_ms,
                kafka_config_id=self.kafka_config_id,
                poll_interval=self.poke_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def poke(self, context: Any) -> PokeReturnValue:
        watch = SnapshotWatch(self.snapshot_id, self._notifications.logical_name, list(self.data_collections))
        with closing(NotificationReader(self.kafka_config_id, self._notifications.topic, self._since_ms)) as reader:
            for notification in reader.read_available():
                result = watch.observe(notification)
                if result is not None:
                    return PokeReturnValue(True, self._outcome(result))
        if not watch.taken_up:
            self.log.info("Incremental snapshot %s: no notification from %s yet", self.snapshot_id,
                          self._notifications.logical_name)
        else:
            self.log.info("Incremental snapshot %s: %s", self.snapshot_id, watch.progress or "started")
        return PokeReturnValue(False)

    def _outcome(self, result: SnapshotResult) -> dict[str, Any]:
        if not result.succeeded:
            raise SnapshotFailedError(result.snapshot_id, result.message)
        self.log.info("%s", result.message)
        return result.as_dict()

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger: return the result on success, fail with Debezium's verdict otherwise.

        Raises:
            SnapshotFailedError: the snapshot failed or was stopped.
            AirflowException: the trigger could not read the notifications (the message says why).
        """
        if event["status"] == "error":
            raise AirflowException(event["message"])
        if event["status"] != "succeeded":
            raise SnapshotFailedError(self.snapshot_id, event["message"])
        self.log.info("%s", event["message"])
        return event["result"]
