"""Bounded samples of a topic: which offsets to read, planned before anything is read.

What a sample reads is fixed when it starts: per partition, a range of offsets below the high
watermark of that moment (or within a time window), so a busy topic cannot keep it reading forever.
This module only plans (``plan_ranges``) and names the ranges (``PartitionRange``); the reads
themselves, by a consumer that joins no group and commits nothing, are
``airflow_mesh.hooks.kafka.NoCommitConsumerHook``'s (``partition_bounds``, ``read_ranges``).

No Airflow and no Kafka client here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "PartitionRange",
    "TopicNotFoundError",
    "plan_ranges",
]


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
