"""Every column type a data engineer meets, copied exactly into every target.

One PostgreSQL table with every type of PostgreSQL's data-type chapter that has an exact target
equivalent, and one MariaDB table with MariaDB's, each with a row of typical values, a row of
NULLs, and rows of extremes (years 1 and 9999, each integer's and decimal's limits, the largest and
smallest floats, NaN and infinities, empty arrays, arrays with NULL items, 100 kB text and bytes,
4-byte unicode, empty strings), copied into Iceberg, PostgreSQL, Elasticsearch, Kafka JSON and
Kafka Avro (the stack's schema registry).

Each copy is compared value by value by readers that are not the tool's own: psycopg and PyMySQL
read the sources as Python values; pyiceberg's scan, psycopg, the Elasticsearch client's
``_source``, and a Kafka consumer with json / fastavro (schemas from the registry) read the
targets. ``normalized`` is the documented normalization per target: a target's text form of a
value (ISO 8601 dates and times, decimals' text, base64 bytes, a uuid's text) read as the Python
value; floats compared bit for bit. Values a target cannot hold (NaN in JSON) are refused before
anything is written, and the override (``exclude``) then copies the rest.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import io
import ipaddress
import json
import math
import os
import re
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import requests

from airflow_mesh.backfill import engine
from airflow_mesh.backfill.checkpoint import CheckpointStore
from airflow_mesh.backfill.endpoints import ConnectionFields, make_source, make_target
from airflow_mesh.backfill.errors import TargetWriteError, TypeMappingError, UnrepresentableValueError
from airflow_mesh.backfill.plan import BackfillRequest

ROOT = Path(__file__).resolve().parents[2]
UTC = dt.timezone.utc
TARGETS = ["iceberg", "postgres", "elasticsearch", "kafka_json", "kafka_avro"]
JSON_TARGETS = ("elasticsearch", "kafka_json")  # JSON has no NaN or infinity


def conn_fields(conn_id: str) -> ConnectionFields:
    c = json.loads(os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"])
    return ConnectionFields(c["conn_type"], c.get("host"), c.get("port"), c.get("login"), c.get("password"),
                            c.get("schema"), c.get("extra") or {})


def registry_url() -> str:
    c = conn_fields("schema_registry_default")
    return f"{c.schema or 'http'}://{c.host}:{c.port}{c.extra.get('api_path', '')}"


# ------------------------------------------------------------------------------- normalization

def normalized(kind: str, value: Any) -> Any:
    """A value as every reader's form of it compares: the target's text forms read as Python values
    (a decimal's text, ISO 8601, base64, a uuid's text), floats as their bits (NaN as "nan")."""
    if value is None:
        return None
    if kind.startswith("list:"):
        assert isinstance(value, list), value
        return [normalized(kind[5:], v) for v in value]
    if kind == "int":
        assert not isinstance(value, (bool, float)), value
        number = int(value)  # a uint64 is text in Elasticsearch, a decimal(20,0) in Iceberg and Avro
        assert str(number) == str(value).split(".")[0] or number == value, value
        return number
    if kind == "bool":
        assert isinstance(value, bool), value
        return value
    if kind in ("float64", "float32"):
        assert isinstance(value, (float, int)) and not isinstance(value, bool), value
        number = float(value)
        return "nan" if math.isnan(number) else struct.pack(">d" if kind == "float64" else ">f", number)
    if kind == "decimal":
        assert not isinstance(value, float), value  # never through a binary float
        return decimal.Decimal(str(value))
    if kind == "text":
        assert isinstance(value, str), value
        return value
    if kind == "ip":  # psycopg reads inet as ipaddress objects; their str is PostgreSQL's text of them
        assert isinstance(value, (str, ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Interface,
                                  ipaddress.IPv6Interface)), value
        return str(value)
    if kind == "bytes":
        return value if isinstance(value, bytes) else base64.b64decode(value, validate=True)
    if kind == "date":
        return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)
    if kind == "time":
        if isinstance(value, dt.timedelta):  # PyMySQL reads TIME as a duration
            return (dt.datetime.min + value).time()  # noqa: DTZ901 - only its time of day is used
        return value if isinstance(value, dt.time) else dt.time.fromisoformat(value)
    if kind == "timestamp":
        value = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
        assert value.tzinfo is None, value
        return value
    if kind == "timestamptz":
        value = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
        assert value.tzinfo is not None, value
        return value.astimezone(UTC)
    if kind == "uuid":
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    raise AssertionError(f"unknown kind {kind}")


def rows_by_id(rows: list[dict[str, Any]], kinds: dict[str, str]) -> dict[int, dict[str, Any]]:
    return {int(row["id"]): {name: normalized(kind, row.get(name)) for name, kind in kinds.items()} for row in rows}


def assert_same(expected: dict[int, dict[str, Any]], actual: dict[int, dict[str, Any]]) -> None:
    assert sorted(actual) == sorted(expected)
    for key, row in expected.items():
        differences = {name: (value, actual[key][name]) for name, value in row.items() if actual[key][name] != value}
        assert not differences, f"row {key}: {differences}"


# ----------------------------------------------------------------------------- target readers

def read_target(kind: str, target: Any, name: str, columns: list[str], reader_sql: dict[str, str]) -> list[dict]:
    """Every row of a target, read without the tool: pyiceberg, psycopg, _source, a consumer."""
    if kind == "iceberg":
        return target.catalog.load_table(name).scan().to_arrow().to_pylist()
    if kind == "postgres":
        select = ", ".join(['"id"'] + [reader_sql.get(c, "{}").format(f'"{c}"') + f' AS "{c}"' for c in columns])
        with postgres_reader() as conn:
            cur = conn.execute(f"SELECT {select} FROM {name}")
            names = [d.name for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    if kind == "elasticsearch":
        target.client.indices.refresh(index=name)
        return [hit["_source"] for hit in target.client.search(index=name, size=100)["hits"]["hits"]]
    return read_topic(name, avro=kind == "kafka_avro")


def read_topic(topic: str, avro: bool) -> list[dict]:
    import fastavro
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
    from confluent_kafka.schema_registry import SchemaRegistryClient

    consumer = Consumer({"bootstrap.servers": conn_fields("kafka_default").extra["bootstrap.servers"],
                         "group.id": f"types-{uuid.uuid4().hex}", "isolation.level": "read_committed",
                         "enable.partition.eof": True, "enable.auto.commit": False})
    registry = SchemaRegistryClient({"url": registry_url()}) if avro else None
    latest: dict[bytes, bytes] = {}
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        pending = set(partitions)
        while pending:
            for message in consumer.consume(100, timeout=10):
                if message.error() is not None:
                    assert message.error().code() == KafkaError._PARTITION_EOF, message.error()
                    pending.discard(message.partition())
                else:
                    latest[message.key()] = message.value()
    finally:
        consumer.close()
    if not avro:
        return [json.loads(value) for value in latest.values()]
    rows = []
    for value in latest.values():
        assert value[0] == 0  # Confluent's wire format: magic byte, schema id, Avro body
        writer = fastavro.parse_schema(json.loads(registry.get_schema(int.from_bytes(value[1:5], "big")).schema_str))
        rows.append(fastavro.schemaless_reader(io.BytesIO(value[5:]), writer, None))
    return rows


# ------------------------------------------------------------------------------------- fixtures

def postgres_reader() -> psycopg.Connection:
    c = conn_fields("postgres_mesh")
    conn = psycopg.connect(host=c.host, port=c.port, user=c.login, password=c.password, dbname=c.schema,
                           autocommit=True)
    conn.execute("SET intervalstyle = 'iso_8601'")  # PostgreSQL's own ISO 8601 text of an interval
    conn.execute("SET TIME ZONE 'UTC'")
    return conn


@pytest.fixture
def target_factory(tmp_path, kafka_admin):
    """``make(kind)`` -> (target, name); every index, table and topic (and subject) made is dropped after."""
    made: list[tuple[str, str, Any]] = []

    def make(kind: str, stem: str) -> tuple[Any, str]:
        name = {"iceberg": f"mesh.{stem}", "postgres": f"public.{stem}_copy", "elasticsearch": stem,
                "kafka_json": f"backfill.types.{stem}", "kafka_avro": f"backfill.types.{stem}"}[kind]
        fields = {"iceberg": ConnectionFields("iceberg", extra={"catalog": {
            "type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/warehouse"}}),
            "postgres": conn_fields("postgres_mesh"), "elasticsearch": conn_fields("elasticsearch_default"),
            "kafka_json": conn_fields("kafka_default"), "kafka_avro": conn_fields("kafka_default")}[kind]
        registry = conn_fields("schema_registry_default") if kind == "kafka_avro" else None
        target = make_target(fields, name, schema_registry=registry)
        made.append((kind, name, target))
        return target, name

    yield make
    for kind, name, target in made:
        if kind == "postgres":
            with postgres_reader() as conn:
                conn.execute(f"DROP TABLE IF EXISTS {name}")
        elif kind == "elasticsearch":
            target.client.indices.delete(index=name, ignore_unavailable=True)
        elif kind.startswith("kafka"):
            if name in kafka_admin.list_topics(timeout=30).topics:
                kafka_admin.delete_topics([name])[name].result(timeout=30)
            for subject in (f"{name}-key", f"{name}-value"):
                for params in ({}, {"permanent": "true"}):
                    requests.delete(f"{registry_url()}/subjects/{subject}", params=params, timeout=30)


def exists(kind: str, target: Any, name: str, kafka_admin) -> bool:
    """Whether a target was created (a refused run must not have)."""
    if kind == "iceberg":
        return target.catalog.table_exists(name)
    if kind == "postgres":
        with postgres_reader() as conn:
            return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]
    if kind == "elasticsearch":
        return bool(target.client.indices.exists(index=name))
    return name in kafka_admin.list_topics(timeout=30).topics


# --------------------------------------------------------------------------------- PostgreSQL

# (column, type, independent reader's select, kind). {p}: the test's own type names.
PG_COLUMNS = [
    ("c_smallint", "smallint", None, "int"),
    ("c_integer", "integer", None, "int"),
    ("c_bigint", "bigint", None, "int"),
    ("c_numeric", "numeric(38,10)", None, "decimal"),
    ("c_numeric_wide", "numeric(60,20)", None, "decimal"),
    ("c_numeric_any", "numeric", None, "decimal"),  # refused until cast as the error says
    ("c_real", "real", None, "float32"),
    ("c_double", "double precision", None, "float64"),
    ("c_special", "double precision", None, "float64"),  # NaN and infinities
    ("c_money", "money", "{}::numeric", "decimal"),
    ("c_text", "text", None, "text"),
    ("c_varchar", "varchar(64)", None, "text"),
    ("c_char", "char(5)", None, "text"),
    ("c_bytea", "bytea", None, "bytes"),
    ("c_date", "date", None, "date"),
    ("c_time", "time", None, "time"),
    ("c_timetz", "timetz", "{}::text", "text"),
    ("c_timestamp", "timestamp", None, "timestamp"),
    ("c_timestamptz", "timestamptz", None, "timestamptz"),
    ("c_interval", "interval", "{}::text", "text"),  # the reader's session writes ISO 8601
    ("c_boolean", "boolean", None, "bool"),
    ("c_enum", "{p}_mood", "{}::text", "text"),
    ("c_point", "point", "{}::text", "text"),
    ("c_polygon", "polygon", "{}::text", "text"),
    ("c_inet", "inet", None, "ip"),
    ("c_cidr", "cidr", "{}::text", "text"),
    ("c_macaddr", "macaddr", "{}::text", "text"),
    ("c_bit", "bit(4)", "{}::text", "text"),
    ("c_varbit", "varbit(16)", "{}::text", "text"),
    ("c_tsvector", "tsvector", "{}::text", "text"),
    ("c_uuid", "uuid", None, "uuid"),
    ("c_xml", "xml", "{}::text", "text"),
    ("c_json", "json", "{}::text", "text"),
    ("c_jsonb", "jsonb", "{}::text", "text"),
    ("c_range", "int4range", "{}::text", "text"),
    ("c_composite", "{p}_address", "{}::text", "text"),
    ("c_domain", "{p}_positive", None, "decimal"),
    ("c_oid", "oid", None, "int"),
    ("c_lsn", "pg_lsn", "{}::text", "text"),
    ("c_text_array", "text[]", None, "list:text"),
    ("c_int_array", "integer[]", None, "list:int"),
    ("c_numeric_array", "numeric(10,2)[]", None, "list:decimal"),
    ("c_uuid_array", "uuid[]", None, "list:uuid"),
    ("c_timestamptz_array", "timestamptz[]", None, "list:timestamptz"),
    ("c_enum_array", "{p}_mood[]", "{}::text[]", "list:text"),
    ("c_special_array", "float8[]", None, "list:float64"),  # NaN inside
]
PG_FLOAT_SPECIALS = ["c_special", "c_special_array"]
U1, UMAX, U0 = ("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "ffffffff-ffff-ffff-ffff-ffffffffffff",
                "00000000-0000-0000-0000-000000000000")
PG_ROWS = {
    1: {  # typical values
        "c_smallint": "12", "c_integer": "-7", "c_bigint": "1234567890123", "c_numeric": "12345.6789",
        "c_numeric_wide": "1234567890123456789012345678901234567890.12345678901234567890",
        "c_numeric_any": "123.456", "c_real": "0.1", "c_double": "0.1", "c_special": "'Infinity'", "c_money": "12.34",
        "c_text": "'Grüße 😀 — text'", "c_varchar": "'vär😀'", "c_char": "'ab'", "c_bytea": "'\\x00ff10'::bytea",
        "c_date": "'2026-02-03'", "c_time": "'12:34:56.789012'", "c_timetz": "'12:34:56.789+05:30'",
        "c_timestamp": "'2026-02-03 04:05:06.123456'", "c_timestamptz": "'2026-02-03 04:05:06.123456+02'",
        "c_interval": "'1 year 2 mons -3 days 04:05:06.789'", "c_boolean": "true", "c_enum": "'happy'",
        "c_point": "'(1.5,-2.25)'", "c_polygon": "'((0,0),(1,0),(0.5,1))'", "c_inet": "'192.168.0.1'",
        "c_cidr": "'10.0.0.0/8'", "c_macaddr": "'08:00:2b:01:02:03'", "c_bit": "B'1010'", "c_varbit": "B'101'",
        "c_tsvector": "'a fat cat'", "c_uuid": f"'{U1}'", "c_xml": "'<a b=\"1\">x &amp; y</a>'",
        "c_json": "'{\"b\": 1, \"a\": [1, 2.50]}'", "c_jsonb": "'{\"b\": 1, \"a\": [1, 2.50]}'", "c_range": "'[1,10)'",
        "c_composite": "ROW('Main St 1', 7)", "c_domain": "12.5", "c_oid": "4294967295", "c_lsn": "'16/B374D848'",
        "c_text_array": "ARRAY['a', NULL, '']", "c_int_array": "ARRAY[1, NULL, 3]",
        "c_numeric_array": "ARRAY[1.5, NULL, -2.25]", "c_uuid_array": f"ARRAY['{U1}'::uuid, '{U0}'::uuid]",
        "c_timestamptz_array": "ARRAY['2026-01-01 00:00:00+00'::timestamptz]", "c_enum_array": "ARRAY['sad', 'ok']",
        "c_special_array": "ARRAY[1.5]::float8[]",
    },
    2: {},  # NULL in every column
    3: {  # the largest values
        "c_smallint": "32767", "c_integer": "2147483647", "c_bigint": "9223372036854775807",
        "c_numeric": "9999999999999999999999999999.9999999999",
        "c_numeric_wide": "9" * 40 + "." + "9" * 20, "c_numeric_any": "99999999999999999999.000001",
        "c_real": "3.4028235e38", "c_double": "1.7976931348623157e308", "c_special": "'NaN'",
        "c_money": "92233720368547758.07", "c_text": "repeat('x', 102400)", "c_varchar": "repeat('😀', 64)",
        "c_char": "'😀😀😀😀😀'", "c_bytea": "decode(repeat('ff00', 51200), 'hex')", "c_date": "'9999-12-31'",
        "c_time": "'23:59:59.999999'", "c_timetz": "'23:59:59.999999-15:59'",
        "c_timestamp": "'9999-12-31 23:59:59.999999'", "c_timestamptz": "'9999-12-31 23:59:59.999999+00'",
        # Months and days to their limits; the time part to Arrow's (nanoseconds in an int64).
        "c_interval": "'178956970 years 7 mons 2147483647 days 2562047:47:16.854775'", "c_boolean": "true",
        "c_enum": "'ok'", "c_point": "'(1.7976931348623157e308,-1e-300)'", "c_polygon": "'((0,0))'",
        "c_inet": "'2001:db8::ff/64'", "c_cidr": "'2001:db8::/32'", "c_macaddr": "'ff:ff:ff:ff:ff:ff'",
        "c_bit": "B'1111'", "c_varbit": "B'1111111111111111'", "c_tsvector": "'übung:1A'", "c_uuid": f"'{UMAX}'",
        "c_xml": "'<x/>'", "c_json": "'[]'", "c_jsonb": "'{}'", "c_range": "'empty'", "c_composite": "ROW(NULL, NULL)",
        "c_domain": "999999.99", "c_oid": "0", "c_lsn": "'FFFFFFFF/FFFFFFFF'", "c_text_array": "'{}'",
        "c_int_array": "ARRAY[NULL]::int[]", "c_numeric_array": "'{}'", "c_uuid_array": "'{}'",
        "c_timestamptz_array": "ARRAY['9999-12-31 23:59:59.999999+00', NULL]::timestamptz[]", "c_enum_array": "'{}'",
        "c_special_array": "ARRAY['NaN', 'Infinity', '-Infinity']::float8[]",
    },
    4: {  # the smallest values, empty strings
        "c_smallint": "-32768", "c_integer": "-2147483648", "c_bigint": "-9223372036854775808",
        "c_numeric": "-9999999999999999999999999999.9999999999", "c_numeric_wide": "-" + "9" * 40 + "." + "9" * 20,
        "c_numeric_any": "-0.000001", "c_real": "1e-45", "c_double": "-5e-324", "c_special": "'-Infinity'",
        "c_money": "-92233720368547758.08", "c_text": "''", "c_varchar": "''", "c_char": "''", "c_bytea": "''::bytea",
        "c_date": "'0001-01-01'", "c_time": "'00:00:00'", "c_timetz": "'00:00:00+15:59'",
        "c_timestamp": "'0001-01-01 00:00:00'", "c_timestamptz": "'0001-01-01 00:00:00+00'",
        "c_interval": "'-178956970 years -8 mons -2147483648 days -2562047:47:16.854775'", "c_boolean": "false",
        "c_enum": "'sad'", "c_point": "'(0,-0)'", "c_polygon": "'((-1,-1),(1,1))'", "c_inet": "'0.0.0.0/0'",
        "c_cidr": "'0.0.0.0/0'", "c_macaddr": "'00:00:00:00:00:00'", "c_bit": "B'0000'", "c_varbit": "B''",
        "c_tsvector": "''", "c_uuid": f"'{U0}'", "c_xml": "''", "c_json": "'\"\"'", "c_jsonb": "'null'",
        "c_range": "'(,)'", "c_composite": "ROW('', 0)", "c_domain": "0.01", "c_oid": "1", "c_lsn": "'0/0'",
        "c_text_array": "ARRAY['😀']", "c_int_array": "ARRAY[-2147483648, 2147483647]",
        "c_numeric_array": "ARRAY[NULL]::numeric(10,2)[]", "c_uuid_array": "ARRAY[NULL]::uuid[]",
        "c_timestamptz_array": "ARRAY['0001-01-01 00:00:00+00']::timestamptz[]", "c_enum_array": "ARRAY[NULL]",
        "c_special_array": "'{}'",
    },
}


@pytest.fixture(scope="module")
def pg_matrix() -> Iterator[str]:
    """The PostgreSQL type matrix (its own enum, composite and domain types); dropped afterwards."""
    p = f"bf_{uuid.uuid4().hex[:8]}"
    columns = [(name, ddl.format(p=p)) for name, ddl, _, _ in PG_COLUMNS]
    with postgres_reader() as conn:
        conn.execute(f"CREATE TYPE {p}_mood AS ENUM ('sad', 'ok', 'happy')")
        conn.execute(f"CREATE TYPE {p}_address AS (street text, number int)")
        conn.execute(f"CREATE DOMAIN {p}_positive AS numeric(8,2) CHECK (VALUE > 0)")
        conn.execute(f"CREATE TABLE {p} (id bigint PRIMARY KEY, {', '.join(f'{n} {t}' for n, t in columns)})")
        for key, values in PG_ROWS.items():
            literals = []
            for name, ddl in columns:  # each literal cast to its column's type (ARRAY[NULL], ROW(...))
                literal = values.get(name)
                literals.append("NULL" if literal is None else f"CAST({literal} AS {ddl})")
            conn.execute(f"INSERT INTO {p} VALUES ({key}, {', '.join(literals)})")
    yield p
    with postgres_reader() as conn:
        conn.execute(f"DROP TABLE IF EXISTS {p}, {p}_copy")
        conn.execute(f"DROP DOMAIN IF EXISTS {p}_positive")
        conn.execute(f"DROP TYPE IF EXISTS {p}_mood, {p}_address")


def pg_source_rows(table: str, columns: list[str]) -> dict[int, dict[str, Any]]:
    """The source read by psycopg as Python values (text where psycopg would not keep the value:
    PostgreSQL's own output of intervals in ISO 8601, of inet, ranges...)."""
    readers = {name: reader for name, _, reader, _ in PG_COLUMNS if reader}
    kinds = {name: kind for name, _, _, kind in PG_COLUMNS if name in columns}
    select = ", ".join(["id"] + [readers.get(c, "{}").format(c) + f" AS {c}" for c in columns])
    with postgres_reader() as conn:
        cur = conn.execute(f"SELECT {select} FROM {table}")
        names = [d.name for d in cur.description]
        return rows_by_id([dict(zip(names, row, strict=True)) for row in cur.fetchall()], kinds)


@pytest.fixture(scope="module")
def numeric_cast(pg_matrix) -> dict[str, str]:
    """The cast the tool's own error names for the numeric without precision (and the error)."""
    source = make_source(conn_fields("postgres_mesh"))
    with pytest.raises(TypeMappingError) as refused:
        source.describe(f"public.{pg_matrix}")
    problem = next(p for p in refused.value.problems if p.startswith("column 'c_numeric_any'"))
    # Measured: 20 digits before the point (99999999999999999999), 6 after (-0.000001).
    assert "up to 20 digits before the point and 6 after" in problem
    cast = re.search(r"--cast c_numeric_any=(numeric\(\d+,\d+\))", problem)[1]
    return {"c_numeric_any": cast}


@pytest.mark.parametrize("target_kind", TARGETS)
def test_every_postgres_type_into_every_target(pg_matrix, numeric_cast, target_kind, target_factory, tmp_path,
                                               kafka_admin):
    source = make_source(conn_fields("postgres_mesh"))
    target, name = target_factory(target_kind, pg_matrix)
    request = BackfillRequest(table=f"public.{pg_matrix}", range_size=2, parallelism=2, casts=numeric_cast)
    checkpoints = CheckpointStore(tmp_path / "cp.sqlite")
    copied = [c for c, _, _, _ in PG_COLUMNS]
    if target_kind in JSON_TARGETS:
        # NaN and infinities have no JSON: refused before anything is written, naming both columns...
        with pytest.raises(TypeMappingError) as refused:
            engine.run(source, target, request, checkpoints)
        assert [p.split("'")[1] for p in refused.value.problems] == PG_FLOAT_SPECIALS
        assert all("NaN or an infinity" in p and "--exclude" in p for p in refused.value.problems)
        assert not exists(target_kind, target, name, kafka_admin)
        # ...and the override the error names copies everything else.
        request = request.model_copy(update={"exclude": PG_FLOAT_SPECIALS})
        copied = [c for c in copied if c not in PG_FLOAT_SPECIALS]
    summary = engine.run(source, target, request, checkpoints)
    assert summary.verified and summary.rows == len(PG_ROWS)

    kinds = {name: kind for name, _, _, kind in PG_COLUMNS if name in copied}
    readers = {name: reader for name, _, reader, _ in PG_COLUMNS if reader}
    actual = rows_by_id(read_target(target_kind, target, name, copied, readers), kinds)
    assert_same(pg_source_rows(f"public.{pg_matrix}", copied), actual)

    # The tool accepts the target it created: a rerun with new checkpoints, and a verification.
    again = make_target_like(target_kind, target, name)
    assert engine.run(source, again, request, CheckpointStore(tmp_path / "again.sqlite")).verified
    assert engine.verify(source, again, request).rows == len(PG_ROWS)


def make_target_like(kind: str, target: Any, name: str) -> Any:
    """A new target object for the same table, index or topic (as a rerun makes it)."""
    if kind == "iceberg":
        return make_target(ConnectionFields("iceberg", extra={"catalog": dict(target.catalog.properties,
                                                                             type="sql")}), name)
    registry = conn_fields("schema_registry_default") if kind == "kafka_avro" else None
    fields = {"postgres": "postgres_mesh", "elasticsearch": "elasticsearch_default"}.get(kind, "kafka_default")
    return make_target(conn_fields(fields), name, schema_registry=registry)


def test_unmappable_columns_are_one_error_before_anything_is_written(target_factory, kafka_admin):
    table = f"bf_{uuid.uuid4().hex[:8]}"
    with postgres_reader() as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, amount numeric, owner regclass, "
                     "ratios numeric[], ok int)")
        conn.execute(f"INSERT INTO {table} VALUES (1, 12.345, 'pg_class', ARRAY[1.5, 22.125], 1)")
    try:
        source = make_source(conn_fields("postgres_mesh"))
        target, name = target_factory("iceberg", table)
        request = BackfillRequest(table=f"public.{table}", range_size=10)
        with pytest.raises(TypeMappingError) as refused:
            engine.run(source, target, request, CheckpointStore(Path(f"/tmp/{table}.sqlite")))
        problems = refused.value.problems
        assert [p.split("'")[1] for p in problems] == ["amount", "owner", "ratios"]
        assert "--cast amount=numeric(5,3)" in problems[0]
        assert "--cast owner=text" in problems[1]
        assert "--cast ratios=numeric(5,3)[]" in problems[2]
        assert not exists("iceberg", target, name, kafka_admin)
        # The overrides the error names work.
        fixed = request.model_copy(update={"casts": {"amount": "numeric(5,3)", "ratios": "numeric(5,3)[]"},
                                           "exclude": ["owner"]})
        assert engine.run(source, target, fixed, CheckpointStore(Path(f"/tmp/{table}-2.sqlite"))).verified
        copied = target.catalog.load_table(name).scan().to_arrow()
        assert copied.column_names == ["id", "amount", "ratios", "ok"]
        assert copied.to_pylist() == [{"id": 1, "amount": decimal.Decimal("12.345"), "ok": 1,
                                       "ratios": [decimal.Decimal("1.500"), decimal.Decimal("22.125")]}]
    finally:
        with postgres_reader() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


