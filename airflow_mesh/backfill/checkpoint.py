"""Checkpoints: a job's open run (its plan, its done ranges with their row counts and checksums),
and each stream's high-water mark.

A run is open from its first attempt until it completes (copied, and verified when asked): a retry,
or a rerun after a kill, resumes it (same plan, same cursor bounds; the done ranges are skipped). A
range is recorded only after the target committed it; a run that is killed (even with SIGKILL)
redoes the unrecorded ranges, and since writing a range replaces it, no row is lost or doubled. When
a run completes, its plan and done ranges are dropped: the job's next run is a new one (a full copy
copies again; an incremental one starts at the mark the completed run set).
SQLite keeps each record durable the moment it is written.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from airflow_mesh.backfill.keys import KeyRange


class CheckpointStore:
    """The done ranges of backfills, in one SQLite file.

    Args:
        path: The SQLite file (created with its folder when missing).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            # lo and hi: the range's bounds as JSON (for people reading the file; ids are what count).
            db.execute("CREATE TABLE IF NOT EXISTS done_ranges (job TEXT, range_id TEXT, lo, hi, "
                       "rows INTEGER, checksum TEXT, finished_at REAL, PRIMARY KEY (job, range_id))")
            db.execute("CREATE TABLE IF NOT EXISTS watermarks (stream TEXT PRIMARY KEY, cursor TEXT, updated_at REAL)")
            db.execute("CREATE TABLE IF NOT EXISTS plans (job TEXT PRIMARY KEY, ranges TEXT, rows INTEGER, "
                       "created_at REAL)")
            # The source's view (Snapshot.version) the target last equalled, per stream: set by a
            # verified full copy or sync; a sync from it reads only the rows changed since.
            db.execute("CREATE TABLE IF NOT EXISTS baselines (stream TEXT PRIMARY KEY, version TEXT, at REAL)")
            # How many keys each segment of an integer key held in that view (Arrow IPC of seg, n):
            # a sync from the baseline then counts only the source's side.
            db.execute("CREATE TABLE IF NOT EXISTS baseline_counts (stream TEXT PRIMARY KEY, lo INTEGER, "
                       "width INTEGER, counts BLOB)")
            # The open run of a job: its cursor bounds, fixed at its first attempt, and how many attempts.
            db.execute("CREATE TABLE IF NOT EXISTS runs (job TEXT PRIMARY KEY, started_at REAL, cursor_after TEXT, "
                       "mark TEXT, attempts INTEGER)")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def done(self, job: str) -> dict[str, tuple[int, int]]:
        """``range id -> (rows, checksum)`` of the ranges already done for a job."""
        with self._connect() as db:
            rows = db.execute("SELECT range_id, rows, checksum FROM done_ranges WHERE job = ?", (job,)).fetchall()
        return {range_id: (count, int(checksum)) for range_id, count, checksum in rows}

    def saved_plan(self, job: str) -> tuple[list[KeyRange], int] | None:
        """The ranges (and planned row count) a job was first cut into, or None before its first run."""
        with self._connect() as db:
            row = db.execute("SELECT ranges, rows FROM plans WHERE job = ?", (job,)).fetchone()
        if row is None:
            return None
        return [KeyRange(lo, hi) for lo, hi in json.loads(row[0])], row[1]

    def save_plan(self, job: str, ranges: list[KeyRange], rows: int) -> None:
        """Keep a job's ranges, so that a resumed run moves the same ranges whatever the source's
        count or statistics say by then (the done ranges are those of this plan)."""
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO plans VALUES (?, ?, ?, ?)",
                       (job, json.dumps([[r.to_dict()["lo"], r.to_dict()["hi"]] for r in ranges]), rows, time.time()))

    def record(self, job: str, key_range: KeyRange, rows: int, checksum: int) -> None:
        """Mark a range done (after the target committed it)."""
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO done_ranges VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (job, key_range.id, json.dumps(key_range.to_dict()["lo"]), json.dumps(key_range.to_dict()["hi"]),
                        rows, str(checksum), time.time()))

    def watermark(self, stream: str) -> str | None:
        """The cursor value an incremental stream has copied up to (None before its first run)."""
        with self._connect() as db:
            row = db.execute("SELECT cursor FROM watermarks WHERE stream = ?", (stream,)).fetchone()
        return row[0] if row else None

    def set_watermark(self, stream: str, cursor: str) -> None:
        """Move an incremental stream's high-water mark (after its run was copied and verified)."""
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO watermarks VALUES (?, ?, ?)", (stream, cursor, time.time()))

    def forget(self, job: str) -> None:
        """Drop a job's records, its open run too (a fresh start)."""
        with self._connect() as db:
            db.execute("DELETE FROM done_ranges WHERE job = ?", (job,))
            db.execute("DELETE FROM plans WHERE job = ?", (job,))
            db.execute("DELETE FROM runs WHERE job = ?", (job,))

    def forget_watermark(self, stream: str) -> None:
        """Drop an incremental stream's high-water mark (its next run copies everything)."""
        with self._connect() as db:
            db.execute("DELETE FROM watermarks WHERE stream = ?", (stream,))

    def baseline(self, stream: str) -> str | None:
        """The source's view (``Snapshot.version``) the stream's target last equalled, if any."""
        with self._connect() as db:
            row = db.execute("SELECT version FROM baselines WHERE stream = ?", (stream,)).fetchone()
        return row[0] if row else None

    def set_baseline(self, stream: str, version: str | None) -> None:
        """Record (None: forget) the view the stream's target now equals (its segment counts, if any
        were kept, are of an older view: they go)."""
        with self._connect() as db:
            db.execute("DELETE FROM baseline_counts WHERE stream = ?", (stream,))
            if version is None:
                db.execute("DELETE FROM baselines WHERE stream = ?", (stream,))
            else:
                db.execute("INSERT OR REPLACE INTO baselines VALUES (?, ?, ?)", (stream, version, time.time()))

    def baseline_counts(self, stream: str) -> tuple[int, int, bytes] | None:
        """``(lo, width, counts)`` kept with the stream's baseline (see ``set_baseline_counts``)."""
        with self._connect() as db:
            row = db.execute("SELECT lo, width, counts FROM baseline_counts WHERE stream = ?", (stream,)).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def set_baseline_counts(self, stream: str, counts: tuple[int, int, bytes] | None) -> None:
        """Keep (None: forget) the segment counts of the stream's baseline."""
        with self._connect() as db:
            if counts is None:
                db.execute("DELETE FROM baseline_counts WHERE stream = ?", (stream,))
            else:
                db.execute("INSERT OR REPLACE INTO baseline_counts VALUES (?, ?, ?, ?)", (stream, *counts))

    def open_run(self, job: str) -> OpenRun | None:
        """The job's run that has not completed, or None."""
        with self._connect() as db:
            row = db.execute("SELECT started_at, cursor_after, mark, attempts FROM runs WHERE job = ?",
                             (job,)).fetchone()
        return None if row is None else OpenRun(job, row[0], row[1], row[2], row[3])

    def begin_run(self, job: str, cursor_after: str | None, mark: str | None) -> OpenRun:
        """Start the job's run, or resume its open one (whose cursor bounds then hold: the mark is the
        earlier of the first attempt's and ``mark``, so nothing an earlier attempt could not see is
        passed over).

        Args:
            job: The job.
            cursor_after: Where the run reads from (incremental), fixed at its first attempt.
            mark: The high-water mark this attempt's snapshot proves (ISO text), if any.

        Returns:
            The run, as it stands after this attempt began.
        """
        with self._connect() as db:
            row = db.execute("SELECT started_at, cursor_after, mark, attempts FROM runs WHERE job = ?",
                             (job,)).fetchone()
            if row is None:
                db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, 1)", (job, time.time(), cursor_after, mark))
                return OpenRun(job, time.time(), cursor_after, mark, 1)
            marks = [m for m in (row[2], mark) if m is not None]
            earlier = min(marks, key=_mark_order) if marks else None
            db.execute("UPDATE runs SET mark = ?, attempts = attempts + 1 WHERE job = ?", (earlier, job))
            return OpenRun(job, row[0], row[1], earlier, row[3] + 1)

    def complete_run(self, job: str) -> None:
        """The run succeeded: drop its plan and done ranges, so the job's next run starts anew."""
        with self._connect() as db:
            db.execute("DELETE FROM runs WHERE job = ?", (job,))
            db.execute("DELETE FROM done_ranges WHERE job = ?", (job,))
            db.execute("DELETE FROM plans WHERE job = ?", (job,))


def _mark_order(mark: str) -> tuple[int, float | str]:
    """Marks in their order: numbers as numbers, times (ISO 8601 in UTC, one format) as text."""
    try:
        return 0, float(mark)
    except ValueError:
        return 1, mark


@dataclass(frozen=True)
class OpenRun:
    """A run that has begun and not completed.

    Attributes:
        job: The job.
        started_at: When its first attempt began (epoch seconds).
        cursor_after: Where it reads from (incremental), as its first attempt fixed it.
        mark: The high-water mark it proves once complete (ISO text), if any.
        attempts: How many attempts it has had, this one included.
    """

    job: str
    started_at: float
    cursor_after: str | None
    mark: str | None
    attempts: int
