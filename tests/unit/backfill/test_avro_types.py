"""Arrow -> Avro for the Kafka target: the exact type mapping, the vectorized encoder against fastavro
(byte for byte), and round trips back to the same Arrow values; also the JSON lines codec."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
import re

import fastavro
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_mesh.backfill.avro_types import (
    avro_name,
    avro_schema,
    avro_type,
    decode_bodies,
    encode_bodies,
    records_to_arrow,
)
from airflow_mesh.backfill.errors import TypeMappingError
from airflow_mesh.backfill.kafka_target import json_keys, json_lines, json_lines_to_arrow

UTC = dt.timezone.utc


@pytest.mark.parametrize(("arrow", "avro"), [
    (pa.bool_(), "boolean"),
    (pa.int8(), "int"), (pa.int16(), "int"), (pa.int32(), "int"), (pa.uint8(), "int"), (pa.uint16(), "int"),
    (pa.int64(), "long"), (pa.uint32(), "long"),
    (pa.uint64(), {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 0}),
    (pa.float32(), "float"), (pa.float64(), "double"),
    (pa.decimal128(12, 2), {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}),
    (pa.decimal256(60, 10), {"type": "bytes", "logicalType": "decimal", "precision": 60, "scale": 10}),
    (pa.string(), "string"), (pa.large_string(), "string"), (pa.json_(), "string"),
    (pa.dictionary(pa.int32(), pa.string()), "string"),
    (pa.binary(), "bytes"), (pa.large_binary(), "bytes"),
    (pa.binary(16), {"type": "fixed", "name": "c_fixed", "size": 16}),
    (pa.date32(), {"type": "int", "logicalType": "date"}), (pa.date64(), {"type": "int", "logicalType": "date"}),
    (pa.time32("ms"), {"type": "int", "logicalType": "time-millis"}),
    (pa.time64("us"), {"type": "long", "logicalType": "time-micros"}),
    (pa.timestamp("us", tz="UTC"), {"type": "long", "logicalType": "timestamp-micros"}),
    (pa.timestamp("ms", tz="Europe/Paris"), {"type": "long", "logicalType": "timestamp-micros"}),
    (pa.timestamp("us"), {"type": "long", "logicalType": "local-timestamp-micros"}),
    (pa.uuid(), {"type": "string", "logicalType": "uuid"}),
    (pa.month_day_nano_interval(), "string"),
    (pa.list_(pa.int32()), {"type": "array", "items": ["null", "int"]}),
    (pa.list_(pa.field("item", pa.string(), nullable=False)), {"type": "array", "items": "string"}),
])
def test_each_arrow_type_maps_exactly(arrow, avro):
    assert avro_type(pa.field("c", arrow)) == avro


@pytest.mark.parametrize(("arrow", "why"), [
    (pa.timestamp("ns", tz="UTC"), "nanoseconds"),
    (pa.time64("ns"), "nanoseconds"),
    (pa.duration("us"), "no exact Avro equivalent"),
    (pa.list_(pa.duration("us")), "no exact Avro equivalent"),
    (pa.struct([("a", pa.int32())]), "no exact Avro equivalent"),
    (pa.float16(), "no exact Avro equivalent"),
    (pa.decimal128(5, -2), "scale outside"),
])
def test_a_type_without_an_exact_equivalent_is_an_error_naming_the_column(arrow, why):
    with pytest.raises(TypeMappingError, match=rf"column 'weird': .*{re.escape(str(arrow))}.*{why}"):
        avro_schema(pa.schema([pa.field("id", pa.int64()), pa.field("weird", arrow)]), "Value")


def test_a_column_name_avro_cannot_spell_is_an_error():
    with pytest.raises(TypeMappingError, match="column 'order-id': not a valid Avro field name"):
        avro_schema(pa.schema([pa.field("order-id", pa.int64())]), "Value")


def test_orders_record_schema():
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("status", pa.string()),
                        pa.field("amount", pa.decimal128(12, 2)), pa.field("created_at", pa.timestamp("us", tz="UTC")),
                        pa.field("day", pa.date32(), nullable=False)])
    assert avro_schema(schema, "Value", "backfill.orders-2026", required=("id",)) == {
        "type": "record", "name": "Value", "namespace": "backfill.orders_2026",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "status", "type": ["null", "string"], "default": None},
            {"name": "amount", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 12,
                                                 "scale": 2}], "default": None},
            {"name": "created_at", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}],
             "default": None},
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        ]}
    fastavro.parse_schema(avro_schema(schema, "Value", "backfill.orders-2026"))  # a valid schema


def test_avro_names():
    names = ("orders", "orders-v2", "2024", "a.b", "")
    assert [avro_name(n) for n in names] == ["orders", "orders_v2", "_2024", "a_b", "_"]


@pytest.mark.parametrize(("value", "encoded"), [
    ("0", "00"), ("1.27", "7f"), ("1.28", "0080"), ("-1.28", "80"), ("-1.29", "ff7f"), ("-0.01", "ff"),
    ("99999999.99", "02540be3ff"), ("-99999999.99", "fdabf41c01"),
])
def test_decimals_are_written_in_their_shortest_twos_complement(value, encoded):
    table = pa.table({"d": pa.array([decimal.Decimal(value)], pa.decimal128(10, 2))})
    body = encode_bodies(table, avro_schema(table.schema, "V", required=("d",)))[0].as_py()
    assert body[0] == 2 * len(bytes.fromhex(encoded)) and body[1:].hex() == encoded


def test_a_null_in_a_required_field_is_an_error():
    table = pa.table({"id": pa.array([1, None], pa.int64())})
    with pytest.raises(TypeMappingError, match="column 'id' holds NULLs"):
        encode_bodies(table, avro_schema(table.schema, "V", required=("id",)))


# ------------------------------------------------------------------ round trips, property-based

def _datetimes(unit: str, tz: bool) -> st.SearchStrategy:
    values = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59),
                          timezones=st.just(UTC) if tz else st.none())
    if unit == "ms":
        return values.map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
    if unit == "s":
        return values.map(lambda d: d.replace(microsecond=0))
    return values


def _decimal_type(draw) -> tuple[pa.DataType, st.SearchStrategy]:
    precision = draw(st.integers(1, 76))
    scale = draw(st.integers(0, min(precision, 12)))
    # From the unscaled integer, as text (exact whatever the decimal context's precision).
    values = st.integers(-(10**precision - 1), 10**precision - 1).map(lambda n: decimal.Decimal(f"{n}E-{scale}"))
    return (pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)), values


_COLUMN_KINDS = {
    "int8": (pa.int8(), st.integers(-2**7, 2**7 - 1)),
    "int16": (pa.int16(), st.integers(-2**15, 2**15 - 1)),
    "int32": (pa.int32(), st.integers(-2**31, 2**31 - 1)),
    "int64": (pa.int64(), st.integers(-2**63, 2**63 - 1)),
    "uint8": (pa.uint8(), st.integers(0, 2**8 - 1)),
    "uint32": (pa.uint32(), st.integers(0, 2**32 - 1)),
    "uint64": (pa.uint64(), st.integers(0, 2**64 - 1)),
    "bool": (pa.bool_(), st.booleans()),
    "float32": (pa.float32(), st.floats(width=32, allow_nan=False)),
    "float64": (pa.float64(), st.floats(allow_nan=False)),
    "string": (pa.string(), st.text(max_size=40)),
    "large_string": (pa.large_string(), st.text(max_size=10)),
    "json": (pa.json_(), st.sampled_from(['{"a": 1}', "[]", "null", '"x"'])),
    "binary": (pa.binary(), st.binary(max_size=40)),
    "fixed": (pa.binary(3), st.binary(min_size=3, max_size=3)),
    "date32": (pa.date32(), st.dates()),
    "date64": (pa.date64(), st.dates()),
    "time32": (pa.time32("ms"), st.times().map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))),
    "time64": (pa.time64("us"), st.times()),
    "timestamptz": (pa.timestamp("us", tz="UTC"), _datetimes("us", True)),
    "timestamptz_ms": (pa.timestamp("ms", tz="UTC"), _datetimes("ms", True)),
    "timestamp": (pa.timestamp("us"), _datetimes("us", False)),
    "timestamp_s": (pa.timestamp("s"), _datetimes("s", False)),
}


@st.composite
def arrow_tables(draw, kinds: list[str] | None = None) -> pa.Table:
    """A table of 0-12 rows with an int64 key and 1-6 columns of random types, NULLs where nullable."""
    rows = draw(st.integers(0, 12))
    fields = [pa.field("id", pa.int64(), nullable=False)]
    columns = [pa.array(range(rows), pa.int64())]
    for i in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(kinds or [*_COLUMN_KINDS, "decimal"]))
        t, values = _decimal_type(draw) if kind == "decimal" else _COLUMN_KINDS[kind]
        nullable = draw(st.booleans())
        items = draw(st.lists(st.none() | values if nullable else values, min_size=rows, max_size=rows))
        if isinstance(t, pa.BaseExtensionType):
            column = pa.ExtensionArray.from_storage(t, pa.array(items, t.storage_type))
        elif pa.types.is_decimal(t):  # from text: pyarrow infers a precision from the first Decimal
            column = pa.array([None if v is None else str(v) for v in items], pa.string()).cast(t)
        else:
            column = pa.array(items, t)
        fields.append(pa.field(f"c{i}_{kind}", t, nullable=nullable))
        columns.append(column)
    return pa.table(columns, schema=pa.schema(fields))


def _is_min_of_bytes(unscaled: int) -> bool:
    """Whether an unscaled decimal is -2^(8k-1), which fastavro encodes a byte longer than needed."""
    return unscaled < 0 and (-unscaled) & (-unscaled - 1) == 0 and (-unscaled).bit_length() % 8 == 0


def test_decimal_minimum_of_a_byte_width_is_encoded_shortest():
    table = pa.table({"id": pa.array([1], pa.int64()), "d": pa.array(["-1.28"], pa.string()).cast(pa.decimal128(3, 2))})
    schema = avro_schema(table.schema, "Value", "mesh.test", required=("id", "d"))
    body = encode_bodies(table, schema).to_pylist()[0]
    assert body == b"\x02" + b"\x02\x80"  # id 1 (zigzag 2), then 1 byte: 0x80 = -128 (BigInteger.toByteArray)
    record = fastavro.schemaless_reader(io.BytesIO(body), fastavro.parse_schema(schema), None)
    assert record["d"] == decimal.Decimal("-1.28")


def _fastavro_value(value, t: pa.DataType):
    """What fastavro's writer takes for a value (a uint64 goes as its decimal(20, 0))."""
    return decimal.Decimal(value) if t == pa.uint64() and value is not None else value


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(table=arrow_tables())
def test_arrow_to_avro_and_back_is_exact(table):
    schema = avro_schema(table.schema, "Value", "mesh.test", required=("id",))
    parsed = fastavro.parse_schema(schema)
    bodies = encode_bodies(table, schema, prefix=b"\0\0\0\0\x07").to_pylist()
    assert len(bodies) == table.num_rows
    # Byte for byte what fastavro writes for the same rows.
    expected = []
    for row in table.to_pylist():
        out = io.BytesIO(b"\0\0\0\0\x07")
        out.seek(5)
        fastavro.schemaless_writer(out, parsed, {f.name: _fastavro_value(row[f.name], f.type) for f in table.schema})
        expected.append(out.getvalue())
    # Byte for byte, except that for -2^(8k-1) (e.g. -128) a decimal takes its shortest two's
    # complement (0x80, as Java's BigInteger.toByteArray writes it) where fastavro pads a byte
    # (0xff80): both decode to the same value.
    decode = [fastavro.schemaless_reader(io.BytesIO(body[5:]), parsed, None) for body in expected]
    assert [fastavro.schemaless_reader(io.BytesIO(body[5:]), parsed, None) for body in bodies] == decode
    padded = any(pa.types.is_decimal(f.type) and any(
        v is not None and v.as_tuple().exponent <= 0 and _is_min_of_bytes(int(v.scaleb(f.type.scale)))
        for v in table[f.name].to_pylist()) for f in table.schema)
    if not padded:
        assert bodies == expected
    # fastavro reads them back into the same Arrow values...
    records = [fastavro.schemaless_reader(io.BytesIO(body[5:]), parsed, None) for body in bodies]
    assert records_to_arrow(records, table.schema).equals(table)
    # ...and so does the fast path (polars' reader where it can), and the schema-resolving one.
    assert decode_bodies(bodies, schema, table.schema, offset=5).equals(table)
    assert decode_bodies(bodies, schema, table.schema, offset=5, reader=schema).equals(table)


