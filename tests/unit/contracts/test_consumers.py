"""Consumer-aware compatibility: producer changes are judged by the fields consumers actually read."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from airflow_mesh.contracts.avro_compat import CompatibilityLevel, check_compatibility, parse_avro_schema
from airflow_mesh.contracts.consumers import ConsumerBreak, check_consumer_reads, field_usage
from airflow_mesh.contracts.fields import FieldPath, field_paths, resolve_path
from airflow_mesh.contracts.repository import FieldRead, load_repository

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = load_repository(ROOT / "schemas")
ORDERS = "mesh.pg.public.orders"


def orders_value() -> dict[str, Any]:
    return json.loads(SHIPPED.contract(ORDERS, "value").text)


def row(schema: dict[str, Any]) -> dict[str, Any]:
    """The Value record of a shipped envelope (defined inline in `before`)."""
    return schema["fields"][0]["type"][1]


def without(record: dict[str, Any], *names: str) -> dict[str, Any]:
    record["fields"] = [f for f in record["fields"] if f["name"] not in names]
    return record


def retyped(record: dict[str, Any], name: str, type_: Any) -> None:
    next(f for f in record["fields"] if f["name"] == name)["type"] = type_


def reads(*paths: str, consumer: str = "finance-ledger", role: str = "value") -> list[FieldRead]:
    return [FieldRead(consumer, "finance-data", Path("consumers/finance.yaml"), ORDERS, role, FieldPath.parse(p))
            for p in paths]


def broken(breaks: list[ConsumerBreak]) -> list[tuple[str, str, str]]:
    return [(b.read.consumer, b.read.path.text, b.at) for b in breaks]


class TestRemovals:
    def test_removing_a_field_a_consumer_reads_fails_naming_consumer_and_field(self):
        new = orders_value()
        without(row(new), "amount")
        breaks = check_consumer_reads(new, orders_value(), SHIPPED.reads_of(ORDERS, "value"))
        assert broken(breaks) == [("finance-ledger", "before.amount", "before.amount"),
                                  ("finance-ledger", "after.amount", "after.amount")]
        declaration = ROOT / "schemas" / "consumers" / "finance-ledger.yaml"
        assert breaks[1].describe() == (
            f"consumer finance-ledger (owner finance-data@mesh.example, {declaration}) reads {ORDERS} value field "
            "after.amount: the new schema no longer has it: record mesh.pg.public.orders.Value has no field amount "
            "(its fields: id, customer_id, status, created_at, updated_at, note)")

    def test_removing_a_field_nobody_reads_passes(self):
        new = orders_value()
        without(row(new), "note", "created_at")
        assert check_consumer_reads(new, orders_value(), SHIPPED.reads_of(ORDERS, "value")) == []

    def test_passes_even_where_forward_compatibility_fails(self):
        """`customer_id` has no default: plain FORWARD refuses its removal, whoever reads it."""
        new = orders_value()
        without(row(new), "customer_id")
        assert check_compatibility(new, [orders_value()], CompatibilityLevel.FORWARD)
        nobody_reads_it = [r for r in SHIPPED.reads_of(ORDERS, "value") if "customer_id" not in r.path.text]
        assert check_consumer_reads(new, orders_value(), nobody_reads_it) == []
        assert broken(check_consumer_reads(new, orders_value(), reads("after.customer_id"))) == [
            ("finance-ledger", "after.customer_id", "after.customer_id")]

    def test_removing_a_field_with_a_default_still_breaks_its_reader(self):
        """The reader reads the data, not a default: `created_at` has one, yet its reader breaks."""
        new = orders_value()
        without(row(new), "created_at")
        assert check_compatibility(new, [orders_value()], CompatibilityLevel.FULL_TRANSITIVE) == []
        assert broken(check_consumer_reads(new, orders_value(), reads("after.created_at"))) == [
            ("finance-ledger", "after.created_at", "after.created_at")]

    def test_removing_a_parent_breaks_readers_of_its_children(self):
        new = orders_value()
        without(new, "source")
        (item,) = check_consumer_reads(new, orders_value(), reads("source.ts_ms"))
        assert item.at == "source.ts_ms"
        assert item.reason.startswith("the new schema no longer has it: record mesh.pg.public.orders.Envelope "
                                      "has no field source")

    def test_reading_a_record_whole_makes_each_of_its_fields_read(self):
        new = orders_value()
        without(row(new), "note")
        (item,) = check_consumer_reads(new, orders_value(), reads("after"))
        assert (item.read.path.text, item.at) == ("after", "after.note")
        assert "after (at after.note)" in item.describe()


class TestChanges:
    def test_incompatible_type_change_of_a_read_field(self):
        new = orders_value()
        retyped(row(new), "amount", "double")
        (item,) = check_consumer_reads(new, orders_value(), reads("after.amount"))
        assert (item.at, item.reason) == ("after.amount", "writer type double cannot be read as string")

    def test_promotion_of_a_read_field_is_fine(self):
        old, new = orders_value(), orders_value()
        retyped(row(old), "status", "long")
        retyped(row(new), "status", "int")  # a long reader reads int data
        assert check_consumer_reads(new, old, reads("after.status")) == []

    def test_incompatible_change_of_an_unread_field_passes(self):
        new = orders_value()
        retyped(row(new), "note", ["null", "long"])
        assert check_consumer_reads(new, orders_value(), SHIPPED.reads_of(ORDERS, "value")) == []

    def test_making_the_path_nullable_breaks_a_reader_of_the_non_null_record(self):
        old, new = orders_value(), orders_value()
        old["fields"][2]["type"] = new["fields"][2]["type"]  # source: a plain record in both
        new["fields"][2]["type"] = ["null", new["fields"][2]["type"]]
        (item,) = check_consumer_reads(new, old, reads("source.ts_ms"))
        assert (item.at, item.reason) == ("source", ("writer type null cannot be read as record "
                                                     "io.debezium.connector.postgresql.Source"))

    def test_renaming_the_record_on_the_way_breaks_it(self):
        new = orders_value()
        row(new)["name"] = "Row"
        new["fields"][1]["type"] = ["null", "Row"]
        breaks = check_consumer_reads(new, orders_value(), reads("after.id"))
        assert broken(breaks) == [("finance-ledger", "after.id", "after")]
        assert breaks[0].reason == ("writer type record mesh.pg.public.orders.Row matches no branch of reader "
                                    "union [null, mesh.pg.public.orders.Value]")

    def test_field_new_in_the_new_schema_is_not_checked(self):
        new = orders_value()
        row(new)["fields"].append({"name": "currency", "type": "string", "default": "EUR"})
        assert check_consumer_reads(new, orders_value(), reads("after.currency")) == []

    def test_key_reads(self):
        key = json.loads(SHIPPED.contract(ORDERS, "key").text)
        new = copy.deepcopy(key)
        retyped(new, "id", "string")
        assert broken(check_consumer_reads(new, key, reads("id", role="key"))) == [
            ("finance-ledger", "id", "id")]


class TestNestedContainers:
    OLD: ClassVar[dict[str, Any]] = {"type": "record", "name": "Order", "fields": [
        {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line", "fields": [
            {"name": "sku", "type": "string"},
            {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["GOOD", "SERVICE"]}},
            {"name": "tags", "type": {"type": "map", "values": "string"}},
        ]}}},
    ]}

    def new(self) -> dict[str, Any]:
        return copy.deepcopy(self.OLD)

    def line(self, schema: dict[str, Any]) -> dict[str, Any]:
        return schema["fields"][0]["type"]["items"]

    def test_field_of_array_items(self):
        new = self.new()
        without(self.line(new), "sku")
        assert broken(check_consumer_reads(new, self.OLD, reads("lines[].sku"))) == [
            ("finance-ledger", "lines[].sku", "lines[].sku")]
        assert check_consumer_reads(new, self.OLD, reads("lines[].kind")) == []

    def test_new_enum_symbol_breaks_its_readers_only(self):
        new = self.new()
        self.line(new)["fields"][1]["type"]["symbols"].append("FEE")
        (item,) = check_consumer_reads(new, self.OLD, reads("lines[].kind", "lines[].sku"))
        assert (item.at, item.reason) == ("lines[].kind", ("writer enum symbols FEE are not in reader enum Kind, "
                                                           "which has no default"))

    def test_map_values(self):
        new = self.new()
        retyped(self.line(new), "tags", {"type": "map", "values": "long"})
        assert broken(check_consumer_reads(new, self.OLD, reads("lines[].tags"))) == [
            ("finance-ledger", "lines[].tags", "lines[].tags{}")]


def _remove(text: str, path: str) -> str:
    """The schema without the field at ``path`` (from its record type, wherever that type is used)."""
    schema = parse_avro_schema(text)
    parent, _, name = path.rpartition(".")
    records = [schema.root] if not parent else resolve_path(schema, FieldPath.parse(parent))
    for record in records:
        if isinstance(record, dict) and record.get("type") == "record":
            without(record, name)
    defined: set[str] = set()

    def emit(node: Any) -> Any:
        """JSON of the parsed schema, each named type defined where it is first used (not where it was)."""
        if isinstance(node, str) and node in schema.named:
            node = schema.named[node]
        if isinstance(node, list):
            return [emit(branch) for branch in node]
        if not isinstance(node, dict):
            return node
        if node.get("type") in ("record", "enum", "fixed"):
            if node["name"] in defined:
                return node["name"]
            defined.add(node["name"])
        out = {k: v for k, v in node.items() if not k.startswith("__")}
        if out["type"] == "record":
            out["fields"] = [{**f, "type": emit(f["type"])} for f in node["fields"]]
        elif out["type"] in ("array", "map"):
            part = "items" if out["type"] == "array" else "values"
            out[part] = emit(node[part])
        return out

    return json.dumps(emit(schema.root))


@pytest.mark.parametrize(("subject", "field"), [
    (c.subject, path) for c in SHIPPED.contracts for path in field_paths(c.schema) if "[" not in path
])
def test_removing_any_field_breaks_exactly_the_consumers_reading_into_it(subject, field):
    """Oracle: a read breaks iff a field path on its line (itself, its parents, its children) disappears."""
    contract = next(c for c in SHIPPED.contracts if c.subject == subject)
    new = _remove(contract.text, field)
    gone = set(field_paths(contract.schema)) - set(field_paths(parse_avro_schema(new)))
    assert field in gone
    all_reads = SHIPPED.reads_of(contract.topic, contract.role)
    expected = {read for read in all_reads if any(read.path.overlaps(FieldPath.parse(p)) for p in gone)}
    assert {b.read for b in check_consumer_reads(new, contract.text, all_reads)} == expected


def test_field_usage_lists_every_field_with_who_it_matters_to():
    usage = field_usage(SHIPPED)
    assert list(usage) == ["mesh.mariadb.mesh.shipments", "mesh.pg.public.customers", ORDERS]
    orders = usage[ORDERS]["value"]
    assert list(orders) == field_paths(SHIPPED.contract(ORDERS, "value").schema)
    assert orders["after.amount"] == ["finance-ledger"]
    assert orders["after.status"] == ["search-indexer", "shipment-tracker"]
    assert orders["after"] == ["finance-ledger", "search-indexer", "shipment-tracker"]
    assert orders["after.note"] == [] and orders["source.lsn"] == []
    assert usage[ORDERS]["key"] == {"id": ["search-indexer"]}
    assert usage["mesh.mariadb.mesh.shipments"]["key"] == {"id": []}
    json.dumps(usage)  # ready for a lineage UI
