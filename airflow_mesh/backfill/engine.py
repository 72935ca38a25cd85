"""The backfill engine: plan, move ranges in parallel, checkpoint, verify."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from airflow_mesh.backfill.checkpoint import CheckpointStore
from airflow_mesh.backfill.checksum import batches_checksum, combine, table_checksum
from airflow_mesh.backfill.errors import TypeMappingError, VerificationError
from airflow_mesh.backfill.plan import BackfillRequest, KeyRange, Mode, extend_ranges, job_id, plan_ranges
from airflow_mesh.backfill.sources import Source, TableInfo
from airflow_mesh.backfill.targets import StagingTarget, Target

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """A planned backfill: the job id, the source table, its key, and the ranges."""

    job: str
    info: TableInfo
    key: str
    rows: int
    ranges: list[KeyRange]


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
    cursor_max: str | None = None

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Progress:
    """Rows done, rows/s and ETA; ``on_update`` receives ``(rows_done, rows_total)``."""

    def __init__(self, total: int, on_update: Callable[[int, int], None] | None = None,
                 log_every: float = 10.0) -> None:
        self.total, self.done, self.started = total, 0, time.monotonic()
        self.on_update, self.log_every, self._last_log = on_update, log_every, 0.0
        self._lock = threading.Lock()

    def add(self, rows: int) -> None:
        with self._lock:
            self.done += rows
            now = time.monotonic()
            if self.on_update:
                self.on_update(self.done, self.total)
            if now - self._last_log >= self.log_every or self.done >= self.total:
                self._last_log = now
                rate = self.done / max(now - self.started, 1e-9)
                eta = (self.total - self.done) / rate if rate else float("inf")
                log.info("backfill: %d/%d rows (%.0f rows/s, ETA %.0fs)", self.done, self.total, rate, eta)


def plan(source: Source, target: Target, request: BackfillRequest, checkpoints: CheckpointStore | None = None) -> Plan:
    """Describe the source table, find its key and bounds, and cut the ranges. Writes nothing to the target.

    A dry run, or a request with a filter, counts the rows it selects; otherwise the source's own
    row estimate is enough to cut ranges (they are cut in key space; the count is for the size of
    each range and the progress ETA), which spares a scan of the whole table before the copy.

    Args:
        source: Where rows come from.
        target: Where they go (only its name, for the job id).
        request: What to copy.
        checkpoints: When given, a job's first plan is saved there and a later run of the same job
            reuses its ranges (extended to keys added since), so its done ranges stay done.

    Returns:
        The plan.

    Raises:
        PlanError: no such table, no usable key, a type without an exact mapping.
    """
    described = describe(source, target, request)
    job, info, key = described.job, described.info, described.key
    _refuse_non_finite(source, target, described, request)
    exact = request.dry_run or checkpoints is None or request.where is not None or request.mode is Mode.INCREMENTAL
    lo, hi, rows = source.key_bounds(info, key, request, exact_count=exact)
    saved = checkpoints.saved_plan(job) if checkpoints is not None else None
    if saved is not None:
        ranges = extend_ranges(saved[0], lo, hi)
        return Plan(job, info, key, max(rows, saved[1]), ranges)
    ranges = plan_ranges(lo, hi, rows, request.range_size, request.parallelism)
    if checkpoints is not None and ranges and not request.dry_run:
        checkpoints.save_plan(job, ranges, rows)
    return Plan(job, info, key, rows, ranges)


def describe(source: Source, target: Target, request: BackfillRequest) -> Plan:
    """The job, table and key of a backfill, without its bounds or ranges (no query beyond the
    table's description): what a task that is handed its ranges needs.

    Raises:
        PlanError: no such table, no usable key, a type without an exact mapping.
    """
    try:
        info = source.describe(request.table, casts=request.casts, exclude=request.exclude)
    except TypeMappingError as exc:  # the target's problems with the columns that did map join the error
        if exc.mapped is None:
            raise
        raise TypeMappingError.of(request.table, exc.problems + _type_problems(target, exc.mapped)) from None
    problems = _type_problems(target, info.schema)
    if problems:
        raise TypeMappingError.of(request.table, problems)
    return Plan(job_id(source.name, target.name, request), info, info.key_column(request.key), 0, [])


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
    counts = count(the_plan.info, the_plan.key, request, floats)
    if counts:
        raise TypeMappingError.of(request.table, [
            f"column {name!r}: {n} row(s) hold NaN or an infinity, which {target.name} cannot hold (JSON has "
            f"neither); write Kafka in Avro, or --cast {name}=text keeps each value's text, or --exclude {name}"
            for name, n in counts.items()])


def read_range(source: Source, the_plan: Plan, request: BackfillRequest, key_range: KeyRange) -> pa.Table:
    """One range of the source as a table in the plan's schema."""
    batches = list(source.read_range(the_plan.info, the_plan.key, request, key_range))
    return pa.Table.from_batches(batches, schema=the_plan.info.schema)


def run(source: Source, target: Target, request: BackfillRequest, checkpoints: CheckpointStore,
        on_progress: Callable[[int, int], None] | None = None, verify: bool = True) -> Summary:
    """Copy ``request.table`` from source to target, resuming from the checkpoints, then verify.

    In ``incremental`` mode without an explicit ``cursor_after``, the run starts from the stream's
    high-water mark in the checkpoint store (everything on the first run), overwrites the copied rows
    by key, verifies the key ranges it touched against the whole source, and then moves the mark.

    Into a staging target (Iceberg) a full copy streams each range from the source into a staged
    file, batch by batch, and commits staged ranges together (see ``_stage_and_commit``); other
    targets, and incremental runs, get each range as one table (``target.write_range``).

    Args:
        source: Where rows come from.
        target: Where they go (created, or checked to be compatible, before the first write).
        request: What to copy and how.
        checkpoints: Done ranges: those are skipped; each newly done range is recorded.
        on_progress: Called with ``(rows_done, rows_total)`` as ranges finish.
        verify: Compare every range's row count and checksum on both sides at the end.

    Returns:
        The run's summary.

    Raises:
        PlanError, TypeMappingError, TargetSchemaError: before anything is written.
        VerificationError: a range differs between source and target (named in the message).
    """
    started = time.monotonic()
    incremental = request.mode is Mode.INCREMENTAL
    stream = job_id(source.name, target.name, request.model_copy(update={"cursor_after": None}))
    if incremental and request.cursor_after is None:
        request = request.model_copy(update={"cursor_after": checkpoints.watermark(stream)})
    the_plan = plan(source, target, request, checkpoints)
    summary = Summary(the_plan.job, request.table, source.name, target.name, ranges=len(the_plan.ranges),
                      dry_run=request.dry_run, cursor_after=request.cursor_after)
    if request.dry_run:
        summary.rows, summary.seconds = the_plan.rows, time.monotonic() - started
        return summary
    target.prepare(the_plan.info.schema, the_plan.key)
    done = checkpoints.done(the_plan.job)
    pending = [r for r in the_plan.ranges if r.id not in done]
    summary.ranges_skipped = len(the_plan.ranges) - len(pending)
    progress = Progress(the_plan.rows, on_progress)
    progress.add(sum(done.get(r.id, (0, 0))[0] for r in the_plan.ranges))

    early: dict[str, tuple[Any, tuple[int, int]]] = {}
    if isinstance(target, StagingTarget) and not incremental:
        early = _stage_and_commit(source, target, the_plan, request, pending, checkpoints, progress,
                                  verify_early=verify)
        cursors = []
    else:
        def move(key_range: KeyRange) -> Any:
            data = read_range(source, the_plan, request, key_range)
            target.write_range(key_range, data, upsert=incremental)
            rows, checksum = table_checksum(data)
            checkpoints.record(the_plan.job, key_range, rows, checksum)
            progress.add(rows)
            return _max_cursor(data, request.cursor_column) if incremental else None

        with ThreadPoolExecutor(max_workers=request.parallelism, thread_name_prefix="backfill") as pool:
            cursors = [c for c in pool.map(move, pending) if c is not None]
    done = checkpoints.done(the_plan.job)
    summary.rows = sum(done[r.id][0] for r in the_plan.ranges)
    summary.checksums = {r.id: list(done[r.id]) for r in the_plan.ranges}
    if verify:
        if incremental:  # the touched ranges must now equal the whole source's rows there
            done = source_checksums(source, the_plan, request, the_plan.ranges)
        unread = the_plan.ranges
        if early:  # read back after their commit: still right if the table still reads the same files there
            files_now = target.range_files([r for r in the_plan.ranges if r.id in early])
            proven = {rid for rid, (files, sums) in early.items() if files_now[rid] == files and sums == done[rid]}
            unread = [r for r in the_plan.ranges if r.id not in proven]
            log.info("backfill: %d ranges verified as they were committed, %d read back now", len(proven), len(unread))
        verify_target(target, unread, done, request.parallelism)
        summary.verified = True
    if incremental and cursors:
        highest = max(cursors)
        summary.cursor_max = highest.isoformat() if hasattr(highest, "isoformat") else str(highest)
        checkpoints.set_watermark(stream, summary.cursor_max)
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


# The committer waits this many times as long as its last commit took before the next one, so that
# committing (pyiceberg's work, which holds the GIL) stays about a tenth of a run, and a table's
# snapshots and manifests (which every later commit reads) grow with the run's time, not its ranges.
COMMIT_PACING = 9.0


def stage_range(source: Source, target: StagingTarget, the_plan: Plan, request: BackfillRequest,
                key_range: KeyRange) -> tuple[Any, tuple[int, int]]:
    """Stream one range from the source into a staged file of the target, checksumming its batches
    as they pass (the range is never held in memory whole). Nothing is visible until committed.

    Returns:
        What the target staged (for ``target.commit``), and the range's ``(rows, checksum)``.
    """
    parts: list[tuple[int, int]] = []

    def checksummed(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            parts.append(table_checksum(pa.Table.from_batches([batch])))
            yield batch

    staged = target.stage_range(key_range, checksummed(
        source.read_range(the_plan.info, the_plan.key, request, key_range)))
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

    With ``verify_early`` (and a target with ``snapshot_batches``), one more thread reads each
    committed range back while later ranges are still copying, on the CPU the copy leaves idle.

    Returns:
        ``range id -> (files, (rows, checksum))`` of the ranges read back after their commit: the
        files the range's scan read and what it held (``run`` checks them at the end).
    """
    snapshot_batches = getattr(target, "snapshot_batches", None) if verify_early else None
    checks: dict[str, Future] = {}
    checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify") if snapshot_batches else None

    def read_back(key_range: KeyRange) -> tuple[Any, tuple[int, int]]:
        files, batches = snapshot_batches(key_range)
        return files, batches_checksum(batches)

    def stage(key_range: KeyRange) -> tuple[KeyRange, Any, tuple[int, int]]:
        return (key_range, *stage_range(source, target, the_plan, request, key_range))

    def commit(ready: list[tuple[KeyRange, Any, tuple[int, int]]]) -> None:
        target.commit([(key_range, staged) for key_range, staged, _ in ready])
        for key_range, _, (rows, checksum) in ready:
            checkpoints.record(the_plan.job, key_range, rows, checksum)
            progress.add(rows)
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
                for future in checks.values():
                    future.cancel()
                checker.shutdown(wait=True)
    if failure is not None:
        raise failure
    early = {}
    for rid, future in checks.items():
        if future.cancelled():
            continue
        if future.exception() is not None:  # not proven: read back again at the end
            log.warning("backfill: reading back range %s after its commit failed: %s", rid, future.exception())
            continue
        early[rid] = future.result()
    return early


def _max_cursor(data: pa.Table, column: str) -> Any:
    """The largest cursor value of a range (None when it has no rows)."""
    import pyarrow.compute as pc

    return pc.max(data.column(column)).as_py() if data.num_rows else None


def _each_range(work: Callable[[KeyRange], tuple[int, int]], ranges: list[KeyRange],
                parallelism: int) -> dict[str, tuple[int, int]]:
    """``range id -> work(range)``, ``parallelism`` ranges at a time (a range's read-back and
    checksum run on one core: an Iceberg range is one data file)."""
    if parallelism <= 1 or len(ranges) <= 1:
        return {r.id: work(r) for r in ranges}
    with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="verify") as pool:
        return dict(zip([r.id for r in ranges], pool.map(work, ranges)))


def source_checksums(source: Source, the_plan: Plan, request: BackfillRequest,
                     ranges: list[KeyRange]) -> dict[str, tuple[int, int]]:
    """``range id -> (rows, checksum)`` of the source's rows in each range, cursor filter left out
    (what the target must hold there, whatever the mode), ``request.parallelism`` ranges at a time."""
    whole = request.model_copy(update={"mode": Mode.FULL, "cursor_after": None})
    return _each_range(lambda r: batches_checksum(source.read_range(the_plan.info, the_plan.key, whole, r)),
                       ranges, request.parallelism)


def target_checksum(target: Target, key_range: KeyRange) -> tuple[int, int]:
    """``(rows, checksum)`` of a range of the target, batch by batch when the target can stream it."""
    read_batches = getattr(target, "read_batches", None)
    if read_batches is not None:
        return batches_checksum(read_batches(key_range))
    return table_checksum(target.read_range(key_range))


def verify_target(target: Target, ranges: list[KeyRange], expected: dict[str, tuple[int, int]],
                  parallelism: int = 1) -> None:
    """Check each range of the target against the expected ``(rows, checksum)``.

    Args:
        target: The copy.
        ranges: The ranges to check.
        expected: ``range id -> (rows, checksum)`` the target must hold.
        parallelism: Ranges read back at once (each read holds one batch at a time).

    Raises:
        VerificationError: naming every range that differs.
    """
    actual = _each_range(lambda r: target_checksum(target, r), ranges, parallelism)
    mismatches = [(r.id, expected[r.id], actual[r.id]) for r in ranges if actual[r.id] != expected[r.id]]
    if mismatches:
        raise VerificationError(mismatches)


def verify(source: Source, target: Target, request: BackfillRequest) -> Summary:
    """Verify an existing copy on its own: both sides read and checksummed range by range."""
    started = time.monotonic()
    the_plan = plan(source, target, request)
    target.prepare(the_plan.info.schema, the_plan.key)
    expected = source_checksums(source, the_plan, request, the_plan.ranges)
    verify_target(target, the_plan.ranges, expected, request.parallelism)
    return Summary(the_plan.job, request.table, source.name, target.name, rows=sum(v[0] for v in expected.values()),
                   ranges=len(the_plan.ranges), verified=True, seconds=round(time.monotonic() - started, 3),
                   checksums={k: list(v) for k, v in expected.items()})


__all__ = ["Plan", "Progress", "Summary", "describe", "plan", "run", "source_checksums", "stage_range", "target_checksum",
           "verify", "verify_target"]
