"""A Flink SQL job submitted through Flink's REST API moves records between two Kafka topics."""

from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import Producer

from airflow_mesh.hooks.flink import FlinkHook

SQL = """
CREATE TABLE orders (
  id BIGINT, customer STRING, amount INT
) WITH (
  'connector' = 'kafka', 'topic' = '{source}',
  'properties.bootstrap.servers' = '{bootstrap}', 'properties.group.id' = '{job}',
  'scan.startup.mode' = 'earliest-offset', 'format' = 'json'
);
CREATE TABLE big_orders (id BIGINT, customer STRING) WITH (
  'connector' = 'kafka', 'topic' = '{sink}',
  'properties.bootstrap.servers' = '{bootstrap}', 'format' = 'json'
);
-- a filtered projection
INSERT INTO big_orders SELECT id, customer FROM orders WHERE amount > 100;
"""


def wait_until_running(hook: FlinkHook, job_id: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = hook.get_job(job_id)
        if FlinkHook.is_fully_running(job):
            return job
        if job["state"] in {"FAILED", "CANCELED", "FINISHED"}:
            pytest.fail(f"job {job_id} ended {job['state']}: {hook.get_exceptions(job_id)}")
        time.sleep(1)
    pytest.fail(f"job {job_id} not running after {timeout}s: {hook.get_job(job_id)['state']}")


def test_flink_sql_filters_and_projects_between_topics(bootstrap_servers, new_topic, read_topic):
    source, sink = new_topic("orders"), new_topic("big-orders")
    job_name = f"smoke-{source}"
    hook = FlinkHook()
    job_id = hook.submit_sql(SQL.format(source=source, sink=sink, bootstrap=bootstrap_servers, job=job_name),
                             job_name=job_name)
    try:
        job = wait_until_running(hook, job_id)
        assert job["name"] == job_name

        orders = [{"id": i, "customer": f"c{i % 7}", "amount": (i * 37) % 250} for i in range(1, 41)]
        producer = Producer({"bootstrap.servers": bootstrap_servers})
        for order in orders:
            producer.produce(source, key=str(order["id"]).encode(), value=json.dumps(order).encode())
        assert producer.flush(30) == 0

        expected = [{"id": o["id"], "customer": o["customer"]} for o in orders if o["amount"] > 100]
        assert 0 < len(expected) < len(orders)
        received = [json.loads(m.value()) for m in read_topic(sink, len(expected), timeout=90)]
        assert received == expected
        # Nothing beyond the expected records arrives.
        assert len(read_topic(sink, len(expected) + 1, timeout=5)) == len(expected)
    finally:
        hook.cancel_job(job_id)
