"""IncrementalSnapshotTrigger: the asynchronous wait behind ``IncrementalSnapshotSensor(deferrable=True)``.

The notification topic is read through ``airflow_mesh.hooks.kafka.NotificationReader`` (re-exported
here, where it used to live).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook
from airflow.triggers.base import BaseTrigger, TriggerEvent
from asgiref.sync import sync_to_async

from airflow_mesh.connectors.snapshots import SnapshotResult, SnapshotWatch, task_failure
from airflow_mesh.hooks.kafka import POLL_TIMEOUT, NotificationReader
from airflow_mesh.hooks.kafka_connect import KafkaConnectHook

__all__ = ["IncrementalSnapshotTrigger", "NotificationReader", "result_event", "settle", "stalled_message"]

# Seconds to read on after a verdict for Debezium's COMPLETED of the snapshot (a failed table gives the
# verdict at once; the watermark rows can be removed only once the snapshot has ended in Debezium too).
SETTLE_TIMEOUT = 5.0
# Seconds between two looks at the connector's status while a trigger waits (a FAILED task sends no notification).
STATUS_INTERVAL = 30.0


def settle(reader: NotificationReader, watch: SnapshotWatch, timeout: float = SETTLE_TIMEOUT) -> None:
    """After a verdict, read on until Debezium has completed the snapshot too, for ``timeout`` seconds at most."""
    deadline = time.monotonic() + timeout
    while not watch.settled and (left := deadline - time.monotonic()) > 0:
        for notification in reader.poll(min(left, POLL_TIMEOUT)):
            watch.observe(notification)


def result_event(result: SnapshotResult, end_ms: int | None = None) -> dict[str, Any]:
    """The payload of a TriggerEvent for a snapshot's result.

    Args:
        result: The verdict.
        end_ms: Debezium's time of the connector's last COMPLETED notification seen (``SnapshotWatch.end_ms``).
    """
    return {"status": "succeeded" if result.succeeded else "failed", "message": result.message,
            "result": result.as_dict(), "end_ms": end_ms}


def stalled_message(snapshot_id: str, logical_name: str, failure: str) -> str:
    """The failure of a wait whose connector stopped working before the snapshot ended."""
    return f"incremental snapshot {snapshot_id} of {logical_name} cannot go on: {failure}"


class IncrementalSnapshotTrigger(BaseTrigger):
    """Read a connector's notification topic until an incremental snapshot has ended.

    Every blocking Kafka call runs in the event loop's default executor (``thread_sensitive=False``)
    with a short timeout, so a quiet topic holds up no other trigger sharing the loop.

    Args:
        snapshot_id: The snapshot's signal id.
        data_collections: The tables asked for.
        topic: The connector's notification topic.
        logical_name: The connector's ``topic.prefix``, which its notifications carry.
        since_ms: Read from this time on (epoch ms, e.g. when the signal was written); None: from the start.
        kafka_config_id: The Airflow ``kafka`` connection.
        poll_interval: Seconds to wait between reads when nothing new has arrived.
        connector_name: The Kafka Connect connector, whose status is looked at every
            ``status_interval`` seconds while nothing arrives (a FAILED task ends the wait); None: never.
        kafka_connect_conn_id: The Kafka Connect connection (with ``connector_name``).
        status_interval: Seconds between two looks at the connector's status.

    Yields:
        One event: ``{"status": "succeeded" | "failed" | "task_failed" | "error", "message": ...,
        "result"?: ..., "end_ms"?: ...}``, ``result`` being ``SnapshotResult.as_dict()`` and
        ``end_ms`` Debezium's time of the connector's last COMPLETED notification seen.
    """

    def __init__(self, snapshot_id: str, data_collections: Sequence[str], topic: str, logical_name: str,
                 since_ms: int | None = None, kafka_config_id: str = KafkaBaseHook.default_conn_name,
                 poll_interval: float = 5.0, connector_name: str | None = None,
                 kafka_connect_conn_id: str = KafkaConnectHook.default_conn_name,
                 status_interval: float = STATUS_INTERVAL) -> None:
        super().__init__()
        self.snapshot_id = snapshot_id
        self.data_collections = list(data_collections)
        self.topic = topic
        self.logical_name = logical_name
        self.since_ms = since_ms
        self.kafka_config_id = kafka_config_id
        self.poll_interval = poll_interval
        self.connector_name = connector_name
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self.status_interval = status_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "snapshot_id": self.snapshot_id,
                "data_collections": self.data_collections,
                "topic": self.topic,
                "logical_name": self.logical_name,
                "since_ms": self.since_ms,
                "kafka_config_id": self.kafka_config_id,
                "poll_interval": self.poll_interval,
                "connector_name": self.connector_name,
                "kafka_connect_conn_id": self.kafka_connect_conn_id,
                "status_interval": self.status_interval,
            },
        )

    async def _failure(self, connector_name: str) -> str | None:
        """What the connector's status says stops the snapshot, None when nothing does."""
        status = await KafkaConnectHook.for_polling(self.kafka_connect_conn_id).aget_connector_status(connector_name)
        return task_failure(status)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        reader: NotificationReader | None = None
        try:
            reader = await sync_to_async(NotificationReader, thread_sensitive=False)(
                self.kafka_config_id, self.topic, self.since_ms)
            watch = SnapshotWatch(self.snapshot_id, self.logical_name, self.data_collections)
            poll = sync_to_async(reader.poll, thread_sensitive=False)
            progress = None
            status_seen_at = float("-inf")
            while True:
                notifications = await poll(POLL_TIMEOUT)
                for notification in notifications:
                    watch.observe(notification)
                if watch.result is not None:
                    await sync_to_async(settle, thread_sensitive=False)(reader, watch)
                    yield TriggerEvent(result_event(watch.result, watch.end_ms))
                    return
                if watch.progress != progress:
                    progress = watch.progress
                    self.log.info("Incremental snapshot %s: %s", self.snapshot_id, progress)
                if notifications:
                    continue
                if self.connector_name and time.monotonic() - status_seen_at >= self.status_interval:
                    status_seen_at = time.monotonic()
                    failure = await self._failure(self.connector_name)
                    if failure:
                        yield TriggerEvent({"status": "task_failed", "message": stalled_message(
                            self.snapshot_id, self.logical_name, failure)})
                        return
                await asyncio.sleep(self.poll_interval)
        except Exception as exc:  # noqa: BLE001 - reported to the task, which fails with the reason
            yield TriggerEvent({"status": "error", "message": f"incremental snapshot {self.snapshot_id}: {exc}"})
        finally:
            if reader is not None:
                await sync_to_async(reader.close, thread_sensitive=False)()
