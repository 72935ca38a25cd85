"""Exact Avro for the backfill's Arrow data: the record schema of an Arrow schema, and the binary
encoding of whole batches in vectorized Arrow/NumPy code (no Python work per row).

The mapping is exact, as ``types`` is for the other targets:

=====================================  ===============================================================
Arrow                                  Avro
=====================================  ===============================================================
bool                                   ``boolean``
int8, int16, int32, uint8, uint16      ``int``
int64, uint32                          ``long``
uint64                                 ``bytes`` decimal(20, 0) (no Avro integer holds 2^64 - 1)
float32, float64                       ``float``, ``double``
decimal(p, s)                          ``bytes`` with logicalType ``decimal``, precision p, scale s
string (json, inet, text...), json     ``string``
uuid                                   ``string`` with logicalType ``uuid``
month_day_nano interval                ``string``: its ISO 8601 text (``P1Y2M3DT4H5M6.789S``; Avro's
                                       ``duration`` holds milliseconds only, and no negative parts)
list<T>                                ``array`` of T (of ``["null", T]`` when its items are nullable)
binary                                 ``bytes``; fixed_size_binary(n): ``fixed`` of size n
date32, date64                         ``int`` date
time32                                 ``int`` time-millis; time64(us): ``long`` time-micros
timestamp with a time zone             ``long`` timestamp-micros (an instant, in UTC)
timestamp without a time zone          ``long`` local-timestamp-micros (a wall-clock time)
=====================================  ===============================================================

A nullable column becomes the union ``["null", T]`` with default null. A type with no exact
equivalent (nanosecond times, durations, structs...) is a ``TypeMappingError`` naming the
column and its type. ``encode_bodies`` writes exactly what fastavro's ``schemaless_writer`` writes
for the same values (decimals in their shortest two's complement); ``decode_bodies`` reads them
back into the original Arrow types (through polars' Avro reader, about 25 times as fast as
fastavro's, when the schema is one it reads; else through fastavro and ``records_to_arrow``).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from airflow_mesh.backfill.convert import empty_table, from_storage, from_text, to_text
from airflow_mesh.backfill.errors import TypeMappingError

__all__ = ["avro_name", "avro_schema", "avro_type", "conformed", "decode_bodies", "encode_bodies",
           "records_to_arrow"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UINT64_DECIMAL = pa.decimal128(20, 0)


def avro_name(text: str) -> str:
    """A valid Avro name made from any text: every other character becomes ``_``, and a leading
    digit gets a ``_`` in front (``orders-v2`` -> ``orders_v2``, ``2024`` -> ``_2024``)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", text) or "_"
    return f"_{name}" if name[0].isdigit() else name


def _unwrapped(t: pa.DataType) -> pa.DataType:
    """The type whose values are written: a dictionary's value type, a JSON extension's storage."""
    if pa.types.is_dictionary(t):
        return t.value_type
    if isinstance(t, pa.BaseExtensionType) and t.extension_name == "arrow.json":
        return pa.string()
    return t


def _is_uuid(t: pa.DataType) -> bool:
    return isinstance(t, pa.BaseExtensionType) and t.extension_name == "arrow.uuid"


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


_INTERVAL = pa.month_day_nano_interval()


