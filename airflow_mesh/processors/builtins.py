"""The built-in processors (projection, filter, rename, union), written with the SDK like any other.

Each is a factory: keyword parameters a DAG can pass as JSON in, a ``Processor`` out. They read
Kafka topics in any of ``FORMAT_NAMES`` and write JSON to a Kafka topic: keyed by ``key`` (an
upsert log, which a changelog input such as Debezium needs) or appended when no key is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from airflow_mesh.processors.formats import format_named
from airflow_mesh.processors.kafka import KafkaInput, KafkaOutput
from airflow_mesh.processors.model import Processor, Step
from airflow_mesh.processors.steps import Filter, Project, Rename, Union


def _topic_processor(name: str, description: str, input_topics: Sequence[str], columns: Mapping[str, str],
                     steps: Sequence[Step], output_topic: str, input_format: str, key: Sequence[str],
                     output_key: Sequence[str], registry_url: str | None) -> Processor:
    fmt = format_named(input_format, registry_url)
    input_key = key if fmt.changelog else ()  # Flink takes a key only on a changelog's table
    inputs = [KafkaInput(f"source_{number}", topic, columns, format=fmt, key=input_key)
              for number, topic in enumerate(input_topics, start=1)]
    return Processor(name, inputs, KafkaOutput(output_topic, key=output_key), steps, description=description)


def projection(*, input_topic: str, columns: Mapping[str, str], keep: Sequence[str], output_topic: str,
               input_format: str = "json", key: Sequence[str] = (), registry_url: str | None = None) -> Processor:
    """Keep some columns of a topic's records and write them to another topic.

    Args:
        input_topic: The topic to read.
        columns: ``{name: Flink SQL type}`` of the input records (of ``after`` for Debezium events).
        keep: The columns to write, in order (they must include the key).
        output_topic: The topic to write.
        input_format: The input's format, one of ``FORMAT_NAMES``.
        key: The primary key: the output's record key, and the input's for a Debezium input.
        registry_url: The schema registry, for Avro formats.

    Returns:
        The processor.
    """
    return _topic_processor("projection", f"keep {', '.join(keep)} of {input_topic}", [input_topic], columns,
                            [Project(keep)], output_topic, input_format, key, key, registry_url)


def filter_rows(*, input_topic: str, columns: Mapping[str, str], condition: str, output_topic: str,
                input_format: str = "json", key: Sequence[str] = (), registry_url: str | None = None) -> Processor:
    """Keep the records of a topic for which a SQL condition holds and write them to another topic.

    On a Debezium input, an update that makes a row stop matching deletes its key downstream.

    Args:
        input_topic: The topic to read.
        columns: ``{name: Flink SQL type}`` of the input records (of ``after`` for Debezium events).
        condition: A Flink SQL boolean expression over the columns, e.g. ``status = 'paid'``.
        output_topic: The topic to write.
        input_format: The input's format, one of ``FORMAT_NAMES``.
        key: The primary key: the output's record key, and the input's for a Debezium input.
        registry_url: The schema registry, for Avro formats.

    Returns:
        The processor.
    """
    return _topic_processor("filter", f"rows of {input_topic} where {condition}", [input_topic], columns,
                            [Filter(condition)], output_topic, input_format, key, key, registry_url)


def rename(*, input_topic: str, columns: Mapping[str, str], renames: Mapping[str, str], output_topic: str,
           input_format: str = "json", key: Sequence[str] = (), registry_url: str | None = None) -> Processor:
    """Rename columns of a topic's records and write them to another topic.

    Args:
        input_topic: The topic to read.
        columns: ``{name: Flink SQL type}`` of the input records (of ``after`` for Debezium events).
        renames: ``{old name: new name}``.
        output_topic: The topic to write.
        input_format: The input's format, one of ``FORMAT_NAMES``.
        key: The input's primary key (by old names); the output is keyed by the same columns, renamed.
        registry_url: The schema registry, for Avro formats.

    Returns:
        The processor.
    """
    output_key = [renames.get(name, name) for name in key]
    return _topic_processor("rename", f"rename {', '.join(f'{a} to {b}' for a, b in renames.items())} in "
                            f"{input_topic}", [input_topic], columns, [Rename(renames)], output_topic,
                            input_format, key, output_key, registry_url)


def union(*, input_topics: Sequence[str], columns: Mapping[str, str], output_topic: str,
          input_format: str = "json", key: Sequence[str] = (), registry_url: str | None = None) -> Processor:
    """Merge topics whose records have the same columns into one topic.

    Args:
        input_topics: The topics to read (two or more).
        columns: ``{name: Flink SQL type}`` of the records of every input topic.
        output_topic: The topic to write.
        input_format: The inputs' format, one of ``FORMAT_NAMES``.
        key: The primary key: the output's record key, and the inputs' for Debezium inputs.
        registry_url: The schema registry, for Avro formats.

    Returns:
        The processor.
    """
    others = [f"source_{number}" for number in range(2, len(input_topics) + 1)]
    return _topic_processor("union", f"merge {', '.join(input_topics)}", input_topics, columns, [Union(others)],
                            output_topic, input_format, key, key, registry_url)


#: The built-ins by registered name, as ``module:attribute`` references.
BUILTINS = {
    "projection": f"{__name__}:projection",
    "filter": f"{__name__}:filter_rows",
    "rename": f"{__name__}:rename",
    "union": f"{__name__}:union",
}
