"""dags/verify_contracts.py runs green under dag.test() against the real registry and Kafka.

The DAG runs on a copy of the shipped contracts whose topics carry a unique prefix (through
``MESH_SCHEMAS_DIR``), so that its subjects and topics are its own.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from airflow_mesh.hooks.schema_registry import SchemaRegistryHook
from tests.integration.test_contracts_operators import copy_contracts, purge_subjects
from tests.integration.test_contracts_records import as_json, event

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dags" / "verify_contracts.py"


def load_dag():
    spec = importlib.util.spec_from_file_location("verify_contracts", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.verify_contracts_dag


@pytest.fixture
def contracts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kafka_admin: AdminClient) -> Iterator[dict[str, str]]:
    """A private copy of the contracts for the DAG; its subjects and topics are removed afterwards."""
    topics = copy_contracts(tmp_path / "schemas", f"test{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("MESH_SCHEMAS_DIR", str(tmp_path / "schemas"))
    yield topics
    purge_subjects(SchemaRegistryHook(), list(topics.values()))
    made = [t for t in kafka_admin.list_topics(timeout=10).topics if any(t.startswith(n) for n in topics.values())]
    if made:
        for future in kafka_admin.delete_topics(made).values():
            future.result(timeout=30)


def test_verify_contracts_dag(airflow_db, contracts, kafka_admin, bootstrap_servers):
    orders, customers = contracts["mesh.pg.public.orders"], contracts["mesh.pg.public.customers"]
    for topic in (orders, customers):  # the shipments topic is left missing: its validation is skipped
        kafka_admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap_servers})
    for order_id in range(5):
        producer.produce(orders, key=as_json({"id": order_id}), value=as_json(event(order_id)))
    producer.produce(customers, key=as_json({"id": 1}), value=None)
    assert producer.flush(30) == 0

    run = load_dag().test()

    instances = run.get_task_instances()
    states = {(ti.task_id, ti.map_index): ti.state for ti in instances}
    assert run.state == "success", states
    assert states == {("verify_contracts", -1): "success", ("register_schemas", -1): "success",
                      ("field_usage", -1): "success", ("topics_to_validate", -1): "success",
                      ("validate_records", 0): "skipped", ("validate_records", 1): "success",
                      ("validate_records", 2): "success"}
    registered = {r["subject"] for r in _xcom(instances, "register_schemas")}
    assert registered == {f"{topic}-{role}" for topic in contracts.values() for role in ("key", "value")}
    usage = _xcom(instances, "field_usage")
    assert usage[orders]["value"]["after.amount"] == ["finance-ledger"]
    reports = {r["topic"]: r for r in _xcom(instances, "validate_records", mapped=True) if r}
    assert (reports[orders]["records"], reports[orders]["valid"]) == (5, 5)
    assert (reports[customers]["records"], reports[customers]["tombstones"]) == (1, 1)


def _xcom(instances, task_id: str, mapped: bool = False):
    values = [ti.xcom_pull(task_ids=task_id, map_indexes=ti.map_index) for ti in instances if ti.task_id == task_id]
    return values if mapped else values[0]
