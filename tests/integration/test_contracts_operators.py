"""VerifyContractsOperator and RegisterSchemasOperator against the stack's real schema registry.

Each test works on a copy of the shipped contracts whose topics carry a unique prefix, so its subjects
are its own; they are purged from the registry afterwards.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from airflow.sdk.exceptions import AirflowException

from airflow_mesh.hooks.schema_registry import SchemaRegistryHook
from airflow_mesh.operators.contracts import RegisterSchemasOperator, VerifyContractsOperator
from tests.integration.test_schema_registry_hook import answering_registry, purge

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "schemas"
CDC_TOPICS = ("mesh.pg.public.orders", "mesh.pg.public.customers", "mesh.mariadb.mesh.shipments")


def copy_contracts(destination: Path, prefix: str) -> dict[str, str]:
    """Copy the shipped contracts, each topic renamed ``<prefix>.<topic>`` (folders and declarations).

    Returns:
        Shipped topic name -> name in the copy.
    """
    shutil.copytree(SHIPPED, destination)
    renamed = {topic: f"{prefix}.{topic}" for topic in CDC_TOPICS}
    for topic, new_name in renamed.items():
        (destination / topic).rename(destination / new_name)
    for file in (destination / "consumers").glob("*.yaml"):
        declaration = yaml.safe_load(file.read_text())
        declaration["reads"] = {renamed[topic]: reads for topic, reads in declaration["reads"].items()}
        file.write_text(yaml.safe_dump(declaration, sort_keys=False))
    return renamed


def purge_subjects(hook: SchemaRegistryHook, topics: list[str]) -> None:
    """Purge the key and value subjects of topics from the registry."""
    for topic in topics:
        for role in ("key", "value"):
            purge(hook, f"{topic}-{role}")


class Contracts:
    """A private copy of the shipped contracts: where it is, its topics, and how to edit its schemas."""

    def __init__(self, path: Path, topics: dict[str, str]) -> None:
        self.path = path
        self.topics = topics

    def subject(self, topic: str, role: str = "value") -> str:
        return f"{self.topics[topic]}-{role}"

    def edit(self, topic: str, change: Callable[[dict[str, Any], dict[str, Any]], None]) -> None:
        """Rewrite ``<topic>/value.avsc`` with ``change(envelope, row_record)``."""
        file = self.path / self.topics[topic] / "value.avsc"
        schema = json.loads(file.read_text())
        change(schema, schema["fields"][0]["type"][1])
        file.write_text(json.dumps(schema, indent=2))


@pytest.fixture(scope="session")
def registry() -> SchemaRegistryHook:
    return answering_registry()


@pytest.fixture
def contracts(tmp_path: Path, registry: SchemaRegistryHook) -> Iterator[Contracts]:
    topics = copy_contracts(tmp_path / "schemas", f"test{uuid.uuid4().hex[:10]}")
    yield Contracts(tmp_path / "schemas", topics)
    purge_subjects(registry, list(topics.values()))


def verify(contracts: Contracts) -> list[dict[str, Any]]:
    return VerifyContractsOperator(task_id="verify", schemas_path=str(contracts.path)).execute({})


def register(contracts: Contracts) -> list[dict[str, Any]]:
    return RegisterSchemasOperator(task_id="register", schemas_path=str(contracts.path)).execute({})


def test_verify_register_and_register_again(contracts, registry):
    verified = verify(contracts)
    assert [(v["subject"], v["level"], v["latest_version"]) for v in verified] == [
        (contracts.subject(topic, role), "BACKWARD", None)
        for topic in sorted(CDC_TOPICS, key=contracts.topics.get) for role in ("key", "value")]

    registered = register(contracts)
    assert [r["action"] for r in registered] == ["registered"] * 6 and all(r["version"] == 1 for r in registered)
    orders = registry.get_version(contracts.subject("mesh.pg.public.orders"))
    assert orders.id == next(r["id"] for r in registered if r["subject"] == orders.subject)
    shipped = contracts.path / contracts.topics["mesh.pg.public.orders"] / "value.avsc"
    assert json.loads(orders.schema) == json.loads(shipped.read_text())

    assert {v["latest_version"] for v in verify(contracts)} == {1}
    assert [r["action"] for r in register(contracts)] == ["unchanged"] * 6


def test_every_problem_is_reported_and_what_passed_is_registered(contracts, registry):
    register(contracts)

    def status_becomes_a_number(envelope, row):
        next(f for f in row["fields"] if f["name"] == "status")["type"] = "long"

    def required_tier(envelope, row):
        row["fields"].append({"name": "tier", "type": "string"})

    def drop_unread_source_fields(envelope, row):
        source = envelope["fields"][2]["type"]
        source["fields"] = [f for f in source["fields"] if f["name"] not in ("gtid", "thread", "query")]

    contracts.edit("mesh.pg.public.orders", status_becomes_a_number)
    contracts.edit("mesh.pg.public.customers", required_tier)
    contracts.edit("mesh.mariadb.mesh.shipments", drop_unread_source_fields)

    with pytest.raises(AirflowException) as failed:
        verify(contracts)
    report = str(failed.value).splitlines()
    assert report[0] == "2 of 6 schemas break their contracts"
    orders, customers = contracts.subject("mesh.pg.public.orders"), contracts.subject("mesh.pg.public.customers")
    assert report[1].startswith(f"{customers} (") and "level BACKWARD, latest registered version 1" in report[1]
    assert report[2] == ("  - field before<mesh.pg.public.customers.Value>.tier: reader field has no default and the "
                         "writer has no field of this name or alias (new schema cannot read data written with "
                         "version 1)")
    assert report[3].startswith(f"{orders} (")
    assert report[4] == ("  - field before<mesh.pg.public.orders.Value>.status: writer type string cannot be read as "
                         "long (new schema cannot read data written with version 1)")
    assert [line.split(" (owner")[0] for line in report[5:]] == ["  - consumer search-indexer",
                                                                 "  - consumer shipment-tracker"]
    assert all(line.endswith(f"reads {contracts.topics['mesh.pg.public.orders']} value field after.status: writer "
                             "type long cannot be read as string") for line in report[5:])

    with pytest.raises(AirflowException) as refused:
        register(contracts)
    assert str(refused.value).startswith("4 of 6 schemas are registered; not registered:\n2 of 6 schemas break")
    assert registry.list_versions(contracts.subject("mesh.mariadb.mesh.shipments")) == [1, 2]
    assert registry.list_versions(orders) == [1] and registry.list_versions(customers) == [1]


def test_removing_a_field_a_consumer_reads_names_the_consumer(contracts):
    def drop_amount(envelope, row):
        row["fields"] = [f for f in row["fields"] if f["name"] != "amount"]

    contracts.edit("mesh.pg.public.orders", drop_amount)
    with pytest.raises(AirflowException) as failed:
        verify(contracts)
    lines = str(failed.value).splitlines()
    assert lines[0] == f"the contracts in {contracts.path} are invalid:"
    declaration = contracts.path / "consumers" / "finance-ledger.yaml"
    topic = contracts.topics["mesh.pg.public.orders"]
    assert [line.split(": field ")[0] for line in lines[1:]] == [
        f"{declaration}: reads.{topic}.value[1]", f"{declaration}: reads.{topic}.value[4]"]
    assert "field after.amount does not exist in" in lines[2]


def test_removing_a_field_nobody_reads_passes_and_registers(contracts, registry):
    register(contracts)

    def drop_note(envelope, row):
        row["fields"] = [f for f in row["fields"] if f["name"] != "note"]

    contracts.edit("mesh.pg.public.orders", drop_note)
    verify(contracts)
    actions = {r["subject"]: (r["action"], r["version"]) for r in register(contracts)}
    assert actions[contracts.subject("mesh.pg.public.orders")] == ("registered", 2)
