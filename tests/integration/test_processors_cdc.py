"""End to end: a PostgreSQL change -> Debezium -> Kafka -> a filter+projection processor -> an upsert topic.

The connector is a copy of the shipped spec under its own name, slot, publication and topic prefix
(the shipped ``mesh-postgres-cdc`` belongs to other tests), removed with all it created afterwards.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import yaml
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from airflow_mesh.hooks.kafka_connect import KafkaConnectHook
from airflow_mesh.operators.flink import FlinkProcessor, SubmitFlinkJobOperator
from airflow_mesh.processors import DebeziumJson, Filter, KafkaInput, KafkaOutput, Processor, Project
from tests.integration.test_cdc_connectors import PG_SPEC, deploy, drop_slot, remove_connector, wait_healthy
from tests.integration.test_flink_jobs import flink, job_name  # noqa: F401 - fixtures

ORDERS = {"id": "BIGINT", "customer_id": "BIGINT", "status": "STRING", "amount": "DECIMAL(12, 2)", "note": "STRING"}


@dataclass(frozen=True)
class CdcConnector:
    """A deployed copy of the shipped PostgreSQL connector, capturing ``public.orders`` only."""

    name: str
    topic: str


@pytest.fixture
def cdc_connector(tmp_path: Path, postgres_conninfo: str, kafka_admin: AdminClient) -> Iterator[CdcConnector]:
    run = uuid.uuid4().hex[:8]
    slot, prefix = f"test_processors_{run}", f"test.processors.{run}"
    spec = yaml.safe_load(PG_SPEC.read_text())
    spec["name"] = f"test-processors-pg-{run}"
    spec["config"].pop("signal.data.collection")
    spec["config"].update({"slot.name": slot, "publication.name": slot, "topic.prefix": prefix,
                           "table.include.list": r"public\.orders", "snapshot.mode": "no_data"})
    spec_path = tmp_path / "pg.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    connector = CdcConnector(spec["name"], f"{prefix}.public.orders")
    # The topic exists before the processor starts, which reads the partitions it finds then.
    kafka_admin.create_topics([NewTopic(connector.topic, 1, 1)])[connector.topic].result(timeout=30)
    deploy(spec_path)
    wait_healthy(connector.name)
    yield connector
    remove_connector(KafkaConnectHook(), connector.name)
    drop_slot(postgres_conninfo, slot)
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"DROP PUBLICATION IF EXISTS {slot}")
    topics = [t for t in (connector.topic, f"__debezium-heartbeat.{prefix}")
              if t in kafka_admin.list_topics(timeout=10).topics]
    for future in kafka_admin.delete_topics(topics).values():
        future.result(timeout=30)


class UpsertReader:
    """Reads an upsert topic's records in order: ``(key, value)`` with JSON decoded, a tombstone's value None."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
        self.consumer.subscribe([topic])

    def next(self, count: int, timeout: float = 60) -> list[tuple[dict, dict | None]]:
        """The next ``count`` records, or fewer if they do not come within ``timeout`` seconds."""
        records: list[tuple[dict, dict | None]] = []
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            message = self.consumer.poll(0.5)
            if message is None:  # a tombstone Message is falsy: compare with None
                continue
            assert not message.error(), message.error()
            value = json.loads(message.value(), parse_float=Decimal) if message.value() is not None else None
            records.append((json.loads(message.key()), value))
        return records

    def close(self) -> None:
        self.consumer.close()


def test_postgres_changes_flow_through_debezium_and_a_processor_with_upsert_semantics(
    cdc_connector, job_name, new_topic, postgres_conninfo, bootstrap_servers  # noqa: F811 - fixture
):
    output = new_topic("paid-orders")
    processor = Processor(
        "open_orders",
        inputs=[KafkaInput("orders", cdc_connector.topic, ORDERS, format=DebeziumJson(), key=["id"])],
        steps=[Filter("status <> 'cancelled' AND amount >= 10"), Project(["id", "status", "amount"])],
        output=KafkaOutput(output, key=["id"]),
    )
    a, b = random.sample(range(10**9, 2 * 10**9), 2)

    def change(sql: str, *args) -> None:
        with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
            conn.execute(sql, args)

    def order(key: int, status: str, amount: str) -> tuple[dict, dict]:
        return {"id": key}, {"id": key, "status": status, "amount": Decimal(amount)}

    reader = UpsertReader(bootstrap_servers, output)
    try:
        change("INSERT INTO orders (id, customer_id, status, amount) VALUES (%s, 1, 'new', 12.50)", a)
        SubmitFlinkJobOperator(task_id="submit", job_name=job_name("open-orders"), program=FlinkProcessor(processor),
                               healthy_for=2).execute({})
        # A row inserted before the processor started is read from the start of the change log.
        assert reader.next(1) == [order(a, "new", "12.50")]

        # A row the filter leaves out writes nothing (or its record would come before A's update).
        change("INSERT INTO orders (id, customer_id, status, amount) VALUES (%s, 2, 'new', 5.00)", b)
        change("UPDATE orders SET status = 'paid' WHERE id = %s", a)
        assert reader.next(1) == [order(a, "paid", "12.50")]  # an update is one upsert, no tombstone first

        change("UPDATE orders SET amount = 20.00 WHERE id = %s", b)
        assert reader.next(1) == [order(b, "new", "20.00")]  # updated into the filter: inserted downstream

        change("UPDATE orders SET status = 'cancelled' WHERE id = %s", a)
        assert reader.next(1) == [({"id": a}, None)]  # updated out of the filter: deleted downstream

        change("DELETE FROM orders WHERE id = %s", a)  # already gone downstream: writes nothing
        change("DELETE FROM orders WHERE id = %s", b)
        assert reader.next(1) == [({"id": b}, None)]  # a delete is a tombstone

        assert reader.next(1, timeout=3) == []  # and nothing more
    finally:
        reader.close()
        change("DELETE FROM orders WHERE id IN (%s, %s)", a, b)