def avro_type(field: pa.Field) -> Any:
    """The Avro type of an Arrow field, without its nullability.

    Args:
        field: The column (its name is used in errors and to name a ``fixed``).

    Returns:
        The Avro type: a primitive name or a dict with a logical type.

    Raises:
        TypeMappingError: the type has no exact Avro equivalent.
    """
    t = _unwrapped(field.type)
    if _is_uuid(t):
        return {"type": "string", "logicalType": "uuid"}
    if t == _INTERVAL:
        return "string"
    if _is_list(t):
        try:
            item = avro_type(pa.field(field.name, t.value_type))
        except TypeMappingError as exc:
            raise TypeMappingError(f"column {field.name!r}: Arrow type {field.type} has no exact Avro equivalent "
                                   f"here (its items: {exc})") from None
        return {"type": "array", "items": ["null", item] if t.value_field.nullable else item}
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_boolean(t):
        return "boolean"
    if t in (pa.int8(), pa.int16(), pa.int32(), pa.uint8(), pa.uint16()):
        return "int"
    if t in (pa.int64(), pa.uint32()):
        return "long"
    if t == pa.uint64():
        return {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 0}
    if t == pa.float32():
        return "float"
    if t == pa.float64():
        return "double"
    if pa.types.is_decimal(t):
        if not 0 <= t.scale <= t.precision:
            raise TypeMappingError(f"column {field.name!r}: type {field.type} has a scale outside 0..precision, "
                                   "which an Avro decimal cannot hold")
        return {"type": "bytes", "logicalType": "decimal", "precision": t.precision, "scale": t.scale}
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return "bytes"
    if pa.types.is_fixed_size_binary(t) and not pa.types.is_decimal(t):
        return {"type": "fixed", "name": f"{avro_name(field.name)}_fixed", "size": t.byte_width}
    if pa.types.is_date(t):
        return {"type": "int", "logicalType": "date"}
    if pa.types.is_time32(t):
        return {"type": "int", "logicalType": "time-millis"}
    if pa.types.is_time64(t) and t.unit == "us":
        return {"type": "long", "logicalType": "time-micros"}
    if pa.types.is_timestamp(t) and t.unit != "ns":
        return {"type": "long", "logicalType": "timestamp-micros" if t.tz else "local-timestamp-micros"}
    if (pa.types.is_timestamp(t) or pa.types.is_time64(t)) and t.unit == "ns":
        raise TypeMappingError(f"column {field.name!r}: type {field.type} has nanoseconds, which Avro's "
                               "microsecond logical types cannot hold exactly; cast it to microseconds in a view")
    raise TypeMappingError(f"column {field.name!r}: Arrow type {field.type} has no exact Avro equivalent here")


def avro_schema(schema: pa.Schema, name: str, namespace: str | None = None,
                required: Collection[str] = ()) -> dict[str, Any]:
    """The Avro record schema of an Arrow schema, field for field, in column order.

    Args:
        schema: The columns.
        name: The record's name (made a valid Avro name), e.g. ``Value``.
        namespace: Its namespace (each dotted part made a valid name), e.g. from the topic.
        required: Columns written as non-null whatever their Arrow nullability (the key).

    Returns:
        The schema as JSON-ready dicts: nullable columns are ``["null", T]`` with default null.

    Raises:
        TypeMappingError: a column's name is not a valid Avro name, or its type has no exact
            Avro equivalent.
    """
    fields = []
    for field in schema:
        if not _NAME.match(field.name):
            raise TypeMappingError(f"column {field.name!r}: not a valid Avro field name (letters, digits and _, "
                                   "not starting with a digit); rename it in a view")
        t = avro_type(field)
        if t == "null":
            fields.append({"name": field.name, "type": "null", "default": None})
        elif field.nullable and field.name not in required:
            fields.append({"name": field.name, "type": ["null", t], "default": None})
        else:
            fields.append({"name": field.name, "type": t})
    record: dict[str, Any] = {"type": "record", "name": avro_name(name)}
    if namespace:
        record["namespace"] = ".".join(avro_name(part) for part in namespace.split("."))
    record["fields"] = fields
    return record


# ------------------------------------------------------------------ encoding: whole batches at once


_EMPTY = pa.scalar(b"", pa.binary())
_U0, _U7, _U127, _U128 = (pa.scalar(n, pa.uint64()) for n in (0, 7, 0x7F, 0x80))


def _raw_bytes(column: pa.Array, width: int) -> pa.Array:
    """Each value of a fixed-width column (little-endian numbers, as Arrow stores them) as its
    ``width`` raw bytes, in a binary array."""
    fixed = pa.Array.from_buffers(pa.binary(width), len(column), [None, column.buffers()[1]], offset=column.offset)
    return pc.cast(fixed, pa.binary())