@pytest.mark.parametrize(("ddl", "value", "cast", "message"), [
    ("timestamptz", "'infinity'", None, r"column 'v' \(value 'infinity'\): holds PostgreSQL's infinity"),
    ("date", "'-infinity'", None, r"column 'v' \(value 'infinity'\): holds PostgreSQL's infinity"),
    ("interval", "'2562048 hours'", None, r"column 'v' \(value '2562048:00:00'\): has a time part beyond"),
    ("int[]", "'{{1,2},{3,4}}'", None, r"column 'v' \(value '\{\{1,2\},\{3,4\}\}'\): is a multi-dimensional array"),
    ("int[]", "'[0:1]={1,2}'", None, r"column 'v' \(value '\[0:1\]=\{1,2\}'\): .*does not start at index 1"),
    ("numeric(12,4)", "1.2345", "numeric(12,2)", r"column 'v' \(value '1.2345'\): changes when cast to numeric"),
    ("text", "'abcdef'", "varchar(3)", r"column 'v' \(value 'abcdef'\): changes when cast to varchar\(3\)"),
])
def test_values_no_type_holds_exactly_are_refused_naming_the_column(target_factory, ddl, value, cast, message):
    table = f"bf_{uuid.uuid4().hex[:8]}"
    with postgres_reader() as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v {ddl})")
        conn.execute(f"INSERT INTO {table} VALUES (1, {value})")
    try:
        target, name = target_factory("postgres", table)
        request = BackfillRequest(table=f"public.{table}", casts={"v": cast} if cast else {})
        with pytest.raises(UnrepresentableValueError, match=message):
            engine.run(make_source(conn_fields("postgres_mesh")), target, request,
                       CheckpointStore(Path(f"/tmp/{table}.sqlite")))
        with postgres_reader() as conn:  # the range was not written
            assert conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0] == 0
        # What the error says keeps the value: its text.
        kept = request.model_copy(update={"casts": {"v": "text"}})
        assert engine.run(make_source(conn_fields("postgres_mesh")), make_target_like("postgres", target, name + "2"),
                          kept, CheckpointStore(Path(f"/tmp/{table}-2.sqlite"))).verified
    finally:
        with postgres_reader() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}, {table}_copy, {table}_copy2")