def test_nan_and_infinities_round_trip_in_avro():
    table = pa.table({"f": pa.array([float("nan"), float("inf"), -float("inf"), None]),
                      "g": pa.array([float("nan"), 1.5, None, -0.0], pa.float32())})
    schema = avro_schema(table.schema, "V")
    back = decode_bodies(encode_bodies(table, schema).to_pylist(), schema, table.schema)
    assert [str(v) for v in back.column("f").to_pylist()] == ["nan", "inf", "-inf", "None"]
    assert [str(v) for v in back.column("g").to_pylist()] == ["nan", "1.5", "None", "-0.0"]


def test_an_evolved_writer_schema_is_resolved_to_the_reader():
    old = pa.table({"id": pa.array([1, 2], pa.int32()), "note": pa.array(["a", None])})
    new_schema = pa.schema([pa.field("id", pa.int64()), pa.field("note", pa.string()),
                            pa.field("added", pa.decimal128(5, 1))])
    writer = avro_schema(old.schema, "Value")
    bodies = encode_bodies(old, writer).to_pylist()
    back = decode_bodies(bodies, writer, new_schema, reader=avro_schema(new_schema, "Value"))
    assert back.to_pylist() == [{"id": 1, "note": "a", "added": None}, {"id": 2, "note": None, "added": None}]


