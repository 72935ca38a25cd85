"""Pure parts of the backfill engine: range planning, exact type mapping, checksums."""

from __future__ import annotations

import datetime as dt
import decimal
from itertools import pairwise

import pyarrow as pa
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from airflow_mesh.backfill.checksum import combine, table_checksum
from airflow_mesh.backfill.errors import TypeMappingError
from airflow_mesh.backfill.plan import BackfillRequest, KeyRange, job_id, plan_ranges
from airflow_mesh.backfill.types import arrow_type, elasticsearch_mapping, postgres_ddl_type


@settings(deadline=None)  # a loaded 2-core machine must not fail a pure property on time
@given(lo=st.integers(-10**12, 10**12), span=st.integers(0, 10**7), rows=st.integers(1, 10**7),
       size=st.integers(1, 10**6))
def test_ranges_cover_every_key_once(lo, span, rows, size):
    assume(rows // size <= 2000)  # keep each example's list of ranges small
    hi = lo + span
    ranges = plan_ranges(lo, hi, rows, size)
    assert ranges[0].lo == lo and ranges[-1].hi == hi + 1
    assert all(a.hi == b.lo and a.lo < a.hi for a, b in pairwise(ranges))
    assert len(ranges) <= max(1, -(-rows // size))


def test_no_rows_no_ranges():
    assert plan_ranges(None, None, 0, 10) == []


@pytest.mark.parametrize(("db_type", "arrow"), [
    ("numeric(12,2)", pa.decimal128(12, 2)), ("decimal(40, 5)", pa.decimal256(40, 5)),
    ("timestamp with time zone", pa.timestamp("us", tz="UTC")), ("timestamp(3) without time zone", pa.timestamp("us")),
    ("int(11)", pa.int32()), ("tinyint(1)", pa.bool_()), ("bigint(20) unsigned", pa.uint64()),
    ("character varying(64)", pa.string()), ("jsonb", pa.string()), ("datetime(6)", pa.timestamp("us")),
])
def test_exact_type_mapping(db_type, arrow):
    assert arrow_type("c", db_type) == arrow


@pytest.mark.parametrize(("db_type", "reason"), [("numeric", "no precision and scale"),
                                                  ("hstore", "no exact Arrow type.*--cast amount=text")])
def test_unmappable_types_name_the_column(db_type, reason):
    with pytest.raises(TypeMappingError, match=f"column 'amount': .*{reason}"):
        arrow_type("amount", db_type)


def test_target_types_stay_exact():
    assert postgres_ddl_type(pa.field("a", pa.decimal128(12, 2))) == "numeric(12,2)"
    assert postgres_ddl_type(pa.field("t", pa.timestamp("us", tz="UTC"))) == "timestamptz"
    assert elasticsearch_mapping(pa.field("a", pa.decimal128(12, 2))) == {"type": "keyword"}


def orders(ids):
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "amount": pa.array([decimal.Decimal(i) / 100 for i in ids], pa.decimal128(12, 2)),
        "at": pa.array([dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=i) for i in ids],
                       pa.timestamp("us", tz="UTC")),
        "note": pa.array([None if i % 3 else f"n{i}" for i in ids], pa.string()),
    })


@settings(deadline=None)
@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=50, unique=True), st.randoms())
def test_checksum_ignores_order_and_batching(ids, random):
    table = orders(ids)
    shuffled = table.take(random.sample(range(len(ids)), len(ids)))
    cut = random.randint(0, len(ids))
    assert table_checksum(shuffled) == table_checksum(table)
    assert combine([table_checksum(table.slice(0, cut)), table_checksum(table.slice(cut))]) == table_checksum(table)


def test_checksum_sees_a_changed_value_and_a_missing_row():
    table = orders([1, 2, 3])
    changed = table.set_column(1, "amount", pa.array([decimal.Decimal("0.01"), decimal.Decimal("0.02"),
                                                      decimal.Decimal("0.04")], pa.decimal128(12, 2)))
    assert table_checksum(changed) != table_checksum(table)
    assert table_checksum(table.slice(0, 2)) != table_checksum(table)
    # The same instant in another time-zone spelling is the same value.
    other_tz = table.set_column(2, "at", table["at"].cast(pa.timestamp("us", tz="+00:00")))
    assert table_checksum(other_tz) == table_checksum(table)


def test_request_validation():
    with pytest.raises(ValidationError, match="is not a table name"):
        BackfillRequest(table="orders; drop table x")
    with pytest.raises(ValidationError, match="needs a cursor_column"):
        BackfillRequest(table="orders", mode="incremental")
    with pytest.raises(ValidationError, match="holds 2 statements"):
        BackfillRequest(table="orders", where="1=1; delete from orders")
    with pytest.raises(ValidationError, match="is not an SQL expression"):
        BackfillRequest(table="orders", where="id < 10) OR (true")
    a = BackfillRequest(table="orders", parallelism=1)
    assert job_id("s", "t", a) == job_id("s", "t", BackfillRequest(table="orders", parallelism=8))
    assert job_id("s", "t", a) != job_id("s", "t2", a)
    assert KeyRange(1, 5).id == "1-5"


@settings(deadline=None)
@given(lo=st.integers(-10**9, 10**9), span=st.integers(0, 10**7), rows=st.integers(1, 10**7),
       size=st.integers(1, 10**6), parallelism=st.integers(1, 16))
def test_ranges_are_balanced_over_the_workers(lo, span, rows, size, parallelism):
    assume(rows // size <= 2000)
    plain = plan_ranges(lo, lo + span, rows, size)
    ranges = plan_ranges(lo, lo + span, rows, size, parallelism)
    assert ranges[0].lo == lo and ranges[-1].hi == lo + span + 1
    assert all(a.hi == b.lo and a.lo < a.hi for a, b in pairwise(ranges))
    widest = max(r.hi - r.lo for r in plain)
    assert all(r.hi - r.lo <= widest for r in ranges)  # never wider than without balancing
    count = -(-rows // size)
    assert len(ranges) <= (-(-count // parallelism) * parallelism if count > 1 else 1)


def test_a_count_just_over_a_multiple_of_range_size_is_not_left_with_a_lone_range():
    # 5,000,866 estimated rows in ranges of 500,000 on 2 workers: 12 ranges, not 11 (one alone at the end).
    ranges = plan_ranges(1, 5_000_000, 5_000_866, 500_000, parallelism=2)
    assert len(ranges) == 12
    assert len(plan_ranges(1, 5_000_000, 5_000_866, 500_000)) == 11
