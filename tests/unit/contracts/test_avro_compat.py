"""Example-based tests of the Avro schema compatibility checker, one group per resolution rule."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pytest

from airflow_mesh.contracts.avro_compat import (
    AvroCompatibilityError,
    CompatibilityLevel,
    Direction,
    Incompatibility,
    InvalidSchemaError,
    SchemaInput,
    check_can_read,
    check_compatibility,
    parse_avro_schema,
)


def record(name: str, *fields: dict[str, Any], **attributes: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields), **attributes}


def field(name: str, type_: Any, **attributes: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **attributes}


def enum(name: str, *symbols: str, **attributes: Any) -> dict[str, Any]:
    return {"type": "enum", "name": name, "symbols": list(symbols), **attributes}


def fixed(name: str, size: int, **attributes: Any) -> dict[str, Any]:
    return {"type": "fixed", "name": name, "size": size, **attributes}


def decimal(precision: int, scale: int, base: Any = "bytes") -> dict[str, Any]:
    if isinstance(base, dict):
        return {**base, "logicalType": "decimal", "precision": precision, "scale": scale}
    return {"type": base, "logicalType": "decimal", "precision": precision, "scale": scale}


def problems(reader: SchemaInput, writer: SchemaInput) -> list[tuple[str, str]]:
    return [(found.path, found.message) for found in check_can_read(reader, writer)]


def in_record(type_: Any, **attributes: Any) -> dict[str, Any]:
    """Wrap a type in a record field named ``value`` so paths start with a field name."""
    return record("Holder", field("value", type_, **attributes))


class TestPrimitives:
    @pytest.mark.parametrize("type_", ["null", "boolean", "int", "long", "float", "double", "bytes", "string"])
    def test_a_primitive_reads_itself(self, type_: str) -> None:
        assert problems(type_, type_) == []

    @pytest.mark.parametrize(
        ("writer", "reader"),
        [
            ("int", "long"),
            ("int", "float"),
            ("int", "double"),
            ("long", "float"),
            ("long", "double"),
            ("float", "double"),
            ("string", "bytes"),
            ("bytes", "string"),
        ],
    )
    def test_promotions(self, writer: str, reader: str) -> None:
        assert problems(reader, writer) == []

    @pytest.mark.parametrize(
        ("writer", "reader"),
        [("long", "int"), ("double", "float"), ("float", "long"), ("boolean", "int"), ("null", "string")],
    )
    def test_narrowing_and_unrelated_types_are_incompatible(self, writer: str, reader: str) -> None:
        assert problems(reader, writer) == [("", f"writer type {writer} cannot be read as {reader}")]

    def test_primitive_written_as_an_object_is_the_same_type(self) -> None:
        assert problems({"type": "long"}, "int") == []
        assert problems({"type": "int"}, "long") == [("", "writer type long cannot be read as int")]


class TestRecords:
    def test_fields_match_by_name_in_any_order(self) -> None:
        writer = record("Order", field("id", "long"), field("amount", "double"))
        reader = record("Order", field("amount", "double"), field("id", "long"))
        assert problems(reader, writer) == []

    def test_writer_only_fields_are_skipped(self) -> None:
        writer = record("Order", field("id", "long"), field("note", "string"))
        assert problems(record("Order", field("id", "long")), writer) == []

    def test_reader_only_field_needs_a_default(self) -> None:
        writer = record("Order", field("id", "long"))
        with_default = record("Order", field("id", "long"), field("currency", "string", default="EUR"))
        without_default = record("Order", field("id", "long"), field("currency", "string"))
        assert problems(with_default, writer) == []
        assert problems(without_default, writer) == [
            ("currency", "reader field has no default and the writer has no field of this name or alias")
        ]

    def test_null_is_a_valid_default(self) -> None:
        reader = record("Order", field("note", ["null", "string"], default=None))
        assert problems(reader, record("Order")) == []

    def test_nested_field_paths_are_dotted(self) -> None:
        def customer(zip_type: str) -> dict[str, Any]:
            address = record("Address", field("zip", zip_type))
            return record("Order", field("customer", record("Customer", field("address", address))))

        assert problems(customer("int"), customer("string")) == [
            ("customer.address.zip", "writer type string cannot be read as int")
        ]
        assert problems(customer("long"), customer("int")) == []

    def test_every_incompatible_field_is_reported(self) -> None:
        writer = record("Order", field("id", "string"), field("amount", "string"), field("ok", "long"))
        reader = record("Order", field("id", "long"), field("amount", "long"), field("ok", "long"), field("x", "int"))
        assert [path for path, _ in problems(reader, writer)] == ["id", "amount", "x"]

    def test_field_alias_reads_a_renamed_field(self) -> None:
        writer = record("Address", field("zip", "string"))
        assert problems(record("Address", field("postcode", "string", aliases=["zip"])), writer) == []
        assert problems(record("Address", field("postcode", "string")), writer) == [
            ("postcode", "reader field has no default and the writer has no field of this name or alias")
        ]

    def test_field_alias_is_resolved_against_the_alias_target_type(self) -> None:
        writer = record("Address", field("zip", "string"))
        reader = record("Address", field("postcode", "int", aliases=["zip"]))
        assert problems(reader, writer) == [("postcode", "writer type string cannot be read as int")]

    def test_a_field_of_the_same_name_wins_over_an_alias(self) -> None:
        writer = record("Address", field("zip", "string"), field("postcode", "int"))
        reader = record("Address", field("postcode", "int", aliases=["zip"]))
        assert problems(reader, writer) == []

    def test_record_names_compare_unqualified(self) -> None:
        writer = record("Order", field("id", "long"), namespace="shop.v1")
        assert problems(record("Order", field("id", "long"), namespace="shop.v2"), writer) == []
        assert problems(record("Purchase", field("id", "long"), namespace="shop.v1"), writer) == [
            (
                "",
                ("writer record shop.v1.Order cannot be read as record shop.v1.Purchase: "
                 "unqualified names differ and no reader alias matches"),
            )
        ]

    def test_record_alias_reads_a_renamed_record(self) -> None:
        writer = record("Client", field("id", "long"), namespace="shop")
        relative_alias = record("Customer", field("id", "long"), namespace="shop", aliases=["Client"])
        full_alias = record("Customer", field("id", "long"), namespace="crm", aliases=["shop.Client"])
        assert problems(relative_alias, writer) == []
        assert problems(full_alias, writer) == []

    def test_relative_alias_is_qualified_with_the_reader_namespace(self) -> None:
        writer = record("Client", field("id", "long"), namespace="shop")
        reader = record("Customer", field("id", "long"), namespace="crm", aliases=["Client"])
        assert problems(reader, writer) == [
            (
                "",
                ("writer record shop.Client cannot be read as record crm.Customer: "
                 "unqualified names differ and no reader alias matches"),
            )
        ]

    def test_doc_is_ignored(self) -> None:
        writer = record("Order", field("id", "long", doc="the id"), doc="an order")
        reader = record("Order", field("id", "long", doc="identifier"), doc="a purchase")
        assert problems(reader, writer) == []


class TestEnums:
    def test_reader_may_add_symbols(self) -> None:
        assert problems(enum("Status", "NEW", "PAID", "SHIPPED"), enum("Status", "NEW", "PAID")) == []

    def test_writer_symbols_missing_from_the_reader_are_incompatible(self) -> None:
        writer = in_record(enum("Status", "NEW", "PAID", "SHIPPED", "LOST"))
        reader = in_record(enum("Status", "NEW", "PAID"))
        assert problems(reader, writer) == [
            ("value", "writer enum symbols SHIPPED, LOST are not in reader enum Status, which has no default")
        ]

    def test_reader_default_absorbs_unknown_symbols(self) -> None:
        writer = enum("Status", "NEW", "PAID", "SHIPPED")
        assert problems(enum("Status", "UNKNOWN", "NEW", "PAID", default="UNKNOWN"), writer) == []

    def test_enum_names_must_match(self) -> None:
        assert problems(enum("State", "NEW"), enum("Status", "NEW")) == [
            (
                "",
                "writer enum Status cannot be read as enum State: unqualified names differ and no reader alias matches",
            )
        ]
        assert problems(enum("State", "NEW", aliases=["Status"]), enum("Status", "NEW")) == []


class TestFixed:
    def test_same_name_and_size_match(self) -> None:
        assert problems(fixed("Hash", 16), fixed("Hash", 16)) == []

    def test_size_must_match(self) -> None:
        assert problems(in_record(fixed("Hash", 32)), in_record(fixed("Hash", 16))) == [
            ("value", "writer fixed Hash has size 16, reader expects size 32")
        ]

    def test_name_must_match(self) -> None:
        assert problems(fixed("Digest", 16), fixed("Hash", 16)) == [
            (
                "",
                ("writer fixed Hash cannot be read as fixed Digest: "
                 "unqualified names differ and no reader alias matches"),
            )
        ]

    def test_fixed_is_not_bytes(self) -> None:
        assert problems("bytes", fixed("Hash", 16)) == [("", "writer type fixed Hash cannot be read as bytes")]


class TestArraysAndMaps:
    def test_array_items_resolve(self) -> None:
        writer = in_record({"type": "array", "items": "int"})
        assert problems(in_record({"type": "array", "items": "long"}), writer) == []
        assert problems(in_record({"type": "array", "items": "string"}), writer) == [
            ("value[]", "writer type int cannot be read as string")
        ]

    def test_map_values_resolve(self) -> None:
        writer = in_record({"type": "map", "values": "float"})
        assert problems(in_record({"type": "map", "values": "double"}), writer) == []
        assert problems(in_record({"type": "map", "values": "int"}), writer) == [
            ("value{}", "writer type float cannot be read as int")
        ]

    def test_nested_containers_of_records(self) -> None:
        def schema(quantity: str) -> dict[str, Any]:
            line = record("Line", field("quantity", quantity))
            return in_record({"type": "map", "values": {"type": "array", "items": line}})

        assert problems(schema("int"), schema("long")) == [
            ("value{}[].quantity", "writer type long cannot be read as int")
        ]

    def test_array_is_not_map(self) -> None:
        assert problems({"type": "map", "values": "int"}, {"type": "array", "items": "int"}) == [
            ("", "writer type array cannot be read as map")
        ]

    def test_paths_of_a_non_record_root_are_rendered_as_locations(self) -> None:
        [found] = check_can_read({"type": "array", "items": "int"}, {"type": "array", "items": "string"})
        assert found.describe() == "at []: writer type string cannot be read as int"


class TestUnions:
    def test_every_writer_branch_must_be_readable(self) -> None:
        writer = in_record(["null", "string", "int"])
        assert problems(in_record(["string", "null", "long"]), writer) == []
        assert problems(in_record("string"), writer) == [
            ("value<null>", "writer type null cannot be read as string"),
            ("value<int>", "writer type int cannot be read as string"),
        ]

    def test_reader_union_reads_the_first_matching_branch(self) -> None:
        assert problems(["null", "long", "string"], "int") == []
        assert problems(["null", "string"], "boolean") == [
            ("", "writer type boolean matches no branch of reader union [null, string]")
        ]

    def test_branch_order_does_not_matter(self) -> None:
        assert problems(["string", "null"], ["null", "string"]) == []

    def test_writer_branch_is_part_of_the_path(self) -> None:
        card = record("Card", field("number", "string"), namespace="shop")
        writer = in_record(["null", card])
        reader = in_record(["null", record("Card", field("number", "long"), namespace="shop")])
        assert problems(reader, writer) == [("value<shop.Card>.number", "writer type string cannot be read as long")]

    def test_matching_reader_branch_is_resolved_recursively(self) -> None:
        writer = record("Card", field("number", "string"))
        reader = ["null", record("Card", field("number", "long"))]
        assert problems(reader, writer) == [("number", "writer type string cannot be read as long")]

    def test_fixed_branch_matches_only_with_equal_size(self) -> None:
        reader = [fixed("Hash", 32), "bytes"]
        assert problems(reader, fixed("Hash", 16)) == [
            ("", "writer type fixed Hash matches no branch of reader union [Hash, bytes]")
        ]

    def test_first_matching_branch_wins_even_if_a_later_one_would_resolve(self) -> None:
        writer = record("Card", field("number", "string"), namespace="shop")
        legacy = record("Card", field("number", "long"), namespace="legacy")
        assert problems([legacy, writer], writer) == [("number", "writer type string cannot be read as long")]
        assert problems([writer, legacy], writer) == []

    def test_narrowing_a_union_to_one_branch(self) -> None:
        assert problems("string", ["string"]) == []


class TestLogicalTypes:
    def test_decimals_with_equal_precision_and_scale_match(self) -> None:
        assert problems(decimal(10, 2), decimal(10, 2)) == []
        assert problems(decimal(10, 2, fixed("Money", 8)), decimal(10, 2, fixed("Money", 8))) == []

    @pytest.mark.parametrize(("precision", "scale"), [(10, 3), (12, 2)])
    def test_decimal_precision_and_scale_must_match(self, precision: int, scale: int) -> None:
        assert problems(in_record(decimal(precision, scale)), in_record(decimal(10, 2))) == [
            (
                "value",
                ("writer bytes decimal(precision=10, scale=2) cannot be read as "
                 f"bytes decimal(precision={precision}, scale={scale})"),
            )
        ]

    def test_missing_scale_means_zero(self) -> None:
        unscaled = {"type": "bytes", "logicalType": "decimal", "precision": 10}
        assert problems(decimal(10, 0), unscaled) == []
        assert problems(decimal(10, 1), unscaled) == [
            (
                "",
                "writer bytes decimal(precision=10, scale=0) cannot be read as bytes decimal(precision=10, scale=1)",
            )
        ]

    def test_decimal_without_precision_is_ignored_as_invalid(self) -> None:
        assert problems(decimal(10, 2), {"type": "bytes", "logicalType": "decimal"}) == []

    def test_fixed_decimal_parameters_must_match(self) -> None:
        writer = decimal(10, 2, fixed("Money", 8))
        assert problems(decimal(10, 4, fixed("Money", 8)), writer) == [
            (
                "",
                ("writer fixed Money decimal(precision=10, scale=2) cannot be read as "
                 "fixed Money decimal(precision=10, scale=4)"),
            )
        ]

    def test_decimal_facing_a_plain_type_resolves_as_the_underlying_type(self) -> None:
        assert problems("bytes", decimal(10, 2)) == []
        assert problems(decimal(10, 2), "string") == []
        assert problems(decimal(10, 2), fixed("Money", 8)) == [
            ("", "writer type fixed Money cannot be read as bytes decimal(precision=10, scale=2)")
        ]

    def test_a_decimal_union_branch_with_other_parameters_does_not_match(self) -> None:
        assert problems([decimal(10, 4), "string"], decimal(10, 2)) == []
        assert problems([decimal(10, 4), "null"], decimal(10, 2)) == [
            ("", "writer type bytes decimal(precision=10, scale=2) matches no branch of reader union [bytes, null]")
        ]

    def test_a_fixed_decimal_holds_as_many_digits_as_its_size_allows(self) -> None:
        # 8 bytes hold 2**63 - 1, 19 digits: precision 18 is the most that always fits.
        assert problems(decimal(18, 1, fixed("Money", 8)), decimal(18, 0, fixed("Money", 8))) != []
        assert problems(decimal(18, 1, fixed("Money", 8)), decimal(19, 0, fixed("Money", 8))) == []
        assert problems(decimal(2, 1, fixed("Cents", 1)), decimal(2, 0, fixed("Cents", 1))) != []
        assert problems(decimal(2, 1, fixed("Cents", 1)), decimal(3, 0, fixed("Cents", 1))) == []

    def test_other_logical_types_follow_the_underlying_type(self) -> None:
        date = {"type": "int", "logicalType": "date"}
        timestamp = {"type": "long", "logicalType": "timestamp-millis"}
        assert problems(timestamp, date) == []
        assert problems(date, timestamp) == [("", "writer type long cannot be read as int")]


# Decimals the Avro specification calls invalid: "implementations should ignore the logical type
# and use the underlying Avro type" (bytes, fixed, or whatever type a decimal wrongly annotates).
INVALID_DECIMALS = [
    pytest.param({"type": "bytes", "logicalType": "decimal", "precision": 2, "scale": 5}, id="scale-above-precision"),
    pytest.param({"type": "bytes", "logicalType": "decimal", "precision": 0}, id="precision-0"),
    pytest.param({"type": "bytes", "logicalType": "decimal", "precision": -3}, id="negative-precision"),
    pytest.param({"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": -1}, id="negative-scale"),
    pytest.param({"type": "bytes", "logicalType": "decimal"}, id="no-precision"),
    pytest.param({"type": "bytes", "logicalType": "decimal", "precision": None}, id="null-precision"),
    pytest.param({"type": "bytes", "logicalType": "decimal", "precision": 4.5, "scale": 2}, id="fractional-precision"),
    pytest.param({"type": "bytes", "logicalType": "decimal", "precision": 4.0, "scale": 2}, id="float-precision"),
    pytest.param({"type": "bytes", "logicalType": "decimal", "precision": "10", "scale": 2}, id="string-precision"),
    pytest.param({"type": "bytes", "logicalType": "decimal", "precision": True}, id="boolean-precision"),
    pytest.param({"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 1.5}, id="fractional-scale"),
    pytest.param({"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": "2"}, id="string-scale"),
    pytest.param({"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": None}, id="null-scale"),
    pytest.param(decimal(5, 0, fixed("Money", 2)), id="fixed-too-small"),
    pytest.param(decimal(3, 0, fixed("Money", 0)), id="fixed-of-size-0"),
    pytest.param(decimal(4, 2, "string"), id="on-a-string"),
    pytest.param(decimal(4, 2, "long"), id="on-a-long"),
]


def underlying(schema: dict[str, Any]) -> Any:
    """The type an invalid decimal stands for: its type without the logical type's attributes."""
    rest = {key: value for key, value in schema.items() if key not in ("logicalType", "precision", "scale")}
    return rest if rest["type"] == "fixed" else rest["type"]


