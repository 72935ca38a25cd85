"""Submitting, supervising, stopping and upgrading Flink jobs on the real session cluster.

Each test names its jobs uniquely and cancels every one of them afterwards (the cluster has four
slots); topics come from the ``new_topic`` fixture, which deletes them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

import pytest
from airflow.sdk.exceptions import AirflowException
from confluent_kafka import Consumer, Producer

from airflow_mesh.flink.health import ENDED_STATES
from airflow_mesh.hooks.flink import PYTHON_DRIVER, SQL_RUNNER, FlinkHook
from airflow_mesh.operators.flink import (
    CancelFlinkJobOperator,
    FlinkJar,
    FlinkProcessor,
    StopFlinkJobOperator,
    SubmitFlinkJobOperator,
    UpgradeFlinkJobOperator,
)
from airflow_mesh.processors import (
    Aggregate,
    Derive,
    Filter,
    KafkaInput,
    KafkaOutput,
    Processor,
    Project,
    Union,
)
from airflow_mesh.sensors.flink import FlinkJobHealthSensor
from airflow_mesh.triggers.flink import FlinkJobHealthTrigger

ORDER_COLUMNS = {"id": "BIGINT", "customer": "STRING", "amount": "DECIMAL(12, 2)", "note": "STRING"}


@pytest.fixture
def flink() -> FlinkHook:
    return FlinkHook()


@pytest.fixture
def job_name(flink: FlinkHook, new_topic: Callable[..., str]) -> Iterator[Callable[[str], str]]:
    """A factory of unique job names; every job of those names is cancelled after the test.

    It depends on ``new_topic`` so that the jobs are cancelled before the topics are deleted: a job
    still reading a deleted topic would have the broker create it again.
    """
    names: list[str] = []

    def make(prefix: str) -> str:
        names.append(f"{prefix}-{uuid.uuid4().hex[:8]}")
        return names[-1]

    yield make
    for name in names:
        CancelFlinkJobOperator(task_id="clean", job_name=name, ignore_missing=True).execute({})


def produce_json(bootstrap: str, topic: str, records: list[dict], key: str | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for record in records:
        producer.produce(topic, key=json.dumps({key: record[key]}) if key else None, value=json.dumps(record))
    assert producer.flush(30) == 0


def upserts(bootstrap: str, topic: str, until: Callable[[dict], bool], timeout: float = 60) -> dict:
    """The latest value per key of an upsert topic (keys and values JSON), read until ``until`` holds."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    table: dict = {}
    deadline = time.monotonic() + timeout
    try:
        while not until(table) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                key = json.dumps(json.loads(message.key()), sort_keys=True)
                table[key] = json.loads(message.value(), parse_float=Decimal) if message.value() else None
    finally:
        consumer.close()
    return table


def counts_processor(source: str, output: str, *, more: str | None = None, skip_negative: bool = False) -> Processor:
    """Orders per customer: the running aggregate whose state an upgrade must keep."""
    inputs = [KafkaInput("orders", source, ORDER_COLUMNS)]
    steps = [Filter("amount >= 0")] if skip_negative else []
    if more:  # a second source changes the job's topology, so the aggregate's state no longer maps
        inputs.append(KafkaInput("more_orders", more, ORDER_COLUMNS))
        steps.append(Union(["more_orders"]))
    steps.append(Aggregate(["customer"], [Derive("orders", "COUNT(*)", "BIGINT")]))
    return Processor("orders_per_customer", inputs, KafkaOutput(output, key=["customer"]), steps)


def orders(*customers: str) -> list[dict]:
    return [{"id": i, "customer": c, "amount": "10.00", "note": None} for i, c in enumerate(customers)]


def counts(table: dict) -> dict[str, int]:
    return {json.loads(key)["customer"]: value["orders"] for key, value in table.items() if value}


def reaches(expected: dict[str, int]) -> Callable[[dict], bool]:
    return lambda table: counts(table) == expected


