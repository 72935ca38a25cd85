"""Field paths: parsing, resolution with errors that say where and why, listing, and consumer views."""

from __future__ import annotations

import io
import re
from typing import Any

import fastavro
import pytest

from airflow_mesh.contracts.avro_compat import check_can_read, parse_avro_schema
from airflow_mesh.contracts.fields import (
    FieldNotFoundError,
    FieldPath,
    FieldPathError,
    consumer_view,
    field_paths,
    resolve_path,
)

LINE = {"type": "record", "name": "Line", "fields": [
    {"name": "sku", "type": "string"},
    {"name": "quantity", "type": "int", "default": 1},
]}
ORDER = {
    "type": "record", "name": "Order", "namespace": "shop",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "customer", "type": ["null", {"type": "record", "name": "Customer", "fields": [
            {"name": "name", "type": "string"},
            {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
                {"name": "city", "type": "string"},
                {"name": "zip", "type": ["null", "string"], "default": None},
            ]}},
        ]}], "default": None},
        {"name": "lines", "type": {"type": "array", "items": LINE}},
        {"name": "attributes", "type": {"type": "map", "values": {"type": "record", "name": "Attribute", "fields": [
            {"name": "value", "type": "string"},
        ]}}},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"], "default": "NEW"}},
        {"name": "billing", "type": ["null", "shop.Customer"], "default": None},
    ],
}
NODE = {"type": "record", "name": "Node", "fields": [
    {"name": "value", "type": "long"},
    {"name": "next", "type": ["null", "Node"], "default": None},
]}


def parsed(schema: Any = ORDER):
    return parse_avro_schema(schema)


def path(text: str) -> FieldPath:
    return FieldPath.parse(text)


class TestParse:
    @pytest.mark.parametrize(("text", "steps"), [
        ("id", ("id",)),
        ("customer.address.zip", ("customer", "address", "zip")),
        ("lines[].sku", ("lines", "[]", "sku")),
        ("attributes{}.value", ("attributes", "{}", "value")),
        ("matrix[][].x", ("matrix", "[]", "[]", "x")),
    ])
    def test_steps(self, text, steps):
        assert FieldPath.parse(text) == FieldPath(text, steps)

    @pytest.mark.parametrize(("text", "reason"), [
        ("", "non-empty"),
        ("a..b", "invalid segment ''"),
        (".a", "invalid segment ''"),
        ("1a", "invalid segment '1a'"),
        ("a-b", "invalid segment 'a-b'"),
        ("a[]b", "invalid segment 'a[]b'"),
        ("lines[]", "name the field itself ('lines')"),
        ("attributes{}", "ends with {}"),
    ])
    def test_malformed_paths_say_why(self, text, reason):
        with pytest.raises(FieldPathError, match=re.escape(reason)):
            FieldPath.parse(text)

    @pytest.mark.parametrize(("a", "b", "overlap"), [
        ("after", "after.id", True),
        ("after.id", "after", True),
        ("after.id", "after.id", True),
        ("after.id", "after.idx", False),
        ("after.id", "before.id", False),
        ("lines", "lines[].sku", True),
    ])
    def test_overlaps_is_symmetric_prefix_of_steps(self, a, b, overlap):
        assert path(a).overlaps(path(b)) is overlap
        assert path(b).overlaps(path(a)) is overlap


class TestResolve:
    def test_crosses_nullable_unions_and_containers(self):
        schema = parsed()
        assert resolve_path(schema, path("customer.address.zip")) == ["null", "string"]
        assert resolve_path(schema, path("lines[].sku")) == ["string"]
        assert resolve_path(schema, path("attributes{}.value")) == ["string"]
        assert resolve_path(schema, path("billing.name")) == ["string"]  # through a named reference

    def test_missing_field_names_the_record_and_its_fields(self):
        with pytest.raises(FieldNotFoundError) as error:
            resolve_path(parsed(), path("customer.adress.city"))
        assert error.value.path == "customer.adress.city"
        assert error.value.reason == "record shop.Customer has no field adress (its fields: name, address)"

    def test_step_into_a_primitive_names_the_walked_path(self):
        with pytest.raises(FieldNotFoundError, match=r"customer\.name is string, not a record"):
            resolve_path(parsed(), path("customer.name.first"))

    def test_wrong_container(self):
        with pytest.raises(FieldNotFoundError, match=r"attributes is map, not an array"):
            resolve_path(parsed(), path("attributes[].value"))
        with pytest.raises(FieldNotFoundError, match=r"lines is array, not a map"):
            resolve_path(parsed(), path("lines{}.sku"))

    def test_root_that_is_not_a_record(self):
        with pytest.raises(FieldNotFoundError, match=r"the schema is string, not a record"):
            resolve_path(parsed("string"), path("id"))


class TestFieldPaths:
    def test_every_field_parents_first(self):
        assert field_paths(parsed()) == [
            "id", "customer", "customer.name", "customer.address", "customer.address.city", "customer.address.zip",
            "lines", "lines[].sku", "lines[].quantity", "attributes", "attributes{}.value", "status",
            "billing", "billing.name", "billing.address", "billing.address.city", "billing.address.zip",
        ]

    def test_recursive_record_stops_where_it_recurs(self):
        assert field_paths(parsed(NODE)) == ["value", "next"]


def encode(schema: Any, datum: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), datum)
    return out.getvalue()


class TestConsumerView:
    def test_keeps_the_way_to_the_field_without_defaults(self):
        view = consumer_view(parsed(), path("customer.address.zip"))
        assert view == {"type": "record", "name": "shop.Order", "fields": [
            {"name": "customer", "type": ["null", {"type": "record", "name": "shop.Customer", "fields": [
                {"name": "address", "type": {"type": "record", "name": "shop.Address", "fields": [
                    {"name": "zip", "type": ["null", "string"]},
                ]}},
            ]}]},
        ]}

    def test_keeps_everything_under_the_field(self):
        view = consumer_view(parsed(), path("lines"))
        assert view["fields"] == [{"name": "lines", "type": {"type": "array", "items": {
            "type": "record", "name": "shop.Line",
            "fields": [{"name": "sku", "type": "string"}, {"name": "quantity", "type": "int"}]}}}]

    def test_enum_keeps_its_default_symbol(self):
        (status,) = consumer_view(parsed(), path("status"))["fields"]
        assert status["type"] == {"type": "enum", "name": "shop.Status", "symbols": ["NEW", "PAID"], "default": "NEW"}

    def test_named_type_reached_twice_is_defined_once(self):
        view = consumer_view(parsed(NODE), path("next.next.value"))
        parse_avro_schema(view)  # a second definition of Node would make it invalid
        assert view == {"type": "record", "name": "Node", "fields": [{"name": "value", "type": "long"},
                                                                     {"name": "next", "type": ["null", "Node"]}]}

    def test_reads_the_data_of_the_schema_it_comes_from(self):
        datum = {"id": 1, "customer": {"name": "Ada", "address": {"city": "Paris", "zip": None}},
                 "lines": [{"sku": "a", "quantity": 2}], "attributes": {"gift": {"value": "yes"}},
                 "status": "PAID", "billing": None}
        for text in field_paths(parsed()):
            view = consumer_view(parsed(), path(text))
            assert check_can_read(view, ORDER) == [], text
            decoded = fastavro.schemaless_reader(io.BytesIO(encode(ORDER, datum)), ORDER, view)
            assert set(decoded) == {text.split(".")[0].split("[")[0].split("{")[0]}

    def test_unknown_path_is_refused(self):
        with pytest.raises(FieldNotFoundError):
            consumer_view(parsed(), path("customer.phone"))
