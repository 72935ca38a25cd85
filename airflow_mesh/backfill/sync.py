"""Sync: make a target equal to its source again by comparing them, range by range, and repairing
only what differs. It sees what an incremental run cannot: deletes, updates that leave the cursor
alone, rows whose cursor was set into the past.

Each range's order-independent checksum (``checksum``) is computed on both sides; a range whose
checksums agree is left alone. Where they differ, both sides' rows of the range are compared row by
row by key (a row's hash over every column): rows the target lacks or holds differently are written
(upserted), rows the source no longer has are deleted, in one write per range; the range is then
read back and must equal the source. The source is read in one consistent view (``Source.consistent``),
so a sync under concurrent writes repairs the target to that view, and its mark (what the view
proves) hands over to the incremental runs after it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, cast

import polars as pl
import pyarrow as pa

from airflow_mesh.backfill import marks
from airflow_mesh.backfill.checkpoint import CheckpointStore
from airflow_mesh.backfill.checksum import batches_checksum, canonical_keys, row_hashes, table_checksum
from airflow_mesh.backfill.engine import (
    Plan,
    Progress,
    Summary,
    _parallel,
    plan,
    read_range,
    stream_range,
    target_checksum,
)
from airflow_mesh.backfill.errors import TargetError, VerificationError
from airflow_mesh.backfill.explain import at
from airflow_mesh.backfill.keys import KeyRange
from airflow_mesh.backfill.plan import SEES, BackfillRequest, Mode, job_id, stream_id
from airflow_mesh.backfill.sources import Source, TableInfo
from airflow_mesh.backfill.targets import Target

log = logging.getLogger(__name__)


class _SegmentedSource(Protocol):
    """What a sync from a baseline needs of its source besides ``Source`` (the SQL sources have it):
    every key, and an integer key's values counted and listed by segment in the database."""

    name: str

    def all_keys(self, info: TableInfo, keys: tuple[str, ...], request: BackfillRequest) -> pa.Table: ...

    def segment_counts(self, info: TableInfo, key: str, request: BackfillRequest, lo: int, width: int) -> pa.Table: ...

    def keys_in_segments(self, info: TableInfo, key: str, request: BackfillRequest, lo: int, width: int,
                         segments: list[int]) -> pa.Table: ...


class _SegmentedTarget(Protocol):
    """A target that counts and lists an integer key's values by segment itself."""

    def segment_counts(self, lo: int, width: int) -> pa.Table: ...

    def keys_in_segments(self, lo: int, width: int, segments: list[int]) -> pa.Table: ...


@dataclass
class RangeDiff:
    """How a range of the target differs from the source's.

    Attributes:
        range_id: The range.
        missing: Keys the source has and the target lacks.
        different: Keys both hold, with different values.
        extra: Keys the target holds and the source no longer has.
        upserts: The source's rows to write (missing and different ones).
        deletes: The key columns of the target's extra rows.
    """

    range_id: str
    missing: int
    different: int
    extra: int
    upserts: pa.Table
    deletes: pa.Table

    @property
    def empty(self) -> bool:
        return not (self.missing or self.different or self.extra)

    def describe(self) -> str:
        return (f"range {self.range_id}: {self.missing} rows missing from the target, {self.different} differ, "
                f"{self.extra} extra")


def diff_rows(source_rows: pa.Table, target_rows: pa.Table, keys: tuple[str, ...], range_id: str = "") -> RangeDiff:
    """Compare two sides' rows of a range by key.

    Args:
        source_rows: The source's rows (in the backfill's schema).
        target_rows: The target's rows (the same columns; types as the target reads them).
        keys: The key columns.
        range_id: For the result's messages.

    Returns:
        What differs, and the rows to upsert and keys to delete to make the target equal.
    """
    def hashed(rows: pa.Table) -> pl.DataFrame:
        return canonical_keys(rows, keys).with_columns(row_hashes(rows).alias("__hash"),
                                                       pl.int_range(0, pl.len(), dtype=pl.UInt32).alias("__row"))

    if not source_rows.num_rows or not target_rows.num_rows:
        missing = source_rows.num_rows
        extra = target_rows.num_rows
        return RangeDiff(range_id, missing, 0, extra, source_rows,
                         target_rows.select(list(keys)) if extra else target_rows.select(list(keys)).slice(0, 0))
    source_frame, target_frame = hashed(source_rows), hashed(target_rows)
    joined = source_frame.join(target_frame, on=list(keys), how="full", suffix="_t", coalesce=True)
    missing = joined.filter(pl.col("__row_t").is_null() & pl.col("__row").is_not_null())
    extra = joined.filter(pl.col("__row").is_null())
    different = joined.filter(pl.col("__row").is_not_null() & pl.col("__row_t").is_not_null()
                              & (pl.col("__hash") != pl.col("__hash_t")))
    write = pl.concat([missing.select("__row"), different.select("__row")])["__row"].to_arrow()
    gone = extra["__row_t"].to_arrow()
    return RangeDiff(range_id, missing.height, different.height, extra.height, source_rows.take(write),
                     target_rows.select(list(keys)).take(gone))


