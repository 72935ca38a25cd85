"""Order-independent row checksums, computed the same way on both sides of a copy."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

MASK = (1 << 64) - 1


def _canonical(table: pa.Table) -> pa.Table:
    """Every column in a form whose hash does not depend on how a side stores it.

    Decimals become their exact text, timestamps their microseconds since the epoch in UTC, and
    large strings plain strings.
    """
    columns = []
    for column in table.columns:
        t = column.type
        if pa.types.is_decimal(t):
            column = pc.cast(column, pa.string())
        elif pa.types.is_timestamp(t):
            column = pc.cast(pc.cast(column, pa.timestamp("us", tz=t.tz)), pa.int64())
        elif pa.types.is_large_string(t):
            column = pc.cast(column, pa.string())
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def table_checksum(table: pa.Table) -> tuple[int, int]:
    """``(rows, checksum)`` of a table: the wrapping 64-bit sum of each row's hash.

    A sum does not depend on row order, so a range read back in any order from the target checks
    against the range as read from the source. Columns are taken in name order.

    Args:
        table: The rows, with the columns of the backfill's Arrow schema.
    """
    if table.num_rows == 0:
        return 0, 0
    canonical = _canonical(table.select(sorted(table.column_names)))
    hashes = pl.from_arrow(canonical).hash_rows(seed=0x6D657368)
    return table.num_rows, int(hashes.sum()) & MASK


def combine(parts: list[tuple[int, int]]) -> tuple[int, int]:
    """The checksum of several batches' rows taken together."""
    return sum(rows for rows, _ in parts), sum(checksum for _, checksum in parts) & MASK
