"""Test set-up shared by unit, integration and fault tests.

Airflow reads AIRFLOW_HOME when first imported, so it is pointed at a fresh temporary folder here,
before any test module imports Airflow. The local stack's connections (written by `make up` to
.stack/connections.env) are loaded as AIRFLOW_CONN_* variables, exactly as a deployment would set them.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS_ENV = ROOT / ".stack" / "connections.env"

os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow-mesh-tests-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))


def _load_connections_env() -> None:
    if not CONNECTIONS_ENV.exists():
        return
    for line in CONNECTIONS_ENV.read_text().splitlines():
        if line.startswith("AIRFLOW_CONN_"):
            key, _, value = line.partition("=")
            os.environ.setdefault(key, shlex.split(value)[0])


_load_connections_env()


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """An Airflow metadata database (SQLite) migrated in the session's temporary AIRFLOW_HOME."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    return Path(os.environ["AIRFLOW_HOME"])


# ---------------------------------------------------------------- the stack's services (integration and fault tests)


def _connection(conn_id: str) -> dict:
    value = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if value is None:
        pytest.fail(f"connection {conn_id!r} is not defined: start the stack with `make up` "
                    "(it writes .stack/connections.env) or export AIRFLOW_CONN_{conn_id.upper()}")
    return json.loads(value)


@pytest.fixture(scope="session")
def bootstrap_servers() -> str:
    return _connection("kafka_default")["extra"]["bootstrap.servers"]


@pytest.fixture(scope="session")
def connect_url() -> str:
    conn = _connection("kafka_connect_default")
    return f"{conn.get('schema') or 'http'}://{conn['host']}:{conn['port']}"


@pytest.fixture(scope="session")
def flink_url() -> str:
    conn = _connection("flink_default")
    return f"{conn.get('schema') or 'http'}://{conn['host']}:{conn['port']}"


@pytest.fixture(scope="session")
def postgres_conninfo() -> str:
    conn = _connection("postgres_mesh")
    return (f"host={conn['host']} port={conn['port']} user={conn['login']} "
            f"password={conn['password']} dbname={conn['schema']}")


@pytest.fixture(scope="session")
def kafka_admin(bootstrap_servers: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap_servers})


@pytest.fixture
def new_topic(kafka_admin: AdminClient) -> Iterator:
    """A factory of fresh, uniquely named topics, deleted after the test."""
    created: list[str] = []

    def make(prefix: str = "test", partitions: int = 1) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        kafka_admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=30)
        created.append(name)
        return name

    yield make
    if created:
        for future in kafka_admin.delete_topics(created).values():
            future.result(timeout=30)