def test_elasticsearch_refusals_are_its_own_words_not_a_raw_bulk_error(target_factory):
    """An index an earlier version created maps text as keyword: a value over Lucene's term limit
    is refused by Elasticsearch, and the error says which document and why."""
    table = f"bf_{uuid.uuid4().hex[:8]}"
    with postgres_reader() as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, body text)")
        conn.execute(f"INSERT INTO {table} SELECT g, CASE WHEN g = 3 THEN repeat('x', 40000) ELSE 'short' END "
                     "FROM generate_series(1, 5) g")
    try:
        target, name = target_factory("elasticsearch", table)
        target.client.indices.create(index=name, mappings={"dynamic": "strict", "properties": {
            "id": {"type": "integer"}, "body": {"type": "keyword"}}})
        with pytest.raises(TargetWriteError) as refused:
            engine.run(make_source(conn_fields("postgres_mesh")), target, BackfillRequest(table=f"public.{table}"),
                       CheckpointStore(Path(f"/tmp/{table}.sqlite")))
        assert refused.value.refused == 1
        doc_id, kind, reason = refused.value.failures[0]
        assert doc_id == "3" and kind == "document_parsing_exception" and "body" in reason
        assert f"Elasticsearch index {name} refused 1 row(s)" in str(refused.value)
        # A new index maps long text as text with a bounded keyword: the same rows go in.
        fresh = make_target_like("elasticsearch", target, name + "-new")
        target_factory("elasticsearch", table + "-new")  # cleaned up afterwards
        assert engine.run(make_source(conn_fields("postgres_mesh")), fresh, BackfillRequest(table=f"public.{table}"),
                          CheckpointStore(Path(f"/tmp/{table}-2.sqlite"))).verified
    finally:
        with postgres_reader() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