class TestInvalidDecimals:
    @pytest.mark.parametrize("invalid", INVALID_DECIMALS)
    def test_an_invalid_writer_decimal_is_read_as_its_underlying_type(self, invalid: dict[str, Any]) -> None:
        assert problems(in_record(underlying(invalid)), in_record(invalid)) == []
        # ...so it is no decimal to compare: a reader decimal facing it resolves as its underlying type.
        reader_decimal = decimal(8, 2, underlying(invalid)) if invalid["type"] == "fixed" else decimal(8, 2)
        if invalid["type"] in ("bytes", "fixed"):
            assert problems(in_record(reader_decimal), in_record(invalid)) == []

    @pytest.mark.parametrize("invalid", INVALID_DECIMALS)
    def test_an_invalid_reader_decimal_reads_as_its_underlying_type(self, invalid: dict[str, Any]) -> None:
        writer = underlying(invalid)
        if invalid["type"] in ("bytes", "fixed"):
            writer = decimal(8, 2, underlying(invalid)) if invalid["type"] == "fixed" else decimal(8, 2)
        assert problems(in_record(invalid), in_record(writer)) == []
        assert problems(in_record(invalid), in_record(invalid)) == []

    @pytest.mark.parametrize("invalid", INVALID_DECIMALS)
    def test_messages_name_the_underlying_type(self, invalid: dict[str, Any]) -> None:
        found = problems(in_record("boolean"), in_record(invalid))
        assert len(found) == 1 and found[0][0] == "value"
        assert found[0][1].startswith(f"writer type {invalid['type']} ")
        assert "decimal" not in found[0][1]

    def test_invalid_decimals_are_found_at_any_depth(self) -> None:
        invalid = {"type": "bytes", "logicalType": "decimal", "precision": 0}
        money = decimal(30, 2, fixed("Money", 4, namespace="shop"))  # 4 bytes hold 9 digits
        writer = record("Order", field("lines", {"type": "array", "items": {"type": "map", "values": invalid}}),
                        field("total", ["null", money]), field("tax", "shop.Money"), namespace="shop")
        reader = record("Order", field("lines", {"type": "array", "items": {"type": "map", "values": decimal(9, 3)}}),
                        field("total", ["null", decimal(9, 2, fixed("Money", 4))]), field("tax", "shop.Money"),
                        namespace="shop")
        assert problems(reader, writer) == []

    def test_the_caller_s_schema_is_left_as_it_was(self) -> None:
        invalid = decimal(2, 5)
        writer = in_record(invalid)
        check_can_read(in_record("bytes"), writer)
        assert writer == in_record(decimal(2, 5))

    @pytest.mark.parametrize("invalid", INVALID_DECIMALS)
    def test_the_parsed_schema_decodes_an_invalid_decimal_as_its_underlying_type(self, invalid: dict[str, Any]) -> None:
        """What record validation decodes with: the underlying type's value, not an error."""
        value = {"bytes": b"\x01\x02", "fixed": b"\x00" * invalid.get("size", 0), "string": "x", "long": 7}
        datum = {"value": value[invalid["type"]]}
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, fastavro.parse_schema(in_record(underlying(invalid))), datum)
        buffer.seek(0)
        parsed = parse_avro_schema(in_record(invalid))
        assert fastavro.schemaless_reader(buffer, parsed.root, None) == datum


