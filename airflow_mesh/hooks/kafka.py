"""Kafka reads that leave no trace in the cluster, and the copies a contract check makes of bad records.

Every consumer here comes from an Airflow ``kafka`` connection (Airflow's Kafka provider reads it),
assigns partitions itself (it joins no consumer group) under a group id of its own that it never
commits to, so the offsets of the topics' real consumers are untouched:

- ``NoCommitConsumerHook``: bounded reads of a topic (``partition_bounds``, ``read_ranges``), what
  contract validation samples (``airflow_mesh.contracts.sampling`` plans the ranges);
- ``NotificationReader``: a Debezium notification topic read in order, from the beginning, from a
  point in time, or from its end (what ``IncrementalSnapshotSensor``, its trigger and
  ``StopIncrementalSnapshotOperator`` read);
- ``DeadLetterProducerHook``: copies of records, untouched but for added headers, to another topic.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, cast

from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook
from airflow.providers.apache.kafka.hooks.produce import KafkaProducerHook
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from airflow_mesh.connectors.snapshots import Notification, NotificationTopicError, parse_notification
from airflow_mesh.contracts.sampling import PartitionRange, TopicNotFoundError

__all__ = [
    "BOUNDED_READ",
    "NOTIFICATION_READ",
    "DeadLetterProducerHook",
    "KafkaRecord",
    "NoCommitConsumerHook",
    "NotificationReader",
    "TopicNotFoundError",
    "no_commit_settings",
]

KafkaRecord = Message
"""A record as confluent-kafka delivers it (``key()``, ``value()``, ``headers()``, ``partition()``, ``offset()``)."""

NOTIFICATION_READ: Final[dict[str, Any]] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
}
"""Settings of a consumer that reads without committing (a notification topic)."""

BOUNDED_READ: Final[dict[str, Any]] = {
    **NOTIFICATION_READ,
    "enable.partition.eof": True,  # a partition read to its end says so, even when no record is left
    "allow.auto.create.topics": False,
    "auto.offset.reset": "earliest",  # a range whose start was just deleted by retention starts at the log's
}
"""Settings of a consumer that reads fixed ranges of offsets (``read_ranges``) without committing."""

CONTRACT_CHECK_GROUP: Final = "airflow-mesh-contract-check"
NOTIFICATIONS_GROUP: Final = "airflow-mesh-notifications"
_BATCH: Final = 500


def no_commit_settings(settings: Mapping[str, Any], group_prefix: str = CONTRACT_CHECK_GROUP,
                       overrides: Mapping[str, Any] = BOUNDED_READ) -> dict[str, Any]:
    """Consumer settings that read without committing, under a fresh group id nobody else uses.

    Args:
        settings: The connection's settings (``bootstrap.servers``, security, ...).
        group_prefix: The start of the group id; a random suffix makes it unique.
        overrides: Settings that replace the connection's (``BOUNDED_READ``: auto-commit and offset
            storing off, partition EOF events on, topic auto-creation off).

    Returns:
        The settings, with ``overrides`` and a unique ``group.id``.
    """
    return {**settings, **overrides, "group.id": f"{group_prefix}-{uuid.uuid4().hex}"}


class NoCommitConsumerHook(KafkaBaseHook):
    """A Kafka consumer, from an Airflow ``kafka`` connection, that leaves no trace in the cluster.

    Its group id is new each time and it commits nothing, so reading neither needs a group nor moves
    one; the caller (or ``read_ranges``) assigns partitions. ``get_conn`` is the consumer, made on
    first use; ``close`` closes it.

    Args:
        kafka_config_id: The Airflow ``kafka`` connection.
        group_prefix: The start of the throw-away group id (it names the reader in the broker's logs).
        overrides: Consumer settings laid over the connection's (default ``BOUNDED_READ``).
    """

    def __init__(self, kafka_config_id: str = KafkaBaseHook.default_conn_name, *,
                 group_prefix: str = CONTRACT_CHECK_GROUP, overrides: Mapping[str, Any] = BOUNDED_READ) -> None:
        super().__init__(kafka_config_id)
        self.group_prefix = group_prefix
        self.overrides = dict(overrides)

    def _get_client(self, config: dict[str, Any]) -> Consumer:
        return Consumer(no_commit_settings(config, self.group_prefix, self.overrides))

    @property
    def consumer(self) -> Consumer:
        """The consumer (made on first use)."""
        return cast(Consumer, self.get_conn)

    def close(self) -> None:
        """Close the consumer, if one was made (it has nothing to commit)."""
        if "get_conn" in self.__dict__:
            self.consumer.close()

    def partition_bounds(self, topic: str, since_ms: int | None = None, until_ms: int | None = None,
                         timeout: float = 30.0) -> dict[int, tuple[int, int]]:
        """Per partition, the offsets to consider now: the whole log, or the records of a time window.

        Args:
            topic: The topic.
            since_ms: Window start (record timestamp, ms since the epoch, included); None for the log start.
            until_ms: Window end (excluded); None for now. Either way, never past the high watermark read here.
            timeout: Seconds to wait for each metadata answer.

        Returns:
            ``partition -> (first offset, offset to stop before)``.

        Raises:
            TopicNotFoundError: The cluster has no such topic.
            KafkaException: The cluster could not answer.
        """
        consumer = self.consumer
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or (metadata.error is not None
                                and metadata.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
            raise TopicNotFoundError(f"topic {topic} does not exist")
        if metadata.error is not None:
            raise KafkaException(metadata.error)
        bounds = {}
        for partition in sorted(metadata.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            start = low if since_ms is None else self._offset_at(topic, partition, since_ms, high, timeout)
            end = high if until_ms is None else min(high, self._offset_at(topic, partition, until_ms, high, timeout))
            bounds[partition] = (max(start, low), end)
        return bounds

    def _offset_at(self, topic: str, partition: int, timestamp_ms: int, high: int, timeout: float) -> int:
        """The first offset whose record timestamp is at or after ``timestamp_ms``; ``high`` when there is none."""
        (found,) = self.consumer.offsets_for_times([TopicPartition(topic, partition, timestamp_ms)], timeout=timeout)
        return int(found.offset) if found.offset >= 0 else high

    def read_ranges(self, topic: str, ranges: Iterable[PartitionRange],
                    timeout: float) -> Iterator[tuple[int, int, KafkaRecord]]:
        """Read exactly the given ranges, in offset order per partition.

        Offsets missing from a range (compacted away, transaction markers) are skipped: a partition is done
        at its range's last offset, at the first offset past it, or at its end. The consumer needs
        ``enable.partition.eof`` (``BOUNDED_READ``, the default).

        Args:
            topic: The topic.
            ranges: What to read (from ``airflow_mesh.contracts.sampling.plan_ranges``).
            timeout: Seconds the whole read may take.

        Yields:
            ``(partition, offset, record)`` for each record of the ranges.

        Raises:
            TimeoutError: Some range was not read to its end in time.
            KafkaException: The consumer reported an error.
        """
        pending = {r.partition: r for r in ranges if r.size}
        if not pending:
            return
        consumer = self.consumer
        consumer.assign([TopicPartition(topic, r.partition, r.start) for r in pending.values()])
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                left = ", ".join(f"partition {p} up to offset {r.end}" for p, r in sorted(pending.items()))
                raise TimeoutError(f"reading {topic} took more than {timeout:.0f}s; not read: {left}")
            for message in consumer.consume(_BATCH, timeout=1.0):
                error = message.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
                partition = message.partition()
                wanted = pending.get(partition) if partition is not None else None
                if wanted is None:
                    continue
                if error is not None:  # the end of the partition: nothing is left below the range's end
                    pending.pop(wanted.partition)
                    continue
                offset = cast(int, message.offset())  # every record has one
                if offset < wanted.end:
                    yield wanted.partition, offset, message
                if offset >= wanted.end - 1:
                    pending.pop(wanted.partition)


# ---------------------------------------------------------------- Debezium notifications

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
# What the cluster answers about a topic that Debezium has not created yet, or is creating.
TOPIC_NOT_THERE_YET = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.LEADER_NOT_AVAILABLE)


class NotificationReader:
    """Read a Debezium notification topic, in order, from the beginning or from a point in time.

    The topic is looked up on the first ``poll``; until it exists (Debezium creates it with its
    first notification) there is nothing to read. The reader's consumer commits nothing
    (``NoCommitConsumerHook``); ``close`` it when done.

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
        self._hook = NoCommitConsumerHook(kafka_config_id, group_prefix=NOTIFICATIONS_GROUP,
                                          overrides=NOTIFICATION_READ)
        self._consumer: Consumer = self._hook.consumer
        self._next_offset: int | None = None
        self._end_offset = 0

    def __enter__(self) -> NotificationReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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
            self._next_offset = cast(int, message.offset()) + 1  # None only for an error, handled above
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
        while cast(int, self._next_offset) < self._end_offset:
            notifications, received = self._read(IDLE_TIMEOUT)
            yield from notifications
            if not received:
                return

    def close(self) -> None:
        """Close the consumer (it has nothing to commit)."""
        self._consumer.close()


# ---------------------------------------------------------------- copies of records


class DeadLetterProducerHook(KafkaProducerHook):
    """Copy records, untouched but for headers added to theirs, to another topic.

    Args:
        kafka_config_id: The Airflow ``kafka`` connection.
    """

    def copy_records(self, topic: str, records: Iterable[tuple[KafkaRecord, list[tuple[str, bytes]]]],
                     flush_timeout: float = 60) -> tuple[int, str | None]:
        """Produce each record's key and value with its headers and the added ones, and wait for delivery.

        Args:
            topic: Where the copies go.
            records: ``(record, headers to add)`` pairs.
            flush_timeout: Seconds to wait for every delivery.

        Returns:
            How many copies the topic did not take (0: it took them all), and why (the first
            delivery error, or ``flush timed out``); None when it took them all.
        """
        producer = self.get_producer()
        errors: list[KafkaError] = []

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                errors.append(error)

        for message, added in records:
            producer.produce(topic, key=message.key(), value=message.value(),
                             headers=[*(message.headers() or []), *added], on_delivery=delivered)
            producer.poll(0)
        undelivered = producer.flush(flush_timeout)
        if errors or undelivered:
            return len(errors) + undelivered, str(errors[0]) if errors else "flush timed out"
        return 0, None
