"""Kafka topics as processor inputs and outputs (Flink's ``kafka`` and ``upsert-kafka`` connectors)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from airflow_mesh.processors.formats import Format, Json
from airflow_mesh.processors.model import (
    Column,
    Deployment,
    Input,
    Output,
    Relation,
    column_problems,
    columns_of,
    unknown_columns,
)
from airflow_mesh.processors.sql import quote_identifier, quote_literal

TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
STARTUP_MODES = ("earliest-offset", "latest-offset", "group-offsets")


def _table(name: str, columns: Sequence[Column], key: Sequence[str], options: Mapping[str, str]) -> str:
    lines = [column.ddl() for column in columns]
    if key:
        lines.append(f"PRIMARY KEY ({', '.join(quote_identifier(k) for k in key)}) NOT ENFORCED")
    settings = ",\n  ".join(f"{quote_literal(k)} = {quote_literal(v)}" for k, v in options.items())
    return f"CREATE TABLE {quote_identifier(name)} (\n  " + ",\n  ".join(lines) + f"\n) WITH (\n  {settings}\n)"


def _connection_options(topic: str, deployment: Deployment) -> dict[str, str]:
    if deployment.kafka is None:
        raise ValueError(f"topic {topic!r}: the deployment names no Kafka cluster")
    options = {"topic": topic, "properties.bootstrap.servers": deployment.kafka.bootstrap_servers}
    options.update({f"properties.{key}": value for key, value in deployment.kafka.properties.items()})
    return options


def _topic_problems(topic: str) -> list[str]:
    return [] if TOPIC.match(topic) else [f"topic {topic!r} is not a valid Kafka topic name"]


@dataclass(frozen=True)
class KafkaInput(Input):
    """A Kafka topic read as a table.

    Args:
        name: How steps refer to this input (a SQL identifier).
        topic: The topic.
        columns: ``{name: Flink SQL type}`` in order (or Column objects): the fields of each record's
            value (of ``after``/``before`` for Debezium events).
        format: The values' format; a changelog format (Debezium) makes the input a changelog.
        key: The primary key. On a Debezium input it lets Flink treat updates as updates of that key;
            with ``upsert`` it is the record key.
        upsert: Read the topic as an upsert log (``upsert-kafka``): the latest value per key wins and
            a tombstone deletes the key; what a keyed ``KafkaOutput`` writes.
        key_format: The record keys' format, for ``upsert``.
        startup: Where a fresh job starts reading (not for ``upsert``, which reads from the start).
    """

    name: str
    topic: str
    columns: Mapping[str, str] | Sequence[Column]  # type: ignore[assignment]  # __post_init__ makes it Input's tuple
    format: Format = field(default_factory=Json)
    key: Sequence[str] = ()
    upsert: bool = False
    key_format: Format = field(default_factory=Json)
    startup: str = "earliest-offset"

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", columns_of(self.columns))
        object.__setattr__(self, "key", tuple(self.key))

    @property
    def changelog(self) -> bool:
        return self.upsert or self.format.changelog

    @property
    def _columns(self) -> tuple[Column, ...]:
        return cast("tuple[Column, ...]", self.columns)  # as __post_init__ stored them

    def check(self) -> list[str]:
        problems = _topic_problems(self.topic) + column_problems(self._columns)
        problems += unknown_columns(self.key, self._columns, "key column")
        if self.upsert:
            if not self.key:
                problems.append("an upsert input needs a key")
            if self.format.changelog or self.key_format.changelog:
                problems.append(f"an upsert input's formats must be plain records, not {self.format.identifier}")
        else:
            if self.key and not self.format.changelog:
                problems.append(f"a key on an append-only {self.format.identifier} input guarantees nothing; "
                                "read the topic with upsert=True if its records are upserts by key")
            if self.startup not in STARTUP_MODES:
                problems.append(f"startup {self.startup!r} is not one of {', '.join(STARTUP_MODES)}")
        return problems

    def create_table(self, deployment: Deployment) -> str:
        options = {"connector": "upsert-kafka" if self.upsert else "kafka",
                   **_connection_options(self.topic, deployment),
                   "properties.group.id": deployment.job_name}
        if self.upsert:
            options.update(self.key_format.options("key."))
        else:
            options["scan.startup.mode"] = self.startup
        options.update(self.format.options("value."))
        return _table(self.name, self._columns, self.key, options)


@dataclass(frozen=True)
class KafkaOutput(Output):
    """A Kafka topic the result is written to.

    Without a key every result row is appended, which only an append-only result allows. With a key
    the topic is an upsert log (``upsert-kafka``): each row is written under its key, an update
    overwrites it and a delete writes a tombstone, so updates and deletes keep their meaning.

    Flink retracts a row before writing its new version, which an upsert log would show as a
    tombstone followed by the new value; a keyed output therefore buffers its writes for
    ``flush_interval`` and writes only the latest change of each key, so an update is one record.

    Args:
        topic: The topic.
        key: The result columns that make each record's key (its primary key).
        format: The values' format.
        key_format: The keys' format, with ``key``.
        flush_interval: How long a keyed output buffers its writes (a Flink duration); None
            writes every change at once, retractions included.
        flush_rows: How many keys a keyed output buffers at most before writing.
    """

    topic: str
    key: Sequence[str] = ()
    format: Format = field(default_factory=Json)
    key_format: Format = field(default_factory=Json)
    flush_interval: str | None = "1 s"
    flush_rows: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", tuple(self.key))

    def check(self, result: Relation) -> list[str]:
        problems = _topic_problems(self.topic) + unknown_columns(self.key, result.columns, "key column")
        if self.key and (self.format.changelog or self.key_format.changelog):
            problems.append(f"a keyed output writes plain records, not {self.format.identifier}")
        if not self.key and result.changelog and not self.format.changelog:
            problems.append("the result carries updates and deletes (from a changelog input, an aggregate or an "
                            "enrichment) but the output only appends: give the output a key to upsert by")
        return problems

    def create_table(self, table: str, columns: Sequence[Column], deployment: Deployment) -> str:
        options = {"connector": "upsert-kafka" if self.key else "kafka", **_connection_options(self.topic, deployment)}
        if self.key:
            options.update(self.key_format.options("key."))
            if self.flush_interval:
                options.update({"sink.buffer-flush.interval": self.flush_interval,
                                "sink.buffer-flush.max-rows": str(self.flush_rows)})
        options.update(self.format.options("value."))
        return _table(table, columns, self.key, options)

    def as_input(self, name: str, columns: Sequence[Column]) -> KafkaInput:
        """The input that reads this topic back: an upsert input when keyed, else an appending one."""
        return KafkaInput(name, self.topic, tuple(columns), format=self.format, key=self.key, upsert=bool(self.key),
                          key_format=self.key_format)