# ------------------------------------------------------------------------------------ MariaDB

# (column, type, independent reader's select, kind)
MY_COLUMNS = [
    ("m_tinyint", "tinyint", None, "int"), ("m_tinyint_u", "tinyint unsigned", None, "int"),
    ("m_smallint", "smallint", None, "int"), ("m_smallint_u", "smallint unsigned", None, "int"),
    ("m_mediumint", "mediumint", None, "int"), ("m_mediumint_u", "mediumint unsigned", None, "int"),
    ("m_int", "int", None, "int"), ("m_int_u", "int unsigned", None, "int"),
    ("m_bigint", "bigint", None, "int"), ("m_bigint_u", "bigint unsigned", None, "int"),
    ("m_bool", "boolean", None, "bool"),
    ("m_decimal", "decimal(65,30)", None, "decimal"), ("m_decimal_u", "decimal(10,2) unsigned", None, "decimal"),
    ("m_decimal_scale", "decimal(20,15)", None, "decimal"),
    # The text protocol writes a FLOAT with 6 digits: read it as the double it converts to exactly.
    ("m_float", "float", "CAST({} AS DOUBLE)", "float32"), ("m_double", "double", None, "float64"),
    ("m_bit1", "bit(1)", "{} + 0", "bool"), ("m_bit12", "bit(12)", "{} + 0", "int"),
    ("m_bit64", "bit(64)", "{} + 0", "int"),
    ("m_year", "year", None, "int"),
    ("m_date", "date", None, "date"), ("m_time", "time(6)", None, "time"),
    ("m_datetime", "datetime(6)", None, "timestamp"), ("m_timestamp", "timestamp(6) NULL", None, "timestamptz"),
    ("m_char", "char(10)", None, "text"), ("m_varchar", "varchar(255)", None, "text"),
    ("m_tinytext", "tinytext", None, "text"), ("m_text", "text", None, "text"),
    ("m_mediumtext", "mediumtext", None, "text"), ("m_longtext", "longtext", None, "text"),
    ("m_binary", "binary(4)", None, "bytes"), ("m_varbinary", "varbinary(64)", None, "bytes"),
    ("m_tinyblob", "tinyblob", None, "bytes"), ("m_blob", "blob", None, "bytes"),
    ("m_mediumblob", "mediumblob", None, "bytes"), ("m_longblob", "longblob", None, "bytes"),
    ("m_enum", "enum('new','paid','shipped')", None, "text"), ("m_set", "set('a','b','c')", None, "text"),
    ("m_json", "json", None, "text"),
    ("m_geometry", "geometry", "CAST({} AS BINARY)", "bytes"),  # MariaDB's bytes: SRID, then WKB
    ("m_inet4", "inet4", "CAST({} AS CHAR)", "ip"), ("m_inet6", "inet6", "CAST({} AS CHAR)", "ip"),
    ("m_uuid", "uuid", "CAST({} AS CHAR)", "uuid"),
]
MY_ROWS = {
    1: {"m_tinyint": "-5", "m_tinyint_u": "7", "m_smallint": "-300", "m_smallint_u": "300", "m_mediumint": "-70000",
        "m_mediumint_u": "70000", "m_int": "-7", "m_int_u": "7", "m_bigint": "1234567890123", "m_bigint_u": "12",
        "m_bool": "1", "m_decimal": "12345.678901234567890123456789012345",
        "m_decimal_u": "12.50", "m_decimal_scale": "1.123456789012345", "m_float": "0.1", "m_double": "0.1",
        "m_bit1": "b'1'", "m_bit12": "b'101010101010'", "m_bit64": "b'1'", "m_year": "2026",
        "m_date": "'2026-02-03'", "m_time": "'12:34:56.789012'", "m_datetime": "'2026-02-03 04:05:06.123456'",
        "m_timestamp": "'2026-02-03 04:05:06.123456'", "m_char": "'ab'", "m_varchar": "'vär😀'",
        "m_tinytext": "'tiny'", "m_text": "'Grüße 😀'", "m_mediumtext": "'medium'", "m_longtext": "'long'",
        "m_binary": "x'00010203'", "m_varbinary": "x'ff'", "m_tinyblob": "x'00'", "m_blob": "x'0102'",
        "m_mediumblob": "x'03'", "m_longblob": "x'04'", "m_enum": "'paid'", "m_set": "'a,c'",
        "m_json": "'{\"b\": 1, \"a\": [1, 2.50]}'", "m_geometry": "ST_GeomFromText('POINT(1.5 -2.25)', 4326)",
        "m_inet4": "'192.168.0.1'", "m_inet6": "'2001:db8::1'", "m_uuid": f"'{U1}'"},
    2: {},
    3: {"m_tinyint": "127", "m_tinyint_u": "255", "m_smallint": "32767", "m_smallint_u": "65535",
        "m_mediumint": "8388607", "m_mediumint_u": "16777215", "m_int": "2147483647", "m_int_u": "4294967295",
        "m_bigint": "9223372036854775807", "m_bigint_u": "18446744073709551615", "m_bool": "1",
        "m_decimal": "9" * 35 + "." + "9" * 30, "m_decimal_u": "99999999.99",
        "m_decimal_scale": "99999.999999999999999",
        "m_float": "3.4028234663852886e38", "m_double": "1.7976931348623157e308", "m_bit1": "b'1'",
        "m_bit12": "b'111111111111'", "m_bit64": "b'" + "1" * 64 + "'", "m_year": "2155", "m_date": "'9999-12-31'",
        "m_time": "'23:59:59.999999'", "m_datetime": "'9999-12-31 23:59:59.999999'",
        "m_timestamp": "'2038-01-19 03:14:07.999999'", "m_char": "'😀😀😀😀😀😀😀😀😀😀'",
        "m_varchar": "REPEAT('😀', 255)",
        "m_tinytext": "REPEAT('t', 255)", "m_text": "REPEAT('x', 60000)", "m_mediumtext": "REPEAT('m', 102400)",
        "m_longtext": "REPEAT('l', 102400)", "m_binary": "x'ffffffff'", "m_varbinary": "REPEAT(x'ff', 64)",
        "m_tinyblob": "REPEAT(x'ee', 255)", "m_blob": "REPEAT(x'dd', 60000)", "m_mediumblob": "REPEAT(x'cc', 102400)",
        "m_longblob": "REPEAT(x'bb', 102400)", "m_enum": "'shipped'", "m_set": "'a,b,c'", "m_json": "'[]'",
        "m_geometry": "ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))')", "m_inet4": "'255.255.255.255'",
        "m_inet6": "'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'", "m_uuid": f"'{UMAX}'"},
    4: {"m_tinyint": "-128", "m_tinyint_u": "0", "m_smallint": "-32768", "m_smallint_u": "0", "m_mediumint": "-8388608",
        "m_mediumint_u": "0", "m_int": "-2147483648", "m_int_u": "0", "m_bigint": "-9223372036854775808",
        "m_bigint_u": "0", "m_bool": "0", "m_decimal": "-" + "9" * 35 + "." + "9" * 30, "m_decimal_u": "0.00",
        "m_decimal_scale": "-0.000000000000001", "m_float": "1.401298464324817e-45",
        "m_double": "-4.9406564584124654e-324",
        "m_bit1": "b'0'", "m_bit12": "b'0'", "m_bit64": "b'0'", "m_year": "1901", "m_date": "'1000-01-01'",
        "m_time": "'00:00:00'", "m_datetime": "'1000-01-01 00:00:00'", "m_timestamp": "'1970-01-01 00:00:01'",
        "m_char": "''", "m_varchar": "''", "m_tinytext": "''", "m_text": "''", "m_mediumtext": "''", "m_longtext": "''",
        "m_binary": "x'00000000'", "m_varbinary": "''", "m_tinyblob": "''", "m_blob": "''", "m_mediumblob": "''",
        "m_longblob": "''", "m_enum": "'new'", "m_set": "''", "m_json": "'\"\"'",
        "m_geometry": "ST_GeomFromText('POINT(0 0)')", "m_inet4": "'0.0.0.0'", "m_inet6": "'::'", "m_uuid": f"'{U0}'"},
}