def test_upgrade_through_a_savepoint_keeps_the_running_counts(flink, job_name, new_topic, bootstrap_servers):
    source, output = new_topic("orders"), new_topic("orders-per-customer")
    name = job_name("counts")
    v1 = FlinkProcessor(counts_processor(source, output))
    v2 = FlinkProcessor(counts_processor(source, output, skip_negative=True))
    first = SubmitFlinkJobOperator(task_id="submit", job_name=name, program=v1, healthy_for=2).execute({})
    produce_json(bootstrap_servers, source, orders("ada", "ada", "bob"))
    assert counts(upserts(bootstrap_servers, output, reaches({"ada": 2, "bob": 1}))) == {"ada": 2, "bob": 1}

    result = UpgradeFlinkJobOperator(task_id="upgrade", job_name=name, program=v2, previous_program=v1,
                                     healthy_for=2).execute({})

    assert result["previous_job_id"] == first and result["job_id"] != first
    assert flink.get_job(first)["state"] == "FINISHED"  # stopped with a savepoint, not cancelled
    assert Path(urlparse(result["savepoint"]).path).is_dir()
    restored = flink.get_checkpoints(result["job_id"])["latest"]["restored"]
    assert restored["is_savepoint"] and restored["external_path"] == result["savepoint"]
    produce_json(bootstrap_servers, source, orders("ada", "cyd"))
    # The counts continue from the savepoint rather than restart from zero.
    assert counts(upserts(bootstrap_servers, output, reaches({"ada": 3, "bob": 1, "cyd": 1}))) == \
        {"ada": 3, "bob": 1, "cyd": 1}
    assert [job["jid"] for job in flink.find_jobs(name, active_only=True)] == [result["job_id"]]


def test_a_changed_declaration_under_a_running_name_is_refused(flink, job_name, new_topic):
    source, output = new_topic("orders"), new_topic("orders-per-customer")
    name = job_name("changed")
    v1 = FlinkProcessor(counts_processor(source, output))
    first = SubmitFlinkJobOperator(task_id="submit", job_name=name, program=v1, wait_until_healthy=False).execute({})
    same = FlinkProcessor(counts_processor(source, output))
    assert SubmitFlinkJobOperator(task_id="again", job_name=name, program=same,
                                  wait_until_healthy=False).execute({}) == first
    changed = FlinkProcessor(counts_processor(source, output, skip_negative=True))
    with pytest.raises(AirflowException, match=r"declaration changed: Flink job .* runs as .* a declaration other "
                                               r"than this task's .*use UpgradeFlinkJobOperator"):
        SubmitFlinkJobOperator(task_id="changed", job_name=name, program=changed, wait_until_healthy=False).execute({})
    assert flink.get_job(first)["state"] not in ENDED_STATES  # the running job is left as it is


def test_an_upgrade_that_cannot_start_rolls_back_to_the_previous_version(flink, job_name, new_topic,
                                                                         bootstrap_servers):
    source, more, output = new_topic("orders"), new_topic("more-orders"), new_topic("orders-per-customer")
    name = job_name("counts")
    v1 = FlinkProcessor(counts_processor(source, output))
    incompatible = FlinkProcessor(counts_processor(source, output, more=more))
    SubmitFlinkJobOperator(task_id="submit", job_name=name, program=v1, healthy_for=2).execute({})
    produce_json(bootstrap_servers, source, orders("ada", "bob"))
    upserts(bootstrap_servers, output, reaches({"ada": 1, "bob": 1}))

    with pytest.raises(AirflowException) as failure:
        UpgradeFlinkJobOperator(task_id="upgrade", job_name=name, program=incompatible, previous_program=v1,
                                healthy_for=2).execute({})

    message = str(failure.value)
    assert message.startswith(f"upgrade of Flink job {name} failed: ")
    assert "Cannot map checkpoint/savepoint state for operator" in message  # Flink's own reason
    assert "rolled back: the previous version runs again as job" in message
    (running,) = flink.find_jobs(name, active_only=True)
    assert FlinkHook.is_fully_running(flink.get_job(running["jid"]))
    produce_json(bootstrap_servers, source, orders("ada"))
    assert counts(upserts(bootstrap_servers, output, reaches({"ada": 2, "bob": 1}))) == {"ada": 2, "bob": 1}