class TestNamedReferences:
    def test_a_reference_resolves_to_its_definition_whose_problems_are_reported_once(self) -> None:
        def schema(amount: str) -> dict[str, Any]:
            money = record("Money", field("amount", amount), namespace="shop")
            return record("Order", field("price", money), field("tax", "shop.Money"), namespace="shop")

        assert problems(schema("double"), schema("int")) == []
        assert problems(schema("int"), schema("double")) == [
            ("price.amount", "writer type double cannot be read as int")
        ]

    def test_reference_in_another_namespace_uses_the_full_name(self) -> None:
        money = record("Money", field("amount", "long"), namespace="finance")
        writer = record("Order", field("price", money), field("tax", "finance.Money"), namespace="shop")
        reader = record("Order", field("tax", record("Money", field("amount", "long"), namespace="other")))
        assert problems(reader, writer) == []

    def test_linked_list(self) -> None:
        def linked_list(value: str) -> dict[str, Any]:
            return record("Node", field("value", value), field("next", ["null", "Node"]))

        assert problems(linked_list("long"), linked_list("int")) == []
        assert problems(linked_list("int"), linked_list("long")) == [
            ("value", "writer type long cannot be read as int")
        ]

    def test_mutually_recursive_types_with_renamed_reader_types(self) -> None:
        def tree(name: str, extra_field: list[dict[str, Any]], **attributes: Any) -> dict[str, Any]:
            children = field("children", {"type": "array", "items": name})
            return record(name, field("label", "string"), children, *extra_field, **attributes)

        writer = tree("Tree", [])
        compatible = tree("Node", [field("weight", "int", default=1)], aliases=["Tree"])
        incompatible = tree("Node", [field("weight", "int")], aliases=["Tree"])
        assert problems(compatible, writer) == []
        assert problems(incompatible, writer) == [
            ("weight", "reader field has no default and the writer has no field of this name or alias")
        ]


