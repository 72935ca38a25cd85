"""Each service of the local stack is real and answers as the mesh needs it to."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
import pymysql
import pytest
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


# Airflow's own task logging (configure_logging is what a task process sets up), in a fresh process: the
# connection is fetched as a task fetches it, which registers its password with the secrets masker.
MASKED_LOG_LINE = """
import io, logging, sys
from airflow.sdk import BaseHook
from airflow.sdk.log import configure_logging
out = io.StringIO()
configure_logging(output=out, colored_console_log=False)
conn = BaseHook.get_connection(sys.argv[1])
logging.getLogger("airflow.task").info("connecting to %s with password %s", conn.get_uri(), conn.password)
print(out.getvalue())
"""


@pytest.mark.parametrize("conn_id", ["postgres_mesh", "mariadb_mesh"])
def test_airflow_masks_the_stack_s_database_password_in_task_logs(conn_id):
    password = json.loads(os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"])["password"]
    result = subprocess.run([sys.executable, "-c", MASKED_LOG_LINE, conn_id], capture_output=True, text=True,
                            timeout=120, check=True)
    logged = result.stdout + result.stderr
    assert "connecting to" in logged
    assert "Skipping masking" not in logged  # what a 4-character password got
    assert password not in logged
    assert "with password ***" in logged and ":***@" in logged


def _logs_in(conn_id: str, password: str) -> bool:
    conn = json.loads(os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"])
    try:
        if conn_id == "postgres_mesh":
            psycopg.connect(host=conn["host"], port=conn["port"], user=conn["login"], password=password,
                            dbname=conn["schema"], connect_timeout=10).close()
        else:
            pymysql.connect(host=conn["host"], port=conn["port"], user=conn["login"], password=password,
                            database=conn["schema"], connect_timeout=10).close()
    except (psycopg.OperationalError, pymysql.err.OperationalError):
        return False
    return True


@pytest.mark.parametrize("conn_id", ["postgres_mesh", "mariadb_mesh"])
def test_the_databases_take_the_stack_s_password_and_refuse_the_old_one(conn_id):
    password = json.loads(os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"])["password"]
    assert len(password) >= 20
    assert _logs_in(conn_id, password)
    assert not _logs_in(conn_id, "mesh")


def test_connect_s_worker_resolves_the_database_password_from_its_environment(connect_url):
    """What connectors/mariadb_mesh_cdc.yaml relies on: ${env:MESH_DB_PASSWORD} is the stack's password."""
    maria = json.loads(os.environ["AIRFLOW_CONN_MARIADB_MESH"])
    cls = "io.debezium.connector.mariadb.MariaDbConnector"
    config = {"name": "stack-env-probe", "connector.class": cls, "database.hostname": maria["host"],
              "database.port": str(maria["port"]), "database.user": maria["login"],
              "database.password": "${env:MESH_DB_PASSWORD}", "database.server.id": "5401", "topic.prefix": "probe",
              "database.include.list": "mesh", "schema.history.internal.kafka.topic": "probe-history",
              "schema.history.internal.kafka.bootstrap.servers": "${env:MESH_KAFKA_BOOTSTRAP}"}
    answer = requests.put(f"{connect_url}/connector-plugins/{cls}/config/validate", json=config, timeout=60).json()
    errors = {c["value"]["name"]: c["value"]["errors"] for c in answer["configs"] if c["value"]["errors"]}
    assert errors == {}
