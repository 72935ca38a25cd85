"""Fault injection against the real stack: kill a service by its pid, bring it back with the stack's
own command, and measure what a CDC pipeline lost or duplicated meanwhile.

Fixtures:
- ``stack_service``: ``stack_service("connect")`` is a StackService (pid, SIGKILL, ``stack.py up --only``).
- ``cdc_table``: a fresh PostgreSQL table and a Debezium connector spec streaming it (own slot,
  publication and topic prefix), all removed afterwards.
- ``cdc_writer``: a thread making ~20 inserts/updates per second in that table and recording every
  committed change as (id, version).
- ``change_consumer``: an independent consumer of the connector's topic (confluent-kafka, its own
  group, no offset commits) counting each (id, version) it sees: loss and duplicates.

Only the processes of this checkout's stack are touched (pids from ``<stack dir>/run``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
import yaml
from confluent_kafka import Consumer, KafkaError
from confluent_kafka.admin import AdminClient

ROOT = Path(__file__).resolve().parents[2]
STACK_PY = ROOT / "stack" / "stack.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.faults)
            item.add_marker(pytest.mark.integration)


def _load_stack() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mesh_stack_for_faults", STACK_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- stack services


@dataclass
class StackService:
    """One service of this checkout's stack, controlled only by its pid file and the stack's command."""

    name: str
    stack: ModuleType
    log: list[str] = field(default_factory=list)

    @property
    def service(self) -> Any:
        return next(s for s in self.stack.SERVICES if s.name == self.name)

    def pid(self) -> int | None:
        """The pid ``stack.py up`` recorded, if that very process is alive (stack's ``Service.pid``)."""
        return self.service.pid()

    def kill(self) -> int:
        """SIGKILL the service's process group (the stack starts each service as a group leader)."""
        pid = self.pid()
        assert pid is not None, f"{self.name} is not running"
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while self.stack._start_time(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.stack._start_time(pid) is None, f"{self.name} (pid {pid}) survived SIGKILL"
        self.log.append(f"killed {self.name} pid {pid}")
        return pid

    def up(self, timeout: float = 240) -> float:
        """``python stack/stack.py up --only <name>``: start it again and wait until healthy.

        Returns:
            Seconds it took.
        """
        started = time.monotonic()
        done = subprocess.run([sys.executable, str(STACK_PY), "up", "--only", self.name], cwd=ROOT, check=False,
                              env=os.environ.copy(), capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"stack.py up --only {self.name} failed:\n{done.stdout}\n{done.stderr}"
        self.log.append(f"{self.name} up again in {time.monotonic() - started:.1f}s")
        return time.monotonic() - started


@pytest.fixture(scope="session")
def stack_module() -> ModuleType:
    return _load_stack()


@pytest.fixture
def stack_service(stack_module: ModuleType) -> Iterator[Callable[[str], StackService]]:
    """A factory of StackService; every service killed by the test is running again afterwards."""
    made: list[StackService] = []

    def make(name: str) -> StackService:
        service = StackService(name, stack_module)
        assert service.pid() is not None, f"{name} is not running: start the stack with `make up`"
        made.append(service)
        return service

    yield make
    for service in made:
        if service.pid() is None:
            service.up()


# ---------------------------------------------------------------- a CDC source


@dataclass(frozen=True)
class CdcTable:
    """A fresh table and the Debezium connector spec that streams it."""

    table: str
    connector: str
    topic: str
    spec_path: Path
    slot: str


@pytest.fixture
def cdc_table(postgres_conninfo: str, bootstrap_servers: str, tmp_path: Path) -> Iterator[CdcTable]:
    """A table ``public.faults_<hex>`` and a spec for its own Debezium connector (slot, publication,
    topic prefix); the connector (if deployed), slot, publication, table and topics are removed afterwards."""
    from airflow_mesh.hooks.kafka_connect import KafkaConnectHook

    suffix = uuid.uuid4().hex[:8]
    table, name, prefix = f"faults_{suffix}", f"faults-cdc-{suffix}", f"faults{suffix}"
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE public.{table} (id bigint PRIMARY KEY, version int NOT NULL, note text)")
    spec = {
        "name": name,
        "class": "io.debezium.connector.postgresql.PostgresConnector",
        "database": {"conn_id": "postgres_mesh"},
        "config": {
            "tasks.max": 1,
            "topic.prefix": prefix,
            "plugin.name": "pgoutput",
            "slot.name": table,
            "publication.name": table,
            "publication.autocreate.mode": "filtered",
            "table.include.list": f"public\\.{table}",
            "snapshot.mode": "initial",
            "heartbeat.interval.ms": 2000,
            "tombstones.on.delete": False,
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": False,
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": False,
        },
    }
    spec_path = tmp_path / f"{name}.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    yield CdcTable(table, name, f"{prefix}.public.{table}", spec_path, table)

    hook = KafkaConnectHook()
    if hook.connector_exists(name):
        hook.delete_connector(name)
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (table,)).fetchone()
            if row is None:
                break
            if not row[0]:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (table,))
                break
            time.sleep(0.5)
        conn.execute(f"DROP PUBLICATION IF EXISTS {table}")
        conn.execute(f"DROP TABLE IF EXISTS public.{table}")
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
    for future in (admin.delete_topics(topics).values() if topics else []):
        future.result(timeout=30)


# ---------------------------------------------------------------- the writer


class CdcWriter:
    """Makes ~``rate`` changes per second (inserts of new rows, updates bumping a row's version) and
    records every committed one as (id, version). Failed statements are counted, not recorded."""

    def __init__(self, conninfo: str, table: str, rate: float = 20.0) -> None:
        self.conninfo, self.table, self.interval = conninfo, table, 1.0 / rate
        self.committed: list[tuple[int, int]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"cdc-writer-{table}", daemon=True)

    def start(self) -> CdcWriter:
        self._thread.start()
        return self

    def stop(self) -> list[tuple[int, int]]:
        """Stop writing; return the committed changes."""
        self._stop.set()
        self._thread.join(timeout=30)
        return list(self.committed)

    def _run(self) -> None:
        versions: dict[int, int] = {}
        next_id, tick = 1, 0
        conn: psycopg.Connection | None = None
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
                if tick % 2 == 0 or not versions:  # an insert every other change, else an update
                    key, version = next_id, 1
                    conn.execute(f"INSERT INTO public.{self.table} (id, version, note) VALUES (%s, %s, %s)",
                                 (key, version, f"row {key}"))
                    next_id += 1
                else:
                    key = list(versions)[tick % len(versions)]
                    version = versions[key] + 1
                    conn.execute(f"UPDATE public.{self.table} SET version = %s WHERE id = %s", (version, key))
                versions[key] = version
                self.committed.append((key, version))
                tick += 1
            except psycopg.Error:
                self.errors += 1
                conn = None
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        if conn is not None:
            conn.close()


@pytest.fixture
def cdc_writer(postgres_conninfo: str) -> Iterator[Callable[[str], CdcWriter]]:
    """A factory: ``cdc_writer(table)`` starts a CdcWriter; every writer is stopped afterwards."""
    writers: list[CdcWriter] = []

    def start(table: str, rate: float = 20.0) -> CdcWriter:
        writer = CdcWriter(postgres_conninfo, table, rate).start()
        writers.append(writer)
        return writer

    yield start
    for writer in writers:
        writer.stop()


# ---------------------------------------------------------------- the independent consumer


@dataclass
class Tally:
    """What the consumer saw against what was committed."""

    committed: int
    lost: list[tuple[int, int]]
    duplicates: int  # extra copies of changes seen more than once
    duplicated_changes: int  # changes seen more than once

    def report(self) -> str:
        return (f"{self.committed} committed changes: {len(self.lost)} lost, {self.duplicated_changes} delivered "
                f"more than once ({self.duplicates} extra copies)")


def _quiet_logger() -> logging.Logger:
    logger = logging.getLogger("faults.librdkafka")
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger


class ChangeConsumer:
    """Reads a Debezium topic from the start with its own group and no offset commits; counts every
    (id, version) of each change event's ``after``."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self.seen: Counter[tuple[int, int]] = Counter()
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap_servers, "group.id": f"faults-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest", "enable.auto.commit": False, "enable.auto.offset.store": False,
            "allow.auto.create.topics": False, "topic.metadata.refresh.interval.ms": 2000,
            # librdkafka's complaints while a broker is down (one every 50 ms) are expected here: dropped.
            "logger": _quiet_logger(),
        })
        self._consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._run, name=f"consumer-{topic}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                if message.error().code() not in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART,
                                                  KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
                    self.errors.append(str(message.error()))
                continue
            if message.value() is None:
                continue
            event = json.loads(message.value())
            event = event.get("payload", event)
            after = event.get("after")
            if after is not None:
                with self._lock:
                    self.seen[(int(after["id"]), int(after["version"]))] += 1

    def wait_for(self, committed: list[tuple[int, int]], timeout: float) -> Tally:
        """Wait until every committed change was seen (or ``timeout`` passed), then tally."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(change in self.seen for change in committed):
                    break
            time.sleep(0.5)
        return self.tally(committed)

    def tally(self, committed: list[tuple[int, int]]) -> Tally:
        with self._lock:
            lost = [change for change in committed if change not in self.seen]
            extra = {change: n - 1 for change, n in self.seen.items() if n > 1}
        return Tally(len(committed), lost, sum(extra.values()), len(extra))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()


@pytest.fixture
def change_consumer(bootstrap_servers: str) -> Iterator[Callable[[str], ChangeConsumer]]:
    """A factory: ``change_consumer(topic)`` starts a ChangeConsumer; all are closed afterwards."""
    consumers: list[ChangeConsumer] = []

    def start(topic: str) -> ChangeConsumer:
        consumer = ChangeConsumer(bootstrap_servers, topic)
        consumers.append(consumer)
        return consumer

    yield start
    for consumer in consumers:
        consumer.close()
