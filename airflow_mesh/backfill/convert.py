"""Exact conversions of Arrow columns: to and from their text forms, to and from a target's storage
types, and from what a source's driver returned to the backfill's own (engine) types.

Every conversion here is exact and invertible, or fails naming the column and the value: nothing is
rounded, cut or replaced by NULL. The text forms (``to_text``) are what a target without a native
type stores (documented in the README's type table):

=================  ===================================================================================
Arrow              text
=================  ===================================================================================
decimal            plain notation with the column's scale: ``-12.50``, ``0.0000000000`` (never ``0E-10``)
timestamp          ISO 8601 as Python's ``isoformat`` writes it: ``2026-01-01T00:00:01.5+00:00`` (UTC
                   for a zone), no fraction when it is zero
date, time         ``2026-01-31``, ``23:59:59.999999`` (no fraction when it is zero)
uuid               ``a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11``
interval           ISO 8601 duration, each part signed: ``P1Y2M3DT4H5M6.789S``, ``P-1M2DT-0.000001S``,
                   ``PT0S``
binary             base64
list               (stays a list; its elements take their own text form)
=================  ===================================================================================
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Callable
from typing import Any, cast

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from airflow_mesh.backfill.errors import UnrepresentableValueError

__all__ = ["CHECK_PREFIX", "META_CHECK", "META_FAMILY", "META_LENGTH", "META_READ", "META_SELECT", "conform",
           "empty_array", "empty_table", "from_storage", "from_text", "iso_interval", "parse_iso_interval",
           "plain_type", "table_from_storage", "table_to_storage", "to_storage", "to_text"]

# Field metadata the sources put on the backfill's Arrow schema (targets read the first two).
META_FAMILY = b"mesh.type"  # the source type's family when Arrow's type alone does not say it: inet, enum, json...
META_LENGTH = b"mesh.length"  # n of char(n), varchar(n), bit(n)
META_SELECT = b"mesh.select"  # an SQL source's select item(s) for the column
META_READ = b"mesh.read"  # how the source's values arrive when it matters: b"epoch" (text seconds), b"pg" (ADBC)
META_CHECK = b"mesh.check"  # why a row fails the column's check column (see CHECK_PREFIX)
# A select may add a column named CHECK_PREFIX + column: NULL where the row is fine, else the
# offending value as text; `conform` refuses the batch naming the column, the value and the reason.
CHECK_PREFIX = "__mesh_check_"

# The earliest date and timestamp PostgreSQL holds (4713-11-24 BC): ADBC decodes `infinity` and
# `-infinity` into values far below it (their epoch shift overflows), so anything below is one of them.
_PG_MIN_DAYS = -2_440_588
_PG_MIN_MICROS = _PG_MIN_DAYS * 86_400_000_000
_UUID = pa.uuid()
_MDN = pa.month_day_nano_interval()


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_bytes(t: pa.DataType) -> bool:
    return (pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t)
            or (pa.types.is_fixed_size_binary(t) and not pa.types.is_decimal(t)))


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t)


def _is_uuid(t: pa.DataType) -> bool:
    return isinstance(t, pa.BaseExtensionType) and t.extension_name == "arrow.uuid"


def plain_type(t: pa.DataType) -> pa.DataType:
    """A type as it compares across stores: large and view strings, binaries and lists as plain
    ones (list elements named ``item``, nullable), dictionaries as their values, a JSON extension as
    its text, UTC spelled one way."""
    if pa.types.is_dictionary(t):
        return plain_type(t.value_type)
    if isinstance(t, pa.BaseExtensionType) and not _is_uuid(t):
        return plain_type(t.storage_type)
    if _is_text(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if _is_list(t):
        return pa.list_(plain_type(t.value_type))
    if pa.types.is_timestamp(t) and t.tz in ("+00:00", "Etc/UTC", "UTC", "Z"):
        return pa.timestamp(t.unit, tz="UTC")
    return t


def _chunked(function: Callable[[pa.Array], pa.Array], column: pa.Array | pa.ChunkedArray,
             out: pa.DataType) -> pa.Array | pa.ChunkedArray:
    if isinstance(column, pa.ChunkedArray):
        return pa.chunked_array([function(chunk) for chunk in column.chunks], out)
    return function(column)


def _list_parts(column: pa.Array) -> tuple[pa.Array, pa.Array]:
    """A list array's offsets (from 0, int32) and the values they index (only the slice's)."""
    offsets = pc.cast(column.offsets, pa.int64())
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    return pc.cast(pc.subtract(offsets, start), pa.int32()), column.values.slice(start, end - start)


def _rebuild_list(column: pa.Array, values: pa.Array, t: pa.DataType | None = None) -> pa.Array:
    """A list array with ``column``'s lists and nulls over new values."""
    offsets, _ = _list_parts(column)
    mask = column.is_null() if column.null_count else None
    rebuilt = pa.ListArray.from_arrays(offsets, values, mask=mask)
    return rebuilt if t is None or rebuilt.type == t else rebuilt.cast(t)


