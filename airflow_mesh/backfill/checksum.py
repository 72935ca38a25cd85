"""Order-independent row checksums, computed the same way on both sides of a copy."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

MASK = (1 << 64) - 1


def _polars_formats(t: pa.DataType) -> bool:
    """Whether polars writes a decimal's text exactly as Arrow does, and 3x faster: for a scale of 0
    to 6 Arrow never uses its scientific notation (``0E-7``), so both write plain ``-12.50``."""
    return pa.types.is_decimal128(t) and 0 <= t.scale <= 6


def _canonical_values(column: pa.Array) -> pa.Array:
    """A list's values (or any column of a type polars does not take as it is) in a hashable form:
    decimals as text, timestamps as UTC microseconds, text as string views, uuids as their 16
    bytes, intervals as their 16 bytes (months, days, nanoseconds), lists of these likewise."""
    t = column.type
    if pa.types.is_dictionary(t):
        return _canonical_values(column.dictionary_decode())
    if isinstance(t, pa.BaseExtensionType):
        return _canonical_values(column.storage)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        offsets = pc.cast(column.offsets, pa.int64())
        start, end = offsets[0].as_py(), offsets[-1].as_py()
        values = _canonical_values(column.values.slice(start, end - start))
        rebased = pc.cast(pc.subtract(offsets, start), pa.int32())
        return pa.ListArray.from_arrays(rebased, values, mask=column.is_null() if column.null_count else None)
    if pa.types.is_decimal(t):
        return pc.cast(pc.cast(column, pa.string()), pa.string_view())
    if pa.types.is_timestamp(t):
        return pc.cast(pc.cast(column, pa.timestamp("us", tz=t.tz)), pa.int64())
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pc.cast(column, pa.string_view())
    if t == pa.month_day_nano_interval():
        return pc.cast(pa.Array.from_buffers(pa.binary(16), len(column), column.buffers(), offset=column.offset),
                       pa.binary())
    if pa.types.is_fixed_size_binary(t) or pa.types.is_large_binary(t):
        return pc.cast(column, pa.binary())
    return column


def _canonical(table: pa.Table) -> pa.Table:
    """Every column in a form whose hash does not depend on how a side stores it.

    Decimals become their exact text (those of ``_polars_formats`` in ``table_checksum``),
    timestamps their microseconds since the epoch in UTC, and all text string views: polars takes
    Arrow's views as they are (the hash is that of the text, however it is stored), where it would
    copy every value of a plain or large string column. UUIDs and intervals hash as their bytes,
    lists element by element in the same forms.
    """
    columns = []
    for column in table.columns:
        t = column.type
        if pa.types.is_decimal(t) and _polars_formats(t):
            columns.append(column)
            continue
        columns.append(pa.chunked_array([_canonical_values(chunk) for chunk in column.chunks])
                       if column.num_chunks else pa.chunked_array([], _canonical_values(pa.array([], t)).type))
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
    return table.num_rows, int(row_hashes(table).sum()) & MASK


def row_hashes(table: pa.Table) -> pl.Series:
    """Each row's 64-bit hash, as ``table_checksum`` sums them (columns in name order, each in its
    canonical form): equal rows hash equally on both sides of a copy."""
    canonical = _canonical(table.select(sorted(table.column_names)))
    frame = cast(pl.DataFrame, pl.from_arrow(canonical))  # a table in, a frame out
    decimals = [f.name for f in canonical.schema if _polars_formats(f.type)]
    if decimals:
        frame = frame.with_columns(pl.col(decimals).cast(pl.String))
    return frame.hash_rows(seed=0x6D657368)


def canonical_keys(table: pa.Table, keys: tuple[str, ...]) -> pl.DataFrame:
    """The key columns of a table in the canonical form rows are hashed in (what two sides compare
    keys by, e.g. a timestamp as its microseconds, a uuid as its bytes)."""
    canonical = _canonical(table.select(list(keys)))
    columns = [column.storage if isinstance(column.type, pa.BaseExtensionType) else column
               for column in (c.combine_chunks() for c in canonical.columns)]
    return cast(pl.DataFrame, pl.from_arrow(pa.table(columns, names=list(keys))))


def combine(parts: list[tuple[int, int]]) -> tuple[int, int]:
    """The checksum of several batches' rows taken together."""
    return sum(rows for rows, _ in parts), sum(checksum for _, checksum in parts) & MASK


def batches_checksum(batches: Iterable[pa.RecordBatch]) -> tuple[int, int]:
    """``(rows, checksum)`` of a stream of batches, equal to ``table_checksum`` of them as one table,
    without ever holding more than one batch."""
    return combine([table_checksum(pa.Table.from_batches([batch])) for batch in batches])
