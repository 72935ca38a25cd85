"""Plain JSON (Kafka Connect's JsonConverter without schemas) checked against Avro contracts."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from airflow_mesh.contracts.avro_compat import parse_avro_schema
from airflow_mesh.contracts.json_check import compile_json_check
from airflow_mesh.contracts.repository import load_repository

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = load_repository(ROOT / "schemas")
# A real event of the shipped PostgreSQL connector (mesh.pg.public.orders), as Connect wrote it.
ORDER_UPDATE = json.loads(
    '{"before":{"id":1020165116,"customer_id":1020165116,"status":"new","amount":"12.50",'
    '"created_at":"2026-11-26T16:35:19.255357Z","updated_at":"2026-11-26T16:35:19.255357Z","note":"hi"},'
    '"after":{"id":1020165116,"customer_id":1020165116,"status":"paid","amount":"13.75",'
    '"created_at":"2026-11-26T16:35:19.255357Z","updated_at":"2026-11-26T16:35:19.255357Z","note":"hi"},'
    '"source":{"version":"3.6.1.Final","connector":"postgresql","name":"mesh.pg","ts_ms":1795710919255,'
    '"snapshot":"false","db":"mesh","sequence":"[\\"44285632\\",\\"44285632\\"]","ts_us":1795710919255892,'
    '"ts_ns":1795710919255892000,"schema":"public","table":"orders","txId":1384,"lsn":44285632,"xmin":null,'
    '"origin":null,"origin_lsn":null},"transaction":null,"op":"u","ts_ms":1795710919323,'
    '"ts_us":1795710919323088,"ts_ns":1795710919323088332}')

SCHEMA = {"type": "record", "name": "R", "fields": [
    {"name": "i", "type": "int"},
    {"name": "l", "type": "long", "default": 0},
    {"name": "d", "type": ["null", "double"], "default": None},
    {"name": "b", "type": "boolean", "default": False},
    {"name": "raw", "type": "bytes", "default": ""},
    {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}, "default": "A"},
    {"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "Item", "fields": [
        {"name": "sku", "type": "string"}]}}, "default": []},
    {"name": "tags", "type": {"type": "map", "values": "long"}, "default": {}},
    {"name": "choice", "type": ["null", "string", "long", "Item"], "default": None},
    {"name": "next", "type": ["null", "R"], "default": None},
]}


@pytest.fixture(scope="module")
def check():
    return compile_json_check(parse_avro_schema(SCHEMA))


def test_real_debezium_event_conforms_and_each_corruption_is_pinned():
    check = compile_json_check(SHIPPED.contract("mesh.pg.public.orders", "value").schema)
    assert check(ORDER_UPDATE) is None
    assert check({**ORDER_UPDATE, "after": {**ORDER_UPDATE["after"], "amount": 13.75}}) == \
        "after.amount: expected a string, got a number"
    assert check({**ORDER_UPDATE, "after": {**ORDER_UPDATE["after"], "vat": "1"}}) == \
        "after.vat: unexpected field (record mesh.pg.public.orders.Value has no field vat)"
    without_db = copy.deepcopy(ORDER_UPDATE)
    del without_db["source"]["db"]
    assert check(without_db) == ("source.db: missing (record io.debezium.connector.postgresql.Source has no default "
                                 "for it)")


@pytest.mark.parametrize("value", [
    {"i": 1},
    {"i": -(2**31), "l": 2**63 - 1, "d": 1, "b": True, "raw": "AAE=", "e": "B"},
    {"i": 0, "d": 2.5, "items": [{"sku": "x"}], "tags": {"a": 1}},
    {"i": 0, "choice": "text"}, {"i": 0, "choice": 5}, {"i": 0, "choice": {"sku": "y"}},
    {"i": 0, "next": {"i": 1, "next": {"i": 2}}},
])
def test_conforming_values(check, value):
    assert check(value) is None


@pytest.mark.parametrize(("value", "problem"), [
    ([], "expected an object (record R), got an array"),
    ({}, "i: missing (record R has no default for it)"),
    ({"i": "1"}, "i: expected an integer (int), got a string"),
    ({"i": True}, "i: expected an integer (int), got a boolean"),
    ({"i": 2**31}, "i: integer out of the range of int"),
    ({"i": 0, "l": 1.5}, "l: expected an integer (long), got a number"),
    ({"i": 0, "d": "1"}, "d: a string matches no branch of union [null, double]"),
    ({"i": 0, "b": 1}, "b: expected a boolean, got a number"),
    ({"i": 0, "raw": 1}, "raw: expected a string (bytes as base64 text), got a number"),
    ({"i": 0, "e": "C"}, "e: not a symbol of enum E"),
    ({"i": 0, "items": [{"sku": "x"}, {"sku": 1}]}, "items[1].sku: expected a string, got a number"),
    ({"i": 0, "items": {}}, "items: expected an array, got an object"),
    ({"i": 0, "tags": {"a": "1"}}, "tags{a}: expected an integer (long), got a string"),
    ({"i": 0, "choice": True}, "choice: a boolean matches no branch of union [null, string, long, Item]"),
    ({"i": 0, "choice": {"sku": 2}}, "choice.sku: expected a string, got a number"),
    ({"i": 0, "next": {"i": 1, "next": {"i": None}}}, "next.next.i: expected an integer (int), got null"),
    ({"i": 0, "x": 1, "y": 2}, "x: unexpected field (record R has no field x)"),
])
def test_problems_name_the_path_and_the_expected_type(check, value: Any, problem: str):
    assert check(value) == problem


def test_messages_never_carry_the_data(check):
    secret = "4111-1111-1111-1111"
    for value in ({"i": secret}, {"i": 0, "e": secret}, {"i": 0, "choice": [secret]}):
        assert secret not in check(value)
