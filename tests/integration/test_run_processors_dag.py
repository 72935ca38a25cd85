"""dags/run_processors.py runs green under dag.test(), and its chained processors process change events."""

from __future__ import annotations

import importlib.util
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from airflow_mesh.hooks.flink import FlinkHook
from airflow_mesh.operators.flink import CancelFlinkJobOperator
from tests.integration.test_flink_jobs import produce_json, upserts

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "run_processors.py"


def load_dag():
    spec = importlib.util.spec_from_file_location("run_processors", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run_processors_dag


@pytest.fixture
def prefix(kafka_admin) -> Iterator[str]:
    """The run's prefix; its jobs are cancelled and its output topics deleted afterwards."""
    prefix = f"test-run-processors-{uuid.uuid4().hex[:8]}"
    yield prefix
    for job in ("paid-orders", "paid-orders-per-customer"):
        CancelFlinkJobOperator(task_id="clean", job_name=f"{prefix}-{job}", ignore_missing=True).execute({})
    topics = [t for t in kafka_admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    for future in kafka_admin.delete_topics(topics).values():
        future.result(timeout=30)


def change_event(op: str, order_id: int, customer_id: int, status: str, amount: str) -> dict:
    """A Debezium change event of the orders table, as the PostgreSQL connector writes it (no schema envelope)."""
    row = {"id": order_id, "customer_id": customer_id, "status": status, "amount": amount}
    return {"before": None, "after": row, "op": op, "source": {"table": "orders"}, "ts_ms": 0}


# The DAG's sensors are deferrable whatever Airflow's [operators] default_deferrable says.
@pytest.mark.parametrize("deferrable", [False, True], ids=["default-poke", "default-deferrable"])
def test_run_processors_dag(airflow_db, new_topic, prefix, bootstrap_servers, monkeypatch, caplog, capfd,
                            deferrable):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", str(deferrable))
    source = new_topic("orders-changes")
    produce_json(bootstrap_servers, source, [change_event("c", 1, 7, "paid", "10.00"),
                                             change_event("c", 2, 7, "new", "99.00"),
                                             change_event("c", 3, 7, "paid", "2.50"),
                                             change_event("c", 4, 8, "paid", "1.00")])

    run = load_dag().test(run_conf={"source_topic": source, "prefix": prefix})

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert set(states.values()) == {"success"}
    assert "processor filter [built-in]: Keep the records of a topic" in capfd.readouterr().out
    assert caplog.text.count("[DAG TEST] Trigger completed") == 2
    flink = FlinkHook()
    for job in ("paid-orders", "paid-orders-per-customer"):
        (running,) = flink.find_jobs(f"{prefix}-{job}", active_only=True)
        assert FlinkHook.is_fully_running(flink.get_job(running["jid"]))

    # The second processor reads what the first writes: paid orders per customer.
    expected = {7: {"customer_id": 7, "paid_orders": 2, "paid_amount": Decimal("12.50")},
                8: {"customer_id": 8, "paid_orders": 1, "paid_amount": Decimal("1.00")}}
    table = upserts(bootstrap_servers, f"{prefix}.orders.paid_per_customer",
                    lambda t: {json.loads(k)["customer_id"]: v for k, v in t.items()} == expected)
    assert {json.loads(key)["customer_id"]: value for key, value in table.items()} == expected
