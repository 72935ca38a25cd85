"""Key ranges for any orderable key, parsed filters, and target names: pure logic, no services."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from itertools import pairwise

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from airflow_mesh.backfill import names
from airflow_mesh.backfill.errors import PlanError
from airflow_mesh.backfill.filters import parse_filter
from airflow_mesh.backfill.kafka_target import in_range
from airflow_mesh.backfill.keys import KeyRange, json_value, merged, ranges_from_sample
from airflow_mesh.backfill.plan import BackfillRequest
from airflow_mesh.backfill.sqltext import range_predicate

# ------------------------------------------------------------------ ranges


def test_integer_ranges_keep_their_readable_ids_and_others_get_safe_ones():
    assert KeyRange(10001, 15001).id == "10001-15001"
    weird = KeyRange(("a/../b", 3), ("it's", 4))
    assert weird.id.startswith("k") and weird.id.isalnum()  # safe in a file name
    assert weird.id != KeyRange(("a/../b", 3), ("it's", 5)).id
    assert KeyRange.from_dict(weird.to_dict()) == weird  # JSON lists come back as tuples
    assert KeyRange(None, "m").label == "[-∞, m)"


def test_json_values_are_exact_text_for_what_json_cannot_hold():
    assert json_value(decimal.Decimal("-12.50")) == "-12.50"
    assert json_value(dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc)) == "0001-01-01T00:00:00+00:00"
    assert json_value(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    with pytest.raises(PlanError, match="binary key"):
        json_value(b"\x00")
    with pytest.raises(PlanError, match="cannot bound"):
        json_value(float("nan"))


@settings(deadline=None, max_examples=200)
@given(keys=st.lists(st.tuples(st.text(max_size=4), st.integers(-5, 5)), min_size=0, max_size=300, unique=True),
       size=st.integers(1, 50), parallelism=st.integers(1, 4))
def test_sampled_ranges_hold_every_key_exactly_once(keys, size, parallelism):
    ranges = ranges_from_sample(keys, len(keys), size, parallelism)
    if not keys:
        assert ranges == []
        return
    assert ranges[0].lo is None and ranges[-1].hi is None
    assert all(a.hi == b.lo for a, b in pairwise(ranges))
    # Every key lies in exactly one range, in Python's order (code points = UTF-8 bytes for text).
    for key in keys:
        holders = [r for r in ranges if (r.lo is None or key >= r.lo) and (r.hi is None or key < r.hi)]
        assert len(holders) == 1
    assert len(ranges) <= max(1, -(-len(keys) // size)) + parallelism


def test_touching_ranges_merge_without_comparing_values():
    a, b, c, far = KeyRange(None, "b"), KeyRange("b", "k"), KeyRange("k", None), KeyRange(5, 9)
    assert merged([c, a, b]) == [KeyRange(None, None)]
    assert sorted(merged([far, KeyRange(1, 5)]), key=str) == [KeyRange(1, 9)]
    assert set(merged([KeyRange(1, 3), KeyRange(7, 9)])) == {KeyRange(1, 3), KeyRange(7, 9)}


def test_sql_range_predicates_use_row_values_quoted_names_and_byte_order_for_text():
    fields = [("Region Name", pa.string()), ("id", pa.int64())]
    assert range_predicate(fields, KeyRange(("eu", 5), ("us", 1)), "postgres") == (
        '(("Region Name"::text COLLATE "C"), "id") >= (\'eu\', 5) AND '
        '(("Region Name"::text COLLATE "C"), "id") < (\'us\', 1)')
    assert range_predicate(fields, KeyRange(None, ("o'neil", 2)), "mysql") == (
        "(CAST(`Region Name` AS BINARY), `id`) < ('o''neil', 2)")
    predicate = range_predicate([("amount", pa.decimal128(12, 2))], KeyRange("-1.50", None), "postgres")
    assert predicate == '"amount" >= -1.50'
    assert range_predicate([("id", pa.int64())], KeyRange(None, None), "postgres") is None
    with pytest.raises(ValueError, match="not a number"):
        range_predicate([("amount", pa.decimal128(12, 2))], KeyRange("1; DROP", None), "postgres")


def test_arrow_range_filter_agrees_with_python_order_on_composite_and_uuid_keys():
    ids = [uuid.UUID(int=i * 2**120) for i in range(6)]
    table = pa.table({"region": ["b", "a", "b", "a", "c", "b"], "n": [2, 9, 1, 1, 0, 3],
                      "u": pa.array([u.bytes for u in ids], pa.uuid())})
    inside = in_range(table, ("region", "n"), KeyRange(("a", 5), ("b", 3)))
    assert table.filter(inside).select(["region", "n"]).to_pylist() == [
        {"region": "b", "n": 2}, {"region": "a", "n": 9}, {"region": "b", "n": 1}]
    by_uuid = in_range(table, ("u",), KeyRange(str(ids[2]), str(ids[4])))
    assert pc.sum(by_uuid).as_py() == 2


# ------------------------------------------------------------------ filters


@pytest.mark.parametrize(("text", "why"), [
    ("id < 10) OR (true", "is not an SQL expression"),
    ("id < 10; DROP TABLE orders", "holds 2 statements"),
    ("id IN (WITH d AS (DELETE FROM orders RETURNING id) SELECT id FROM d)", "holds DELETE"),
    ("42", "is not a condition"),
    ("amount + 1", "is not a condition"),
])
def test_a_filter_that_is_not_one_read_only_condition_is_refused(text, why):
    for dialect in ("postgres", "mysql"):
        with pytest.raises(PlanError, match=why):
            parse_filter(text, dialect)


def test_a_filter_is_checked_and_kept_in_parentheses_a_comment_rewritten():
    # A trailing comment cannot swallow what follows the filter in the range query.
    assert parse_filter("status <> 'test' -- live rows", "postgres") == "(status <> 'test' /* live rows */)"
    assert parse_filter("`Order Date` > '2020-01-01'", "mysql") == "(`Order Date` > '2020-01-01')"
    assert parse_filter('"Order Date" > now()', "postgres") == '("Order Date" > now())'


def test_the_request_refuses_a_broken_filter_before_any_connection_and_reads_empty_as_none():
    with pytest.raises(ValidationError, match="is not an SQL expression"):
        BackfillRequest(table="orders", where="id < 10) OR (true")
    assert BackfillRequest(table="orders", where="  ", key="", cursor_after="").where is None
    assert BackfillRequest(table="orders", key=" region , id ").key_columns == ("region", "id")
    assert BackfillRequest(table="public.Order Items").table == "public.Order Items"
    with pytest.raises(ValidationError, match="not a column name"):
        BackfillRequest(table="orders", key="id; drop")


# ------------------------------------------------------------------ target names


@pytest.mark.parametrize(("check", "good", "bad", "why"), [
    (names.postgres_table, ["public.orders_copy", "t$1"], ["x; DROP TABLE y", "a.b.c", "1abc", "a" * 64], "PostgreSQL"),
    (names.iceberg_table, ["mesh.orders", "a.b.c"], ["bad name!", "orders", "mesh.1x"], "Iceberg"),
    (names.elasticsearch_index, ["orders_copy", "a.b-c"], ["Orders", "a b", "_x", "a#b", ".."], "Elasticsearch"),
    (names.kafka_topic, ["backfill.orders", "a-b_c"], ["a b", "é", "..", "x" * 250], "Kafka"),
])
def test_target_names_are_checked_per_store(check, good, bad, why):
    for name in good:
        assert check(name) == name
    for name in bad:
        with pytest.raises(PlanError, match=why):
            check(name)


def test_a_job_is_what_it_copies_not_how_and_its_stream_is_shared_by_its_modes():
    from airflow_mesh.backfill.plan import job_id, stream_id

    base = BackfillRequest(table="public.orders", mode="incremental", cursor_column="updated_at")
    # Range size, parallelism, the cursor position and the lag change how a run goes, not the job.
    for how in ({"range_size": 500}, {"parallelism": 8}, {"cursor_after": "2026-01-01"}, {"cursor_lag": 30}):
        assert job_id("s", "t", base.model_copy(update=how)) == job_id("s", "t", base)
    full = BackfillRequest(table="public.orders")
    assert job_id("s", "t", full) != job_id("s", "t", base)  # another mode: another job...
    assert stream_id("s", "t", full) == stream_id("s", "t", base)  # ...on the same stream (the mark hands over)
    assert stream_id("s", "t", full) != stream_id("s", "t2", full)
    assert stream_id("s", "t", full) != stream_id("s", "t", full.model_copy(update={"where": "id > 5"}))
def test_a_filter_keeps_its_dialect_s_own_words_and_refuses_a_stray_word():
    assert parse_filter("note REGEXP '^a'", "mysql") == "(note REGEXP '^a')"  # not sqlglot's REGEXP_LIKE
    with pytest.raises(PlanError, match="reads as a column alias"):
        parse_filter("id > 5 label", "postgres")
    assert parse_filter(r"note = 'a\b'", "postgres").startswith("(note = ")  # a backslash: rewritten
