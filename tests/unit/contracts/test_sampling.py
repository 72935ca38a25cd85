"""Planning bounded samples of a topic: a record budget shared between partitions."""

from __future__ import annotations

from airflow_mesh.contracts.sampling import PartitionRange, plan_ranges


class TestPlanRanges:
    def test_newest_records_shared_evenly(self):
        assert plan_ranges({0: (0, 100), 1: (50, 150), 2: (0, 100)}, 30) == [
            PartitionRange(0, 90, 100), PartitionRange(1, 140, 150), PartitionRange(2, 90, 100)]

    def test_oldest(self):
        assert plan_ranges({0: (5, 100)}, 10, newest=False) == [PartitionRange(0, 5, 15)]

    def test_small_partitions_leave_their_share_to_the_others(self):
        assert plan_ranges({0: (0, 2), 1: (0, 0), 2: (10, 1000)}, 20) == [
            PartitionRange(0, 0, 2), PartitionRange(2, 982, 1000)]

    def test_budget_larger_than_the_topic_reads_it_all(self):
        assert plan_ranges({0: (3, 7), 1: (0, 5)}, 1000) == [PartitionRange(0, 3, 7), PartitionRange(1, 0, 5)]

    def test_budget_smaller_than_the_partitions(self):
        ranges = plan_ranges(dict.fromkeys(range(5), (0, 10)), 3)
        assert sum(r.size for r in ranges) == 3 and len(ranges) == 3