def sync(source: Source, target: Target, request: BackfillRequest, checkpoints: CheckpointStore | None,
         on_progress: Callable[[int, int], None] | None = None, verify: bool = True, restart: bool = False,
         on_verify: Callable[[int, int], None] | None = None, write: bool = True) -> Summary:
    """Compare source and target range by range and repair the ranges that differ (see the module).

    Args:
        source: The source, read in one consistent view.
        target: The target (created when missing: the sync is then a full copy).
        request: What is synced (``mode`` is ``sync``; ``cursor_column`` is not needed).
        checkpoints: The job's open run (a killed sync resumes: compared ranges stay done) and the
            stream's mark, which a completed sync sets to what its view proves (None with
            ``write=False``: nothing is recorded).
        on_progress: Called with ``(rows_compared, rows_total)`` as ranges are compared.
        verify: Read every repaired range back; it must equal the source.
        restart: Forget the job's open run first.
        on_verify: Called with ``(ranges_compared, ranges)``.
        write: False: only report the differences (``--verify-only``), writing nothing.

    Returns:
        The summary, with ``ranges_differing`` and the rows inserted, updated and deleted (or, with
        ``write=False``, that would be).

    Raises:
        VerificationError: a repaired range still differs; with ``write=False``: ranges differ.
        SourceError, TargetError, PlanError: as for a copy.
    """
    started = time.monotonic()
    job, stream = job_id(source.name, target.name, request), stream_id(source.name, target.name, request)
    if write and checkpoints is None:
        raise ValueError("a sync that writes needs a checkpoint store")
    if restart and checkpoints is not None:
        checkpoints.forget(job)
    store = checkpoints if write else None  # where the run records its progress: nowhere unless it writes
    with contextlib.ExitStack() as held:
        with at("source", source.name, "opening a consistent view"):
            view = held.enter_context(source.consistent())
        the_plan = plan(source, target, request, store)
        summary = Summary(the_plan.job, request.table, source.name, target.name, ranges=len(the_plan.ranges),
                          dry_run=request.dry_run, restarted=restart, mode=Mode.SYNC.value, sees=SEES[Mode.SYNC],
                          consistent=view.consistent)
        if request.dry_run:
            summary.rows, summary.seconds = the_plan.rows, time.monotonic() - started
            return summary
        this_run = None if store is None else store.begin_run(job, None, marks.proved_time(view, request.cursor_lag))
        with at("target", target.name, "creating or checking the target"):
            target.prepare(the_plan.info.schema, the_plan.keys)
        baseline = store.baseline(stream) if store is not None and not request.deep else None
        changed_since = getattr(source, "changed_since", None)
        since = changed_since(the_plan.info, the_plan.keys, request, baseline) \
            if baseline is not None and changed_since is not None else None
        found = keep = None
        if since is not None and store is not None:  # (a baseline, so a store)
            try:
                found, keep = _since(source, target, the_plan, request, since, verify, progress_to=on_progress,
                                     kept=store.baseline_counts(stream))
                summary.compared = "the rows changed since the last verified run (row versions), and the keys"
            except TooManyChanges as exc:
                log.info("sync: %s rows changed since the last verified run: every range is compared instead", exc)
        if found is not None:
            diffs = [] if found.empty else [found]
        else:
            summary.compared = "every range of both sides (checksums, then row by row where they differ)"
            diffs = _every_range(source, target, request, the_plan, store, job, write, verify, on_progress,
                                 on_verify)
            if write and view.version is not None:
                keep = counted(source, the_plan, request)  # what the next sync, from this baseline, compares with
    summary.rows = the_plan.rows
    summary.ranges_differing = len(diffs)
    summary.inserted = sum(d.missing for d in diffs)
    summary.updated = sum(d.different for d in diffs)
    summary.deleted = sum(d.extra for d in diffs)
    if store is None:  # write=False
        if diffs:
            raise VerificationError([], hint="run with --mode sync (mode='sync') to repair them", drift=diffs)
        summary.verified = True
        summary.seconds = round(time.monotonic() - started, 3)
        return summary
    store.complete_run(job)
    summary.verified = verify
    store.set_baseline(stream, view.version)  # the target now equals this view of the source
    if keep is not None:
        store.set_baseline_counts(stream, keep)
    if this_run is not None and this_run.mark is not None:
        summary.cursor_max = this_run.mark
        store.set_watermark(marks.mark_key(stream), this_run.mark)
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