def _storage(column: pa.Array) -> pa.Array:
    """A column without dictionary or (non-uuid) extension wrapping."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if isinstance(column.type, pa.BaseExtensionType) and not _is_uuid(column.type):
        column = column.storage
    return column


# ---------------------------------------------------------------------------------------------- text


def _polars(column: pa.Array) -> pl.Series:
    return cast(pl.Series, pl.from_arrow(column))  # an array in, a series out


def _iso_timestamp(series: pl.Series, unit: str, zoned: bool) -> pl.Series:
    digits, zero = ("%.9f", ".000000000") if unit == "ns" else ("%.6f", ".000000")
    text = series.dt.to_string(f"%Y-%m-%dT%H:%M:%S{digits}").str.strip_suffix(zero)
    return text + "+00:00" if zoned else text


def iso_interval(months: int, days: int, nanos: int) -> str:
    """One interval in ISO 8601, each part with its own sign (as PostgreSQL's ``iso_8601`` style
    writes it): ``(14, 3, 14706789000000)`` -> ``P1Y2M3DT4H5M6.789S``."""
    parts = ["P"]
    years, rest = int(months / 12), months - int(months / 12) * 12
    for value, unit in ((years, "Y"), (rest, "M"), (days, "D")):
        if value:
            parts.append(f"{value}{unit}")
    if nanos:
        sign = "-" if nanos < 0 else ""
        hours, nanos_left = divmod(abs(nanos), 3_600_000_000_000)
        minutes, nanos_left = divmod(nanos_left, 60_000_000_000)
        seconds, fraction = divmod(nanos_left, 1_000_000_000)
        parts.append("T")
        if hours:
            parts.append(f"{sign}{hours}H")
        if minutes:
            parts.append(f"{sign}{minutes}M")
        if seconds or fraction:
            text = f"{seconds}.{fraction:09d}".rstrip("0").rstrip(".") if fraction else str(seconds)
            parts.append(f"{sign}{text}S")
    text = "".join(parts)
    return "PT0S" if text == "P" else text


_ISO_INTERVAL = re.compile(r"^P(?:(-?\d+)Y)?(?:(-?\d+)M)?(?:(-?\d+)D)?"
                           r"(?:T(?:(-?\d+)H)?(?:(-?\d+)M)?(?:(-?\d+)(?:\.(\d{1,9}))?S)?)?$")


def parse_iso_interval(text: str) -> tuple[int, int, int]:
    """``(months, days, nanoseconds)`` of an ISO 8601 duration as ``iso_interval`` writes it.

    Raises:
        ValueError: not such a duration.
    """
    match = _ISO_INTERVAL.match(text)
    if match is None or text in ("P", "PT"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration (e.g. P1Y2M3DT4H5M6.789S)")
    years, months, days, hours, minutes, seconds, fraction = match.groups()
    total_months = int(years or 0) * 12 + int(months or 0)
    negative = any(part is not None and part.startswith("-") for part in (hours, minutes, seconds))
    nanos = abs(int(hours or 0)) * 3_600_000_000_000 + abs(int(minutes or 0)) * 60_000_000_000
    nanos += abs(int(seconds or 0)) * 1_000_000_000 + (int(fraction.ljust(9, "0")) if fraction else 0)
    return total_months, int(days or 0), -nanos if negative else nanos


def _decimal_text(column: pa.Array) -> pa.Array:
    if pa.types.is_decimal128(column.type) and column.type.precision <= 38:
        return _polars(column).cast(pl.String).to_arrow().cast(pa.string())
    return pa.array([None if v is None else format(v, "f") for v in column.to_pylist()], pa.string())


def to_text(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Every value of a column in its exact text form (see the module's table); NULLs stay NULL.

    Args:
        column: Any column of the backfill's types (a list column keeps its lists, of texts).

    Returns:
        A ``string`` column (``list<string>`` for a list).
    """
    out = pa.list_(pa.string()) if _is_list(column.type) else pa.string()
    return _chunked(_to_text, column, out)


