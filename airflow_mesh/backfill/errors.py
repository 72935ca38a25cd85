"""Errors of the backfill engine: each says what, where and why, before anything is written."""

from __future__ import annotations


class BackfillError(Exception):
    """Base class of backfill errors."""


class PlanError(BackfillError):
    """The request cannot be planned: unknown table, no usable key, a bad option."""


class TypeMappingError(BackfillError):
    """A source column's type has no exact equivalent in the target."""


class TargetSchemaError(BackfillError):
    """The target exists with a schema the source's rows cannot be written into."""


class VerificationError(BackfillError):
    """Source and target disagree on a range's row count or checksum.

    Attributes:
        mismatches: ``(range id, source (rows, checksum), target (rows, checksum))`` per bad range.
    """

    def __init__(self, mismatches: list[tuple[str, tuple[int, int], tuple[int, int]]], hint: str | None = None) -> None:
        self.mismatches = mismatches
        lines = [f"range {rid}: source has {s[0]} rows (checksum {s[1]:016x}), target {t[0]} rows "
                 f"(checksum {t[1]:016x})" for rid, s, t in mismatches]
        shown = lines[:10] + ([f"... and {len(lines) - 10} more"] if len(lines) > 10 else [])
        super().__init__(f"{len(mismatches)} range(s) differ between source and target:\n" + "\n".join(shown)
                         + (f"\n{hint}" if hint else ""))


class SourceError(BackfillError):
    """The source failed (cannot connect, refused a query...): the message names the source, what
    was being done, and the server's own words."""


class TargetError(BackfillError):
    """The target failed: the message names the target, what was being done, and the server's words."""


class StaleCheckpointError(BackfillError):
    """The job's checkpoints say ranges are done that the target no longer holds (it was dropped,
    emptied or rewritten since): a rerun needs ``--restart``."""