def mariadb_connection() -> pymysql.Connection:
    c = conn_fields("mariadb_mesh")
    conn = pymysql.connect(host=c.host, port=c.port, user=c.login, password=c.password, database=c.schema,
                           autocommit=True, charset="utf8mb4")
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")  # TIMESTAMPs read back in UTC
    return conn


@pytest.fixture(scope="module")
def mariadb_matrix() -> Iterator[str]:
    name = f"bf_{uuid.uuid4().hex[:8]}"
    conn = mariadb_connection()
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, "
                    + ", ".join(f"{c} {t}" for c, t, _, _ in MY_COLUMNS) + ") CHARACTER SET utf8mb4")
        for key, values in MY_ROWS.items():
            cur.execute(f"INSERT INTO {name} (id, {', '.join(c for c, _, _, _ in MY_COLUMNS)}) VALUES ({key}, "
                        + ", ".join(values.get(c, "NULL") for c, _, _, _ in MY_COLUMNS) + ")")
    yield f"mesh.{name}"
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")
    conn.close()


def mariadb_source_rows(table: str) -> dict[int, dict[str, Any]]:
    """The source read by PyMySQL as Python values (a BIT as its number, a FLOAT as its exact double)."""
    select = ", ".join(["id"] + [(reader or "{}").format(c) + f" AS {c}" for c, _, reader, _ in MY_COLUMNS])
    conn = mariadb_connection()
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(f"SELECT {select} FROM {table.split('.')[1]}")
        rows = cur.fetchall()
    conn.close()
    for row in rows:
        if row["m_timestamp"] is not None:
            row["m_timestamp"] = row["m_timestamp"].replace(tzinfo=UTC)  # read in UTC (the session's zone)
        for column in ("m_bool", "m_bit1"):
            if row[column] is not None:
                row[column] = bool(row[column])
    return rows_by_id(rows, {c: kind for c, _, _, kind in MY_COLUMNS})


