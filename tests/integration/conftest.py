"""Integration tests run against the real services of stack/ (`make up`); nothing here is mocked.

The fixtures that locate the stack's services (``bootstrap_servers``, ``postgres_conninfo``,
``new_topic``, ...) live in tests/conftest.py, shared with the fault tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import requests
from confluent_kafka import Consumer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def read_topic(bootstrap_servers: str):
    """Read `count` messages from the start of a topic with a throw-away consumer group (no commits)."""
    return lambda topic, count, timeout=60.0: _consume(bootstrap_servers, topic, count, timeout)


def _consume(bootstrap_servers: str, topic: str, count: int, timeout: float) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": f"test-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    messages = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error():
                raise AssertionError(f"consumer error on {topic}: {message.error()}")
            messages.append(message)
    finally:
        consumer.close()
    return messages


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


ORDERS_ROWS = 20_000
ORDERS_DDL = ("(id bigint PRIMARY KEY, customer_id bigint, status text, amount numeric(12,2), "
              "created_at timestamptz, updated_at timestamptz, note text)")


@pytest.fixture
def pg_table(postgres_conninfo: str) -> Iterator[str]:
    """A fresh orders-shaped PostgreSQL table of ORDERS_ROWS rows, with NULLs, negative decimals and
    microsecond time zones; it and its ``_copy`` are dropped afterwards. Yields ``public.<name>``."""
    import psycopg

    name = f"bf_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} {ORDERS_DDL}")
        conn.execute(f"INSERT INTO {name} SELECT g, g % 97, (array['new','paid','shipped'])[1 + g % 3], "
                     f"(g * 7 % 100000) / 100.0 - 300, "
                     f"timestamptz '2026-01-01 00:00:00.123456+02' + g * interval '1 second', "
                     f"now(), CASE WHEN g % 5 = 0 THEN NULL ELSE 'nöte ' || g END "
                     f"FROM generate_series(1, {ORDERS_ROWS}) g")
    yield f"public.{name}"
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute(f"DROP TABLE IF EXISTS {name}_copy")
