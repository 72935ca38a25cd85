"""Checkpoints: which ranges of a backfill are done, with their row counts and checksums.

A range is recorded only after the target committed it; a run that is killed (even with SIGKILL)
redoes the unrecorded ranges, and since writing a range replaces it, no row is lost or doubled.
SQLite keeps each record durable the moment it is written.
"""

from __future__ import annotations

import json
import sqlite3
import time
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
        """Drop a job's records (a fresh start)."""
        with self._connect() as db:
            db.execute("DELETE FROM done_ranges WHERE job = ?", (job,))
            db.execute("DELETE FROM plans WHERE job = ?", (job,))

    def forget_watermark(self, stream: str) -> None:
        """Drop an incremental stream's high-water mark (its next run copies everything)."""
        with self._connect() as db:
            db.execute("DELETE FROM watermarks WHERE stream = ?", (stream,))