# ------------------------------------------------------------------ the Kafka target's JSON lines

_JSON_KINDS = [k for k in _COLUMN_KINDS if k not in ("float32", "float64")] + ["decimal"]


@settings(deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(table=arrow_tables(_JSON_KINDS))
def test_json_lines_round_trip_exactly(table):
    lines = json_lines(table)
    assert len(lines) == table.num_rows
    assert [json.loads(line)["id"] for line in lines] == table.column("id").to_pylist()
    assert json_lines_to_arrow(lines, table.schema).equals(table)


@settings(deadline=None, max_examples=50)
@given(values=st.lists(st.none() | st.floats(allow_nan=False, allow_infinity=False), max_size=10),
       singles=st.lists(st.none() | st.floats(width=32, allow_nan=False, allow_infinity=False), max_size=10))
def test_json_floats_round_trip_exactly(values, singles):
    rows = max(len(values), len(singles))
    table = pa.table({"f": pa.array(values + [None] * (rows - len(values)), pa.float64()),
                      "g": pa.array(singles + [None] * (rows - len(singles)), pa.float32())})
    assert json_lines_to_arrow(json_lines(table), table.schema).equals(table)


def test_json_lines_write_what_earlier_versions_wrote():
    """ISO timestamps as ``isoformat`` writes them, decimals' exact text, base64 binaries; keys as
    ``json.dumps`` writes them (the bytes a compacted topic dedupes on)."""
    table = pa.table({
        "id": pa.array([7, 8], pa.int64()),
        "amount": pa.array([decimal.Decimal("12.50"), None], pa.decimal128(12, 2)),
        "at": pa.array([dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 1, 0, 0, 1, 5, tzinfo=UTC)],
                       pa.timestamp("us", tz="UTC")),
        "local": pa.array([dt.datetime(2026, 1, 1), None], pa.timestamp("us")),
        "day": pa.array([dt.date(2026, 1, 2), None]),
        "raw": pa.array([b"\x00\xff", None]),
        "note": pa.array(['nöte "q"', None]),
    })
    assert [json.loads(line) for line in json_lines(table)] == [
        {"id": 7, "amount": "12.50", "at": "2026-01-01T00:00:00+00:00", "local": "2026-01-01T00:00:00",
         "day": "2026-01-02", "raw": "AP8=", "note": 'nöte "q"'},
        {"id": 8, "amount": None, "at": "2026-01-01T00:00:01.000005+00:00", "local": None, "day": None,
         "raw": None, "note": None}]
    assert json_keys(table, "id") == [json.dumps({"id": 7}).encode(), json.dumps({"id": 8}).encode()]
    # Lines as json.dumps wrote them (ASCII escapes, spaces) read back the same.
    legacy = [json.dumps(json.loads(line)).encode() for line in json_lines(table)]
    assert json_lines_to_arrow(legacy, table.schema).equals(table)


def test_json_cannot_hold_nan():
    with pytest.raises(TypeMappingError, match=r"column 'f' holds NaN or an infinity.*value_format avro"):
        json_lines(pa.table({"f": pa.array([1.0, float("nan")])}))
