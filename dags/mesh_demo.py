"""The airflow-mesh demo: a small pipeline through the real local stack, step by step.

1. create a source and a target Kafka topic;
2. submit a Flink SQL processor (a filtered projection) to the Flink session cluster over REST;
3. produce orders into the source topic;
4. read the processed records back from the target topic and print them;
5. deploy the Debezium connector of ``connectors/postgres_mesh_cdc.yaml`` and wait until it runs;
6. submit the built-in ``filter`` processor on its orders change log: open orders, keyed by id;
7. insert, update and delete orders in PostgreSQL, and after each change
8. print the record the change made in the processor's output topic (an upsert, or a tombstone);
9. clean up: cancel the processors, delete the topics, remove the connector (offsets reset) and its
   replication slot (always, even when a step failed: the clean-up tasks are teardowns).

Run it with `make demo` (which starts the stack), or `python dags/mesh_demo.py` with the stack's
connections exported. Later capabilities (schema contracts, backfills) join here.
"""

from __future__ import annotations

import json
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import cast

import yaml
from airflow.sdk import Param, dag, task

from airflow_mesh.operators.flink import FlinkProcessor, SubmitFlinkJobOperator
from airflow_mesh.operators.kafka_connect import (
    DeleteConnectorOperator,
    DeployConnectorOperator,
    ResetConnectorOffsetsOperator,
)
from airflow_mesh.sensors.kafka_connect import ConnectorHealthSensor

SQL = """
CREATE TABLE orders (id BIGINT, customer STRING, amount INT) WITH (
  'connector' = 'kafka', 'topic' = '{source}', 'properties.bootstrap.servers' = '{bootstrap}',
  'properties.group.id' = '{job}', 'scan.startup.mode' = 'earliest-offset', 'format' = 'json');
CREATE TABLE big_orders (id BIGINT, customer STRING) WITH (
  'connector' = 'kafka', 'topic' = '{target}', 'properties.bootstrap.servers' = '{bootstrap}',
  'format' = 'json');
INSERT INTO big_orders SELECT id, customer FROM orders WHERE amount > {threshold};
"""

PG_SPEC = Path(__file__).resolve().parent.parent / "connectors" / "postgres_mesh_cdc.yaml"
CDC = yaml.safe_load(PG_SPEC.read_text())
CDC_TOPIC = f"{CDC['config']['topic.prefix']}.public.orders"


def _bootstrap_servers() -> str:
    from airflow.sdk import BaseHook

    return BaseHook.get_connection("kafka_default").extra_dejson["bootstrap.servers"]


