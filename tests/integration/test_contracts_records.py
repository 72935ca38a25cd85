"""ValidateTopicRecordsOperator on real Kafka topics, with the real registry for the wire format.

The records are Debezium change events of the shipped contracts' tables, written as the stack's
Connect writes them (JSON without schemas) or in Confluent's wire format.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import fastavro
import pytest
from airflow.sdk.exceptions import AirflowException, AirflowSkipException
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from airflow_mesh.hooks.schema_registry import SchemaRegistryHook
from airflow_mesh.operators.contracts import DEAD_LETTER_HEADERS, ValidateTopicRecordsOperator
from tests.integration.test_contracts_operators import Contracts, copy_contracts, purge_subjects

ORDERS = "mesh.pg.public.orders"
SOURCE = {"version": "3.6.1.Final", "connector": "postgresql", "name": "mesh.pg", "ts_ms": 1795710919255,
          "snapshot": "false", "db": "mesh", "sequence": None, "ts_us": None, "ts_ns": None, "schema": "public",
          "table": "orders", "txId": 1384, "lsn": 44285632, "xmin": None, "origin": None, "origin_lsn": None}


def order(order_id: int, **changes: Any) -> dict[str, Any]:
    return {"id": order_id, "customer_id": 7, "status": "new", "amount": "12.50",
            "created_at": "2026-11-26T16:35:19.255357Z", "updated_at": "2026-11-26T16:35:19.255357Z", "note": None,
            **changes}


def event(order_id: int, op: str = "c", **changes: Any) -> dict[str, Any]:
    row = order(order_id, **changes)
    return {"before": row if op in ("u", "d") else None, "after": None if op == "d" else row, "source": SOURCE,
            "transaction": None, "op": op, "ts_ms": 1795710919323, "ts_us": None, "ts_ns": None}


def as_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@pytest.fixture
def contracts(tmp_path: Path) -> Iterator[Contracts]:
    registry = SchemaRegistryHook()
    topics = copy_contracts(tmp_path / "schemas", f"test{uuid.uuid4().hex[:10]}")
    yield Contracts(tmp_path / "schemas", topics)
    purge_subjects(registry, list(topics.values()))


@pytest.fixture
def topics(kafka_admin: AdminClient) -> Iterator[Callable[..., str]]:
    """Create named topics for a test; delete them (and any dead-letter topic made from them) after it."""
    created: list[str] = []

    def create(name: str, partitions: int = 1) -> str:
        kafka_admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=30)
        created.append(name)
        return name

    yield create
    existing = kafka_admin.list_topics(timeout=10).topics
    doomed = [t for t in existing if any(t == name or t.startswith(f"{name}.") for name in created)]
    if doomed:
        for future in kafka_admin.delete_topics(doomed).values():
            future.result(timeout=30)


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]], partition: int | None = None,
            timestamps: list[int] | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for index, (key, value) in enumerate(records):
        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        if timestamps:
            extra["timestamp"] = timestamps[index]
        producer.produce(topic, key=key, value=value, **extra)
    assert producer.flush(30) == 0


def validate(contracts: Contracts, topic: str, **kwargs: Any) -> dict[str, Any]:
    return ValidateTopicRecordsOperator(task_id="validate", topic=topic, schemas_path=str(contracts.path),
                                        **kwargs).execute({})


def test_debezium_json_records_conform(contracts, topics, bootstrap_servers):
    topic = topics(contracts.topics[ORDERS], partitions=3)
    records = []
    for order_id in range(1, 11):
        key = as_json({"id": order_id})
        records += [(key, as_json(event(order_id))), (key, as_json(event(order_id, "u", status="paid")))]
    records += [(as_json({"id": 1}), as_json(event(1, "d"))), (as_json({"id": 1}), None)]
    produce(bootstrap_servers, topic, records)

    report = validate(contracts, topic, record_format="json")

    assert report == {"topic": topic, "records": 22, "valid": 22, "invalid": 0, "tombstones": 1, "failures": [],
                      "dead_lettered": 0}


def test_invalid_records_fail_the_task_and_go_to_the_dead_letter_topic(contracts, topics, bootstrap_servers):
    topic = topics(contracts.topics[ORDERS])
    good = (as_json({"id": 1}), as_json(event(1)))
    wrong_amount = (as_json({"id": 2}), as_json(event(2, amount=12.5)))
    wrong_key = (as_json({"id": "3"}), as_json(event(3)))
    produce(bootstrap_servers, topic, [good, wrong_amount, good, wrong_key])
    dead_letters = f"{topic}.contract-dlq"

    with pytest.raises(AirflowException) as failed:
        validate(contracts, topic, dead_letter_topic=dead_letters)

    assert str(failed.value).splitlines()[1:] == [
        f"{topic}: 4 records, 2 valid (0 tombstones), 2 invalid",
        "  - partition 0 offset 1 value: after.amount: expected a string, got a number",
        "  - partition 0 offset 3 key: id: expected an integer (long), got a string",
    ]
    copied = read_all(bootstrap_servers, dead_letters, 2)
    assert [(m.key(), m.value()) for m in copied] == [wrong_amount, wrong_key]
    headers = dict(copied[0].headers())
    assert [headers[name].decode() for name in DEAD_LETTER_HEADERS] == [
        "value: after.amount: expected a string, got a number", topic, "0", "1"]


def test_validation_moves_no_consumer_offset(contracts, topics, bootstrap_servers, kafka_admin):
    topic = topics(contracts.topics[ORDERS])
    produce(bootstrap_servers, topic, [(as_json({"id": i}), as_json(event(i))) for i in range(10)])
    real_group = f"test-real-consumer-{uuid.uuid4().hex[:8]}"
    real = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": real_group, "enable.auto.commit": False})
    real.commit(offsets=[TopicPartition(topic, 0, 4)], asynchronous=False)
    real.close()
    groups_before = {g.group_id for g in kafka_admin.list_consumer_groups().result(timeout=30).valid}

    report = validate(contracts, topic)

    assert report["records"] == 10
    committed = kafka_admin.list_consumer_group_offsets(
        [_group_request(real_group, topic)])[real_group].result(timeout=30)
    assert [tp.offset for tp in committed.topic_partitions] == [4]
    groups_after = {g.group_id for g in kafka_admin.list_consumer_groups().result(timeout=30).valid}
    assert not {g for g in groups_after - groups_before if g.startswith("airflow-mesh-contract-check-")}


def _group_request(group: str, topic: str):
    from confluent_kafka import ConsumerGroupTopicPartitions

    return ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])


def test_sample_is_bounded_to_the_newest_or_oldest_records(contracts, topics, bootstrap_servers):
    topic = topics(contracts.topics[ORDERS])
    invalid_first = [(as_json({"id": i}), as_json(event(i, amount=1.0))) for i in range(30)]
    valid_last = [(as_json({"id": i}), as_json(event(i))) for i in range(30, 40)]
    produce(bootstrap_servers, topic, invalid_first + valid_last)

    newest = validate(contracts, topic, max_records=10)
    oldest = validate(contracts, topic, max_records=5, newest=False, fail_on_invalid=False, max_failures=1)

    assert (newest["records"], newest["valid"]) == (10, 10)
    assert (oldest["records"], oldest["invalid"]) == (5, 5)
    assert [f["offset"] for f in oldest["failures"]] == [0]


def test_time_window(contracts, topics, bootstrap_servers):
    topic = topics(contracts.topics[ORDERS], partitions=2)
    start = int(time.time() * 1000) - 60_000
    records = [(as_json({"id": i}), as_json(event(i, amount=1.0) if 10 <= i < 15 else event(i))) for i in range(30)]
    produce(bootstrap_servers, topic, records, timestamps=[start + i * 1000 for i in range(30)])
    since = datetime.fromtimestamp((start + 10_000) / 1000, tz=timezone.utc)
    until = (since + timedelta(seconds=5)).isoformat()  # templated values arrive as text

    report = validate(contracts, topic, fail_on_invalid=False, since=since, until=until)

    assert (report["records"], report["invalid"]) == (5, 5)


def test_confluent_wire_format_through_the_registry(contracts, topics, bootstrap_servers):
    registry = SchemaRegistryHook()
    topic = topics(contracts.topics[ORDERS])
    key_text = (contracts.path / topic / "key.avsc").read_text()
    value_text = (contracts.path / topic / "value.avsc").read_text()
    key_id = registry.register_schema(f"{topic}-key", key_text)
    value_id = registry.register_schema(f"{topic}-value", value_text)
    drifted = json.loads(value_text)
    next(f for f in drifted["fields"][0]["type"][1]["fields"] if f["name"] == "amount")["type"] = "double"
    drifted_id = registry.register_schema(f"{topic}-drifted-value", json.dumps(drifted))
    try:
        good = [(wire(key_id, key_text, {"id": i}), wire(value_id, value_text, event(i))) for i in range(5)]
        bad = (wire(key_id, key_text, {"id": 9}), wire(drifted_id, json.dumps(drifted), event(9, amount=1.5)))
        produce(bootstrap_servers, topic, [*good, bad])

        report = validate(contracts, topic, record_format="avro", fail_on_invalid=False)
    finally:
        purge_subjects(registry, [f"{topic}-drifted"])

    assert (report["records"], report["valid"], report["invalid"]) == (6, 5, 1)
    (failure,) = report["failures"]
    assert failure["reason"].startswith(f"written with schema id {drifted_id}, which the contract ")
    assert failure["reason"].endswith("field before<mesh.pg.public.orders.Value>.amount: writer type double cannot "
                                      "be read as string")


def wire(schema_id: int, schema_text: str, datum: Any) -> bytes:
    out = io.BytesIO(b"\x00" + schema_id.to_bytes(4, "big"))
    out.seek(5)
    fastavro.schemaless_writer(out, fastavro.parse_schema(json.loads(schema_text)), datum)
    return out.getvalue()


def test_a_topic_that_does_not_exist_yet_is_skipped(contracts):
    with pytest.raises(AirflowSkipException, match="does not exist"):
        validate(contracts, contracts.topics[ORDERS])


def test_a_topic_without_contract_is_an_error(contracts):
    with pytest.raises(AirflowException, match="no contract for topic nope"):
        validate(contracts, "nope")


def read_all(bootstrap: str, topic: str, count: int, timeout: float = 30) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    messages: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and not message.error():
                messages.append(message)
    finally:
        consumer.close()
    return messages