def _to_text(column: pa.Array) -> pa.Array:
    column = _storage(column)
    t = column.type
    if _is_list(t):
        _, values = _list_parts(column)
        return _rebuild_list(column, _to_text(values))
    if _is_text(t):
        return column.cast(pa.string())
    if pa.types.is_null(t):
        return pa.nulls(len(column), pa.string())
    if pa.types.is_boolean(t):
        return pc.if_else(column, "true", "false")
    if pa.types.is_decimal(t):
        return _decimal_text(column)
    if pa.types.is_timestamp(t):
        series = _polars(pc.cast(column, pa.timestamp("ns" if t.unit == "ns" else "us", tz="UTC" if t.tz else None)))
        return _iso_timestamp(series, "ns" if t.unit == "ns" else "us", bool(t.tz)).to_arrow().cast(pa.string())
    if pa.types.is_time(t):
        series = _polars(pc.cast(column, pa.time64("us")))
        return series.dt.to_string("%H:%M:%S%.6f").str.strip_suffix(".000000").to_arrow().cast(pa.string())
    if pa.types.is_date(t):
        return pc.cast(pc.cast(column, pa.date32()), pa.string())
    if _is_uuid(t):
        hexes = _polars(pc.cast(column.storage, pa.binary())).bin.encode("hex")
        frame = pl.DataFrame({"h": hexes}).select(pl.concat_str(
            [pl.col("h").str.slice(0, 8), pl.col("h").str.slice(8, 4), pl.col("h").str.slice(12, 4),
             pl.col("h").str.slice(16, 4), pl.col("h").str.slice(20, 12)], separator="-"))
        return frame.to_series().to_arrow().cast(pa.string())
    if t == _MDN:
        return pa.array([None if v is None else iso_interval(v.months, v.days, v.nanoseconds)
                         for v in column.to_pylist()], pa.string())
    if _is_bytes(t):
        return _polars(pc.cast(column, pa.binary())).bin.encode("base64").to_arrow().cast(pa.string())
    return pc.cast(column, pa.string())  # numbers: Arrow writes integers exactly and floats shortest


