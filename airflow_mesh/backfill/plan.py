"""Planning a backfill: the request (what to copy), and its job id. Key ranges are in ``keys``."""

from __future__ import annotations

import enum
import hashlib
import json
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from airflow_mesh.backfill.errors import PlanError
from airflow_mesh.backfill.filters import parse_filter
from airflow_mesh.backfill.keys import KeyRange, extend_ranges, plan_ranges

__all__ = ["BackfillRequest", "KeyRange", "Mode", "extend_ranges", "job_id", "key_columns", "plan_ranges"]

# A table is ``schema.table`` or ``table``; names are quoted in SQL, so any character but a dot
# (the separator), a control character or a quote may be in them.
TABLE_NAME = re.compile(r'^[^.;\x00-\x1f"`]+(\.[^.;\x00-\x1f"`]+)?$')
COLUMN_NAME = re.compile(r'^[^,;\x00-\x1f"`]+$')


def key_columns(key: str | None) -> tuple[str, ...] | None:
    """The columns of a ``key`` option: ``id``, or ``region, id`` for a composite key."""
    if key is None:
        return None
    return tuple(part.strip() for part in key.split(","))


class Mode(str, enum.Enum):
    """What to copy, and what each mode can see.

    ``full`` copies every row (that matches ``where``): the target ends equal to the source's snapshot.
    ``incremental`` copies the rows whose cursor column is at or past the stream's mark: it cannot see
    deletes, nor changes that do not move the cursor (or move it into the past). ``sync`` compares
    source and target range by range (checksums) and repairs the ranges that differ, row by row: it
    sees inserts, updates (silent ones too) and deletes.
    """

    FULL = "full"
    INCREMENTAL = "incremental"
    SYNC = "sync"


SEES = {
    Mode.FULL: "every row of the source's snapshot (a rerun copies everything again)",
    Mode.INCREMENTAL: "inserts and updates that move the cursor column forward; NOT deletes, NOT updates that "
                      "leave the cursor alone or set it into the past (run a sync for those)",
    Mode.SYNC: "inserts, updates (also those that leave the cursor alone) and deletes, by comparing both sides",
}


class BackfillRequest(BaseModel):
    """What to copy, independent of where from and where to.

    Args:
        table: The source table (``schema.table`` or ``table``).
        key: The column the ranges are cut on, or several, comma-separated (``region, id``): any
            orderable type (integers, text, uuids, decimals, dates, timestamps), unique over the
            rows; the source's primary key when omitted.
        mode: ``full`` or ``incremental``.
        cursor_column: With ``incremental``: the column (e.g. ``updated_at``) whose values past
            ``cursor_after`` are copied.
        cursor_after: With ``incremental``: the high-water mark of the previous run (exclusive).
        where: An extra SQL filter on the source (e.g. ``status <> 'test'``): one boolean expression
            in the source's SQL dialect (parsed, never pasted).
        range_size: Rows per key range (the unit of parallelism, checkpointing and verification).
        parallelism: Ranges moved at once.
        dry_run: Plan and count only; write nothing.
        cursor_lag: Seconds the new high-water mark is held back by, beyond what the source's snapshot
            proves (for cursor values written by clocks other than the database's).
        deep: ``sync``: compare every range of both sides even where the source can tell which rows
            changed since the last verified run (a target changed by others is then repaired too).
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
    cursor_lag: float = Field(default=0.0, ge=0, le=7 * 86_400)
    deep: bool = False
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
    def _excluded_names(cls, value: list[str]) -> list[str]:
        if any(not column.strip() for column in value):
            raise ValueError("an excluded column needs a name")
        return sorted(set(value))

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        value = value.strip()
        if not TABLE_NAME.match(value):
            raise ValueError(f"{value!r} is not a table name: schema.table or table, without quotes, ';' or "
                             "control characters")
        return value

    @field_validator("key", "cursor_column", mode="before")
    @classmethod
    def _column_names(cls, value: str | None) -> str | None:
        if value is None or not str(value).strip():
            return None
        columns = [part.strip() for part in str(value).split(",")]
        bad = [c for c in columns if not c or not COLUMN_NAME.match(c)]
        if bad:
            raise ValueError(f"{value!r} is not a column name (or names, comma-separated): "
                             f"{', '.join(repr(b) for b in bad)}")
        return ",".join(columns)

    @field_validator("where", "cursor_after", mode="before")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return None if value is None or not str(value).strip() else value

    @field_validator("where")
    @classmethod
    def _one_condition(cls, value: str | None) -> str | None:
        """A filter that is no condition in either dialect is refused here, before any connection;
        the source parses it again in its own dialect."""
        if value is not None:
            errors = []
            for dialect in ("postgres", "mysql"):
                try:
                    parse_filter(value, dialect)
                    return value
                except PlanError as exc:
                    errors.append(str(exc))
            raise ValueError(errors[0])
        return value

    @property
    def key_columns(self) -> tuple[str, ...] | None:
        """The key's columns, when the request names them."""
        return key_columns(self.key)

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


# How a run is done, not what it copies: none of these changes a job's identity.
_HOW = {"parallelism", "dry_run", "range_size", "cursor_after", "cursor_lag", "deep"}


def _digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def stream_id(source: str, target: str, request: BackfillRequest) -> str:
    """What a target holds of a source: the table, key, filter and column choices, whatever the mode.
    High-water marks belong to a stream, so a full copy hands its mark to the incremental runs after it."""
    return _digest([source, target, request.model_dump(mode="json", exclude=_HOW | {"mode", "cursor_column"})])


def job_id(source: str, target: str, request: BackfillRequest) -> str:
    """A stable id of one backfill job: its stream and its mode (and cursor column), not the range size,
    parallelism or cursor position. Checkpoints (the open run's plan and done ranges) are kept by job."""
    return _digest([source, target, request.model_dump(mode="json", exclude=_HOW)])
