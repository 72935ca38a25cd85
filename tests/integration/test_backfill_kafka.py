"""Backfills into Kafka against the real broker and the real schema registry (Apicurio): Avro with its
schemas registered, read back exactly; reruns idempotent; an incompatible subject refused before
anything is written; JSON still the default."""

from __future__ import annotations

import datetime as dt
import decimal
import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import requests
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from airflow_mesh.backfill import engine
from airflow_mesh.backfill.avro_types import avro_name
from airflow_mesh.backfill.checkpoint import CheckpointStore
from airflow_mesh.backfill.endpoints import ConnectionFields, make_source, make_target
from airflow_mesh.backfill.errors import PlanError, TargetSchemaError
from airflow_mesh.backfill.kafka_target import KafkaTarget
from airflow_mesh.backfill.plan import BackfillRequest, KeyRange

ROOT = Path(__file__).resolve().parents[2]
ROWS = 20_000  # the rows of the `pg_table` fixture (conftest.py)


def conn_fields(conn_id: str) -> ConnectionFields:
    c = json.loads(os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"])
    return ConnectionFields(c["conn_type"], c.get("host"), c.get("port"), c.get("login"), c.get("password"),
                            c.get("schema"), c.get("extra") or {})


def registry_url() -> str:
    c = conn_fields("schema_registry_default")
    return f"{c.schema or 'http'}://{c.host}:{c.port}{c.extra.get('api_path', '')}"


@pytest.fixture
def topic(kafka_admin):
    """A unique topic name; the topic and its key and value subjects are deleted afterwards."""
    name = f"backfill.kafka.{uuid.uuid4().hex[:10]}"
    yield name
    if name in kafka_admin.list_topics(timeout=30).topics:
        kafka_admin.delete_topics([name])[name].result(timeout=30)
    for subject in (f"{name}-key", f"{name}-value"):
        requests.delete(f"{registry_url()}/subjects/{subject}", timeout=30)
        requests.delete(f"{registry_url()}/subjects/{subject}", params={"permanent": "true"}, timeout=30)


def namespace(topic: str) -> str:
    """The Avro namespace the target gives a topic's records: its dotted parts made valid names."""
    return ".".join(avro_name(part) for part in topic.split("."))


def avro_target(topic: str) -> KafkaTarget:
    target = make_target(conn_fields("kafka_default"), topic, schema_registry=conn_fields("schema_registry_default"))
    assert isinstance(target, KafkaTarget) and target.value_format == "avro"
    return target


def copy_and_compare(source, target, request, checkpoints):
    """Run the backfill (verified by the engine), then compare the whole table read back with the source."""
    summary = engine.run(source, target, request, checkpoints)
    assert summary.verified and summary.rows == ROWS and summary.ranges == 4
    plan = engine.plan(source, target, request)
    everything = KeyRange(plan.ranges[0].lo, plan.ranges[-1].hi)
    expected = engine.read_range(source, plan, request, everything).sort_by(plan.key)
    actual = target.read_range(everything).sort_by(plan.key)
    assert actual.schema.equals(expected.schema)
    assert actual.equals(expected)  # types and values round-trip exactly
    return summary


def end_offsets(bootstrap_servers: str, topic: str) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": f"test-{uuid.uuid4().hex}"})
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in sorted(partitions)]
    finally:
        consumer.close()