def _first_failure(column: pa.Array, convert: Callable[[pa.Array], Any]) -> str | None:
    """The first value of a text column that ``convert`` refuses on its own (the slow path of an error)."""
    for value in column.to_pylist():
        if value is None:
            continue
        try:
            convert(pa.array([value], column.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, pl.exceptions.PolarsError):
            return value
    return None


def from_text(column: pa.Array | pa.ChunkedArray, t: pa.DataType, how: str | None = None,
              name: str = "?") -> pa.Array | pa.ChunkedArray:
    """Values in their text form (``to_text``'s, or a source's own) as a column of type ``t``.

    Args:
        column: A text column (``list<string>`` for a list type).
        t: The type to read them as.
        how: ``epoch`` for timestamps as decimal seconds since 1970 (MariaDB's ``UNIX_TIMESTAMP``).
        name: The column, for the error.

    Raises:
        UnrepresentableValueError: a value is not the text of any value of ``t`` (or does not fit
            it exactly), naming the column and the value.
    """
    return _chunked(lambda chunk: _from_text_checked(chunk, t, how, name), column, t)


def _from_text_checked(column: pa.Array, t: pa.DataType, how: str | None, name: str, hint: str = "") -> pa.Array:
    try:
        return _from_text(column, t, how)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, pl.exceptions.PolarsError) as exc:
        values = column
        if _is_list(column.type):
            _, values = _list_parts(column)
            t = t.value_type if _is_list(t) else t
        bad = _first_failure(values, lambda one: _from_text(one, t, how))
        said = str(exc).strip().splitlines()[0]
        raise UnrepresentableValueError(name, f"is not an exact {t} value ({said}){hint}", bad) from None


def _from_text(column: pa.Array, t: pa.DataType, how: str | None = None) -> pa.Array:
    column = _storage(column)
    if _is_list(t):
        _, values = _list_parts(column)
        return _rebuild_list(column, _from_text(values, t.value_type, how), t)
    if not _is_text(column.type):
        raise ValueError(f"expected text, got {column.type}")
    column = column.cast(pa.string())
    if isinstance(t, pa.BaseExtensionType) and not _is_uuid(t):
        return pa.ExtensionArray.from_storage(t, _from_text(column, t.storage_type, how))
    if _is_text(t):
        return column.cast(t)
    if pa.types.is_timestamp(t) and how == "epoch":
        seconds = pc.cast(column, pa.decimal128(24, 6))
        micros = pc.multiply(seconds, pa.scalar(decimal.Decimal(1_000_000), pa.decimal128(7, 0)))
        return pc.cast(pc.cast(micros, pa.int64()), pa.timestamp("us", tz="UTC")).cast(t)
    if pa.types.is_timestamp(t):
        wide = pa.timestamp("ns" if t.unit == "ns" else "us", t.tz)
        return pc.cast(pc.cast(column, wide), t)
    if pa.types.is_time(t):
        micros = _polars(column).str.to_time("%H:%M:%S%.f", strict=True).to_arrow()
        parsed = pc.cast(micros, t)
        if parsed.null_count != column.null_count:
            raise ValueError("not a time of day (00:00:00 to 23:59:59.999999)")
        return parsed
    if pa.types.is_date(t):
        return pc.cast(pc.cast(column, pa.date32()), t)
    if _is_uuid(t):
        raw = _polars(column).str.replace_all("-", "", literal=True).str.decode("hex", strict=True).to_arrow()
        lengths = pc.binary_length(raw)
        if pc.any(pc.not_equal(lengths, 16)).as_py():
            raise ValueError("not a UUID (32 hexadecimal digits)")
        return pa.ExtensionArray.from_storage(_UUID, pc.cast(raw, pa.binary(16)))
    if t == _MDN:
        return pa.array([None if v is None else pa.MonthDayNano(parse_iso_interval(v)) for v in column.to_pylist()],
                        _MDN)
    if _is_bytes(t):
        raw = _polars(column).str.decode("base64", strict=True).to_arrow()
        return pc.cast(raw, t)
    if pa.types.is_boolean(t):
        lowered = pc.utf8_lower(column)
        valid = pc.is_in(lowered, pa.array(["true", "false"]))
        if pc.any(pc.invert(pc.fill_null(valid, True))).as_py():
            raise ValueError("not true or false")
        return pc.equal(lowered, "true")
    return pc.cast(column, t)  # numbers and decimals: Arrow refuses what does not fit, never rounds


