"""Faults of the Flink session cluster while records flow through a processor.

A producer writes numbered records (about 20 a second) into a topic; a processor copies them to
another topic; an independent consumer (its own group, no offset commits) reads the output and
counts what is missing and what came twice. The TaskManager and the JobManager are killed with
SIGKILL by their pids and brought back with the stack's own command, and what the provider reports
and does meanwhile is checked against what Flink itself knows.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from airflow.sdk.exceptions import AirflowException
from confluent_kafka import Consumer, Producer

from airflow_mesh.flink.health import HealthPolicy, Verdict
from airflow_mesh.hooks.flink import FlinkHook
from airflow_mesh.operators.flink import CancelFlinkJobOperator, FlinkProcessor, SubmitFlinkJobOperator
from airflow_mesh.processors import Filter, KafkaInput, KafkaOutput, Processor
from airflow_mesh.sensors.flink import FlinkJobHealthSensor

COLUMNS = {"id": "BIGINT", "sent_ms": "BIGINT"}


@dataclass
class NumberedProducer:
    """A thread writing records ``{"id": n, "sent_ms": ...}`` with n = 0, 1, 2, ... about ``rate`` a second."""

    bootstrap: str
    topic: str
    rate: float = 20.0
    sent: list[tuple[int, int]] = field(default_factory=list)  # (id, ms since the epoch when acknowledged)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True})
        number = 0
        while not self._stop.is_set():
            record = {"id": number, "sent_ms": int(time.time() * 1000)}

            def delivered(error, _message, record=record):
                if error is None:
                    self.sent.append((record["id"], int(time.time() * 1000)))

            producer.produce(self.topic, value=json.dumps(record), on_delivery=delivered)
            producer.poll(0)
            number += 1
            time.sleep(1 / self.rate)
        assert producer.flush(60) == 0

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(90)


def read_ids(bootstrap: str, topic: str, expected: set[int], timeout: float = 120) -> Counter[int]:
    """How many times each id appears in the topic, read until every expected id is there (or the timeout)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"faults-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen: Counter[int] = Counter()
    deadline = time.monotonic() + timeout
    try:
        while not expected <= seen.keys() and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                seen[json.loads(message.value())["id"]] += 1
        # A little longer, for duplicates written after the last expected id.
        quiet_until = time.monotonic() + 3
        while time.monotonic() < quiet_until:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                seen[json.loads(message.value())["id"]] += 1
    finally:
        consumer.close()
    return seen


@dataclass
class Pipeline:
    name: str
    source: str
    output: str
    producer: NumberedProducer

    def program(self) -> FlinkProcessor:
        processor = Processor("copy_numbers", [KafkaInput("numbers", self.source, COLUMNS)],
                              KafkaOutput(self.output), [Filter("id >= 0")])
        return FlinkProcessor(processor)

    def submit(self, **kwargs) -> str:
        return SubmitFlinkJobOperator(task_id="submit", job_name=self.name, program=self.program(), healthy_for=2,
                                      startup_timeout=240, **kwargs).execute({})


@pytest.fixture
def pipeline(new_topic: Callable[..., str], bootstrap_servers: str) -> Iterator[Pipeline]:
    source, output = new_topic("faults-in", partitions=2), new_topic("faults-out", partitions=2)
    name = f"faults-copy-{uuid.uuid4().hex[:8]}"
    producer = NumberedProducer(bootstrap_servers, source)
    yield Pipeline(name, source, output, producer)
    if producer._thread is not None and producer._thread.is_alive():
        producer.stop()
    CancelFlinkJobOperator(task_id="clean", job_name=name, ignore_missing=True).execute({})


def latest_completed(flink: FlinkHook, job_id: str) -> dict | None:
    return ((flink.get_checkpoints(job_id).get("latest") or {}).get("completed"))


