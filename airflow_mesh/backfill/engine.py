"""The backfill engine: plan, move ranges in parallel, checkpoint, verify."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import pyarrow as pa

from airflow_mesh.backfill import marks
from airflow_mesh.backfill.checkpoint import CheckpointStore
from airflow_mesh.backfill.checksum import batches_checksum, combine, table_checksum
from airflow_mesh.backfill.errors import PlanError, StaleCheckpointError, TypeMappingError, VerificationError
from airflow_mesh.backfill.explain import at, reading
from airflow_mesh.backfill.keys import KeyRange, extend_ranges, plan_ranges, ranges_from_sample
from airflow_mesh.backfill.plan import SEES, BackfillRequest, Mode, job_id, stream_id
from airflow_mesh.backfill.sources import Source, TableInfo
from airflow_mesh.backfill.targets import StagingTarget, Target

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Plan:
    """A planned backfill: the job id, the source table, its key columns, and the ranges."""

    job: str
    info: TableInfo
    keys: tuple[str, ...]
    rows: int
    ranges: list[KeyRange]

    @property
    def key(self) -> str:
        """The key columns, comma-separated (for messages)."""
        return ", ".join(self.keys)


@dataclass
class Summary:
    """What a run did (returned to XCom by the operator)."""

    job: str
    table: str
    source: str
    target: str
    rows: int = 0
    ranges: int = 0
    ranges_skipped: int = 0
    seconds: float = 0.0
    verified: bool = False
    checksums: dict[str, list[int]] = field(default_factory=dict)
    dry_run: bool = False
    cursor_after: str | None = None
    cursor_max: str | None = None  # the stream's new high-water mark (what the run's view proves)
    restarted: bool = False
    mode: str = "full"
    sees: str = ""  # what the mode can see of the source's changes (plan.SEES)
    consistent: bool = False  # every range was read in one view of the source
    compared: str = ""  # sync: what was compared (every range, or the rows changed since the last verified run)
    ranges_differing: int = 0  # sync: ranges whose checksums differed
    inserted: int = 0  # sync: rows the target lacked
    updated: int = 0  # sync: rows the target held differently
    deleted: int = 0  # sync: rows the source no longer has

    def to_dict(self, details: bool = True) -> dict:
        """The summary as JSON; ``details=False`` leaves out the per-range checksums."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if details or k != "checksums"}


