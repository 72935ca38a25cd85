"""Record validation: Confluent wire format through a registry lookup, Debezium JSON, and the report."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

from airflow_mesh.contracts.repository import load_repository
from airflow_mesh.contracts.validation import RecordFailure, RecordFormat, RecordValidator, ValidationReport

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = load_repository(ROOT / "schemas")
TOPIC = "mesh.mariadb.mesh.shipments"
KEY, VALUE = SHIPPED.contract(TOPIC, "key"), SHIPPED.contract(TOPIC, "value")
ROW = {"id": 7, "order_id": 42, "carrier": "dhl", "status": "packed", "shipped_at": None}
EVENT = {"before": None, "after": ROW, "op": "c", "ts_ms": 1, "ts_us": None, "ts_ns": None, "transaction": None,
         "source": {"version": "3.5.0.Final", "connector": "mariadb", "name": "mesh.mariadb", "ts_ms": 1,
                    "snapshot": "false", "db": "mesh", "sequence": None, "ts_us": None, "ts_ns": None,
                    "table": "shipments", "server_id": 1, "gtid": None, "file": "mariadb-bin.000001", "pos": 4,
                    "row": 0, "thread": None, "query": None}}


def wire(schema_id: int, schema: Any, datum: Any) -> bytes:
    out = io.BytesIO()
    out.write(b"\x00" + schema_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), datum)
    return out.getvalue()


class Registry:
    """Schema ids to schema texts; counts lookups."""

    def __init__(self, schemas: dict[int, str]) -> None:
        self.schemas = schemas
        self.lookups: list[int] = []

    def __call__(self, schema_id: int) -> str | None:
        self.lookups.append(schema_id)
        return self.schemas.get(schema_id)


def evolved_value(change) -> str:
    schema = json.loads(VALUE.text)
    change(schema["fields"][0]["type"][1])
    return json.dumps(schema)


@pytest.fixture
def registry() -> Registry:
    return Registry({1: KEY.text, 2: VALUE.text})


class TestWireFormat:
    def test_valid_records_look_each_schema_up_once(self, registry):
        validator = RecordValidator(KEY, VALUE, RecordFormat.AVRO, registry)
        for _ in range(3):
            assert validator.check(wire(1, json.loads(KEY.text), {"id": 7}),
                                   wire(2, json.loads(VALUE.text), EVENT)) is None
        assert registry.lookups == [1, 2]

    def test_a_compatible_writer_schema_is_valid(self, registry):
        newer = evolved_value(lambda row: row["fields"].append({"name": "weight", "type": "double", "default": 0}))
        registry.schemas[3] = newer
        event = {**EVENT, "after": {**ROW, "weight": 1.5}}
        assert RecordValidator(None, VALUE, RecordFormat.AVRO, registry).check(None, wire(3, json.loads(newer),
                                                                                          event)) is None

    def test_a_writer_schema_the_contract_cannot_read_fails_every_record_with_the_reason(self, registry):
        def carrier_is_a_number(row):
            row["fields"][2]["type"] = "long"

        registry.schemas[4] = evolved_value(carrier_is_a_number)
        payload = wire(4, json.loads(registry.schemas[4]), {**EVENT, "after": {**ROW, "carrier": 3}})
        validator = RecordValidator(None, VALUE, RecordFormat.AVRO, registry)
        for _ in range(2):
            part, reason = validator.check(None, payload)
            assert part == "value"
            assert reason == (f"written with schema id 4, which the contract {VALUE.file} cannot read: field "
                              "before<mesh.mariadb.mesh.shipments.Value>.carrier: writer type long cannot be read "
                              "as string")
        assert registry.lookups == [4]

    @pytest.mark.parametrize(("payload", "reason"), [
        (b"\x00\x00\x00", "not in Confluent's wire format (magic byte 0 and a 4-byte schema id)"),
        (b"\x01\x00\x00\x00\x02abc", "not in Confluent's wire format (magic byte 0 and a 4-byte schema id)"),
        (b"\x00\x00\x00\x00\x09", "written with schema id 9, which the registry does not know"),
        (b"\x00\x00\x00\x00\x02\x06", "cannot be decoded with schema id 2: "),
    ])
    def test_broken_payloads(self, registry, payload, reason):
        part, found = RecordValidator(None, VALUE, RecordFormat.AVRO, registry).check(None, payload)
        assert part == "value" and found.startswith(reason)

    def test_left_over_bytes_mean_another_schema(self, registry):
        payload = wire(2, json.loads(VALUE.text), EVENT) + b"\x02"
        assert RecordValidator(None, VALUE, RecordFormat.AVRO, registry).check(None, payload) == (
            "value", "1 bytes left over after decoding with schema id 2")

    def test_a_registry_schema_that_is_not_avro(self, registry):
        registry.schemas[5] = 'syntax = "proto3"; message M {}'
        _, reason = RecordValidator(None, VALUE, RecordFormat.AVRO, registry).check(None, b"\x00\x00\x00\x00\x05")
        assert reason.startswith("written with schema id 5: invalid Avro schema: unknown type")

    def test_no_registry_to_ask(self):
        assert RecordValidator(None, VALUE, RecordFormat.AVRO).check(None, wire(2, json.loads(VALUE.text), EVENT)) \
            == ("value", "written with schema id 2, and no schema registry to look it up")


class TestJsonAndAuto:
    def test_debezium_json(self):
        validator = RecordValidator(KEY, VALUE, RecordFormat.JSON)
        assert validator.check(b'{"id":7}', json.dumps(EVENT).encode()) is None
        assert validator.check(b'{"id":"7"}', json.dumps(EVENT).encode()) == (
            "key", "id: expected an integer (long), got a string")
        assert validator.check(b'{"id":7}', b"{not json") == ("value", ("not JSON: Expecting property name enclosed "
                                                                        "in double quotes: line 1 column 2 (char 1)"))
        assert validator.check(b'{"id":7}', b"\xff")[1].startswith("not JSON")

    def test_auto_tells_each_payload_apart(self, registry):
        validator = RecordValidator(KEY, VALUE, RecordFormat.AUTO, registry)
        assert validator.check(b'{"id":7}', wire(2, json.loads(VALUE.text), EVENT)) is None
        assert validator.check(wire(1, json.loads(KEY.text), {"id": 7}), json.dumps(EVENT).encode()) is None

    def test_tombstones_and_missing_keys(self):
        validator = RecordValidator(KEY, VALUE, RecordFormat.JSON)
        assert validator.check(b'{"id":7}', None) is None
        assert validator.check(None, json.dumps(EVENT).encode()) == (
            "key", "the record has no key, and the contract has a key schema")
        assert RecordValidator(None, VALUE, RecordFormat.JSON).check(None, json.dumps(EVENT).encode()) is None


def test_report_counts_everything_and_keeps_the_first_failures():
    report = ValidationReport("t", max_failures=2)
    report.add(0, 10, b"v", None)
    report.add(0, 11, None, None)
    for offset in (12, 13, 14):
        report.add(1, offset, b"v", ("value", f"bad {offset}"))
    assert (report.records, report.valid, report.invalid, report.tombstones) == (5, 2, 3, 1)
    assert report.failures == [RecordFailure(1, 12, "value", "bad 12"), RecordFailure(1, 13, "value", "bad 13")]
    assert report.summary().splitlines() == [
        "t: 5 records, 2 valid (1 tombstones), 3 invalid",
        "  - partition 1 offset 12 value: bad 12", "  - partition 1 offset 13 value: bad 13", "  ... and 1 more"]
    assert report.to_dict()["failures"][0] == {"partition": 1, "offset": 12, "part": "value", "reason": "bad 12"}
    json.dumps(report.to_dict())