@pytest.mark.parametrize("target_kind", TARGETS)
def test_every_mariadb_type_into_every_target(mariadb_matrix, target_kind, target_factory, tmp_path):
    source = make_source(conn_fields("mariadb_mesh"))
    target, name = target_factory(target_kind, mariadb_matrix.split(".")[1])
    request = BackfillRequest(table=mariadb_matrix, range_size=2, parallelism=2)
    summary = engine.run(source, target, request, CheckpointStore(tmp_path / "cp.sqlite"))
    assert summary.verified and summary.rows == len(MY_ROWS)
    columns = [c for c, _, _, _ in MY_COLUMNS]
    # The PostgreSQL copy is read with PostgreSQL's own text for what has no Python type here.
    readers = {"m_json": "{}::text"}
    actual = rows_by_id(read_target(target_kind, target, name, columns, readers),
                        {c: kind for c, _, _, kind in MY_COLUMNS})
    assert_same(mariadb_source_rows(mariadb_matrix), actual)
    again = make_target_like(target_kind, target, name)
    assert engine.verify(source, again, request).rows == len(MY_ROWS)


@pytest.mark.parametrize(("ddl", "value", "message"), [
    ("date", "'0000-00-00'", r"column 'v' \(value '0000-00-00'\): is not an exact date32.*--cast v=text"),
    ("time", "'25:00:00'", r"column 'v' \(value '25:00:00'\): is not an exact time64"),
    ("time", "'-01:00:00'", r"column 'v' \(value '-01:00:00'\): is not an exact time64"),
    ("tinyint(1)", "2", r"column 'v' \(value '2'\): is MariaDB's BOOLEAN .*--cast v=smallint"),
])
def test_mariadb_values_no_type_holds_exactly_are_refused_naming_the_column(target_factory, ddl, value, message):
    table = f"bf_{uuid.uuid4().hex[:8]}"
    conn = mariadb_connection()
    with conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")  # allows the zero date
        cur.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v {ddl})")
        cur.execute(f"INSERT INTO {table} VALUES (1, {value})")
    try:
        target, name = target_factory("postgres", table)
        with pytest.raises(UnrepresentableValueError, match=message):
            engine.run(make_source(conn_fields("mariadb_mesh")), target, BackfillRequest(table=f"mesh.{table}"),
                       CheckpointStore(Path(f"/tmp/{table}.sqlite")))
        with postgres_reader() as pg:
            assert pg.execute(f"SELECT count(*) FROM {name}").fetchone()[0] == 0
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        conn.close()


