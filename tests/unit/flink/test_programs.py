"""Program fingerprints: the same declaration gives the same digest, any change another."""

from __future__ import annotations

import json

import pytest

from airflow_mesh.flink.programs import FlinkJar, FlinkProcessor, FlinkSql, PyFlinkProgram
from airflow_mesh.processors import Filter, KafkaInput, KafkaOutput, Processor


@pytest.fixture(autouse=True)
def kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT", json.dumps(
        {"conn_type": "kafka", "extra": {"bootstrap.servers": "kafka.test:9092"}}))


def processor(condition: str) -> FlinkProcessor:
    return FlinkProcessor(Processor("paid", [KafkaInput("orders", "orders", {"id": "BIGINT", "status": "STRING"})],
                                    KafkaOutput("paid"), [Filter(condition)]))


def test_a_processor_is_fingerprinted_by_its_compiled_sql():
    assert processor("status = 'paid'").fingerprint("j") == processor("status = 'paid'").fingerprint("j")
    assert processor("status = 'paid'").fingerprint("j") != processor("status = 'open'").fingerprint("j")
    assert processor("status = 'paid'").fingerprint("j").startswith("sha256:")


def test_other_programs(tmp_path):
    assert FlinkSql("INSERT INTO a SELECT 1;").fingerprint("j") != FlinkSql("INSERT INTO a SELECT 2;").fingerprint("j")
    assert PyFlinkProgram("/a.py", ["x"]).fingerprint("j") != PyFlinkProgram("/a.py", ["y"]).fingerprint("j")
    jar = tmp_path / "job.jar"
    jar.write_bytes(b"v1")
    first = FlinkJar(str(jar)).fingerprint("j")
    jar.write_bytes(b"v2")
    assert FlinkJar(str(jar)).fingerprint("j") != first
