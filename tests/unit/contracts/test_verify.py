"""Verifying a producer schema against its subject's registered versions, level and consumers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_mesh.contracts.avro_compat import CompatibilityLevel, parse_avro_schema
from airflow_mesh.contracts.repository import SchemaContract, load_repository
from airflow_mesh.contracts.verify import RegisteredVersion, render_report, verify_contract, versions_to_check

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = load_repository(ROOT / "schemas")
ORDERS = "mesh.pg.public.orders"
CONTRACT = SHIPPED.contract(ORDERS, "value")
READS = SHIPPED.reads_of(ORDERS, "value")


def variant(change) -> str:
    """The shipped orders value schema, changed by ``change(schema, value_record)``."""
    schema = json.loads(CONTRACT.text)
    change(schema, schema["fields"][0]["type"][1])
    return json.dumps(schema)


def as_candidate(text: str) -> SchemaContract:
    return SchemaContract(ORDERS, "value", CONTRACT.file, text, parse_avro_schema(text))


def add_field(**field):
    return lambda schema, value: value["fields"].append(field)


def drop_field(name):
    return lambda schema, value: value.update(fields=[f for f in value["fields"] if f["name"] != name])


@pytest.mark.parametrize(("level", "versions", "needed"), [
    (CompatibilityLevel.BACKWARD, [1, 2, 5], [5]),
    (CompatibilityLevel.NONE, [1, 2, 5], [5]),
    (CompatibilityLevel.FULL_TRANSITIVE, [1, 2, 5], [1, 2, 5]),
    (CompatibilityLevel.FORWARD_TRANSITIVE, [], []),
])
def test_versions_to_check(level, versions, needed):
    assert versions_to_check(level, versions) == needed


def test_new_subject_passes_with_nothing_to_check():
    verdict = verify_contract(CONTRACT, CompatibilityLevel.FULL, [], READS)
    assert verdict.passed and verdict.latest_version is None and verdict.subject == f"{ORDERS}-value"


def test_unchanged_schema_passes():
    verdict = verify_contract(CONTRACT, CompatibilityLevel.FULL_TRANSITIVE, [RegisteredVersion(3, CONTRACT.text)],
                              READS)
    assert verdict.passed and verdict.latest_version == 3


def test_level_problems_name_the_registry_version():
    with_required_field = as_candidate(variant(add_field(name="currency", type="string")))
    registered = [RegisteredVersion(2, CONTRACT.text), RegisteredVersion(7, CONTRACT.text)]
    verdict = verify_contract(with_required_field, CompatibilityLevel.BACKWARD_TRANSITIVE, registered, READS)
    assert verdict.problems == tuple(
        "field before<mesh.pg.public.orders.Value>.currency: reader field has no default and the writer has no "
        f"field of this name or alias (new schema cannot read data written with version {v})" for v in (2, 7))


def test_consumer_problems_come_with_level_problems_and_none_is_no_excuse():
    without_amount = as_candidate(variant(drop_field("amount")))
    verdict = verify_contract(without_amount, CompatibilityLevel.NONE, [RegisteredVersion(4, CONTRACT.text)], READS)
    assert [p.split(" reads ")[0] for p in verdict.problems] == [("consumer finance-ledger (owner finance-data@mesh"
                                                                  f".example, {ROOT}/schemas/consumers/finance-ledger."
                                                                  "yaml)")] * 2
    assert f"reads {ORDERS} value field after.amount: the new schema no longer has it" in verdict.problems[1]


def test_dropping_an_unread_field_passes_backward():
    verdict = verify_contract(as_candidate(variant(drop_field("note"))), CompatibilityLevel.BACKWARD,
                              [RegisteredVersion(1, CONTRACT.text)], READS)
    assert verdict.passed


def test_a_registered_version_the_checker_cannot_parse_is_a_problem():
    verdict = verify_contract(CONTRACT, CompatibilityLevel.BACKWARD, [RegisteredVersion(1, '{"type": "nope"}')], READS)
    (problem,) = verdict.problems
    assert problem.startswith("cannot check against the registered versions: invalid version 1: unknown type")


def test_report_lists_every_problem_of_every_failing_subject():
    good = verify_contract(CONTRACT, CompatibilityLevel.BACKWARD, [], READS)
    bad = verify_contract(as_candidate(variant(drop_field("amount"))), CompatibilityLevel.BACKWARD,
                          [RegisteredVersion(9, CONTRACT.text)], READS)
    report = render_report([good, bad])
    lines = report.splitlines()
    assert lines[0] == "1 of 2 schemas break their contracts"
    assert lines[1] == (f"{ORDERS}-value ({CONTRACT.file}; level BACKWARD, latest registered version 9):")
    assert lines[2:] == [f"  - {p}" for p in bad.problems] and len(bad.problems) == 2
    assert render_report([good, good]) == "every schema keeps its contracts (2 checked)"