def _every_range(source: Source, target: Target, request: BackfillRequest, the_plan: Plan,
                 store: CheckpointStore | None, job: str, write: bool, verify: bool,
                 on_progress: Callable[[int, int], None] | None,
                 on_verify: Callable[[int, int], None] | None) -> list[RangeDiff]:
    """Compare every range of both sides, and repair those that differ (``write``, then ``store`` records
    each range done)."""
    done = store.done(job) if store is not None else {}
    pending = [r for r in the_plan.ranges if r.id not in done]
    progress = Progress(the_plan.rows, on_progress)
    compared = [0]
    lock = threading.Lock()
    writer = threading.Lock()  # one writer at a time: Iceberg commits never race each other

    def one(key_range: KeyRange) -> RangeDiff | None:
        expected, found = compare_range(source, target, request, the_plan, key_range, progress)
        if found is not None and write:
            with writer, at("target", target.name, f"repairing range {key_range.label}"):
                apply_changes(target, key_range, found)
            if verify:
                held_now = target_checksum(target, key_range)
                if held_now != expected:
                    raise VerificationError([(key_range.id, expected, held_now)],
                                            hint="the range still differs after its repair")
        if store is not None:
            store.record(job, key_range, *expected)
        with lock:
            compared[0] += 1
            if on_verify is not None:
                on_verify(compared[0], len(pending))
        return found

    return [d for d in _parallel(one, pending, request.parallelism) if d is not None]


def compare_range(source: Source, target: Target, request: BackfillRequest, the_plan: Plan, key_range: KeyRange,
             progress: Progress) -> tuple[tuple[int, int], RangeDiff | None]:
    """The source's ``(rows, checksum)`` of a range, and None when the target's agrees; else the rows
    that differ (the checksum is then that of the rows the difference was taken from)."""
    expected = batches_checksum(stream_range(source, the_plan, request, key_range, on_rows=progress.add))
    if target_checksum(target, key_range) == expected:
        return expected, None
    source_rows = read_range(source, the_plan, request, key_range)
    with at("target", target.name, f"reading range {key_range.label}"):
        target_rows = target.read_range(key_range)
    found = diff_rows(source_rows, target_rows, the_plan.keys, key_range.id)
    log.info("sync: %s", found.describe())
    return table_checksum(source_rows), (None if found.empty else found)


def apply_changes(target: Target, key_range: KeyRange, diff: RangeDiff) -> None:
    """Write a range's differences into the target: its own ``apply_changes`` (upserts and deletes
    in one write).

    Raises:
        TargetError: the target cannot apply changes.
    """
    apply = getattr(target, "apply_changes", None)
    if apply is None:
        raise TargetError(f"target {target.name} cannot be synced (it has no way to apply row changes)")
    apply(key_range, diff.upserts, diff.deletes)


# Rows changed since the baseline are written this many at a time.
SINCE_CHUNK_ROWS = 200_000
# More changed rows than this and the sync compares every range instead (its memory stays bounded).
SINCE_MAX_ROWS = 2_000_000
# Deletes are found by counting the keys of small segments of an integer key on both sides (in the
# database where there is one), then comparing the keys of only the segments whose counts disagree.
SEGMENT_ROWS = 64


class TooManyChanges(Exception):
    """More rows changed since the baseline than a sync from it holds in memory."""