def test_the_ui_form_passes_casts_and_exclusions_to_every_task(airflow_db, tmp_path, monkeypatch):
    """The form's `cast` and `exclude` reach the plan, range and commit tasks (mapped, fanned out)."""
    import importlib.util

    table = f"bf_{uuid.uuid4().hex[:8]}"
    with postgres_reader() as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, amount numeric, notes text, at timestamptz)")
        conn.execute(f"INSERT INTO {table} SELECT g, g / 8.0, 'n' || g, '2026-01-01'::timestamptz FROM "
                     "generate_series(1, 50) g")
    catalog = {"type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/warehouse"}
    monkeypatch.setenv("AIRFLOW_CONN_ICEBERG_DEFAULT",
                       json.dumps({"conn_type": "iceberg", "extra": {"catalog": catalog}}))
    try:
        spec = importlib.util.spec_from_file_location("backfill_ui", ROOT / "dags" / "backfill_ui.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        run = module.backfill_ui_dag.test(run_conf={
            "table": f"public.{table}", "target_name": f"mesh.{table}", "range_size": 20, "parallelism": 2,
            "cast": ["amount=numeric(12,4)"], "exclude": ["notes"]})
        assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
        copied = make_source(ConnectionFields("iceberg", extra={"catalog": catalog})).catalog.load_table(
            f"mesh.{table}").scan().to_arrow()
        assert copied.column_names == ["id", "amount", "at"]  # notes excluded
        assert str(copied.schema.field("amount").type) == "decimal128(12, 4)"
        # Without the cast the numeric would be refused; with it, exact to 4 decimals.
        amounts = sorted(r["amount"] for r in copied.to_pylist())
        assert amounts[:2] == [decimal.Decimal("0.125"), decimal.Decimal("0.25")]
    finally:
        with postgres_reader() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
