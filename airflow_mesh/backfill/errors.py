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

    def __init__(self, mismatches: list[tuple[str, tuple[int, int], tuple[int, int]]]) -> None:
        self.mismatches = mismatches
        lines = [f"range {rid}: source has {s[0]} rows (checksum {s[1]:016x}), target {t[0]} rows "
                 f"(checksum {t[1]:016x})" for rid, s, t in mismatches]
        super().__init__(f"{len(mismatches)} range(s) differ between source and target:\n" + "\n".join(lines))