class Progress:
    """Rows moved, rows/s and ETA, counted batch by batch as rows stream; ``on_update`` receives
    ``(rows_done, rows_total)``. The total is the plan's count (or the database's estimate), raised
    to what was moved if the estimate was low. Rows resumed from checkpoints count as done, but not
    in the rate."""

    def __init__(self, total: int, on_update: Callable[[int, int], None] | None = None,
                 log_every: float = 10.0, what: str = "rows") -> None:
        self.total, self.done, self.started, self.resumed = total, 0, time.monotonic(), 0
        self.on_update, self.log_every, self._last_log, self.what = on_update, log_every, time.monotonic(), what
        self._lock = threading.Lock()

    def resume(self, rows: int) -> None:
        """Count rows done by an earlier run."""
        with self._lock:
            self.resumed += rows
            self.done += rows
            self.total = max(self.total, self.done)
        if self.on_update:
            self.on_update(self.done, self.total)

    def add(self, rows: int) -> None:
        with self._lock:
            self.done += rows
            self.total = max(self.total, self.done)
            done, total = self.done, self.total
            now = time.monotonic()
            due = now - self._last_log >= self.log_every
            if due:
                self._last_log = now
        if self.on_update:
            self.on_update(done, total)
        if due:
            self.log_line()

    def log_line(self) -> None:
        """``n of total rows (rate, ETA)`` in the log (Airflow's task log, for one)."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (self.done - self.resumed) / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        log.info("backfill: %s of %s %s (%.0f %s/s, ETA %s)", f"{self.done:,}", f"{self.total:,}", self.what,
                 rate, self.what, "unknown" if eta == float("inf") else f"{eta:.0f}s")


def plan(source: Source, target: Target, request: BackfillRequest, checkpoints: CheckpointStore | None = None,
         described: Plan | None = None) -> Plan:
    """Describe the source table, find its key and bounds, and cut the ranges. Writes nothing to the target.

    A single integer key is cut evenly in key space between its min and max (index look-ups) with
    the source's own row estimate (a dry run, or a request with a filter, counts the rows instead);
    any other key (text, uuid, dates, several columns) is cut at quantiles of a sample of its values,
    the first and last ranges unbounded. A key the table's constraints do not make unique is checked
    for duplicates and NULLs first (one aggregate over the rows).

    Args:
        source: Where rows come from.
        target: Where they go (only its name, for the job id).
        request: What to copy.
        checkpoints: When given, a job's first plan is saved there and a later run of the same job
            reuses its ranges (extended to keys added since), so its done ranges stay done.
        described: The table's description, when the caller has it already (``describe``).

    Returns:
        The plan.

    Raises:
        PlanError: no such table, no usable key, a key that is not unique, a bad filter, a type
            without an exact mapping.
    """
    described = described or describe(source, target, request)
    job, info, keys = described.job, described.info, described.keys
    doing = f"planning the ranges of {info.name}" + (" (check the filter)" if request.where else "")
    with at("source", source.name, doing):
        _refuse_non_finite(source, target, described, request)
        return _plan(source, request, checkpoints, job, info, keys)


def _plan(source: Source, request: BackfillRequest, checkpoints: CheckpointStore | None, job: str, info: TableInfo,
          keys: tuple[str, ...]) -> Plan:
    if not info.known_unique(keys):
        duplicate = source.duplicate_key(info, keys, request)
        if duplicate is not None:
            value = duplicate if len(keys) > 1 else duplicate[0]
            what = (
                "some rows have NULL in it" if any(v is None for v in duplicate)
                else f"{value!r} is the key of several rows"
            )
            raise PlanError(f"table {info.name}: key {', '.join(keys)} is not unique ({what}); the target's rows are "
                            "identified by the key: name columns that identify one row with `key` (--key)")
    saved = checkpoints.saved_plan(job) if checkpoints is not None else None
    exact = request.dry_run or checkpoints is None or request.where is not None or request.mode is Mode.INCREMENTAL
    integral = len(keys) == 1 and pa.types.is_integer(info.schema.field(keys[0]).type)
    if integral:
        lo, hi, rows = source.key_bounds(info, keys[0], request, exact_count=exact)
        if saved is not None:
            return Plan(job, info, keys, max(rows, saved[1]), extend_ranges(saved[0], lo, hi))
        ranges = plan_ranges(lo, hi, rows, request.range_size, request.parallelism)
    else:
        if saved is not None:  # unbounded at both ends: the saved ranges hold every key
            return Plan(job, info, keys, saved[1], saved[0])
        sample, rows = source.sample_keys(info, keys, request, request.range_size)
        ranges = ranges_from_sample(sample, rows, request.range_size, request.parallelism)
    if checkpoints is not None and ranges and not request.dry_run:
        checkpoints.save_plan(job, ranges, rows)
    return Plan(job, info, keys, rows, ranges)


def describe(source: Source, target: Target, request: BackfillRequest) -> Plan:
    """The job, table and key of a backfill, without its bounds or ranges (no query beyond the
    table's description): what a task that is handed its ranges needs.

    Raises:
        PlanError: no such table, no usable key, a type without an exact mapping.
    """
    with at("source", source.name, f"reading the description of {request.table}"):
        try:
            info = source.describe(request.table, casts=request.casts, exclude=request.exclude)
        except TypeMappingError as exc:  # the target's problems with the columns that did map join the error
            if exc.mapped is None:
                raise
            raise TypeMappingError.of(request.table, exc.problems + _type_problems(target, exc.mapped)) from None
    problems = _type_problems(target, info.schema)
    if problems:
        raise TypeMappingError.of(request.table, problems)
    return Plan(job_id(source.name, target.name, request), info, info.key_columns(request.key), 0, [])


def _type_problems(target: Target, schema: pa.Schema) -> list[str]:
    """The columns the target has no exact type for (a target without the check: none)."""
    check = getattr(target, "type_problems", None)
    return check(schema) if check is not None else []


def _is_float(t: pa.DataType) -> bool:
    while pa.types.is_list(t) or pa.types.is_large_list(t):
        t = t.value_type
    return pa.types.is_floating(t)


def _refuse_non_finite(source: Source, target: Target, the_plan: Plan, request: BackfillRequest) -> None:
    """Before anything is written: refuse NaN and infinities headed for a target that cannot hold
    them (JSON: Elasticsearch, Kafka JSON), counted in the source (one query).

    Raises:
        TypeMappingError: every float column that holds one, with the override that would work.
    """
    floats = [f.name for f in the_plan.info.schema if _is_float(f.type)]
    count = getattr(source, "non_finite", None)
    if not floats or count is None or not getattr(target, "finite_floats_only", False):
        return
    counts = count(the_plan.info, the_plan.keys, request, floats)
    if counts:
        raise TypeMappingError.of(request.table, [
            f"column {name!r}: {n} row(s) hold NaN or an infinity, which {target.name} cannot hold (JSON has "
            f"neither); write Kafka in Avro, or --cast {name}=text keeps each value's text, or --exclude {name}"
            for name, n in counts.items()])


def stream_range(source: Source, the_plan: Plan, request: BackfillRequest, key_range: KeyRange,
                 on_rows: Callable[[int], None] | None = None) -> Iterator[pa.RecordBatch]:
    """One range of the source, batch by batch (its failures as ``SourceError``); ``on_rows`` is
    told each batch's row count as it passes."""
    for batch in reading(source, source.read_range(the_plan.info, the_plan.keys, request, key_range),
                         f"reading range {key_range.label}"):
        if on_rows is not None:
            on_rows(batch.num_rows)
        yield batch


def read_range(source: Source, the_plan: Plan, request: BackfillRequest, key_range: KeyRange,
               on_rows: Callable[[int], None] | None = None) -> pa.Table:
    """One range of the source as a table in the plan's schema."""
    batches = list(stream_range(source, the_plan, request, key_range, on_rows))
    return pa.Table.from_batches(batches, schema=the_plan.info.schema)


def run(source: Source, target: Target, request: BackfillRequest, checkpoints: CheckpointStore,
        on_progress: Callable[[int, int], None] | None = None, verify: bool = True, restart: bool = False,
        on_verify: Callable[[int, int], None] | None = None) -> Summary:
    """Copy ``request.table`` from source to target in one consistent view of the source, resuming
    the job's open run from its checkpoints, then verify.

    A run stays open until it completes: a retry resumes it (same plan, same cursor bounds, done
    ranges skipped); once complete its checkpoints go, so the job's next run is a new one (a full
    copy copies again). A completed run sets its stream's high-water mark to what its view proves
    (``marks``); an incremental run reads the rows at or past that mark (everything, the first time;
    a full copy's mark hands over to the incremental runs after it), upserts them by key, and reads
    each range back right after writing it. What each mode can see: ``plan.SEES``.

    Into a staging target (Iceberg) a full copy streams each range from the source into a staged
    file, batch by batch, and commits staged ranges together (see ``_stage_and_commit``); other
    targets, and incremental runs, get each range as one table (``target.write_range``). Staged
    files that a killed run left uncommitted are removed when the job runs again, and at its end.
    A ``sync`` request is handed to ``sync.sync``.

    Args:
        source: Where rows come from.
        target: Where they go (created, or checked to be compatible, before the first write).
        request: What to copy and how.
        checkpoints: The job's open run and done ranges, and the stream's mark.
        on_progress: Called with ``(rows_done, rows_total)`` as batches of rows move.
        verify: Compare what was written with what the target holds (full: every range at the end;
            incremental: each range's rows right after they were written).
        restart: Forget the job's checkpoints (and, incremental, the stream's marks) and start over.
        on_verify: Called with ``(ranges_verified, ranges_to_verify)`` during the final verification.

    Returns:
        The run's summary.

    Raises:
        PlanError, TypeMappingError, TargetSchemaError: before anything is written.
        StaleCheckpointError: the target holds fewer rows than the checkpoints say were copied.
        SourceError, TargetError: a datastore failed (the message names it and has its own words).
        VerificationError: a range differs between source and target (named in the message).
    """
    if request.mode is Mode.SYNC:
        from airflow_mesh.backfill.sync import sync

        return sync(source, target, request, checkpoints, on_progress=on_progress, verify=verify, restart=restart,
                    on_verify=on_verify)
    started = time.monotonic()
    incremental = request.mode is Mode.INCREMENTAL
    job, stream = job_id(source.name, target.name, request), stream_id(source.name, target.name, request)
    described = describe(source, target, request)
    cursor = _cursor_field(described.info, request) if incremental else None
    key = marks.mark_key(stream, None if cursor is None or marks.is_time(cursor.type) else cursor.name)
    if restart:
        checkpoints.forget(job)
        if incremental:
            checkpoints.forget_watermark(key)
    with contextlib.ExitStack() as held:
        with at("source", source.name, "opening a consistent view"):
            view = held.enter_context(source.consistent())
        log.info("backfill: %s", view.note)
        open_run = None if request.dry_run else checkpoints.open_run(job)
        if incremental:
            request = _cursor_bounds(request, open_run, checkpoints, key, job)
        proved = marks.proved_time(view, request.cursor_lag)
        if cursor is not None and not marks.is_time(cursor.type):
            with at("source", source.name, f"reading the largest {cursor.name}"):
                proved = marks.value_mark(source.cursor_max(described.info, cursor.name, request))
        the_plan = plan(source, target, request, checkpoints, described=described)
        summary = Summary(the_plan.job, request.table, source.name, target.name, ranges=len(the_plan.ranges),
                          dry_run=request.dry_run, cursor_after=request.cursor_after, restarted=restart,
                          mode=request.mode.value, sees=SEES[request.mode], consistent=view.consistent)
        if request.dry_run:
            summary.rows, summary.seconds = the_plan.rows, time.monotonic() - started
            return summary
        this_run = checkpoints.begin_run(job, request.cursor_after, proved)
        _copy(source, target, request, the_plan, checkpoints, summary, on_progress, verify, on_verify)
        baseline = None
        if not incremental and summary.verified and view.version is not None:
            from airflow_mesh.backfill.sync import counted  # what a sync from this baseline compares with

            baseline = counted(source, the_plan, request)
    checkpoints.complete_run(job)
    if not incremental and summary.verified:  # a verified full copy: the target equals this view
        checkpoints.set_baseline(stream, view.version)
        if baseline is not None:
            checkpoints.set_baseline_counts(stream, baseline)
    summary.cursor_max = this_run.mark
    if this_run.mark is not None and (incremental or cursor is None):
        checkpoints.set_watermark(key if incremental else marks.mark_key(stream), this_run.mark)
    if view.blind:
        log.warning("backfill: the source would not show other sessions' transactions, so the mark is the "
                    "run's own time held back by cursor_lag (%ss): %s", request.cursor_lag, view.note)
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


def _cursor_field(info: TableInfo, request: BackfillRequest) -> pa.Field:
    if request.cursor_column not in info.schema.names:
        raise PlanError(f"table {info.name}: cursor column {request.cursor_column!r} does not exist "
                        f"(columns: {', '.join(info.schema.names)})")
    return info.schema.field(request.cursor_column)


def _cursor_bounds(request: BackfillRequest, open_run: Any, checkpoints: CheckpointStore, key: str,
                   job: str) -> BackfillRequest:
    """Where an incremental run reads from: the request's own ``cursor_after``, else the open run's
    (a resumed run keeps its bounds), else the stream's mark (None: everything)."""
    if request.cursor_after is not None:
        if open_run is not None and open_run.cursor_after != request.cursor_after:
            log.warning("backfill: cursor_after %s differs from the open run's %s: that run is dropped, this one "
                        "starts anew", request.cursor_after, open_run.cursor_after)
            checkpoints.forget(job)
        return request
    after = open_run.cursor_after if open_run is not None else checkpoints.watermark(key)
    return request.model_copy(update={"cursor_after": after})


def _copy(source: Source, target: Target, request: BackfillRequest, the_plan: Plan, checkpoints: CheckpointStore,
          summary: Summary, on_progress: Callable[[int, int], None] | None, verify: bool,
          on_verify: Callable[[int, int], None] | None) -> None:
    """Move the plan's pending ranges and verify them (fills in ``summary``)."""
    incremental = request.mode is Mode.INCREMENTAL
    with at("target", target.name, "creating or checking the target"):
        target.prepare(the_plan.info.schema, the_plan.keys)
    done = checkpoints.done(the_plan.job)
    _check_not_stale(target, the_plan, done, checkpoints)
    staging = stages(target, request)
    if staging:
        remove_orphans(target, the_plan.job)
    pending = [r for r in the_plan.ranges if r.id not in done]
    summary.ranges_skipped = len(the_plan.ranges) - len(pending)
    progress = Progress(the_plan.rows, on_progress)
    progress.resume(sum(done.get(r.id, (0, 0))[0] for r in the_plan.ranges))

    early: dict[str, tuple[Any, tuple[int, int]]] = {}
    if staging:
        early = _stage_and_commit(source, cast(StagingTarget, target), the_plan, request, pending, checkpoints,
                                  progress, verify_early=verify)
    else:
        def move(key_range: KeyRange) -> None:
            moved = move_range(source, target, the_plan, request, key_range, progress, verify_written=verify)
            checkpoints.record(the_plan.job, key_range, moved.rows, moved.checksum)

        _parallel(move, pending, request.parallelism)
    progress.log_line()
    done = checkpoints.done(the_plan.job)
    summary.rows = sum(done[r.id][0] for r in the_plan.ranges)
    summary.checksums = {r.id: list(done[r.id]) for r in the_plan.ranges}
    if verify and not incremental:
        unread = the_plan.ranges
        if early:  # read back after their commit: still right if the table still reads the same files there
            with at("target", target.name, "listing the files of the committed ranges"):
                files_now = cast(StagingTarget, target).range_files([r for r in the_plan.ranges if r.id in early])
            proven = {rid for rid, (files, sums) in early.items() if files_now[rid] == files and sums == done[rid]}
            unread = [r for r in the_plan.ranges if r.id not in proven]
            log.info("backfill: %d ranges verified as they were committed, %d read back now", len(proven), len(unread))
        try:
            verify_target(target, unread, done, request.parallelism, on_range=on_verify)
        except VerificationError as exc:
            if not summary.ranges_skipped:
                raise
            raise VerificationError(exc.mismatches, hint=(
                f"{summary.ranges_skipped} ranges of this run were done by an earlier run (checkpoints in "
                f"{checkpoints.path}); if the target was changed since, rerun with --restart (restart=True) "
                "to copy everything again")) from None
    summary.verified = verify
    if staging:
        remove_orphans(target, the_plan.job)


def rows_of(target: Target, key_range: KeyRange, keys_of: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    """The target's rows of a range whose keys are among those of ``keys_of`` (in the target's schema)."""
    read_keys = getattr(target, "read_keys", None)
    with at("target", target.name, f"reading back range {key_range.label}"):
        if read_keys is not None:
            return read_keys(key_range, keys_of.select(list(keys)))
        held = target.read_range(key_range)
    wanted = keys_of.select(list(keys))
    if held.num_rows and wanted.num_rows:
        return held.join(wanted, list(keys), join_type="left semi")
    return held.slice(0, 0)


def _parallel(work: Callable[[KeyRange], T], ranges: list[KeyRange], parallelism: int) -> list[T]:
    """``work`` over the ranges, ``parallelism`` at a time, in order. The first failure cancels the
    ranges not begun and is raised (once the running ones end)."""
    if parallelism <= 1 or len(ranges) <= 1:
        return [work(r) for r in ranges]
    pool = ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="backfill")
    try:
        futures = [pool.submit(work, r) for r in ranges]
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _check_not_stale(target: Target, the_plan: Plan, done: dict[str, tuple[int, int]],
                     checkpoints: CheckpointStore) -> None:
    """Refuse to skip done ranges into a target that holds fewer rows than they did (a dropped,
    recreated or emptied target): skipping them would leave the copy short."""
    count_rows = getattr(target, "count_rows", None)
    copied = sum(done[r.id][0] for r in the_plan.ranges if r.id in done)
    if not copied or count_rows is None:
        return
    with at("target", target.name, "counting its rows"):
        holds = count_rows()
    if holds < copied:
        raise StaleCheckpointError(
            f"target {target.name} holds {holds:,} rows, but this job's checkpoints ({checkpoints.path}) say "
            f"{copied:,} rows were copied into it: it was dropped, emptied or rewritten since; rerun with "
            "--restart (restart=True) to forget them and copy everything again")


def remove_orphans(target: Target, job: str) -> None:
    """Remove the staged files a killed run of the job left uncommitted (a target that stages; others: nothing)."""
    if not isinstance(target, StagingTarget):
        return
    with at("target", target.name, "removing uncommitted staged files"):
        removed = target.remove_orphans(job)
    if removed:
        log.info("backfill: removed %d staged files that an interrupted run left uncommitted", removed)


# The committer waits this many times as long as its last commit took before the next one, so that
# committing (pyiceberg's work, which holds the GIL) stays about a tenth of a run, and a table's
# snapshots and manifests (which every later commit reads) grow with the run's time, not its ranges.
COMMIT_PACING = 9.0


def stage_range(source: Source, target: StagingTarget, the_plan: Plan, request: BackfillRequest,
                key_range: KeyRange, on_rows: Callable[[int], None] | None = None) -> tuple[Any, tuple[int, int]]:
    """Stream one range from the source into a staged file of the target, checksumming its batches
    as they pass (the range is never held in memory whole). Nothing is visible until committed;
    the file is tagged with the job, so that an uncommitted one can be found and removed later.

    Returns:
        What the target staged (for ``target.commit``), and the range's ``(rows, checksum)``.
    """
    parts: list[tuple[int, int]] = []

    def checksummed(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            parts.append(table_checksum(pa.Table.from_batches([batch])))
            yield batch

    target.staging_tag = the_plan.job
    with at("target", target.name, f"staging range {key_range.label}"):
        staged = target.stage_range(key_range, checksummed(stream_range(source, the_plan, request, key_range, on_rows)))
    return staged, combine(parts)


def _stage_and_commit(source: Source, target: StagingTarget, the_plan: Plan, request: BackfillRequest,
                      pending: list[KeyRange], checkpoints: CheckpointStore, progress: Progress,
                      verify_early: bool = False) -> dict[str, tuple[Any, tuple[int, int]]]:
    """Move ranges into a staging target (Iceberg): stream each range into a staged file in parallel,
    and commit from this thread, each commit taking every range staged since the last one.

    A range's batches are checksummed as they stream past, so no range is ever held in memory whole:
    memory is ``parallelism`` x (a row group being gathered + a batch), whatever the range size.
    Commits never race each other (one committer) and are paced by ``COMMIT_PACING``. A range is
    checkpointed after the commit that holds it; a failed range stops new ones, and the ranges
    already staged are committed before the error is raised.

    With ``verify_early``, one more thread reads each committed range back while later ranges are still
    copying, on the CPU the copy leaves idle.

    Returns:
        ``range id -> (files, (rows, checksum))`` of the ranges read back after their commit: the
        files the range's scan read and what it held (``run`` checks them at the end).
    """
    snapshot_batches = target.snapshot_batches
    checks: dict[str, Future[tuple[Any, tuple[int, int]]]] = {}
    checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify") if verify_early else None

    def read_back(key_range: KeyRange) -> tuple[Any, tuple[int, int]]:
        files, batches = snapshot_batches(key_range)
        return files, batches_checksum(batches)

    def stage(key_range: KeyRange) -> tuple[KeyRange, Any, tuple[int, int]]:
        return (key_range, *stage_range(source, target, the_plan, request, key_range, on_rows=progress.add))

    def commit(ready: list[tuple[KeyRange, Any, tuple[int, int]]]) -> None:
        with at("target", target.name, f"committing {len(ready)} ranges"):
            target.commit([(key_range, staged) for key_range, staged, _ in ready])
        for key_range, _, (rows, checksum) in ready:
            checkpoints.record(the_plan.job, key_range, rows, checksum)
            if checker is not None:
                checks[key_range.id] = checker.submit(read_back, key_range)

    failure: BaseException | None = None
    ready: list[tuple[KeyRange, Any, tuple[int, int]]] = []
    next_commit = time.monotonic()
    with ThreadPoolExecutor(max_workers=request.parallelism, thread_name_prefix="backfill") as pool:
        running = {pool.submit(stage, r) for r in pending}
        try:
            while running or ready:
                if running:
                    timeout = max(0.0, next_commit - time.monotonic()) if ready else None
                    finished, running = wait(running, timeout=timeout, return_when=FIRST_COMPLETED)
                    for future in finished:
                        if future.cancelled():
                            continue
                        if future.exception() is not None:
                            failure = failure or future.exception()
                            for later in running:
                                later.cancel()
                            continue
                        ready.append(future.result())
                if ready and (not running or time.monotonic() >= next_commit):
                    started = time.monotonic()
                    commit(ready)
                    ready = []
                    next_commit = time.monotonic() + COMMIT_PACING * (time.monotonic() - started)
        except BaseException:
            for future in running:
                future.cancel()
            raise
        finally:
            if checker is not None:
                # Ranges whose read-back has not begun are left to the end's parallel verification.
                for check in checks.values():
                    check.cancel()
                checker.shutdown(wait=True)
    if failure is not None:
        raise failure
    early: dict[str, tuple[Any, tuple[int, int]]] = {}
    for rid, check in checks.items():
        if check.cancelled():
            continue
        if check.exception() is not None:  # not proven: read back again at the end
            log.warning("backfill: reading back range %s after its commit failed: %s", rid, check.exception())
            continue
        early[rid] = check.result()
    return early


def _each_range(work: Callable[[KeyRange], tuple[int, int]], ranges: list[KeyRange], parallelism: int,
                on_range: Callable[[int, int], None] | None = None) -> dict[str, tuple[int, int]]:
    """``range id -> work(range)``, ``parallelism`` ranges at a time (a range's read-back and
    checksum run on one core: an Iceberg range is one data file); ``on_range(done, total)`` after each."""
    finished = [0]
    lock = threading.Lock()

    def counted(key_range: KeyRange) -> tuple[int, int]:
        result = work(key_range)
        if on_range is not None:
            with lock:
                finished[0] += 1
                on_range(finished[0], len(ranges))
        return result

    return dict(zip([r.id for r in ranges], _parallel(counted, ranges, parallelism), strict=False))


@dataclass(frozen=True)
class MovedRange:
    """One key range moved by ``move_range``: what it held, and what a staging target staged for it.

    Attributes:
        key_range: The range.
        rows: Rows the source held in it (sync: rows compared).
        checksum: Their checksum (``checksum.table_checksum``).
        staged: What a staging target staged (to ``commit``), None when the range was written.
    """

    key_range: KeyRange
    rows: int
    checksum: int
    staged: Any = None

    def to_dict(self) -> dict[str, Any]:
        """``{"lo", "hi", "rows", "checksum", "staged_file"}`` (the checksum as text: XCom is JSON)."""
        return {**self.key_range.to_dict(), "rows": self.rows, "checksum": str(self.checksum),
                "staged_file": self.staged}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MovedRange:
        """The inverse of ``to_dict``."""
        return cls(KeyRange.from_dict(data), int(data["rows"]), int(data["checksum"]), data.get("staged_file"))


def stages(target: Target, request: BackfillRequest) -> bool:
    """Whether a run of ``request`` stages its ranges and commits them later (a full copy into a staging target)."""
    return request.mode is Mode.FULL and isinstance(target, StagingTarget)


def move_range(source: Source, target: Target, the_plan: Plan, request: BackfillRequest, key_range: KeyRange,
               progress: Progress | None = None, verify_written: bool = False) -> MovedRange:
    """Move one key range of a planned backfill, as the request's mode says.

    - ``sync``: compare the range on both sides and repair what differs (``sync.compare_range``);
    - a full copy into a staging target (Iceberg): stream the range into a staged file, committed
      later (``stage_range``; the caller commits, e.g. ``commit_and_verify``);
    - otherwise: read the range and write it (replacing it; ``incremental`` upserts by key).

    The target must have been prepared (``target.prepare``) for the plan's schema and keys.

    Args:
        source: Where rows come from.
        target: Where they go.
        the_plan: The plan (``plan`` or ``describe``).
        request: What to copy and how.
        key_range: The range.
        progress: Counts the rows as they stream (None: not counted).
        verify_written: Incremental runs: read the rows just written back by key and compare them.

    Returns:
        The range's rows and checksum, and what was staged (to commit).

    Raises:
        SourceError, TargetError: a datastore failed (the message names it and has its own words).
        VerificationError: ``verify_written`` and the rows read back differ.
    """
    on_rows = progress.add if progress is not None else None
    if request.mode is Mode.SYNC:
        from airflow_mesh.backfill import sync

        (rows, checksum), found = sync.compare_range(source, target, request, the_plan, key_range,
                                                     progress or Progress(0))
        if found is not None:
            log.info("Sync: %s", found.describe())
            sync.apply_changes(target, key_range, found)
        return MovedRange(key_range, rows, checksum)
    if stages(target, request):
        staged, (rows, checksum) = stage_range(source, cast(StagingTarget, target), the_plan, request, key_range,
                                               on_rows=on_rows)
        return MovedRange(key_range, rows, checksum, staged)
    incremental = request.mode is Mode.INCREMENTAL
    data = read_range(source, the_plan, request, key_range, on_rows=on_rows)
    with at("target", target.name, f"writing range {key_range.label}"):
        target.write_range(key_range, data, upsert=incremental)
    rows, checksum = table_checksum(data)
    if incremental and verify_written:  # the rows written, read back by key (others may have changed since)
        held = table_checksum(rows_of(target, key_range, data, the_plan.keys))
        if held != (rows, checksum):
            raise VerificationError([(key_range.id, (rows, checksum), held)], hint=(
                "the rows just written read back differently from the target"))
    return MovedRange(key_range, rows, checksum)


def commit_and_verify(source: Source, target: Target, the_plan: Plan, request: BackfillRequest,
                      moved: list[MovedRange], verify: bool = True) -> None:
    """Commit what ``move_range`` staged for the ranges (one commit for all), then verify every range.

    The staged files of the plan's job that no commit holds (those of range moves that were retried)
    are removed after the commit. Verification compares each range of the target with what the
    source held there: the moved rows and checksums for a full copy or a sync, the source read again
    (cursor filter left out) for an incremental run, whose ranges hold more than the rows it moved.

    Args:
        source: The original.
        target: The copy (prepared).
        the_plan: The plan (``describe`` suffices).
        request: What was copied and how.
        moved: The ranges moved.
        verify: Compare every range's rows and checksum with the target.

    Raises:
        TargetError: the commit failed.
        VerificationError: naming every range that differs.
    """
    staged = [(m.key_range, m.staged) for m in moved if m.staged]
    if staged:
        with at("target", target.name, f"committing {len(staged)} ranges"):
            cast(StagingTarget, target).commit(staged)
        log.info("Committed %d staged data files in one Iceberg commit", len(staged))
        remove_orphans(target, the_plan.job)  # files of range-task attempts that were retried
    if not verify:
        return
    ranges = [m.key_range for m in moved]
    if request.mode is Mode.INCREMENTAL:
        expected = source_checksums(source, the_plan, request, ranges)
    else:
        expected = {m.key_range.id: (m.rows, m.checksum) for m in moved}
    verify_target(target, ranges, expected, request.parallelism)


def source_checksums(source: Source, the_plan: Plan, request: BackfillRequest,
                     ranges: list[KeyRange]) -> dict[str, tuple[int, int]]:
    """``range id -> (rows, checksum)`` of the source's rows in each range, cursor filter left out
    (what the target must hold there, whatever the mode), ``request.parallelism`` ranges at a time."""
    whole = request.model_copy(update={"mode": Mode.FULL, "cursor_after": None})
    return _each_range(
        lambda r: batches_checksum(stream_range(source, the_plan, whole, r)), ranges, request.parallelism
    )


def target_checksum(target: Target, key_range: KeyRange) -> tuple[int, int]:
    """``(rows, checksum)`` of a range of the target, batch by batch when the target can stream it."""
    read_batches = getattr(target, "read_batches", None)
    with at("target", target.name, f"reading back range {key_range.label}"):
        if read_batches is not None:
            return batches_checksum(read_batches(key_range))
        return table_checksum(target.read_range(key_range))


def verify_target(target: Target, ranges: list[KeyRange], expected: dict[str, tuple[int, int]],
                  parallelism: int = 1, on_range: Callable[[int, int], None] | None = None) -> None:
    """Check each range of the target against the expected ``(rows, checksum)``.

    Args:
        target: The copy.
        ranges: The ranges to check.
        expected: ``range id -> (rows, checksum)`` the target must hold.
        parallelism: Ranges read back at once (each read holds one batch at a time).
        on_range: Called with ``(ranges_checked, ranges)`` as each range is checked.

    Raises:
        VerificationError: naming every range that differs.
    """
    actual = _each_range(lambda r: target_checksum(target, r), ranges, parallelism, on_range)
    mismatches = [(r.id, expected[r.id], actual[r.id]) for r in ranges if actual[r.id] != expected[r.id]]
    if mismatches:
        raise VerificationError(mismatches)


def verify(source: Source, target: Target, request: BackfillRequest,
           on_verify: Callable[[int, int], None] | None = None) -> Summary:
    """Verify an existing copy on its own, writing nothing: both sides compared range by range (one
    consistent view of the source), and each range that differs compared row by row.

    Args:
        source: The original.
        target: The copy.
        request: What was copied (its mode does not matter: the whole of each range is compared).
        on_verify: Called with ``(ranges_checked, ranges)`` as each range is checked.

    Raises:
        VerificationError: naming every range that differs, with its rows missing, different and extra.
    """
    from airflow_mesh.backfill.sync import sync

    whole = request.model_copy(update={"mode": Mode.SYNC, "cursor_after": None})
    return sync(source, target, whole, None, verify=False, on_verify=on_verify, write=False)


__all__ = ["MovedRange", "Plan", "Progress", "Summary", "commit_and_verify", "describe", "move_range", "plan",
           "remove_orphans", "run", "source_checksums", "stage_range", "stages", "target_checksum", "verify",
           "verify_target"]