def _varints(integers: pa.Array) -> pa.Array:
    """Avro's zig-zag varint of each integer (no NULLs), as a binary array: one pass per 7 bits of
    the widest value, each pass a handful of Arrow kernels over the whole column."""
    x = pc.cast(integers, pa.int64())
    # The sign spread over all 64 bits (-1 or 0): shifted in two steps, as Arrow leaves a signed
    # 64-bit value shifted right by 63 unchanged.
    sign = pc.shift_right(pc.shift_right(x, 32), 31)
    rest = pc.cast(pc.bit_wise_xor(pc.shift_left(x, 1), sign), pa.uint64(), safe=False)
    pieces: list[pa.Array] = []
    active: pa.Array | None = None
    while True:
        after = pc.shift_right(rest, _U7)
        more = pc.not_equal(after, _U0)
        byte = pc.bit_wise_or(pc.bit_wise_and(rest, _U127), pc.if_else(more, _U128, _U0))
        piece = _raw_bytes(pc.cast(byte, pa.uint8()), 1)
        pieces.append(piece if active is None else pc.if_else(active, piece, _EMPTY))
        if not pc.any(more).as_py():
            break
        active, rest = more, after
    return pieces[0] if len(pieces) == 1 else pc.binary_join_element_wise(*pieces, _EMPTY)


def _length_prefixed(data: pa.Array) -> pa.Array:
    """Avro ``string``/``bytes``: the varint length, then the bytes."""
    data = pc.cast(data, pa.binary())
    return pc.binary_join_element_wise(_varints(pc.fill_null(pc.binary_length(data), 0)), data, _EMPTY)


def _decimal_bytes(column: pa.Array) -> pa.Array:
    """Avro ``bytes`` of decimals: the unscaled value in its shortest big-endian two's complement
    (what fastavro and Java's ``BigInteger.toByteArray`` write), length first."""
    big_endian = pc.binary_reverse(_raw_bytes(column, column.type.byte_width))
    # Leading sign bytes go while the byte after them still carries the sign in its top bit.
    shortest = pc.replace_substring_regex(big_endian, r"^\x00+([\x00-\x7f])", r"\1")
    shortest = pc.replace_substring_regex(shortest, r"^\xff+([\x80-\xff])", r"\1")
    return _length_prefixed(shortest)


def _encoded(column: pa.Array, field: pa.Field) -> pa.Array:
    """Each value of a column in Avro's binary encoding (a NULL's slot holds any valid bytes: the
    caller leaves it out of its row)."""
    t = field.type
    if pa.types.is_dictionary(t):
        column = column.dictionary_decode()
        t = column.type
    if _is_uuid(t) or t == _INTERVAL:  # their exact text, as an Avro string
        return _length_prefixed(pc.fill_null(to_text(column), ""))
    if _is_list(t):
        return _array_blocks(column, pa.field(field.name, t.value_type, t.value_field.nullable))
    if isinstance(t, pa.BaseExtensionType):
        column = column.storage
        t = column.type
    if pa.types.is_null(t):
        return pa.nulls(len(column), pa.binary()).fill_null(b"")
    if pa.types.is_boolean(t):
        return _raw_bytes(pc.cast(pc.fill_null(column, False), pa.uint8()), 1)
    if t == pa.uint64():
        return _decimal_bytes(pc.cast(column, _UINT64_DECIMAL))
    if pa.types.is_integer(t):
        return _varints(pc.fill_null(column, 0))
    if pa.types.is_floating(t):
        return _raw_bytes(column, t.byte_width)
    if pa.types.is_decimal(t):
        return _decimal_bytes(column)
    if pa.types.is_fixed_size_binary(t):
        return _raw_bytes(column, t.byte_width)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t) \
            or pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return _length_prefixed(column)
    if pa.types.is_date(t):
        return _varints(pc.fill_null(pc.cast(pc.cast(column, pa.date32()), pa.int32()), 0))
    if pa.types.is_time32(t):
        return _varints(pc.fill_null(pc.cast(pc.cast(column, pa.time32("ms")), pa.int32()), 0))
    if pa.types.is_time64(t) and t.unit == "us":
        return _varints(pc.fill_null(pc.cast(column, pa.int64()), 0))
    if pa.types.is_timestamp(t) and t.unit != "ns":
        return _varints(pc.fill_null(pc.cast(pc.cast(column, pa.timestamp("us", tz=t.tz)), pa.int64()), 0))
    return avro_type(field)  # raises the TypeMappingError


_NULL_BRANCH = pa.scalar(b"\x00", pa.binary())
_VALUE_BRANCH = pa.scalar(b"\x02", pa.binary())