class TestSchemaInput:
    def test_json_text_and_parsed_objects_are_equivalent(self) -> None:
        writer = record("Order", field("amount", "string"))
        reader = record("Order", field("amount", "long"))
        assert check_can_read(json.dumps(reader), json.dumps(writer)) == check_can_read(reader, writer)

    def test_bare_type_names_and_json_strings(self) -> None:
        assert problems("string", '"bytes"') == []
        assert problems(' "null" ', "null") == []

    @pytest.mark.parametrize(
        ("schema", "reason"),
        [
            ('{"type": "record", ', "not valid JSON"),
            (42, "expected JSON text, a type name, a dict or a list, got int"),
            ("strnig", "unknown type 'strnig'"),
            (record("Order", field("id", "Money")), "unknown type 'Money'"),
            (record("Order", aliases="Purchase"), "aliases of Order must be a list"),
            ({"type": "fixed", "name": "Hash"}, "missing attribute 'size'"),
            (enum("Status", "NEW", "NEW"), "All symbols in an enum must be unique"),
            (record("Order", field("id", "int", default="x")), "Default value <x> must match schema type: int"),
            (["null", "int", "null"], "a union cannot contain more than one null branch"),
            (["null", ["int", "long"]], "a union cannot directly contain another union"),
            (record("Order", field("id", "int"), field("id", "long")), "record Order repeats field id"),
            (["null", {"type": "array", "items": record("Money")}, record("Money")], "Money is defined more than once"),
        ],
    )
    def test_invalid_schemas_are_rejected_with_a_reason(self, schema: Any, reason: str) -> None:
        with pytest.raises(InvalidSchemaError, match=r"^invalid writer schema: ") as raised:
            check_can_read("string", schema)
        assert reason in str(raised.value)
        assert isinstance(raised.value, AvroCompatibilityError)

    def test_the_message_names_the_invalid_side(self) -> None:
        with pytest.raises(InvalidSchemaError, match=r"^invalid reader schema: "):
            check_can_read("strnig", "string")