# ------------------------------------------------------------------------------------------- storage


def to_storage(column: pa.Array | pa.ChunkedArray, storage: pa.DataType) -> pa.Array | pa.ChunkedArray:
    """A column of the backfill's types as a target stores it: the same values in ``storage``'s
    type (a text form where the target has no native type, a wider integer...).

    Raises:
        UnrepresentableValueError: a value does not fit ``storage`` exactly.
    """
    return _chunked(lambda chunk: _to_storage(chunk, storage), column, storage)


def _to_storage(column: pa.Array, storage: pa.DataType) -> pa.Array:
    if column.type == storage:
        return column
    column = _storage(column)
    if _is_list(storage) and _is_list(column.type):
        _, values = _list_parts(column)
        return _rebuild_list(column, _to_storage(values, storage.value_type), storage)
    if _is_text(storage) and not _is_text(column.type):
        return _to_text(column).cast(storage)
    if _is_uuid(storage) and pa.types.is_fixed_size_binary(column.type):
        return pa.ExtensionArray.from_storage(_UUID, column)
    if isinstance(storage, pa.BaseExtensionType) and not _is_uuid(storage):
        return pa.ExtensionArray.from_storage(storage, _to_storage(column, storage.storage_type))
    return pc.cast(column, storage)


def from_storage(column: pa.Array | pa.ChunkedArray, t: pa.DataType, name: str = "?") -> pa.Array | pa.ChunkedArray:
    """A column as a target stored it, back in the backfill's type ``t`` (``to_storage``'s inverse)."""
    return _chunked(lambda chunk: _from_storage(chunk, t, name), column, t)


def _from_storage(column: pa.Array, t: pa.DataType, name: str) -> pa.Array:
    if column.type == t:
        return column
    column = _storage(column)
    if column.type == t:
        return column
    if _is_list(t) and _is_list(column.type):
        _, values = _list_parts(column)
        return _rebuild_list(column, _from_storage(values, t.value_type, name), t)
    if _is_text(column.type) and not _is_text(t):
        return _from_text_checked(column, t, None, name)
    if _is_uuid(t) and pa.types.is_fixed_size_binary(column.type):
        return pa.ExtensionArray.from_storage(_UUID, column)
    if _is_uuid(column.type) and pa.types.is_fixed_size_binary(t):
        return column.storage
    if isinstance(t, pa.BaseExtensionType) and not _is_uuid(t):
        return pa.ExtensionArray.from_storage(t, _from_storage(column, t.storage_type, name))
    try:
        return pc.cast(column, t)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise UnrepresentableValueError(name, f"cannot be read back as {t} exactly ({exc})") from None


def empty_array(t: pa.DataType) -> pa.Array:
    """An array of no values of any type (``pa.array([], t)`` refuses extension types in lists)."""
    if _is_list(t):
        return pa.ListArray.from_arrays(pa.array([0], pa.int32()), empty_array(t.value_type)).cast(t)
    if isinstance(t, pa.BaseExtensionType):
        return pa.ExtensionArray.from_storage(t, empty_array(t.storage_type))
    return pa.array([], t)


def empty_table(schema: pa.Schema) -> pa.Table:
    """A table of no rows of any schema (``schema.empty_table()`` refuses lists of extension types)."""
    return pa.table([empty_array(f.type) for f in schema], schema=schema)


def table_to_storage(data: pa.Table | pa.RecordBatch, schema: pa.Schema) -> pa.Table:
    """A table in a target's storage schema (columns by name, in ``schema``'s order)."""
    return pa.table([to_storage(data.column(f.name), f.type) for f in schema], schema=schema)


