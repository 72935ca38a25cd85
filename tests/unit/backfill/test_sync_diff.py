"""The sync's row-by-row comparison of a range: pure logic, no services."""

from __future__ import annotations

import decimal
import uuid

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_mesh.backfill.sync import _segment_counts, diff_rows


def _table(rows: dict[int, str]) -> pa.Table:
    return pa.table({"id": pa.array(list(rows), pa.int64()), "v": pa.array(list(rows.values()), pa.string())})


def test_a_diff_names_what_is_missing_different_and_extra_and_the_rows_that_repair_it():
    source = _table({1: "a", 2: "b", 3: "c", 5: "e"})
    target = _table({1: "a", 2: "B", 4: "d", 5: "e"})
    diff = diff_rows(source, target, ("id",), "r1")
    assert (diff.missing, diff.different, diff.extra) == (1, 1, 1)
    assert sorted(diff.upserts.to_pylist(), key=lambda r: r["id"]) == [{"id": 2, "v": "b"}, {"id": 3, "v": "c"}]
    assert diff.deletes.to_pylist() == [{"id": 4}]
    assert diff.describe() == "range r1: 1 rows missing from the target, 1 differ, 1 extra"
    assert diff_rows(source, source, ("id",)).empty


def test_rows_are_compared_by_value_whatever_the_side_stores_them_as():
    ids = [uuid.uuid4() for _ in range(3)]
    source = pa.table({"u": pa.array([i.bytes for i in ids], pa.uuid()),
                       "amount": pa.array([decimal.Decimal("1.10"), None, decimal.Decimal("-3.00")],
                                          pa.decimal128(12, 2)),
                       "at": pa.array([1, 2, 3], pa.timestamp("us", tz="UTC"))})
    # The target reads the same values as other Arrow types: large strings, another zone spelling.
    target = source.set_column(2, "at", source["at"].cast(pa.timestamp("us", tz="+00:00")))
    assert diff_rows(source, target, ("u",)).empty


@settings(deadline=None, max_examples=150)
@given(source=st.dictionaries(st.integers(0, 60), st.sampled_from("abc"), max_size=40),
       target=st.dictionaries(st.integers(0, 60), st.sampled_from("abc"), max_size=40))
def test_applying_a_diff_makes_the_target_equal_to_the_source(source, target):
    diff = diff_rows(_table(source), _table(target), ("id",))
    repaired = dict(target)
    for key in diff.deletes.column("id").to_pylist():
        del repaired[key]
    repaired.update({r["id"]: r["v"] for r in diff.upserts.to_pylist()})
    assert repaired == source
    assert diff.missing == len(source.keys() - target.keys()) and diff.extra == len(target.keys() - source.keys())


def test_segments_count_keys_from_their_low_bound():
    counts = _segment_counts(pa.array([10, 11, 74, 75, 200], pa.int64()), lo=10, width=64)
    assert sorted(counts.rows()) == [(0, 2), (1, 2), (2, 1)]  # 10 and 11; 74 and 75; 200


def test_segments_become_key_ranges_an_index_answers():
    from airflow_mesh.backfill.sources import segment_ranges

    assert segment_ranges('"id"', 10, 64, [3, 1, 2, 7]) == ('(("id" >= 74 AND "id" < 266) '
                                                           'OR ("id" >= 458 AND "id" < 522))')