def _array_blocks(column: pa.Array, item: pa.Field) -> pa.Array:
    """Avro ``array``s: for each list, its item count, its items, then the closing count 0 (an
    empty list is the 0 alone), as fastavro writes them."""
    offsets = pc.cast(column.offsets, pa.int64())
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    values = column.values.slice(start, end - start)
    encoded = _encoded(values, item)
    if item.nullable:
        valid = pc.is_valid(values)
        encoded = pc.if_else(valid, pc.binary_join_element_wise(_VALUE_BRANCH, encoded, _EMPTY), _NULL_BRANCH)
    rebased = pc.cast(pc.subtract(offsets, start), pa.int32())
    items = pc.binary_join(pa.ListArray.from_arrays(rebased, pc.cast(encoded, pa.binary())), _EMPTY)
    counts = pc.cast(pc.fill_null(pc.list_value_length(column), 0), pa.int64())
    closing = pc.if_else(pc.greater(counts, 0), pa.scalar(b"\x00", pa.binary()), _EMPTY)
    return pc.binary_join_element_wise(_varints(counts), pc.fill_null(items, b""), closing, _EMPTY)


def encode_bodies(batch: pa.RecordBatch | pa.Table, avro: dict[str, Any], prefix: bytes = b"") -> pa.Array:
    """Every row of a batch in Avro's binary encoding, as a binary array (one value per row).

    Args:
        batch: The rows; their columns are those of ``avro``'s fields, by name.
        avro: The record schema the rows are written with (from ``avro_schema``).
        prefix: Bytes put before each row's body, e.g. the schema registry's wire-format header.

    Returns:
        A ``binary`` array of the rows' encodings.

    Raises:
        TypeMappingError: a column's type has no exact Avro equivalent.
    """
    if isinstance(batch, pa.Table):
        batch = batch.combine_chunks().to_batches()[0] if batch.num_rows else \
            pa.RecordBatch.from_arrays([column.combine_chunks() for column in batch.columns], schema=batch.schema)
    pieces: list[pa.Array | bytes] = [prefix]
    for field in avro["fields"]:
        if field["type"] == "null":
            continue  # Avro writes nothing for a null
        name = field["name"]
        column = batch.column(name)
        encoded = _encoded(column, batch.schema.field(name))
        if not isinstance(field["type"], list):
            if column.null_count:
                raise TypeMappingError(f"column {name!r} holds NULLs, but its Avro field is not nullable")
            pieces.append(encoded)
        elif column.null_count:
            valid = pc.is_valid(column)
            pieces += [pc.if_else(valid, _VALUE_BRANCH, _NULL_BRANCH), pc.if_else(valid, encoded, _EMPTY)]
        else:
            pieces += [_VALUE_BRANCH.as_py(), encoded]
    merged: list[pa.Array | pa.Scalar] = []  # constant pieces side by side joined once, not per row
    for piece in pieces:
        if isinstance(piece, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += piece
        else:
            merged.append(piece)
    if len(merged) == 1:
        return pa.array([merged[0]] * batch.num_rows, pa.binary())
    arguments = [pa.scalar(p, pa.binary()) if isinstance(p, bytes) else p for p in merged]
    return pc.binary_join_element_wise(*arguments, _EMPTY)


# ------------------------------------------------------------------ decoding: back to Arrow


def _decoded(values: list[Any], t: pa.DataType) -> pa.Array:
    """A column of values as fastavro reads them, in its exact Arrow type."""
    if _is_uuid(t) or t == _INTERVAL:
        return from_text(pa.array([None if v is None else str(v) for v in values], pa.string()), t)
    if _is_list(t):
        offsets: list[int] = [0]
        flat: list[Any] = []
        for value in values:
            flat.extend(value or [])
            offsets.append(len(flat))
        mask = pa.array([v is None for v in values], pa.bool_())
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), _decoded(flat, t.value_type),
                                        mask=mask).cast(t)
    storage = t.storage_type if isinstance(t, pa.BaseExtensionType) else t
    if storage == pa.uint64():
        values = [None if v is None else int(v) for v in values]
    elif pa.types.is_time32(storage) and storage.unit == "s":
        values = [None if v is None else dt.time(v.hour, v.minute, v.second) for v in values]
    if isinstance(t, pa.BaseExtensionType):
        return pa.ExtensionArray.from_storage(t, pa.array(values, storage))
    if pa.types.is_dictionary(t):
        return pc.cast(pa.array(values, t.value_type), t)
    return pa.array(values, t)


