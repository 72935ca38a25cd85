"""Planning a backfill: the request, and the primary-key ranges it is cut into."""

from __future__ import annotations

import enum
import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from airflow_mesh.backfill.errors import PlanError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


class Mode(str, enum.Enum):
    """What to copy."""

    FULL = "full"  # every row (that matches `where`)
    INCREMENTAL = "incremental"  # rows whose cursor column is past the last run's high-water mark


class BackfillRequest(BaseModel):
    """What to copy, independent of where from and where to.

    Args:
        table: The source table (``schema.table`` or ``table``).
        key: The primary-key column the ranges are cut on (an integer column); found from the
            source's primary key when omitted.
        mode: ``full`` or ``incremental``.
        cursor_column: With ``incremental``: the column (e.g. ``updated_at``) whose values past
            ``cursor_after`` are copied.
        cursor_after: With ``incremental``: the high-water mark of the previous run (exclusive).
        where: An extra SQL filter on the source (e.g. ``status <> 'test'``).
        range_size: Rows per key range (the unit of parallelism, checkpointing and verification).
        parallelism: Ranges moved at once.
        dry_run: Plan and count only; write nothing.
        casts: ``column -> SQL type`` (e.g. ``{"amount": "numeric(38,20)"}``): the source selects
            ``CAST(column AS type)`` and the column takes that type's exact Arrow type; a value the
            cast would change (round, cut) fails the run naming the column, never rounds.
        exclude: Columns neither read nor written (not in the target).
    """

    model_config = ConfigDict(extra="forbid")

    table: str
    key: str | None = None
    mode: Mode = Mode.FULL
    cursor_column: str | None = None
    cursor_after: str | None = None
    where: str | None = None
    range_size: int = Field(default=250_000, ge=1, le=50_000_000)
    parallelism: int = Field(default=2, ge=1, le=64)
    dry_run: bool = False
    casts: dict[str, str] = Field(default_factory=dict)
    exclude: list[str] = Field(default_factory=list)

    @field_validator("casts")
    @classmethod
    def _sql_types(cls, value: dict[str, str]) -> dict[str, str]:
        from airflow_mesh.backfill.types import parse_cast

        for column, spelled in value.items():
            if not column.strip():
                raise ValueError("a cast needs a column name (column=type)")
            try:
                parse_cast(spelled)
            except ValueError:
                raise ValueError(f"{column}={spelled!r}: {spelled!r} is not an SQL type (e.g. numeric(38,20), "
                                 "text, varchar(64), bigint)") from None
        return dict(sorted(value.items()))

    @field_validator("exclude")
    @classmethod
    def _column_names(cls, value: list[str]) -> list[str]:
        if any(not column.strip() for column in value):
            raise ValueError("an excluded column needs a name")
        return sorted(set(value))

    @field_validator("table", "key", "cursor_column")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None and not IDENTIFIER.match(value):
            raise ValueError(f"{value!r} is not a plain SQL identifier (letters, digits, _; optionally schema.name)")
        return value

    @field_validator("where")
    @classmethod
    def _one_predicate(cls, value: str | None) -> str | None:
        if value is not None and ";" in value:
            raise ValueError("a filter is one SQL predicate, without ';'")
        return value

    @model_validator(mode="after")
    def _incremental_needs_a_cursor(self) -> BackfillRequest:
        if self.mode is Mode.INCREMENTAL and not self.cursor_column:
            raise ValueError("mode 'incremental' needs a cursor_column (e.g. updated_at)")
        return self

    @model_validator(mode="after")
    def _overrides_leave_key_and_cursor(self) -> BackfillRequest:
        both = sorted(set(self.casts) & set(self.exclude))
        if both:
            raise ValueError(f"casts and exclude: {', '.join(both)} cannot be both cast and excluded")
        for option, columns in (("casts", self.casts), ("exclude", self.exclude)):
            if self.key is not None and self.key in columns:
                raise ValueError(f"{option}: {self.key!r} is the key ranges are cut on; it is copied as it is")
        if self.cursor_column is not None and self.cursor_column in self.exclude:
            raise ValueError(f"exclude: {self.cursor_column!r} is the cursor column; an incremental run reads it")
        return self


