"""The airflow-mesh demo: a small pipeline through the real local stack, step by step.

1. create a source and a target Kafka topic;
2. submit a Flink SQL processor (a filtered projection) to the Flink session cluster over REST;
3. produce orders into the source topic;
4. read the processed records back from the target topic and print them;
5. cancel the processor and delete the topics (always, even when a step failed).

Run it with `make demo` (which starts the stack), or `python dags/mesh_demo.py` with the stack's
connections exported. Later capabilities (CDC connectors, schema contracts, backfills) join here.
"""

from __future__ import annotations

import json
import time
import uuid

from airflow.sdk import Param, dag, task

SQL = """
CREATE TABLE orders (id BIGINT, customer STRING, amount INT) WITH (
  'connector' = 'kafka', 'topic' = '{source}', 'properties.bootstrap.servers' = '{bootstrap}',
  'properties.group.id' = '{job}', 'scan.startup.mode' = 'earliest-offset', 'format' = 'json');
CREATE TABLE big_orders (id BIGINT, customer STRING) WITH (
  'connector' = 'kafka', 'topic' = '{target}', 'properties.bootstrap.servers' = '{bootstrap}',
  'format' = 'json');
INSERT INTO big_orders SELECT id, customer FROM orders WHERE amount > {threshold};
"""


def _bootstrap_servers() -> str:
    from airflow.sdk import BaseHook

    return BaseHook.get_connection("kafka_default").extra_dejson["bootstrap.servers"]


@dag(
    dag_id="mesh_demo",
    schedule=None,
    catchup=False,
    tags=["airflow-mesh", "demo"],
    params={
        "orders": Param(20, type="integer", minimum=1, maximum=10_000, title="Orders to produce"),
        "threshold": Param(100, type="integer", minimum=0, title="Keep orders above this amount"),
    },
    doc_md=__doc__,
)
def mesh_demo():
    @task
    def create_topics() -> dict[str, str]:
        from airflow.providers.apache.kafka.hooks.client import KafkaAdminClientHook

        run = uuid.uuid4().hex[:8]
        topics = {"source": f"demo.orders.{run}", "target": f"demo.big_orders.{run}"}
        KafkaAdminClientHook().create_topic([(name, 1, 1) for name in topics.values()])
        print(f"step 1: created topics {topics['source']} and {topics['target']}")
        return topics

    @task
    def submit_processor(topics: dict[str, str], params: dict | None = None) -> str:
        from airflow_mesh.hooks.flink import FlinkHook

        hook = FlinkHook()
        name = f"mesh-demo-{topics['source']}"
        job_id = hook.submit_sql(SQL.format(bootstrap=_bootstrap_servers(), job=name, threshold=params["threshold"],
                                            **topics), job_name=name)
        deadline = time.monotonic() + 120
        while not FlinkHook.is_fully_running(job := hook.get_job(job_id)):
            if job["state"] in {"FAILED", "CANCELED", "FINISHED"} or time.monotonic() > deadline:
                raise RuntimeError(f"Flink job {job_id} is {job['state']}: {hook.get_exceptions(job_id)}")
            time.sleep(1)
        print(f"step 2: Flink job {name} ({job_id}) is running on {hook.base_url}")
        return job_id

    @task
    def produce_orders(topics: dict[str, str], job_id: str, params: dict | None = None) -> list[dict]:
        from airflow.providers.apache.kafka.hooks.produce import KafkaProducerHook

        producer = KafkaProducerHook().get_producer()
        orders = [{"id": i, "customer": f"customer-{i % 5}", "amount": (i * 37) % 250}
                  for i in range(1, params["orders"] + 1)]
        for order in orders:
            producer.produce(topics["source"], key=str(order["id"]), value=json.dumps(order))
        if producer.flush(30):
            raise RuntimeError("not every order was delivered to Kafka")
        print(f"step 3: produced {len(orders)} orders into {topics['source']}")
        return [o for o in orders if o["amount"] > params["threshold"]]

    @task
    def read_results(topics: dict[str, str], expected: list[dict]) -> int:
        from confluent_kafka import Consumer

        consumer = Consumer({"bootstrap.servers": _bootstrap_servers(), "group.id": f"mesh-demo-{uuid.uuid4().hex}",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe([topics["target"]])
        received: list[dict] = []
        deadline = time.monotonic() + 120
        try:
            while len(received) < len(expected) and time.monotonic() < deadline:
                message = consumer.poll(1.0)
                if message is not None and not message.error():
                    received.append(json.loads(message.value()))
                    print(f"step 4: processed record {received[-1]}")
        finally:
            consumer.close()
        wanted = [{"id": o["id"], "customer": o["customer"]} for o in expected]
        if received != wanted:
            raise RuntimeError(f"expected {wanted}, got {received}")
        print(f"step 4: all {len(received)} expected records arrived in {topics['target']}")
        return len(received)

    @task(trigger_rule="all_done")
    def clean_up(topics: dict[str, str], job_id: str) -> None:
        from airflow.providers.apache.kafka.hooks.client import KafkaAdminClientHook

        from airflow_mesh.hooks.flink import FlinkHook

        FlinkHook().cancel_job(job_id)
        KafkaAdminClientHook().delete_topic(list(topics.values()))
        print(f"step 5: cancelled Flink job {job_id} and deleted the demo topics")

    topics = create_topics()
    job_id = submit_processor(topics)
    expected = produce_orders(topics, job_id)
    read_results(topics, expected) >> clean_up(topics, job_id)


demo_dag = mesh_demo()

if __name__ == "__main__":
    run = demo_dag.test()
    print(f"mesh_demo finished: {run.state}")
    raise SystemExit(0 if run.state == "success" else 1)
