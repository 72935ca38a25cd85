"""The formats of Kafka record keys and values, as Flink SQL's Kafka connectors name and configure them.

A format knows its Flink identifier, the table options it needs, and whether it carries a changelog
(Debezium's envelopes hold inserts, updates and deletes) or only appends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


class Format(ABC):
    """How the records of a topic (their keys or values) are encoded."""

    #: Whether the format carries updates and deletes rather than only appends.
    changelog: bool = False

    @property
    @abstractmethod
    def identifier(self) -> str:
        """Flink's name of the format, e.g. ``json``."""

    def options(self, prefix: str) -> dict[str, str]:
        """The table options that select and configure this format.

        Args:
            prefix: ``key.`` or ``value.``: which part of the record the format decodes.

        Returns:
            e.g. ``{"value.format": "avro-confluent", "value.avro-confluent.url": "http://registry:8081"}``.
        """
        return {f"{prefix}format": self.identifier}


@dataclass(frozen=True)
class Json(Format):
    """JSON without a schema envelope (Kafka Connect's JsonConverter with ``schemas.enable=false``).

    Decimals are written as plain numbers (``20.00``, not Java's ``2E+1``).
    """

    identifier = "json"

    def options(self, prefix: str) -> dict[str, str]:
        return {**super().options(prefix), f"{prefix}json.encode.decimal-as-plain-number": "true"}


@dataclass(frozen=True)
class Avro(Format):
    """Plain Avro records: Confluent's wire format with a schema registry when ``registry_url`` is given,
    else bare Avro binary (Flink then derives the schema from the table's columns).

    Needs Flink's Avro format jars (``flink-sql-avro``, and ``flink-sql-avro-confluent-registry``
    for a registry) in the cluster's ``lib/``.
    """

    registry_url: str | None = None

    @property
    def identifier(self) -> str:
        return "avro-confluent" if self.registry_url else "avro"

    def options(self, prefix: str) -> dict[str, str]:
        options = super().options(prefix)
        if self.registry_url:
            options[f"{prefix}avro-confluent.url"] = self.registry_url
        return options


@dataclass(frozen=True)
class DebeziumJson(Format):
    """Debezium change events in JSON without a schema envelope (``before``, ``after``, ``op``, ...)."""

    identifier = "debezium-json"
    changelog = True


@dataclass(frozen=True)
class DebeziumAvro(Format):
    """Debezium change events in Avro through a schema registry (Confluent's wire format).

    Needs ``flink-sql-avro-confluent-registry`` in the cluster's ``lib/``.
    """

    registry_url: str
    identifier = "debezium-avro-confluent"
    changelog = True

    def options(self, prefix: str) -> dict[str, str]:
        return {**super().options(prefix), f"{prefix}debezium-avro-confluent.url": self.registry_url}


FORMAT_NAMES = ("json", "avro", "debezium-json", "debezium-avro")


def format_named(name: str, registry_url: str | None = None) -> Format:
    """The format of a name a DAG can pass as a parameter.

    Args:
        name: One of ``FORMAT_NAMES``.
        registry_url: The schema registry, for ``avro`` (optional) and ``debezium-avro`` (required).

    Raises:
        ValueError: an unknown name, or ``debezium-avro`` without a registry.
    """
    if name == "json":
        return Json()
    if name == "avro":
        return Avro(registry_url)
    if name == "debezium-json":
        return DebeziumJson()
    if name == "debezium-avro":
        if not registry_url:
            raise ValueError("format 'debezium-avro' needs a schema registry URL")
        return DebeziumAvro(registry_url)
    raise ValueError(f"unknown format {name!r}; expected one of {', '.join(FORMAT_NAMES)}")
