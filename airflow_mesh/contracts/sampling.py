"""Bounded reads of a topic that leave no trace: what contract validation samples.

The reader assigns partitions itself (it joins no consumer group), under a group id of its own that it
never commits to, so the offsets of the topic's real consumers are untouched. What it reads is fixed
when it starts: per partition, a range of offsets below the high watermark of that moment (or within a
time window), so a busy topic cannot keep it reading forever.

No Airflow here: the caller builds the confluent-kafka consumer (from an Airflow connection).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

__all__ = [
    "PartitionRange",
    "TopicNotFoundError",
    "no_commit_settings",
    "partition_bounds",
    "plan_ranges",
    "read_ranges",
]

_NO_COMMIT: Final[dict[str, Any]] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "enable.partition.eof": True,  # a partition read to its end says so, even when no record is left
    "allow.auto.create.topics": False,
    "auto.offset.reset": "earliest",  # a range whose start was just deleted by retention starts at the log's
}
_BATCH: Final = 500


class TopicNotFoundError(LookupError):
    """The cluster has no such topic."""


@dataclass(frozen=True)
class PartitionRange:
    """The offsets to read from one partition: ``start`` included, ``end`` excluded.

    Attributes:
        partition: The partition.
        start: The first offset to read.
        end: The offset to stop before.
    """

    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        """How many offsets the range spans."""
        return max(0, self.end - self.start)


def no_commit_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Consumer settings that read without committing, under a fresh group id nobody else uses.

    Args:
        settings: The connection's settings (``bootstrap.servers``, security, ...).

    Returns:
        The settings with auto-commit and offset storing off, partition EOF events on, topic
        auto-creation off and a unique ``group.id``.
    """
    return {**settings, **_NO_COMMIT, "group.id": f"airflow-mesh-contract-check-{uuid.uuid4().hex}"}


def partition_bounds(consumer: Consumer, topic: str, since_ms: int | None = None, until_ms: int | None = None,
                     timeout: float = 30.0) -> dict[int, tuple[int, int]]:
    """Per partition, the offsets to consider now: the whole log, or the records of a time window.

    Args:
        consumer: A consumer of the cluster.
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
    metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if metadata is None or (metadata.error is not None and metadata.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
        raise TopicNotFoundError(f"topic {topic} does not exist")
    if metadata.error is not None:
        raise KafkaException(metadata.error)
    bounds = {}
    for partition in sorted(metadata.partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
        start = low if since_ms is None else _offset_at(consumer, topic, partition, since_ms, high, timeout)
        end = high if until_ms is None else min(high, _offset_at(consumer, topic, partition, until_ms, high, timeout))
        bounds[partition] = (max(start, low), end)
    return bounds


def _offset_at(consumer: Consumer, topic: str, partition: int, timestamp_ms: int, high: int, timeout: float) -> int:
    """The first offset whose record timestamp is at or after ``timestamp_ms``; ``high`` when there is none."""
    (found,) = consumer.offsets_for_times([TopicPartition(topic, partition, timestamp_ms)], timeout=timeout)
    return found.offset if found.offset >= 0 else high


def plan_ranges(bounds: Mapping[int, tuple[int, int]], max_records: int, newest: bool = True) -> list[PartitionRange]:
    """Share a budget of records between partitions as evenly as their sizes allow.

    Args:
        bounds: ``partition -> (first offset, offset to stop before)``.
        max_records: The most records to read in total.
        newest: Take each partition's last records within its bounds; False for its first ones.

    Returns:
        One range per partition with something to read, by partition.
    """
    sizes = {partition: max(0, end - start) for partition, (start, end) in bounds.items()}
    taken = dict.fromkeys(sizes, 0)
    remaining = max_records
    open_partitions = sorted(partition for partition, size in sizes.items() if size)
    while remaining > 0 and open_partitions:
        share = max(1, remaining // len(open_partitions))
        for partition in list(open_partitions):
            take = min(share, sizes[partition] - taken[partition], remaining)
            taken[partition] += take
            remaining -= take
            if taken[partition] == sizes[partition]:
                open_partitions.remove(partition)
            if not remaining:
                break
    ranges = []
    for partition in sorted(bounds):
        start, end = bounds[partition]
        if taken[partition]:
            ranges.append(PartitionRange(partition, end - taken[partition], end) if newest
                          else PartitionRange(partition, start, start + taken[partition]))
    return ranges


def read_ranges(consumer: Consumer, topic: str, ranges: list[PartitionRange],
                timeout: float) -> Iterator[tuple[int, int, Message]]:
    """Read exactly the given ranges, in offset order per partition.

    Offsets missing from a range (compacted away, transaction markers) are skipped: a partition is done
    at its range's last offset, at the first offset past it, or at its end.

    Args:
        consumer: A consumer built with :func:`no_commit_settings`; it gets these partitions assigned.
        topic: The topic.
        ranges: What to read (from :func:`plan_ranges`).
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