def records_to_arrow(records: Iterable[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows decoded by fastavro (decimals as ``Decimal``, timestamps as ``datetime``...) as a table
    of the exact Arrow schema they were encoded from.

    Args:
        records: The decoded rows.
        schema: The Arrow schema (the one ``avro_schema`` was made from).

    Returns:
        The rows as a table of ``schema``.
    """
    rows = records if isinstance(records, list) else list(records)
    return pa.table([_decoded([row.get(f.name) for row in rows], f.type) for f in schema], schema=schema)



def _long(value: int) -> bytes:
    """One Avro ``long`` (zig-zag varint)."""
    value = (value << 1) ^ (value >> 63)
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SYNC = b"airflow-mesh\x00\x00\x00\x01"


def _container(avro: dict[str, Any], bodies: Sequence[bytes], offset: int) -> bytes:
    """An Avro object container file of one block holding the bodies (each past ``offset`` bytes)."""
    meta = {"avro.schema": json.dumps(avro).encode(), "avro.codec": b"null"}
    header = b"Obj\x01" + _long(len(meta)) + b"".join(
        _long(len(k)) + k.encode() + _long(len(v)) + v for k, v in meta.items()) + _long(0) + _SYNC
    data = b"".join(memoryview(body)[offset:] for body in bodies)
    return header + _long(len(bodies)) + _long(len(data)) + data + _SYNC


def _polars_reads(avro: dict[str, Any]) -> bool:
    """Whether polars' Avro reader reads every field (it has no null type and no decimal wider
    than 38 digits; arrays are left to fastavro but for arrays of plain strings and numbers)."""
    for field in avro["fields"]:
        for t in field["type"] if isinstance(field["type"], list) else [field["type"]]:
            if t == "null" and not isinstance(field["type"], list):
                return False
            if isinstance(t, dict) and t.get("logicalType") == "decimal" and t["precision"] > 38:
                return False
            if isinstance(t, dict) and t.get("type") == "array":
                items = t["items"] if isinstance(t["items"], list) else [t["items"]]
                if not all(i in ("null", "string", "int", "long", "float", "double", "boolean") for i in items):
                    return False
    return True


def conformed(column: pa.ChunkedArray, t: pa.DataType) -> pa.ChunkedArray:
    """A column as polars read it (Avro or JSON), in the Arrow type it was written from (an
    extension type, e.g. JSON, rebuilt around its storage; a uuid or interval from its text)."""
    return from_storage(column, t)


def decode_bodies(bodies: Sequence[bytes], avro: dict[str, Any], schema: pa.Schema, offset: int = 0,
                  reader: dict[str, Any] | None = None) -> pa.Table:
    """Avro bodies, all written with one schema, as a table of the Arrow schema they came from.

    Args:
        bodies: The encoded rows, e.g. Kafka message values.
        avro: The schema they were written with.
        schema: The Arrow schema to return (the one ``avro_schema`` made ``reader`` or ``avro`` from).
        offset: Bytes to skip at the start of each body (5 for the registry's wire format).
        reader: A different schema to read them as (Avro schema resolution, by fastavro).

    Returns:
        The rows, in order, as a table of ``schema``.
    """
    if not bodies:
        return empty_table(schema)
    if reader is None and _polars_reads(avro):
        import polars as pl

        frame = pl.read_avro(io.BytesIO(_container(avro, bodies, offset)))
        table = frame.to_arrow()
        return pa.table([conformed(table.column(f.name), f.type) for f in schema], schema=schema)
    import fastavro

    writer = fastavro.parse_schema(avro)
    resolved = fastavro.parse_schema(reader) if reader is not None else None
    buffer, read = io.BytesIO(), fastavro.schemaless_reader
    records: list[Any] = []
    for body in bodies:
        buffer.seek(0)
        buffer.write(body)
        buffer.truncate()
        buffer.seek(offset)
        records.append(read(buffer, writer, resolved))
    return records_to_arrow(records, schema)
