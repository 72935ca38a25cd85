"""Errors of the backfill engine: each says what, where and why, before anything is written."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class BackfillError(Exception):
    """Base class of backfill errors."""


class PlanError(BackfillError):
    """The request cannot be planned: unknown table, no usable key, a bad option."""


class TypeMappingError(BackfillError):
    """Source columns whose types have no exact equivalent (in Arrow, or in the target).

    Every such column is reported at once, each on its own line with its reason and the override
    that would work (``--cast col=type`` or ``--exclude col``), before anything is written.

    Attributes:
        problems: One line per column: ``column 'x': <why>; <what to do>``.
        mapped: The Arrow schema of the columns that did map (when a source raised it), so that a
            target's problems with them join the same error.
    """

    def __init__(self, message: str, problems: Sequence[str] | None = None, mapped: Any = None) -> None:
        self.problems = list(problems) if problems is not None else [message]
        self.mapped = mapped
        super().__init__(message)

    @classmethod
    def of(cls, table: str, problems: Sequence[str], mapped: Any = None) -> TypeMappingError:
        """One error for every unmappable column of a table (a single problem stays one line)."""
        if len(problems) == 1:
            return cls(f"table {table}: {problems[0]}", problems, mapped)
        lines = "\n".join(f"  {p}" for p in problems)
        return cls(f"table {table}: {len(problems)} columns cannot be copied exactly (nothing was written):\n{lines}",
                   problems, mapped)


class TargetSchemaError(BackfillError):
    """The target exists with a schema the source's rows cannot be written into."""


class UnrepresentableValueError(BackfillError):
    """A source value that the column's type (or the target) cannot hold exactly: PostgreSQL's
    ``infinity``, a ``NaN`` headed for JSON, a multi-dimensional array, a value a cast would round.

    Attributes:
        column: The column.
        value: The value as text (cut to 200 characters), when known.
    """

    def __init__(self, column: str, reason: str, value: str | None = None) -> None:
        self.column, self.value = column, None if value is None else value[:200]
        shown = f" (value {self.value!r})" if self.value is not None else ""
        super().__init__(f"column {column!r}{shown}: {reason}")


class TargetWriteError(BackfillError):
    """The target refused rows: what it said about the first of them, verbatim.

    Attributes:
        target: The target's name (index, table or topic).
        failures: ``(document or row id, error type, reason)`` of the first refused rows.
        refused: How many rows were refused in all.
    """

    def __init__(self, target: str, failures: Sequence[tuple[str, str, str]], refused: int, note: str = "") -> None:
        self.target, self.failures, self.refused = target, list(failures), refused
        lines = "\n".join(f"  id {doc_id!r}: {kind}: {reason}" for doc_id, kind, reason in self.failures)
        super().__init__(f"{target} refused {refused} row(s){note}; the first:\n{lines}")


class VerificationError(BackfillError):
    """Source and target disagree on a range's row count or checksum.

    Attributes:
        mismatches: ``(range id, source (rows, checksum), target (rows, checksum))`` per bad range.
        drift: Row by row, how each differing range differs (a sync's comparison), when known.
    """

    def __init__(self, mismatches: list[tuple[str, tuple[int, int], tuple[int, int]]], hint: str | None = None,
                 drift: list[Any] | None = None) -> None:
        self.mismatches = mismatches
        self.drift = drift or []
        if self.drift:
            lines = [d.describe() for d in self.drift]
            count = len(self.drift)
        else:
            lines = [f"range {rid}: source has {s[0]} rows (checksum {s[1]:016x}), target {t[0]} rows "
                     f"(checksum {t[1]:016x})" for rid, s, t in mismatches]
            count = len(mismatches)
        shown = lines[:10] + ([f"... and {len(lines) - 10} more"] if len(lines) > 10 else [])
        super().__init__(f"{count} range(s) differ between source and target:\n" + "\n".join(shown)
                         + (f"\n{hint}" if hint else ""))


class SourceError(BackfillError):
    """The source failed (cannot connect, refused a query...): the message names the source, what
    was being done, and the server's own words."""


class TargetError(BackfillError):
    """The target failed: the message names the target, what was being done, and the server's words."""


class StaleCheckpointError(BackfillError):
    """The job's checkpoints say ranges are done that the target no longer holds (it was dropped,
    emptied or rewritten since): a rerun needs ``--restart``."""