def parse_casts(items: dict[str, str] | list[str] | tuple[str, ...] | str | None) -> dict[str, str]:
    """Casts as the CLI, the operators and the UI form take them: a dict, or ``column=type``
    strings (one, or a list); None or empty means none.

    Raises:
        PlanError: an item is not ``column=type``.
    """
    if not items:
        return {}
    if isinstance(items, dict):
        return {str(k): str(v) for k, v in items.items()}
    casts: dict[str, str] = {}
    for item in [items] if isinstance(items, str) else items:
        column, sign, spelled = str(item).partition("=")
        if not sign or not column.strip() or not spelled.strip():
            raise PlanError(f"cast {item!r} is not column=type (e.g. amount=numeric(38,20))")
        casts[column.strip()] = spelled.strip()
    return casts


@dataclass(frozen=True, order=True)
class KeyRange:
    """The half-open key interval ``[lo, hi)`` of a range."""

    lo: int
    hi: int

    @property
    def id(self) -> str:
        """A stable name, used in checkpoints, file names and error messages."""
        return f"{self.lo}-{self.hi}"

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def plan_ranges(min_key: int | None, max_key: int | None, rows: int, range_size: int,
                parallelism: int = 1) -> list[KeyRange]:
    """Cut ``[min_key, max_key]`` into ranges of about ``range_size`` rows each.

    The cut is even in key space, which matches row counts when keys are dense (sequences); with
    sparse keys some ranges hold fewer rows, which costs nothing but a range.

    Args:
        min_key: The smallest key to copy (None when there are no rows).
        max_key: The largest key to copy.
        rows: How many rows the interval holds.
        range_size: Wanted rows per range (at most; ranges are cut smaller to balance them).
        parallelism: Ranges moved at once: the number of ranges is rounded up to a multiple of it,
            so that the last ranges run side by side rather than one alone while other workers idle.

    Returns:
        Consecutive, non-overlapping ranges covering every key from min_key to max_key; empty
        when there are no rows.
    """
    if min_key is None or max_key is None or rows == 0:
        return []
    if max_key < min_key:
        raise PlanError(f"key bounds are reversed: min {min_key} > max {max_key}")
    count = max(1, math.ceil(rows / range_size))
    if parallelism > 1 and count > 1:
        count = math.ceil(count / parallelism) * parallelism
    span = max_key - min_key + 1
    width = max(1, math.ceil(span / count))
    return [KeyRange(lo, min(lo + width, max_key + 1)) for lo in range(min_key, max_key + 1, width)]


def extend_ranges(saved: list[KeyRange], min_key: int | None, max_key: int | None) -> list[KeyRange]:
    """A saved plan's ranges, plus ranges of the same width for keys the source now has outside them.

    A resumed run moves the ranges it was first cut into (their checkpoints stay valid); rows added
    since with larger (or smaller) keys get ranges of their own rather than being missed.

    Args:
        saved: The plan's ranges, consecutive and sorted.
        min_key: The smallest key now (None when the source has no rows).
        max_key: The largest key now.

    Returns:
        The saved ranges, preceded and followed by any ranges needed to cover ``[min_key, max_key]``.
    """
    if not saved or min_key is None or max_key is None:
        return list(saved)
    width = max(1, saved[0].hi - saved[0].lo)
    before: list[KeyRange] = []
    hi = saved[0].lo
    while min_key < hi:
        before.insert(0, KeyRange(max(min_key, hi - width), hi))
        hi = before[0].lo
    after: list[KeyRange] = []
    lo = saved[-1].hi
    while lo <= max_key:
        after.append(KeyRange(lo, min(lo + width, max_key + 1)))
        lo = after[-1].hi
    return before + list(saved) + after


def job_id(source: str, target: str, request: BackfillRequest) -> str:
    """A stable id of one backfill (same source, target and request -> same id): the checkpoint key."""
    fields = request.model_dump(mode="json", exclude={"parallelism", "dry_run"})
    for override in ("casts", "exclude"):  # absent when empty: a job's id is the one it had before these existed
        if not fields[override]:
            del fields[override]
    payload = json.dumps([source, target, fields], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
