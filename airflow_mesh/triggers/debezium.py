"""IncrementalSnapshotTrigger: the asynchronous wait behind ``IncrementalSnapshotSensor(deferrable=True)``.

Also the notification-topic reader that the sensor and the trigger share.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook
from airflow.triggers.base import BaseTrigger, TriggerEvent
from asgiref.sync import sync_to_async
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from airflow_mesh.connectors.snapshots import (
    Notification,
    NotificationTopicError,
    SnapshotResult,
    SnapshotWatch,
    parse_notification,
    task_failure,
)
from airflow_mesh.hooks.kafka_connect import KafkaConnectHook

# Kafka stamps notifications with the Connect worker's clock, the operator notes the signal's time
# with the Airflow worker's: start reading this much earlier than the signal, so clock skew loses nothing.
CLOCK_SKEW_MS = 60_000
# Seconds a blocking read may hold its thread; short, so a trigger gives its executor thread back often.
POLL_TIMEOUT = 1.0
# Seconds to wait for the cluster's answer about the topic (partitions, offsets), read once.
METADATA_TIMEOUT = 10.0
# Seconds without a record after which a sensor's read of what is available ends, even short of the
# end offset it noted (a transactional producer's last commit marker is never delivered as a record).
IDLE_TIMEOUT = 5.0
# Most records taken per read (a snapshot notifies once per chunk of each table).
BATCH_SIZE = 500
# Seconds to read on after a verdict for Debezium's COMPLETED of the snapshot (a failed table gives the
# verdict at once; the watermark rows can be removed only once the snapshot has ended in Debezium too).
SETTLE_TIMEOUT = 5.0
# Seconds between two looks at the connector's status while a trigger waits (a FAILED task sends no notification).
STATUS_INTERVAL = 30.0
# What the cluster answers about a topic that Debezium has not created yet, or is creating.
TOPIC_NOT_THERE_YET = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.LEADER_NOT_AVAILABLE)


class NotificationConsumerHook(KafkaBaseHook):
    """A Kafka consumer, from an Airflow ``kafka`` connection, that leaves no trace in the cluster.

    Its group id is new each time and it commits nothing, so reading a notification topic neither
    needs a group nor moves one; ``NotificationReader`` assigns partitions itself.
    """

    def _get_client(self, config: dict[str, Any]) -> Consumer:
        return Consumer({**config, "group.id": f"airflow-mesh-notifications-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.auto.offset.store": False,
                         "auto.offset.reset": "earliest"})


class NotificationReader:
    """Read a Debezium notification topic, in order, from the beginning or from a point in time.

    The topic is looked up on the first ``poll``; until it exists (Debezium creates it with its
    first notification) there is nothing to read.

    Args:
        kafka_config_id: The Airflow ``kafka`` connection.
        topic: The notification topic.
        since_ms: Read the records stamped from this time on (epoch milliseconds; ``CLOCK_SKEW_MS``
            earlier); None reads the whole topic.
        from_end: Read only what comes after the topic's end as of the first ``poll`` (``since_ms`` unused).
    """

    def __init__(self, kafka_config_id: str, topic: str, since_ms: int | None = None, from_end: bool = False) -> None:
        self.topic = topic
        self.since_ms = since_ms
        self.from_end = from_end
        self._consumer: Consumer = NotificationConsumerHook(kafka_config_id).get_conn
        self._next_offset: int | None = None
        self._end_offset = 0

    def _assign(self) -> bool:
        """Assign the topic's partition at the start position; False when the topic does not exist yet."""
        topic = self._consumer.list_topics(self.topic, timeout=METADATA_TIMEOUT).topics.get(self.topic)
        if topic is None or topic.error is not None:
            if topic is not None and topic.error.code() not in TOPIC_NOT_THERE_YET:
                raise KafkaException(topic.error)
            return False
        if len(topic.partitions) != 1:
            raise NotificationTopicError(
                f"notification topic {self.topic} has {len(topic.partitions)} partitions: Debezium's notifications "
                "must be read in the order they were written, so give the topic one partition")
        (partition,) = topic.partitions
        low, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, partition),
                                                         timeout=METADATA_TIMEOUT)
        start = TopicPartition(self.topic, partition, OFFSET_BEGINNING)
        if self.from_end:
            start.offset = high
        elif self.since_ms is not None:
            start.offset = max(self.since_ms - CLOCK_SKEW_MS, 0)
            (start,) = self._consumer.offsets_for_times([start], timeout=METADATA_TIMEOUT)
        # offsets_for_times answers -1 (OFFSET_END) when no record is that recent: read what comes next.
        self._next_offset = low if start.offset == OFFSET_BEGINNING else high if start.offset < 0 else start.offset
        self._end_offset = high
        self._consumer.assign([start])
        return True

    def poll(self, timeout: float = POLL_TIMEOUT) -> list[Notification]:
        """Block up to ``timeout`` seconds for the next records.

        Args:
            timeout: Seconds to wait when nothing is there yet.

        Returns:
            The notifications read, in topic order (records that are not notifications are skipped);
            empty when none arrived or the topic does not exist yet.

        Raises:
            NotificationTopicError: the topic has more than one partition.
            KafkaException: the cluster answered with an error that retrying does not cure.
        """
        return self._read(timeout)[0]

    def _read(self, timeout: float) -> tuple[list[Notification], int]:
        """The notifications of the next records, and how many records there were."""
        if self._next_offset is None and not self._assign():
            return [], 0
        # Wait for the first record only, then take what has already been fetched (consume() would
        # wait out its whole timeout for a full batch).
        messages = []
        message = self._consumer.poll(timeout)
        while message is not None:
            messages.append(message)
            message = self._consumer.poll(0) if len(messages) < BATCH_SIZE else None
        notifications = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.retriable():  # librdkafka retries by itself
                    continue
                raise KafkaException(error)
            self._next_offset = message.offset() + 1
            notification = parse_notification(message.value())
            if notification is not None:
                notifications.append(notification)
        return notifications, len(messages)

    def read_available(self) -> Iterator[Notification]:
        """The notifications up to the end the topic had when reading began (none when it does not exist).

        Raises:
            NotificationTopicError: the topic has more than one partition.
            KafkaException: the cluster answered with an error that retrying does not cure.
        """
        if self._next_offset is None and not self._assign():
            return
        while self._next_offset < self._end_offset:
            notifications, received = self._read(IDLE_TIMEOUT)
            yield from notifications
            if not received:
                return

    def close(self) -> None:
        """Close the consumer (it has nothing to commit)."""
        self._consumer.close()


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

    async def _failure(self) -> str | None:
        """What the connector's status says stops the snapshot, None when nothing does."""
        status = await KafkaConnectHook(self.kafka_connect_conn_id).aget_connector_status(self.connector_name)
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
                    failure = await self._failure()
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