class TestFormatting:
    def test_describe_with_subject(self) -> None:
        found = Incompatibility(path="amount", message="writer type string cannot be read as long")
        assert found.describe("orders-value") == "orders-value: field amount: writer type string cannot be read as long"
        assert str(found) == "field amount: writer type string cannot be read as long"

    def test_root_incompatibility_has_no_location(self) -> None:
        assert Incompatibility("", "writer type long cannot be read as int").describe("s") == (
            "s: writer type long cannot be read as int"
        )

    @pytest.mark.parametrize(
        ("direction", "suffix"),
        [
            (Direction.BACKWARD, "(new schema cannot read data written with version 3)"),
            (Direction.FORWARD, "(version 3 cannot read data written with the new schema)"),
        ],
    )
    def test_version_and_direction_are_described(self, direction: Direction, suffix: str) -> None:
        found = Incompatibility("amount", "writer type string cannot be read as long", 3, direction)
        assert found.describe("orders-value") == (
            f"orders-value: field amount: writer type string cannot be read as long {suffix}"
        )


class TestCompatibilityLevels:
    # v1 -> v2 -> new, where only adjacent versions are compatible:
    #   new reads v2 but not v1 (new's "email" has no default and v1 lacks it);
    #   v2 reads new but v1 does not (v1's "name" has no default and new lacks it).
    V1 = record("User", field("id", "long"), field("name", "string"))
    V2 = record("User", field("id", "long"), field("name", "string", default=""), field("email", "string", default=""))
    NEW = record("User", field("id", "long"), field("email", "string"))

    NEW_CANNOT_READ_V1 = (1, Direction.BACKWARD, "email")
    V1_CANNOT_READ_NEW = (1, Direction.FORWARD, "name")

    @pytest.mark.parametrize(
        ("level", "expected"),
        [
            (CompatibilityLevel.NONE, []),
            (CompatibilityLevel.BACKWARD, []),
            (CompatibilityLevel.FORWARD, []),
            (CompatibilityLevel.FULL, []),
            (CompatibilityLevel.BACKWARD_TRANSITIVE, [NEW_CANNOT_READ_V1]),
            (CompatibilityLevel.FORWARD_TRANSITIVE, [V1_CANNOT_READ_NEW]),
            (CompatibilityLevel.FULL_TRANSITIVE, [NEW_CANNOT_READ_V1, V1_CANNOT_READ_NEW]),
        ],
    )
    def test_levels_over_a_version_history(
        self, level: CompatibilityLevel, expected: list[tuple[int, Direction, str]]
    ) -> None:
        found = check_compatibility(self.NEW, [self.V1, self.V2], level)
        assert [(each.version, each.direction, each.path) for each in found] == expected

    @pytest.mark.parametrize(
        ("level", "expected"),
        [
            (CompatibilityLevel.NONE, []),
            (CompatibilityLevel.BACKWARD, [(2, Direction.BACKWARD)]),
            (CompatibilityLevel.BACKWARD_TRANSITIVE, [(1, Direction.BACKWARD), (2, Direction.BACKWARD)]),
            (CompatibilityLevel.FORWARD, [(2, Direction.FORWARD)]),
            (CompatibilityLevel.FORWARD_TRANSITIVE, [(1, Direction.FORWARD), (2, Direction.FORWARD)]),
            (CompatibilityLevel.FULL, [(2, Direction.BACKWARD), (2, Direction.FORWARD)]),
            (
                CompatibilityLevel.FULL_TRANSITIVE,
                [(1, Direction.BACKWARD), (1, Direction.FORWARD), (2, Direction.BACKWARD), (2, Direction.FORWARD)],
            ),
        ],
    )
    def test_levels_when_the_type_changes_incompatibly(
        self, level: CompatibilityLevel, expected: list[tuple[int, Direction]]
    ) -> None:
        versions = [record("User", field("id", "long"))] * 2
        found = check_compatibility(record("User", field("id", "string")), versions, level)
        assert [(each.version, each.direction) for each in found] == expected

    def test_each_finding_reads_as_a_sentence(self) -> None:
        [found] = check_compatibility(self.NEW, [self.V1, self.V2], CompatibilityLevel.BACKWARD_TRANSITIVE)
        assert found.describe("users-value") == (
            "users-value: field email: reader field has no default and the writer has no field of this name "
            "or alias (new schema cannot read data written with version 1)"
        )

    def test_first_version_is_always_compatible(self) -> None:
        assert check_compatibility(self.NEW, [], CompatibilityLevel.FULL_TRANSITIVE) == []

    def test_levels_parse_from_registry_strings(self) -> None:
        assert CompatibilityLevel("FULL_TRANSITIVE") is CompatibilityLevel.FULL_TRANSITIVE

    def test_invalid_new_schema_is_rejected_at_every_level(self) -> None:
        with pytest.raises(InvalidSchemaError, match=r"^invalid new schema: "):
            check_compatibility("strnig", [self.V1], CompatibilityLevel.NONE)

    def test_invalid_previous_version_names_its_position(self) -> None:
        with pytest.raises(InvalidSchemaError, match=r"^invalid version 2: "):
            check_compatibility(self.NEW, [self.V1, "strnig"], CompatibilityLevel.BACKWARD)