def wait_for_checkpoint_after(flink: FlinkHook, job_id: str, after_ms: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        completed = latest_completed(flink, job_id)
        if completed and completed["latest_ack_timestamp"] > after_ms:
            return completed
        time.sleep(1)
    raise AssertionError(f"no checkpoint of {job_id} completed after {after_ms} within {timeout}s")


def test_a_taskmanager_loss_is_never_reported_healthy_and_recovery_is(pipeline, stack_service, bootstrap_servers):
    flink = FlinkHook()
    pipeline.producer.start()
    job_id = pipeline.submit()
    wait_for_checkpoint_after(flink, job_id, int(time.time() * 1000))
    taskmanager = stack_service("flink-taskmanager")

    killed_ms = int(time.time() * 1000)
    taskmanager.kill()
    # A sensor that starts watching now must not end its wait while the TaskManager is dead, though
    # Flink shows every vertex RUNNING until its heartbeat notices (about 10-15 s).
    policy = HealthPolicy(healthy_for=5)
    flink_knew_ms = reported_ms = None
    while time.time() * 1000 - killed_ms < 25_000:
        job = flink.get_job(job_id)
        if flink_knew_ms is None and not FlinkHook.is_fully_running(job):
            flink_knew_ms = int(time.time() * 1000)
        health = flink.job_health(job_id, policy, since_ms=killed_ms)
        assert health.verdict() is not Verdict.DONE, (f"healthy {time.time() * 1000 - killed_ms:.0f} ms after "
                                                      f"the TaskManager was killed: {health.summary()}")
        if reported_ms is None and health.health.value != "healthy":
            reported_ms = int(time.time() * 1000)
        time.sleep(1)
    assert flink_knew_ms is not None, "Flink did not notice the lost TaskManager within 25 s"
    assert reported_ms is not None and reported_ms <= flink_knew_ms + 1_000

    taskmanager.up()
    back = time.monotonic()
    # Flink restarted the job several times while it had no slots: its restart count never goes down,
    # yet a job that recovered and checkpoints is healthy, for a sensor and for a retried submission.
    sensor = FlinkJobHealthSensor(task_id="health", job_id=job_id, max_restarts=1, poke_interval=2, timeout=180,
                                  mode="poke", progress_check=True)
    started = time.monotonic()
    sensor.execute({})
    healthy_after = time.monotonic() - back
    # Flink failed the job over (its exception history has the loss) and it recovered.
    assert flink.get_exceptions(job_id)["exceptionHistory"]["entries"]
    assert time.monotonic() - started < 180
    assert pipeline.submit() == job_id  # reconnects, does not fail on Flink's restart count

    pipeline.producer.stop()
    sent = {number for number, _ in pipeline.producer.sent}
    seen = read_ids(bootstrap_servers, pipeline.output, sent)
    lost = sent - seen.keys()
    duplicates = sum(count - 1 for count in seen.values())
    print(f"TaskManager loss: {len(sent)} sent, {len(lost)} lost, {duplicates} duplicates; "
          f"Flink noticed after {(flink_knew_ms - killed_ms) / 1000:.1f}s, the provider after "
          f"{(reported_ms - killed_ms) / 1000:.1f}s; healthy again {healthy_after:.1f}s after the TaskManager was back")
    assert not lost


def test_a_job_the_jobmanager_lost_resumes_from_its_latest_checkpoint(pipeline, stack_service, bootstrap_servers):
    flink = FlinkHook()
    pipeline.producer.start()
    job_id = pipeline.submit()
    checkpoint = wait_for_checkpoint_after(flink, job_id, int(time.time() * 1000) + 2_000)
    jobmanager = stack_service("flink-jobmanager")
    jobmanager.kill()
    jobmanager.up()

    # The new JobManager knows no job: the sensor says so, and where the job's state is.
    sensor = FlinkJobHealthSensor(task_id="health", job_name=pipeline.name, poke_interval=1, timeout=30)
    with pytest.raises(AirflowException) as excinfo:
        sensor.poke({})
    message = str(excinfo.value)
    assert f"it last ran as {job_id}" in message and "unknown to the Flink cluster" in message
    assert f"/{job_id}/chk-" in message

    # A retry of the submission resumes the job from its latest retained checkpoint.
    resumed = pipeline.submit()
    assert resumed != job_id
    restored = (flink.get_checkpoints(resumed).get("latest") or {}).get("restored") or {}
    assert f"/{job_id}/chk-" in restored.get("external_path", ""), restored

    pipeline.producer.stop()
    sent = dict(pipeline.producer.sent)
    seen = read_ids(bootstrap_servers, pipeline.output, set(sent))
    lost = set(sent) - seen.keys()
    replayed = {number for number, count in seen.items() if count > 1}
    print(f"JobManager loss: {len(sent)} sent, {len(lost)} lost, {len(replayed)} replayed; resumed from "
          f"{restored.get('external_path')}")
    assert not lost
    # Only what came after the checkpoint the job resumed from is read again, not the whole topic:
    # records acknowledged well before that checkpoint was triggered were consumed before its barrier.
    before = {number for number, acked in sent.items() if acked < checkpoint["trigger_timestamp"] - 5_000}
    assert before, "the producer wrote nothing before the checkpoint"
    assert not (replayed & before), f"{len(replayed & before)} records from before the checkpoint were replayed"