def table_from_storage(data: pa.Table | pa.RecordBatch, schema: pa.Schema) -> pa.Table | pa.RecordBatch:
    """A table (or batch) read from a target, in the backfill's schema (columns by name)."""
    columns = [from_storage(data.column(f.name), f.type, f.name) for f in schema]
    if isinstance(data, pa.RecordBatch):
        return pa.RecordBatch.from_arrays(columns, schema=schema)
    return pa.table(columns, schema=schema)


# ------------------------------------------------------------------------------------- from sources


def _metadata(field: pa.Field, key: bytes) -> str | None:
    value = (field.metadata or {}).get(key)
    return None if value is None else value.decode()


def _check_infinity(column: pa.Array, name: str) -> None:
    """ADBC decodes PostgreSQL's ``infinity`` and ``-infinity`` into values before 4713 BC."""
    values = column
    while _is_list(values.type):
        _, values = _list_parts(values)
    t = values.type
    if pa.types.is_date(t):
        lowest, limit = pc.min(pc.cast(values, pa.date32()).view(pa.int32())), _PG_MIN_DAYS
    elif pa.types.is_timestamp(t):
        lowest, limit = pc.min(pc.cast(values, pa.timestamp("us", tz=t.tz)).view(pa.int64())), _PG_MIN_MICROS
    else:
        return
    if lowest.is_valid and lowest.as_py() < limit:
        raise UnrepresentableValueError(
            name, f"holds PostgreSQL's infinity or -infinity, which no target's {t} holds; "
                  f"--cast {name}=text keeps PostgreSQL's text ('infinity') exactly, or --exclude {name}",
            "infinity")


def _conform(column: pa.Array, field: pa.Field) -> pa.Array:
    """One column as a source's driver returned it, in the field's exact type."""
    t, name = field.type, field.name
    column = _storage(column)
    if _metadata(field, META_READ) == "pg":
        _check_infinity(column, name)
    if column.type == t:
        return column
    if pa.types.is_boolean(t) and pa.types.is_integer(column.type):
        bounds = pc.min_max(column).as_py()
        if column.null_count < len(column) and (bounds["min"] < 0 or bounds["max"] > 1):
            bad = next(v for v in column.to_pylist() if v not in (None, 0, 1))
            raise UnrepresentableValueError(
                name, f"is MariaDB's BOOLEAN (tinyint(1)) but holds a number other than 0 and 1; "
                      f"--cast {name}=smallint keeps the numbers", str(bad))
        return pc.not_equal(column, pa.scalar(0, column.type))
    if (_is_text(column.type) and not _is_text(t)) or (
            _is_list(column.type) and _is_list(t) and _is_text(column.type.value_type) and not _is_text(t.value_type)):
        hint = f"; --cast {name}=text keeps the source's text of it exactly, or --exclude {name}"
        return _from_text_checked(column, t, _metadata(field, META_READ), name, hint)
    if _is_list(t) and _is_list(column.type):
        _, values = _list_parts(column)
        return _rebuild_list(column, _conform(values, field.with_type(t.value_type)), t)
    try:
        return pc.cast(column, t)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise UnrepresentableValueError(name, f"does not fit {t} exactly ({exc})") from None


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A batch as a source's driver returned it, in the backfill's exact schema.

    Columns are taken by name (so a source's extra columns are left out); text a source selected
    for exactness (decimals, MariaDB dates) is parsed; check columns (``CHECK_PREFIX``) are
    verified and dropped.

    Raises:
        UnrepresentableValueError: a value has no exact representation (the column's check failed,
            text that is no value of the type, PostgreSQL's infinity...), naming column and value.
    """
    for name in batch.schema.names:
        if name.startswith(CHECK_PREFIX):
            check = batch.column(name)
            if check.null_count < len(check):
                column = name[len(CHECK_PREFIX):]
                reason = _metadata(schema.field(column), META_CHECK) if column in schema.names else None
                bad = pc.drop_null(check)[0].as_py()
                raise UnrepresentableValueError(column, reason or "fails its check", str(bad))
    arrays = [_conform(batch.column(f.name), f) for f in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
