"""DeployConnectorOperator refuses bad specs before any HTTP call, and validates before deploying.

Kafka Connect is replaced here by requests-mock only to prove what the operator does *not* send;
the deploy paths themselves are tested against the real Connect in tests/integration.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests_mock as rm
from airflow.sdk.exceptions import AirflowException

from airflow_mesh.connectors.spec import SpecError
from airflow_mesh.operators.kafka_connect import DeployConnectorOperator

PG = "io.debezium.connector.postgresql.PostgresConnector"
CONNECT = "http://connect.test:8083"


@pytest.fixture(autouse=True)
def connections(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_CONNECT_DEFAULT",
                       json.dumps({"conn_type": "kafka_connect", "host": "connect.test", "port": 8083}))
    monkeypatch.setenv("AIRFLOW_CONN_PG", json.dumps({"conn_type": "postgres", "host": "db", "port": 5432,
                                                      "login": "cdc", "password": "s3cret-pw", "schema": "shop"}))


@pytest.fixture
def connect():
    with rm.Mocker() as mocker:  # any request not registered below raises NoMockAddress
        yield mocker


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: a\nconfig: {}\n", "class: Field required"),
        (f"name: a\nclass: {PG}\nconfig: {{database.password: hunter22}}\n", "secret written inline"),
        (f"name: a\nclass: {PG}\nsurprise: 1\n", "surprise: Extra inputs are not permitted"),
        ("name: a\nclass: [\n", "malformed YAML"),
    ],
)
def test_bad_specs_fail_before_any_http_call(tmp_path: Path, connect, text, expected):
    good = tmp_path / "good.yaml"
    good.write_text(f"name: good\nclass: {PG}\ndatabase: {{conn_id: pg}}\nconfig: {{topic.prefix: g}}\n")
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(SpecError, match=expected) as excinfo:
        DeployConnectorOperator(task_id="deploy", spec_path=str(tmp_path)).execute({})
    assert "bad.yaml" in str(excinfo.value)
    assert connect.call_count == 0  # not even the good spec was sent


def test_a_missing_connection_fails_before_any_http_call(tmp_path: Path, connect):
    spec = tmp_path / "a.yaml"
    spec.write_text(f"name: a\nclass: {PG}\ndatabase: {{conn_id: nowhere}}\n")
    with pytest.raises(Exception, match="nowhere"):
        DeployConnectorOperator(task_id="deploy", spec_path=str(spec)).execute({})
    assert connect.call_count == 0


def test_every_plugin_error_is_reported_and_nothing_is_deployed(tmp_path: Path, connect):
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(f"name: {name}\nclass: {PG}\ndatabase: {{conn_id: pg}}\n")
    connect.put(f"{CONNECT}/connector-plugins/{PG}/config/validate", json={"error_count": 1, "configs": [
        {"value": {"name": "topic.prefix", "errors": ["Missing required configuration"]}}]})
    with pytest.raises(AirflowException) as excinfo:
        DeployConnectorOperator(task_id="deploy", spec_path=str(tmp_path)).execute({})
    assert "a: topic.prefix: Missing required configuration" in str(excinfo.value)
    assert "b: topic.prefix: Missing required configuration" in str(excinfo.value)
    assert [r.method for r in connect.request_history] == ["PUT", "PUT"]  # the two validations only
    sent = connect.request_history[0].json()
    assert sent["database.password"] == "s3cret-pw" and sent["database.dbname"] == "shop"
