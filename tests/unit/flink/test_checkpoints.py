"""Finding a job's latest retained checkpoint, and the record that ties a job's name to its id."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_mesh.flink.checkpoints import JobRecord, latest_checkpoint, record_path, storage_path


def test_the_highest_complete_checkpoint_wins():
    entries = {"chk-9": True, "chk-10": True, "chk-11": False, "shared": False, "taskowned": False}
    assert latest_checkpoint("/cp/j1", entries) == "/cp/j1/chk-10"  # numeric order; chk-11 has no _metadata


def test_no_complete_checkpoint():
    assert latest_checkpoint("/cp/j1", {"chk-3": False}) is None
    assert latest_checkpoint("/cp/j1", {}) is None


@given(st.dictionaries(st.integers(0, 10**6).map(lambda n: f"chk-{n}"), st.booleans()))
def test_latest_is_the_maximum_complete(entries):
    complete = [int(name[4:]) for name, done in entries.items() if done]
    expected = f"/cp/j/chk-{max(complete)}" if complete else None
    assert latest_checkpoint("/cp/j/", entries) == expected


@pytest.mark.parametrize(("uri", "expected"), [
    ("file:/work/.stack/flink/cp", ("file:///work/.stack/flink/cp", "/work/.stack/flink/cp")),
    ("file:///work/cp", ("file:///work/cp", "/work/cp")),
    ("/work/cp", ("file:///work/cp", "/work/cp")),
    ("s3://bucket/flink/cp", ("s3://bucket/flink/cp", "bucket/flink/cp")),
])
def test_storage_path(uri, expected):
    assert storage_path(uri) == expected


def test_record_round_trip_and_path():
    record = JobRecord("team/orders paid", "a" * 32, "file:/cp/" + "a" * 32 + "/chk-4")
    assert JobRecord.from_json(record.to_json()) == record
    assert record_path("/cp/", record.job_name) == "/cp/_airflow_mesh/jobs/team%2Forders%20paid.json"


def test_a_foreign_file_is_not_a_record():
    with pytest.raises(ValueError, match="not a job record"):
        JobRecord.from_json('["x"]')


def test_a_record_without_a_fingerprint_reads_as_none():
    """Records written before fingerprints were kept still read."""
    assert JobRecord.from_json('{"job_name": "a", "job_id": "j"}').fingerprint is None
