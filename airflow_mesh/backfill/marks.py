"""High-water marks: where a stream's next incremental run reads from, and what a run can prove.

A mark is never the largest cursor value a run saw: a transaction that began before the run's
snapshot and commits after it writes rows the run could not see, with a cursor (``now()``, its
start) below that value. The mark a run proves is the instant before which every change is visible
to it (``Snapshot.safe_until``: the oldest open transaction's start, else the snapshot's time), held
back by the request's ``cursor_lag``. The next run reads the rows *at or past* the mark, so the
overlap is read twice and upserted by key: nothing is lost, nothing doubled.

Cursors that are not times (a version counter) cannot be bounded by a clock: their mark is the
largest value present when the run began, which is exact only if writers commit in cursor order.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa

from airflow_mesh.backfill.sources import Snapshot

TIME = "time"


def is_time(t: pa.DataType) -> bool:
    """Whether a cursor column holds times (its marks are instants)."""
    return pa.types.is_timestamp(t) or pa.types.is_date(t)


def mark_key(stream: str, cursor: str | None = None) -> str:
    """Where a stream's mark is kept: one time mark per stream (any time cursor reads it, and a full
    copy hands it over), one value mark per non-time cursor column."""
    return f"{stream}/{TIME}" if cursor is None else f"{stream}/value/{cursor}"


def proved_time(snapshot: Snapshot, lag_seconds: float) -> str | None:
    """The time mark a run's view proves (ISO 8601, UTC), or None when the source cannot tell."""
    if snapshot.safe_until is None:
        return None
    return (snapshot.safe_until - dt.timedelta(seconds=lag_seconds)).astimezone(dt.timezone.utc).isoformat()


def value_mark(value: Any) -> str | None:
    """A value mark's text (numbers as their digits)."""
    if value is None:
        return None
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return str(value)