def segments(the_plan: Plan) -> tuple[int, int] | None:
    """``(lo, width)`` of the small segments an integer key is counted in (about ``SEGMENT_ROWS``
    keys each), or None for any other key."""
    keys = the_plan.keys
    if len(keys) != 1 or not pa.types.is_integer(the_plan.info.schema.field(keys[0]).type) or not the_plan.ranges:
        return None
    first, last = the_plan.ranges[0].lo, the_plan.ranges[-1].hi
    if not isinstance(first, int) or not isinstance(last, int):
        return None
    return first, max(1, (last - first) * SEGMENT_ROWS // max(1, the_plan.rows))


def counted(source: Source, the_plan: Plan, request: BackfillRequest,
            lo_width: tuple[int, int] | None = None) -> tuple[int, int, bytes] | None:
    """The source's segment counts in the run's view, as a baseline keeps them (``lo``, ``width``,
    Arrow IPC), or None when the key is not one integer column or the source cannot count."""
    lo_width = lo_width or segments(the_plan)
    if lo_width is None or not hasattr(source, "segment_counts"):
        return None
    with at("source", source.name, "counting the keys of each segment"):
        counting = cast(_SegmentedSource, source)  # it has segment_counts
        table = counting.segment_counts(the_plan.info, the_plan.keys[0], request, *lo_width).select(["seg", "n"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return (*lo_width, sink.getvalue().to_pybytes())


def _segment_counts(keys: pa.Array | pa.ChunkedArray, lo: int, width: int) -> pl.DataFrame:
    """``seg, n``: how many of an integer key's values fall in each segment ``[lo + seg*width, ...)``."""
    frame = cast(pl.DataFrame, pl.from_arrow(pa.table({"k": keys})))  # a table in, a frame out
    return frame.group_by(((pl.col("k") - lo) // width).alias("seg")).agg(pl.len().alias("n"))


def _deleted(source: Source, target: Target, the_plan: Plan, request: BackfillRequest, new_keys: pa.Table,
             counts: tuple[Any, Any] | None, whole: tuple[Any, Any] | None, lo: int, width: int) -> pa.Table:
    """The keys the target holds and the source no longer has."""
    keys = the_plan.keys
    if counts is not None:  # integer key: only the segments whose counts disagree are compared
        source_counts, target_counts = (cast(pl.DataFrame, pl.from_arrow(f.result())) for f in counts)
        added = _segment_counts(new_keys.column(keys[0]), lo, width)
        both = (target_counts.join(added, on="seg", how="left", suffix="_new")
                .join(source_counts, on="seg", how="left", suffix="_source").fill_null(0))
        segments = both.filter(pl.col("n") + pl.col("n_new") - pl.col("n_source") > 0)["seg"].to_list()
        if not segments:
            return new_keys.slice(0, 0)
        with at("source", source.name, f"reading the keys of {len(segments)} segments"):
            source_keys = cast(_SegmentedSource, source).keys_in_segments(the_plan.info, keys[0], request, lo, width,
                                                                          segments)
        with at("target", target.name, f"reading the keys of {len(segments)} segments"):
            target_keys = cast(_SegmentedTarget, target).keys_in_segments(lo, width, segments)
    elif whole is not None:
        source_keys, target_keys = (f.result() for f in whole)
    else:
        raise ValueError("deletes are found from segment counts or from every key: neither was read")
    held = canonical_keys(target_keys, keys).with_row_index("__row")
    gone = held.join(canonical_keys(source_keys, keys), on=list(keys), how="anti")["__row"].to_arrow()
    return target_keys.take(gone)


def _since(source: Source, target: Target, the_plan: Plan, request: BackfillRequest, changed: Any, verify: bool,
           progress_to: Callable[[int, int], None] | None = None,
           kept: tuple[int, int, bytes] | None = None) -> tuple[RangeDiff, tuple[int, int, bytes] | None]:
    """A sync from the baseline: the rows the source says changed since (inserts and updates, silent
    ones too) are upserted, and the keys the target holds but the source no longer has (deletes) are
    deleted, a chunk at a time, each chunk read back by key.

    The deletes are found while the changed rows stream in: for an integer key, both sides count the
    keys of small segments (in the database, where there is one) and only the segments whose counts
    cannot be explained by the new keys are compared key by key; for any other key, every key of
    both sides is compared.

    The target's counts are the baseline's, when the last sync kept them (``kept``: ``lo``, ``width``
    and the counts as Arrow IPC): a key the target gained since (an incremental run's insert) only
    makes its segment compared, never hides a delete.

    Returns:
        What was repaired (``missing`` the new keys, ``different`` the changed rows the target had,
        ``extra`` the deleted keys), and the source's segment counts to keep with the new baseline.

    Raises:
        TooManyChanges: more than ``SINCE_MAX_ROWS`` rows changed (the caller compares every range).
        VerificationError: what was written does not read back.
    """
    from airflow_mesh.backfill.engine import rows_of
    from airflow_mesh.backfill.explain import reading

    keys = the_plan.keys
    sql_source = cast(_SegmentedSource, source)  # only a SQL source answers changed_since, so a sync gets here
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="keys")
    planned = segments(the_plan)
    integral = planned is not None and hasattr(source, "segment_counts") and (
        kept is not None or hasattr(target, "segment_counts"))
    lo = width = 0
    counts = whole = None
    if integral and planned is not None:
        lo, width = (kept[0], kept[1]) if kept is not None else planned

        def source_counts() -> pa.Table:
            with at("source", source.name, "counting the keys of each segment"):
                return sql_source.segment_counts(the_plan.info, keys[0], request, lo, width)

        def target_counts() -> pa.Table:
            if kept is not None:
                return pa.ipc.open_stream(kept[2]).read_all()
            with at("target", target.name, "counting the keys of each segment"):
                return cast(_SegmentedTarget, target).segment_counts(lo, width)

        counts = (pool.submit(source_counts), pool.submit(target_counts))
    else:
        def source_keys() -> pa.Table:
            with at("source", source.name, "reading every key"):
                return sql_source.all_keys(the_plan.info, keys, request)

        def target_keys() -> pa.Table:
            with at("target", target.name, "reading every key"):
                all_keys = getattr(target, "all_keys", None)
                return all_keys() if all_keys is not None else target.read_range(KeyRange()).select(list(keys))

        whole = (pool.submit(source_keys), pool.submit(target_keys))
    pool.shutdown(wait=False)

    rows: list[pa.RecordBatch] = []
    count = 0
    for batch in reading(source, changed, "reading the rows changed since the last verified run"):
        rows.append(batch)
        count += batch.num_rows
        if count > SINCE_MAX_ROWS:
            raise TooManyChanges(count)
    upserts = pa.Table.from_batches(rows, schema=the_plan.info.schema)
    if progress_to is not None:
        progress_to(upserts.num_rows, max(1, upserts.num_rows))
    # Which changed rows the target already holds (updates) and which it lacks (inserts).
    present = rows_of(target, KeyRange(), upserts, keys).select(list(keys)) if upserts.num_rows else \
        upserts.select(list(keys))
    changed_keys = canonical_keys(upserts.select(list(keys)), keys).with_row_index("__row")
    new_rows = changed_keys.join(canonical_keys(present, keys), on=list(keys), how="anti")["__row"].to_arrow()
    new_keys = upserts.select(list(keys)).take(new_rows)
    deletes = _deleted(source, target, the_plan, request, new_keys, counts, whole, lo, width)

    for start in range(0, max(1, upserts.num_rows), SINCE_CHUNK_ROWS):
        chunk = upserts.slice(start, SINCE_CHUNK_ROWS)
        gone = deletes if start == 0 else deletes.slice(0, 0)
        with at("target", target.name, "writing the rows changed since the last verified run"):
            apply_changes(target, KeyRange(), RangeDiff("since", 0, 0, 0, chunk, gone))
        if verify:
            back = rows_of(target, KeyRange(), chunk, keys) if chunk.num_rows else chunk
            if table_checksum(back) != table_checksum(chunk):
                raise VerificationError([("since", table_checksum(chunk), table_checksum(back))],
                                        hint="the rows written read back differently")
            if gone.num_rows and rows_of(target, KeyRange(), gone, keys).num_rows:
                raise VerificationError([], hint="deleted keys are still in the target")
    found = RangeDiff("since the last verified run", new_keys.num_rows, upserts.num_rows - new_keys.num_rows,
                      deletes.num_rows, upserts.slice(0, 0), deletes.slice(0, 0))
    log.info("sync: %s", found.describe())
    keep = None
    if counts is not None:
        sink = pa.BufferOutputStream()
        source_counts_now = counts[0].result().select(["seg", "n"])
        with pa.ipc.new_stream(sink, source_counts_now.schema) as writer:
            writer.write_table(source_counts_now)
        keep = (lo, width, sink.getvalue().to_pybytes())
    return found, keep
