"""The shipped contracts describe what the shipped Debezium connectors really write.

Copies of both shipped connector specs run under names, a slot, a publication and a topic prefix of
their own (the shipped connectors are left alone). Their snapshot and live change events for the demo
tables must all validate against the shipped contracts.
"""

from __future__ import annotations

import random
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from confluent_kafka.admin import AdminClient

from airflow_mesh.hooks.kafka_connect import KafkaConnectHook
from airflow_mesh.operators.contracts import ValidateTopicRecordsOperator
from tests.integration.test_cdc_connectors import change_events, deploy, drop_slot, remove_connector, wait_healthy
from tests.integration.test_contracts_operators import copy_contracts

ROOT = Path(__file__).resolve().parents[2]
CONNECTORS = ROOT / "connectors"


@pytest.fixture
def scratch_connectors(tmp_path: Path, postgres_conninfo: str, kafka_admin: AdminClient) -> Iterator[str]:
    """Both shipped specs deployed under a unique prefix; returns it. Removed with all they made afterwards."""
    tag = f"test{uuid.uuid4().hex[:10]}"
    slot = f"{tag}_pg"
    pg = yaml.safe_load((CONNECTORS / "postgres_mesh_cdc.yaml").read_text())
    pg["name"] = f"{tag}-postgres-cdc"
    pg["config"].update({"slot.name": slot, "publication.name": slot, "topic.prefix": f"{tag}.mesh.pg"})
    mariadb = yaml.safe_load((CONNECTORS / "mariadb_mesh_cdc.yaml").read_text())
    mariadb["name"] = f"{tag}-mariadb-cdc"
    mariadb["config"].update({"topic.prefix": f"{tag}.mesh.mariadb", "database.server.id": random.randint(2**20, 2**30),
                              "schema.history.internal.kafka.topic": f"_{tag}-mariadb-schema-history"})
    specs = tmp_path / "connectors"
    specs.mkdir()
    for spec in (pg, mariadb):
        (specs / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec))
    hook = KafkaConnectHook()
    try:
        deploy(specs)
        for spec in (pg, mariadb):
            wait_healthy(spec["name"])
        yield tag
    finally:
        for spec in (pg, mariadb):
            remove_connector(hook, spec["name"])
        drop_slot(postgres_conninfo, slot)
        with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
            conn.execute(f"DROP PUBLICATION IF EXISTS {slot}")
        made = [topic for topic in kafka_admin.list_topics(timeout=10).topics if tag in topic]
        if made:
            for future in kafka_admin.delete_topics(made).values():
                future.result(timeout=30)


def test_snapshot_and_change_events_validate_against_the_shipped_contracts(
    scratch_connectors, tmp_path, postgres_conninfo, bootstrap_servers
):
    tag = scratch_connectors
    key = random.randint(10**9, 2 * 10**9)
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute("INSERT INTO customers (id, name, email) VALUES (%s, 'Ada', NULL)", (key,))
        conn.execute("UPDATE customers SET country = 'FR', email = 'ada@example.com' WHERE id = %s", (key,))
        conn.execute("INSERT INTO orders (id, customer_id, status, amount, note) VALUES (%s, %s, 'new', 12.5, NULL)",
                     (key, key))
        conn.execute("UPDATE orders SET status = 'paid', amount = 99999999.99, note = 'gift' WHERE id = %s", (key,))
        conn.execute("DELETE FROM orders WHERE id = %s", (key,))
        conn.execute("DELETE FROM customers WHERE id = %s", (key,))
    subprocess.run(["mariadb", f"--defaults-file={ROOT / '.stack' / 'conf' / 'mariadb.cnf'}", "-u", "root", "-e",
                    (f"INSERT INTO mesh.shipments VALUES ({key}, {key}, 'dhl', 'packed', NULL);"
                     f"UPDATE mesh.shipments SET status = 'shipped', shipped_at = '2026-11-26 10:00:00.123456' "
                     f"WHERE id = {key};"
                     f"DELETE FROM mesh.shipments WHERE id = {key};")], check=True)
    topics = copy_contracts(tmp_path / "schemas", tag)
    for topic in topics.values():  # create, update, delete and tombstone of the row, once all are written
        assert len(change_events(bootstrap_servers, topic, "id", key, 4)) == 4, topic

    reports = [ValidateTopicRecordsOperator(task_id="validate", topic=topic, schemas_path=str(tmp_path / "schemas"),
                                            record_format="json", max_records=100_000).execute({})
               for topic in topics.values()]

    for report in reports:
        assert report["invalid"] == 0, report["failures"]
        assert report["records"] >= 4 and report["tombstones"] >= 1