def _postgres():
    """A connection to the demo database, from the Airflow connection ``postgres_mesh``."""
    import psycopg
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection("postgres_mesh")
    return psycopg.connect(host=conn.host, port=conn.port, user=conn.login, password=conn.password,
                           dbname=conn.schema, autocommit=True)


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
        topics = {"source": f"demo.orders.{run}", "target": f"demo.big_orders.{run}",
                  "open_orders": f"demo.open_orders.{run}"}
        # The change log too, if Debezium has not created it yet: a processor reads the partitions it finds.
        KafkaAdminClientHook().create_topic([(name, 1, 1) for name in (*topics.values(), CDC_TOPIC)])
        print(f"step 1: created topics {topics['source']}, {topics['target']} and {topics['open_orders']}")
        return {**topics, "run": run}

    @task
    def submit_processor(topics: dict[str, str], params: dict | None = None) -> str:
        from airflow_mesh.hooks.flink import FlinkHook

        assert params is not None  # Airflow passes the run's params to a task that names them
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

        assert params is not None  # Airflow passes the run's params to a task that names them
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
                    received.append(json.loads(cast(bytes, message.value())))  # the demo writes no tombstones
                    print(f"step 4: processed record {received[-1]}")
        finally:
            consumer.close()
        wanted = [{"id": o["id"], "customer": o["customer"]} for o in expected]
        if received != wanted:
            raise RuntimeError(f"expected {wanted}, got {received}")
        print(f"step 4: all {len(received)} expected records arrived in {topics['target']}")
        return len(received)

    @task
    def report_cdc(deployed: list[dict[str, str]], job_id: str, topics: dict[str, str]) -> None:
        from airflow_mesh.connectors.health import assess
        from airflow_mesh.hooks.kafka_connect import KafkaConnectHook

        for connector in deployed:
            health = assess(KafkaConnectHook().get_connector_status(connector["name"])).summary()
            print(f"step 5: connector {connector['name']} {connector['action']}: {health}; "
                  f"Debezium writes the changes of public.orders to {CDC_TOPIC}")
        print(f"step 6: Flink job mesh-demo-open-orders-{topics['run']} ({job_id}) runs the built-in filter "
              f"processor: orders not cancelled, from {CDC_TOPIC} to {topics['open_orders']}, keyed by id")

    @task
    def change_rows(topics: dict[str, str]) -> int:
        from confluent_kafka import Consumer

        first, second = (int(topics["run"], 16) * 10 + n for n in (1, 2))
        note = f"mesh_demo {topics['run']}"

        def record(key: int, status: str | None, amount: str = "") -> tuple[dict, dict | None]:
            if status is None:
                return {"id": key}, None
            return {"id": key}, {"id": key, "customer_id": 7, "status": status, "amount": Decimal(amount)}

        changes = [  # (SQL, its arguments, the record it makes downstream)
            ("INSERT INTO orders (id, customer_id, status, amount, note) VALUES (%s, 7, 'new', 42.00, %s)",
             (first, note), record(first, "new", "42.00")),
            ("UPDATE orders SET status = 'paid' WHERE id = %s", (first,), record(first, "paid", "42.00")),
            ("INSERT INTO orders (id, customer_id, status, amount, note) VALUES (%s, 7, 'new', 7.50, %s)",
             (second, note), record(second, "new", "7.50")),
            ("UPDATE orders SET status = 'cancelled' WHERE id = %s", (second,), record(second, None)),
            ("DELETE FROM orders WHERE id = %s", (first,), record(first, None)),
        ]
        consumer = Consumer({"bootstrap.servers": _bootstrap_servers(), "group.id": f"mesh-demo-{uuid.uuid4().hex}",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe([topics["open_orders"]])
        try:
            with _postgres() as conn:
                for sql, args, expected in changes:
                    conn.execute(sql, args)
                    print(f"step 7: PostgreSQL: {sql % tuple(repr(a) for a in args)}")
                    message = _next_record(consumer, expected[0]["id"])
                    key = json.loads(message.key())
                    value = json.loads(message.value(), parse_float=Decimal) if message.value() is not None else None
                    shown = message.value().decode() if value is not None else "null (a tombstone: deleted downstream)"
                    print(f"step 8: {topics['open_orders']}: key {message.key().decode()} -> {shown}")
                    if (key, value) != expected:
                        raise RuntimeError(f"expected {expected}, got {(key, value)}")
        finally:
            consumer.close()
        return len(changes)

    @task
    def clean_up(topics: dict[str, str]) -> None:
        from airflow.providers.apache.kafka.hooks.client import KafkaAdminClientHook

        from airflow_mesh.hooks.flink import FlinkHook

        flink = FlinkHook()
        jobs = [job["jid"] for name in (f"mesh-demo-{topics['source']}", f"mesh-demo-open-orders-{topics['run']}")
                for job in flink.find_jobs(name, active_only=True)]
        for job in jobs:
            flink.cancel_job(job)
        KafkaAdminClientHook().delete_topic([topics[name] for name in ("source", "target", "open_orders")])
        with _postgres() as conn:
            conn.execute("DELETE FROM orders WHERE note = %s", (f"mesh_demo {topics['run']}",))
            _drop_slot(conn, CDC["config"]["slot.name"])
        print(f"step 9: cancelled Flink jobs {', '.join(jobs) or 'none'}, deleted the demo topics and rows, removed "
              f"connector {CDC['name']} (offsets reset) and replication slot {CDC['config']['slot.name']}")

    topics = create_topics()
    job_id = submit_processor(topics)
    expected = produce_orders(topics, job_id)
    results = read_results(topics, expected)

    deployed = DeployConnectorOperator(task_id="deploy_connector", spec_path=str(PG_SPEC))
    healthy = ConnectorHealthSensor(task_id="connector_healthy", connector_name=CDC["name"], restart_failed_tasks=1,
                                    poke_interval=2, timeout=300, deferrable=True)
    open_orders = SubmitFlinkJobOperator(
        task_id="submit_cdc_processor",
        job_name="mesh-demo-open-orders-{{ ti.xcom_pull(task_ids='create_topics')['run'] }}",
        program=FlinkProcessor("filter", params={
            "input_topic": CDC_TOPIC,
            "columns": {"id": "BIGINT", "customer_id": "BIGINT", "status": "STRING", "amount": "DECIMAL(12, 2)"},
            "condition": "status <> 'cancelled'",
            "output_topic": "{{ ti.xcom_pull(task_ids='create_topics')['open_orders'] }}",
            "input_format": "debezium-json",
            "key": ["id"],
        }),
        healthy_for=2,
    )
    changed = change_rows(topics)
    results >> deployed >> healthy >> open_orders
    report_cdc(deployed.output, open_orders.output, topics) >> changed

    reset = ResetConnectorOffsetsOperator(task_id="reset_connector_offsets", connector_name=CDC["name"],
                                          resume=False).as_teardown(setups=deployed)
    delete = DeleteConnectorOperator(task_id="delete_connector", connector_name=CDC["name"]).as_teardown(
        setups=deployed)
    finished = clean_up(topics).as_teardown(setups=topics)
    changed >> reset >> delete >> finished


def _next_record(consumer, key: int, timeout: float = 60.0):
    """The next record (a confluent_kafka Message) of that order id in an upsert topic keyed by ``{"id": ...}``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error() and json.loads(message.key()).get("id") == key:
            return message
    raise RuntimeError(f"no record for order {key} within {timeout:.0f}s")


def _drop_slot(conn, slot: str, timeout: float = 30.0) -> None:
    """Drop a replication slot once its (deleted) connector has let go of it."""
    deadline = time.monotonic() + timeout
    while (row := conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                               (slot,)).fetchone()) is not None:
        if not row[0]:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"replication slot {slot} is still in use")
        time.sleep(0.5)


demo_dag = mesh_demo()

if __name__ == "__main__":
    run = demo_dag.test()
    print(f"mesh_demo finished: {run.state}")
    raise SystemExit(0 if run.state == "success" else 1)
