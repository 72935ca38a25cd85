"""A job's first plan is kept in the checkpoint store and extended, never re-cut, on resume."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_mesh.backfill.checkpoint import CheckpointStore
from airflow_mesh.backfill.plan import KeyRange, extend_ranges, plan_ranges


@settings(deadline=None)
@given(lo=st.integers(-10**9, 10**9), span=st.integers(0, 10**5), size=st.integers(1, 10**4),
       below=st.integers(0, 10**5), above=st.integers(-10**5, 10**5))
def test_extension_keeps_the_saved_ranges_and_covers_new_keys(lo, span, size, below, above):
    saved = plan_ranges(lo, lo + span, span + 1, size)
    new_min, new_max = lo - below, lo + span + above
    ranges = extend_ranges(saved, new_min, new_max)
    start = ranges.index(saved[0])
    assert ranges[start:start + len(saved)] == saved  # the done ranges stay exactly as they were
    assert all(a.hi == b.lo and a.lo < a.hi for a, b in pairwise(ranges))  # contiguous, no overlap
    assert ranges[0].lo == min(new_min, saved[0].lo)
    assert ranges[-1].hi == max(new_max + 1, saved[-1].hi)
    width = saved[0].hi - saved[0].lo
    assert all(r.hi - r.lo <= width for r in ranges[:start] + ranges[start + len(saved):])


def test_nothing_to_extend():
    saved = [KeyRange(0, 10), KeyRange(10, 20)]
    assert extend_ranges(saved, 0, 19) == saved
    assert extend_ranges(saved, None, None) == saved
    assert extend_ranges([], 0, 100) == []


def test_store_keeps_a_plan_per_job_and_forgets_it(tmp_path):
    store = CheckpointStore(tmp_path / "c.sqlite")
    assert store.saved_plan("job") is None
    store.save_plan("job", [KeyRange(1, 5), KeyRange(5, 9)], 8)
    reopened = CheckpointStore(tmp_path / "c.sqlite")
    assert reopened.saved_plan("job") == ([KeyRange(1, 5), KeyRange(5, 9)], 8)
    assert reopened.saved_plan("other") is None
    reopened.forget("job")
    assert reopened.saved_plan("job") is None