def committed_messages(bootstrap_servers: str, topic: str) -> list:
    """Every committed message of the topic, read from the start of each partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": f"test-{uuid.uuid4().hex}",
                         "isolation.level": "read_committed", "enable.partition.eof": True,
                         "enable.auto.commit": False})
    messages = []
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, -2) for p in partitions])
        pending = set(partitions)
        while pending:
            for message in consumer.consume(10_000, timeout=5.0):
                if message.error():
                    pending.discard(message.partition())
                else:
                    messages.append(message)
    finally:
        consumer.close()
    return messages


def test_postgres_to_kafka_avro_round_trips_exactly(pg_table, topic, tmp_path, bootstrap_servers, postgres_conninfo):
    source = make_source(conn_fields("postgres_mesh"))
    target = avro_target(topic)
    request = BackfillRequest(table=pg_table, range_size=ROWS // 4, parallelism=2)
    copy_and_compare(source, target, request, CheckpointStore(tmp_path / "cp.sqlite"))

    # The registered schemas: TopicNameStrategy subjects, exact logical types.
    registry = SchemaRegistryClient({"url": registry_url()})
    value = json.loads(registry.get_latest_version(f"{topic}-value").schema.schema_str)
    fields = {f["name"]: f["type"] for f in value["fields"]}
    assert value["name"] == "Value" and value["namespace"] == namespace(topic)
    assert fields["id"] == "long"
    assert fields["amount"] == ["null", {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}]
    assert fields["created_at"] == ["null", {"type": "long", "logicalType": "timestamp-micros"}]
    key = json.loads(registry.get_latest_version(f"{topic}-key").schema.schema_str)
    assert key["fields"] == [{"name": "id", "type": "long"}]

    # Read with Confluent's own deserializer (wire format and ids from the registry): decimals and
    # instants exactly as PostgreSQL holds them.
    messages = committed_messages(bootstrap_servers, topic)
    assert len(messages) == ROWS
    values, keys = AvroDeserializer(registry), AvroDeserializer(registry)
    by_id = {}
    for message in messages:
        record = values(message.value(), SerializationContext(topic, MessageField.VALUE))
        assert keys(message.key(), SerializationContext(topic, MessageField.KEY)) == {"id": record["id"]}
        by_id[record["id"]] = record
    with psycopg.connect(postgres_conninfo) as conn:
        rows = conn.execute(f"SELECT id, amount, created_at, note FROM {pg_table} "
                            "WHERE id IN (1, 5, 42, 19999)").fetchall()
    for row_id, amount, created_at, note in rows:
        assert by_id[row_id]["amount"] == amount and isinstance(by_id[row_id]["amount"], decimal.Decimal)
        assert str(by_id[row_id]["amount"]) == str(amount)  # the scale too: -299.93, 0.00
        assert by_id[row_id]["created_at"] == created_at and by_id[row_id]["created_at"].tzinfo is not None
        assert by_id[row_id]["note"] == note
    assert by_id[1]["created_at"] == dt.datetime(2025, 12, 31, 22, 0, 1, 123456, tzinfo=dt.timezone.utc)
    assert by_id[42]["amount"] == decimal.Decimal("-297.06")


def test_rerun_is_idempotent(pg_table, topic, tmp_path, bootstrap_servers):
    source = make_source(conn_fields("postgres_mesh"))
    request = BackfillRequest(table=pg_table, range_size=ROWS // 4, parallelism=2)
    checkpoints = CheckpointStore(tmp_path / "cp.sqlite")
    first = copy_and_compare(source, avro_target(topic), request, checkpoints)

    # The same job again is a new run (the first one completed): every range is produced again, in
    # its own transaction, and the topic still holds each row once per key, the same schema
    # versions, no new ones.
    offsets = end_offsets(bootstrap_servers, topic)
    again = copy_and_compare(source, avro_target(topic), request, checkpoints)
    assert again.job == first.job and again.ranges_skipped == 0
    assert sum(end_offsets(bootstrap_servers, topic)) > sum(offsets)
    registry = SchemaRegistryClient({"url": registry_url()})
    assert registry.get_versions(f"{topic}-value") == [1] and registry.get_versions(f"{topic}-key") == [1]


def test_an_incompatible_subject_fails_before_anything_is_written(pg_table, topic, tmp_path, kafka_admin,
                                                                  bootstrap_servers):
    """The topic exists, with messages, and its value subject says ``amount`` is a long: the backfill's
    decimal cannot be registered under BACKWARD compatibility. The error names the topic, the subject
    and the field; no message, no schema, no subject is added."""
    kafka_admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap_servers})
    producer.produce(topic, b"existing", b"k")
    producer.flush(30)
    existing = {"type": "record", "name": "Value", "namespace": namespace(topic),
                "fields": [{"name": "id", "type": "long"}, {"name": "amount", "type": "long"}]}
    registry = SchemaRegistryClient({"url": registry_url()})
    registry.register_schema(f"{topic}-value", Schema(json.dumps(existing), "AVRO"))
    assert registry.get_compatibility() == "BACKWARD"
    offsets = end_offsets(bootstrap_servers, topic)

    source = make_source(conn_fields("postgres_mesh"))
    checkpoints = CheckpointStore(tmp_path / "cp.sqlite")
    with pytest.raises(TargetSchemaError) as failure:
        engine.run(source, avro_target(topic), BackfillRequest(table=pg_table, range_size=ROWS // 4), checkpoints)
    message = str(failure.value)
    assert f"Kafka topic {topic}" in message and f"subject {topic}-value" in message
    assert "field amount" in message and "writer type long" in message
    assert "nothing was written" in message
    assert end_offsets(bootstrap_servers, topic) == offsets
    assert registry.get_versions(f"{topic}-value") == [1]
    assert f"{topic}-key" not in registry.get_subjects()
    request = BackfillRequest(table=pg_table, range_size=ROWS // 4)
    assert checkpoints.done(engine.plan(source, avro_target(topic), request).job) == {}


def test_json_is_still_the_default(pg_table, topic, tmp_path, bootstrap_servers):
    source = make_source(conn_fields("postgres_mesh"))
    target = make_target(conn_fields("kafka_default"), topic)
    assert isinstance(target, KafkaTarget) and target.value_format == "json" and target.name.startswith("kafka://")
    copy_and_compare(source, target, BackfillRequest(table=pg_table, range_size=ROWS // 4, parallelism=2),
                     CheckpointStore(tmp_path / "cp.sqlite"))
    message = next(m for m in committed_messages(bootstrap_servers, topic) if json.loads(m.key()) == {"id": 42})
    assert message.key() == b'{"id": 42}'
    assert json.loads(message.value()) == {
        "id": 42, "customer_id": 42, "status": "new", "amount": "-297.06",
        "created_at": "2025-12-31T22:00:42.123456+00:00", "updated_at": json.loads(message.value())["updated_at"],
        "note": "nöte 42"}
    with pytest.raises(PlanError, match="registry"):  # no schema registry, no Avro
        make_target(conn_fields("kafka_default"), topic, value_format="avro")
    with pytest.raises(PlanError, match="kafka targets only"):
        make_target(conn_fields("postgres_mesh"), "public.x", schema_registry=conn_fields("schema_registry_default"))


def test_cli_writes_avro_with_a_registry_url(pg_table, topic, tmp_path):
    c = json.loads(os.environ["AIRFLOW_CONN_POSTGRES_MESH"])
    kafka = conn_fields("kafka_default").extra["bootstrap.servers"]
    result = subprocess.run(
        [sys.executable, "-m", "airflow_mesh.backfill",
         "--source", f"postgresql://{c['login']}:{c['password']}@{c['host']}:{c['port']}/{c['schema']}",
         "--table", pg_table, "--target", f"kafka://?bootstrap.servers={kafka}", "--target-name", topic,
         "--schema-registry", registry_url(), "--range-size", str(ROWS // 2), "--checkpoints", str(tmp_path / "cp")],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["verified"] and summary["rows"] == ROWS and summary["target"].startswith("kafka+avro://")
    assert SchemaRegistryClient({"url": registry_url()}).get_versions(f"{topic}-value") == [1]


def test_the_ui_form_backfills_into_avro(airflow_db, pg_table, topic):
    spec = importlib.util.spec_from_file_location("backfill_ui", ROOT / "dags" / "backfill_ui.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run = module.backfill_ui_dag.test(run_conf={
        "table": pg_table, "target_conn_id": "kafka_default", "target_name": topic,
        "schema_registry_conn_id": "schema_registry_default", "range_size": ROWS // 4, "parallelism": 2})
    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    value = SchemaRegistryClient({"url": registry_url()}).get_latest_version(f"{topic}-value")
    assert {f["name"] for f in json.loads(value.schema.schema_str)["fields"]} >= {"id", "amount", "created_at"}