def test_a_failing_processor_fails_the_sensor_with_flinks_exception(flink, job_name, new_topic, bootstrap_servers):
    source, output = new_topic("orders"), new_topic("noted")
    produce_json(bootstrap_servers, source, [{"id": 1, "customer": "ada", "amount": "1.00", "note": "abc"}])
    bad_cast = Processor("bad_cast", [KafkaInput("orders", source, ORDER_COLUMNS)], KafkaOutput(output),
                         [Derive("note_number", "CAST(note AS INT)", "INT"), Project(["id", "note_number"])])
    name = job_name("bad-cast")
    SubmitFlinkJobOperator(task_id="submit", job_name=name, program=FlinkProcessor(bad_cast),
                           flink_configuration={"restart-strategy.type": "none"}, wait_until_healthy=False).execute({})

    sensor = FlinkJobHealthSensor(task_id="healthy", job_name=name, poke_interval=1, timeout=90, mode="poke")
    with pytest.raises(AirflowException) as failure:
        sensor.execute({})

    message = str(failure.value)
    assert f"Flink job {name} (" in message and "is FAILED" in message
    assert "java.lang.NumberFormatException: For input string: 'abc'" in message

    # Deferred, the trigger reaches the same verdict, and the sensor resumes into the same failure.
    trigger = FlinkJobHealthTrigger(job_name=name, poll_interval=1)
    event = asyncio.run(anext(trigger.run())).payload
    assert event["status"] == "failed" and "NumberFormatException: For input string: 'abc'" in event["message"]
    with pytest.raises(AirflowException, match="NumberFormatException"):
        sensor.execute_complete({}, event)


def test_submitting_a_running_name_again_reconnects_and_stop_keeps_a_savepoint(flink, job_name, new_topic,
                                                                               bootstrap_servers):
    source, output = new_topic("orders"), new_topic("copied")
    script = (f"CREATE TABLE src (id BIGINT) WITH ('connector' = 'kafka', 'topic' = '{source}', "
              f"'properties.bootstrap.servers' = '{bootstrap_servers}', 'scan.startup.mode' = 'earliest-offset', "
              "'value.format' = 'json');\n"
              f"CREATE TABLE dst (id BIGINT) WITH ('connector' = 'kafka', 'topic' = '{output}', "
              f"'properties.bootstrap.servers' = '{bootstrap_servers}', 'value.format' = 'json');\n"
              "INSERT INTO dst SELECT id FROM src;\n")
    # A jar program: Flink's own PythonDriver jar, running airflow-mesh's SQL runner.
    python_jar = flink._conn.extra_dejson["python_jar"]
    program = FlinkJar(python_jar, PYTHON_DRIVER,
                       ["-py", str(SQL_RUNNER), "--sql-base64", base64.b64encode(script.encode()).decode()])
    jars_before = {jar["id"] for jar in flink.list_jars()}
    name = job_name("copy")

    first = SubmitFlinkJobOperator(task_id="submit", job_name=name, program=program, healthy_for=1)
    again = SubmitFlinkJobOperator(task_id="submit", job_name=name, program=program, healthy_for=1)
    job_id = first.execute({})
    assert again.execute({}) == job_id
    assert [job["jid"] for job in flink.find_jobs(name)] == [job_id]  # one job, named by the operator
    assert {jar["id"] for jar in flink.list_jars()} == jars_before  # the uploaded jar was removed

    again.on_kill()  # it only reconnected: the job is not its to cancel
    assert flink.get_job(job_id)["state"] == "RUNNING"

    savepoint = StopFlinkJobOperator(task_id="stop", job_name=name).execute({})
    assert Path(urlparse(savepoint).path).is_dir()
    assert flink.get_job(job_id)["state"] == "FINISHED"
    assert StopFlinkJobOperator(task_id="stop", job_name=name, ignore_missing=True).execute({}) is None
    with pytest.raises(AirflowException, match=f"no running Flink job '{name}'"):
        StopFlinkJobOperator(task_id="stop", job_name=name).execute({})


def test_a_killed_submission_cancels_the_job_it_submitted(flink, job_name, new_topic):
    source, output = new_topic("orders"), new_topic("copied")
    processor = Processor("copy", [KafkaInput("orders", source, ORDER_COLUMNS)], KafkaOutput(output))
    submit = SubmitFlinkJobOperator(task_id="submit", job_name=job_name("killed"), program=FlinkProcessor(processor))
    job = submit.submit_job({})  # as execute() does, before it waits for the job to be healthy

    submit.on_kill()

    assert flink.wait_until_ended(job["job_id"]) == "CANCELED"
    assert flink.get_job(job["job_id"])["state"] in ENDED_STATES
