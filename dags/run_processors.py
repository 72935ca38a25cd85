"""Deploy two chained processors on the orders change log and wait until each is healthy.

1. ``paid_orders``: the built-in ``filter`` processor keeps the paid orders of the Debezium topic
   and writes them, keyed by order id, to ``<prefix>.orders.paid``;
2. ``paid_orders_per_customer``: a processor declared below with the SDK reads that topic (the
   first processor's output is its input) and keeps the number and total of each customer's paid
   orders in ``<prefix>.orders.paid_per_customer``.

Each job is named after the prefix, so running the DAG again reconnects to the jobs that run rather
than submitting copies. The first task prints the processors this installation has registered.
The health sensors are deferrable: they wait in Airflow's triggerer, holding no worker slot.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, task

from airflow_mesh.operators.flink import FlinkProcessor, SubmitFlinkJobOperator
from airflow_mesh.processors import (
    Aggregate,
    Derive,
    KafkaOutput,
    Processor,
    create_processor,
    default_registry,
    output_as_input,
)
from airflow_mesh.sensors.flink import FlinkJobHealthSensor

ORDER_COLUMNS = {"id": "BIGINT", "customer_id": "BIGINT", "status": "STRING", "amount": "DECIMAL(12, 2)"}

PAID_ORDERS = {
    "input_topic": "{{ params.source_topic }}",
    "columns": ORDER_COLUMNS,
    "condition": "status = 'paid'",
    "output_topic": "{{ params.prefix }}.orders.paid",
    "input_format": "debezium-json",
    "key": ["id"],
}


def paid_orders_per_customer(*, paid_orders: dict[str, Any], output_topic: str) -> Processor:
    """Count and sum each customer's paid orders, reading what the ``filter`` processor of ``paid_orders`` writes."""
    upstream = create_processor("filter", paid_orders)
    return Processor(
        "paid_orders_per_customer",
        inputs=[output_as_input(upstream, "paid_orders")],
        steps=[Aggregate(["customer_id"], [Derive("paid_orders", "COUNT(*)", "BIGINT"),
                                           Derive("paid_amount", "SUM(amount)", "DECIMAL(38, 2)")])],
        output=KafkaOutput(output_topic, key=["customer_id"]),
        description="paid orders and amount per customer",
    )


@dag(
    dag_id="run_processors",
    schedule=None,
    catchup=False,
    tags=["airflow-mesh", "processors"],
    params={
        "source_topic": Param("mesh.pg.public.orders", type="string", title="Debezium topic of the orders table"),
        "prefix": Param("mesh", type="string", pattern=r"^[A-Za-z0-9._-]+$",
                        title="Prefix of the output topics and job names"),
    },
    doc_md=__doc__,
)
def run_processors():
    @task
    def list_processors() -> list[str]:
        for entry in default_registry():
            print(f"processor {entry.name} [{entry.origin}]: {entry.description}")
        return [entry.name for entry in default_registry()]

    @task
    def create_topics(params: dict | None = None) -> None:
        from airflow.providers.apache.kafka.hooks.client import KafkaAdminClientHook

        assert params is not None  # Airflow passes the run's params to a task that names them

        # A processor reads the partitions its input topics have when it starts: create them first
        # (the change log too, in case Debezium has not written to it yet).
        outputs = [f"{params['prefix']}.orders.{name}" for name in ("paid", "paid_per_customer")]
        topics = [params["source_topic"], *outputs]
        KafkaAdminClientHook().create_topic([(topic, 1, 1) for topic in topics])

    paid_orders = SubmitFlinkJobOperator(
        task_id="deploy_paid_orders",
        job_name="{{ params.prefix }}-paid-orders",
        program=FlinkProcessor("filter", params=PAID_ORDERS),
        wait_until_healthy=False,
    )
    paid_orders_healthy = FlinkJobHealthSensor(
        task_id="paid_orders_healthy", job_name="{{ params.prefix }}-paid-orders", poke_interval=2, timeout=300,
        deferrable=True,
    )
    per_customer = SubmitFlinkJobOperator(
        task_id="deploy_paid_orders_per_customer",
        job_name="{{ params.prefix }}-paid-orders-per-customer",
        program=FlinkProcessor(paid_orders_per_customer, params={
            "paid_orders": PAID_ORDERS, "output_topic": "{{ params.prefix }}.orders.paid_per_customer"}),
        wait_until_healthy=False,
    )
    per_customer_healthy = FlinkJobHealthSensor(
        task_id="paid_orders_per_customer_healthy", job_name="{{ params.prefix }}-paid-orders-per-customer",
        poke_interval=2, timeout=300, deferrable=True,
    )
    list_processors() >> create_topics() >> paid_orders >> paid_orders_healthy >> per_customer >> per_customer_healthy


run_processors_dag = run_processors()

if __name__ == "__main__":
    run = run_processors_dag.test()
    raise SystemExit(0 if run.state == "success" else 1)
