"""Each service of the local stack is real and answers as the mesh needs it to."""

from __future__ import annotations

import psycopg
import requests
from confluent_kafka import Producer


def test_kafka_round_trips_keyed_records(bootstrap_servers, new_topic, read_topic):
    topic = new_topic("stack-kafka", partitions=3)
    sent = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(30)}
    producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": True})
    for key, value in sent.items():
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0

    received = read_topic(topic, len(sent))

    assert {m.key(): m.value() for m in received} == sent
    # The default partitioner hashes keys: one key always lands in one partition.
    partitions_by_key = {m.key(): m.partition() for m in received}
    assert len(set(partitions_by_key.values())) > 1


def test_connect_has_the_debezium_postgres_plugin(connect_url):
    plugins = requests.get(f"{connect_url}/connector-plugins", timeout=10).json()
    assert "io.debezium.connector.postgresql.PostgresConnector" in {p["class"] for p in plugins}


def test_connect_runs_in_distributed_mode(connect_url):
    root = requests.get(connect_url, timeout=10).json()
    assert root["version"].startswith("4.")
    # A distributed worker stores configs in Kafka and answers /connectors once it joined its group.
    assert isinstance(requests.get(f"{connect_url}/connectors", timeout=10).json(), list)


def test_flink_has_a_taskmanager_with_free_slots(flink_url):
    overview = requests.get(f"{flink_url}/overview", timeout=10).json()
    assert overview["taskmanagers"] >= 1
    assert overview["slots-available"] >= 1


def test_postgres_is_ready_for_logical_decoding(postgres_conninfo):
    with psycopg.connect(postgres_conninfo) as conn:
        assert conn.execute("SHOW wal_level").fetchone()[0] == "logical"
        assert conn.execute("SELECT rolreplication FROM pg_roles WHERE rolname = current_user").fetchone()[0]
