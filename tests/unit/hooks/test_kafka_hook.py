"""hooks/kafka.py without a cluster: the consumers' settings, and the dead-letter copies through a fake producer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_mesh.hooks.kafka import (
    BOUNDED_READ,
    NOTIFICATION_READ,
    DeadLetterProducerHook,
    NoCommitConsumerHook,
    no_commit_settings,
)


def test_no_commit_settings_never_reuse_a_group_and_never_commit():
    first = no_commit_settings({"bootstrap.servers": "b:9092", "group.id": "billing", "enable.auto.commit": True})
    second = no_commit_settings({"bootstrap.servers": "b:9092"})
    assert first["bootstrap.servers"] == "b:9092"
    assert first["group.id"] != "billing" and first["group.id"] != second["group.id"]
    assert first["group.id"].startswith("airflow-mesh-contract-check-")
    assert (first["enable.auto.commit"], first["enable.auto.offset.store"], first["allow.auto.create.topics"],
            first["enable.partition.eof"]) == (False, False, False, True)


def test_the_notification_settings_read_from_the_start_without_committing():
    settings = no_commit_settings({"bootstrap.servers": "b:9092", "enable.auto.commit": True},
                                  "airflow-mesh-notifications", NOTIFICATION_READ)
    assert settings["group.id"].startswith("airflow-mesh-notifications-")
    assert (settings["enable.auto.commit"], settings["enable.auto.offset.store"], settings["auto.offset.reset"]) == \
        (False, False, "earliest")
    assert "enable.partition.eof" not in settings


@pytest.fixture
def kafka_connection(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_TEST", json.dumps({"conn_type": "kafka",
                                                              "extra": {"bootstrap.servers": "127.0.0.1:1"}}))
    return "kafka_test"


def test_a_consumer_is_made_only_when_used_and_closed_only_then(kafka_connection):
    hook = NoCommitConsumerHook(kafka_connection)
    hook.close()  # nothing made: nothing to close
    assert "get_conn" not in hook.__dict__
    consumer = hook.consumer
    assert consumer is hook.consumer
    hook.close()
    assert hook.overrides == BOUNDED_READ


class FakeRecord:
    def __init__(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]] | None) -> None:
        self._key, self._value, self._headers = key, value, headers

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers


class FakeProducer:
    def __init__(self, fail: set[bytes], undelivered: int = 0) -> None:
        self.fail, self.undelivered, self.produced = fail, undelivered, []

    def produce(self, topic: str, key: bytes, value: bytes, headers: list, on_delivery: Any) -> None:
        self.produced.append((topic, key, value, headers))
        on_delivery("broker said no" if key in self.fail else None, None)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return self.undelivered


def test_dead_letter_copies_keep_the_records_headers_and_add_the_reasons(kafka_connection, monkeypatch):
    producer = FakeProducer(fail=set())
    monkeypatch.setattr(DeadLetterProducerHook, "get_producer", lambda self: producer)
    records = [(FakeRecord(b"k1", b"v1", [("h", b"1")]), [("why", b"bad")]), (FakeRecord(b"k2", b"v2", None), [])]
    assert DeadLetterProducerHook(kafka_connection).copy_records("dlq", records) == (0, None)
    assert producer.produced == [("dlq", b"k1", b"v1", [("h", b"1"), ("why", b"bad")]), ("dlq", b"k2", b"v2", [])]


@pytest.mark.parametrize(("fail", "undelivered", "expected"), [
    ({b"k1"}, 0, (1, "broker said no")), (set(), 2, (2, "flush timed out"))])
def test_dead_letter_copies_not_taken_are_counted_with_the_first_reason(kafka_connection, monkeypatch, fail,
                                                                        undelivered, expected):
    producer = FakeProducer(fail=fail, undelivered=undelivered)
    monkeypatch.setattr(DeadLetterProducerHook, "get_producer", lambda self: producer)
    records = [(FakeRecord(b"k1", b"v1", None), []), (FakeRecord(b"k2", b"v2", None), [])]
    assert DeadLetterProducerHook(kafka_connection).copy_records("dlq", records) == expected
