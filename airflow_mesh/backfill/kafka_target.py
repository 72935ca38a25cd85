"""A Kafka topic as a backfill target: one message per row, keyed by the row's key, one transaction
per key range; values in JSON, or in Avro with their schemas in a schema registry.

Rows are encoded a whole batch at a time (Avro by ``avro_types.encode_bodies``, JSON lines by
polars), so the only work done per row in Python is handing two ``bytes`` to the producer.

JSON
    ``{"id": 1, "amount": "12.50", "created_at": "2026-01-01T00:00:01+00:00", ...}``: decimals as
    their exact text, timestamps, dates and times in ISO 8601 (as Python's ``isoformat`` writes
    them), binaries in base64. The key is ``{"<key>": <value>}``.
Avro
    Confluent's wire format (a zero byte, the schema id in 4 bytes, the Avro body), the schemas
    registered under the TopicNameStrategy subjects ``<topic>-key`` (a record ``Key`` holding the
    key column) and ``<topic>-value`` (a record ``Value`` of every column), in the namespace of the
    topic's name, as Debezium names them. Types map exactly (see ``avro_types``).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any, cast

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from airflow_mesh.backfill.avro_types import avro_schema, decode_bodies, encode_bodies
from airflow_mesh.backfill.convert import empty_table, plain_type, table_from_storage, table_to_storage
from airflow_mesh.backfill.errors import BackfillError, PlanError, TargetSchemaError, TypeMappingError
from airflow_mesh.backfill.keys import KeyRange, range_condition
from airflow_mesh.backfill.names import kafka_topic
from airflow_mesh.backfill.types import json_storage_type, type_problems

__all__ = ["VALUE_FORMATS", "KafkaTarget", "json_keys", "json_lines", "json_lines_to_arrow"]

VALUE_FORMATS = ("json", "avro")

# librdkafka's own log lines (each failed connection attempt, for one) go here rather than to stderr.
KAFKA_LOG = logging.getLogger("airflow_mesh.backfill.kafka")
# How long a broker may take to answer for a topic's metadata before the run fails, naming it.
METADATA_TIMEOUT = 20

# Rows encoded at once: big enough that Arrow's kernels, not Python, take the time; small enough that
# a batch's encoded messages (and the producer's queue) stay a few tens of MB.
ENCODE_ROWS = 65_536

# Producer settings, measured on 200k orders-shaped rows: batches bounded by bytes (1 MB, what
# consumers fetch by default) rather than by librdkafka's 10,000 messages; zstd, whose batches are
# 41% (JSON) and 24% (Avro) smaller than lz4's for the same producer CPU time; a queue that holds a
# whole range in flight. The Kafka connection's own settings override these.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 10,
    "batch.num.messages": 100_000,
    "batch.size": 1_000_000,
    "compression.type": "zstd",
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
}
# Reading a topic back: fetches of up to 10 MB a partition (1 MB, librdkafka's default, halves the
# rate), answered at a partition's end at once rather than after the broker's default 500 ms.
CONSUMER_DEFAULTS: dict[str, Any] = {
    "fetch.wait.max.ms": 10,
    "max.partition.fetch.bytes": 10 << 20,
    "fetch.max.bytes": 100 << 20,
}
# Avro topics are new, so they get Java's partitioner (murmur2 of the key bytes), which Kafka
# Streams, ksqlDB and Java producers use: a key lands in the same partition as theirs. JSON keeps
# librdkafka's default so that topics written by earlier versions keep each key in one partition.
AVRO_PARTITIONER = "murmur2_random"


class KafkaTarget:
    """A Kafka topic: one message per row, keyed by the row's key, one transaction per range.

    Readers with ``isolation.level=read_committed`` see each range's rows exactly once: a range
    interrupted mid-way is aborted (the next producer with the same transactional id, one per
    topic and range, fences it). Reading back keeps the last value per key, as a compacted topic does.

    Args:
        config: librdkafka settings, with ``bootstrap.servers`` (and any security settings); they
            override ``PRODUCER_DEFAULTS``.
        topic: The topic; created with ``partitions`` partitions when missing.
        partitions: Partitions of a topic created here.
        value_format: ``json`` (default) or ``avro``.
        schema_registry_url: The registry's Confluent-compatible API root (Apicurio:
            ``http://host:8080/apis/ccompat/v7``); required for ``avro``.
        schema_registry_auth: ``(user, password)`` for basic auth, if the registry needs it.
        schema_registry_config: More ``SchemaRegistryClient`` settings (``ssl.ca.location``...).

    Raises:
        PlanError: an unknown value format, or ``avro`` without a registry URL.
    """

    def __init__(self, config: dict[str, Any], topic: str, partitions: int = 3, value_format: str = "json",
                 schema_registry_url: str | None = None, schema_registry_auth: tuple[str, str] | None = None,
                 schema_registry_config: Mapping[str, Any] | None = None) -> None:
        topic = kafka_topic(topic)
        if value_format not in VALUE_FORMATS:
            raise PlanError(f"Kafka topic {topic}: value format {value_format!r} is not one of "
                            f"{', '.join(VALUE_FORMATS)}")
        if value_format == "avro" and not schema_registry_url:
            raise PlanError(f"Kafka topic {topic}: value format avro needs a schema registry (its URL, or a "
                            "schema_registry connection)")
        self.config = config
        self.topic = topic
        self.partitions = partitions
        self.value_format = value_format
        self.registry_conf: dict[str, Any] | None = None
        if value_format == "avro":
            self.registry_conf = {**(schema_registry_config or {}), "url": str(schema_registry_url).rstrip("/")}
            if schema_registry_auth:
                self.registry_conf["basic.auth.user.info"] = ":".join(schema_registry_auth)
        # The format is part of the name, so a topic's JSON and Avro copies are different jobs
        # (their checkpoints are apart); a JSON topic keeps the name earlier versions gave it.
        scheme = "kafka+avro" if value_format == "avro" else "kafka"
        self.name = f"{scheme}://{config['bootstrap.servers']}/{topic}"
        self.keys: tuple[str, ...] = ()
        self.schema: pa.Schema | None = None
        self.key_schema: dict[str, Any] | None = None
        self.value_schema: dict[str, Any] | None = None
        self._ids: dict[str, int] = {}
        self._registry = None
        self._latest: pa.Table | None = None
        self._read_lock = threading.Lock()

    # ---------------------------------------------------------------- subjects

    @property
    def key_subject(self) -> str:
        """``<topic>-key`` (TopicNameStrategy)."""
        return f"{self.topic}-key"

    @property
    def value_subject(self) -> str:
        """``<topic>-value`` (TopicNameStrategy)."""
        return f"{self.topic}-value"

    def _client(self):
        """The schema registry client (one per target: it caches schemas by id and subject)."""
        if self._registry is None:
            from confluent_kafka.schema_registry import SchemaRegistryClient

            self._registry = SchemaRegistryClient(self.registry_conf)
        return self._registry

    def _incompatibilities(self, subject: str, schema: dict[str, Any]) -> list[str]:
        """Why the registry would refuse ``schema`` under an existing ``subject`` (nothing when it is
        new, or accepts it). The registry's verdict decides (it knows the subject's level);
        the reasons, naming fields, come from the project's own checker (Apicurio gives none)."""
        from confluent_kafka.schema_registry import Schema
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        from airflow_mesh.contracts.avro_compat import AvroCompatibilityError, CompatibilityLevel, check_compatibility

        client = self._client()
        try:
            versions = client.get_versions(subject)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return []
            raise
        if not versions:
            return []
        text = json.dumps(schema)
        if client.test_compatibility(subject, Schema(text, "AVRO")):
            return []
        try:
            level = CompatibilityLevel(client.get_compatibility(subject))
        except SchemaRegistryError:  # no level of its own (Apicurio answers 404): the global one
            level = CompatibilityLevel(client.get_compatibility())
        previous = [client.get_version(subject, v).schema.schema_str for v in versions]
        try:
            found = check_compatibility(text, previous, level)
        except AvroCompatibilityError as exc:  # e.g. a version that is a JSON Schema, not Avro
            found, previous = [], [*previous[:-1], f"{previous[-1]} ({exc})"]
        reasons = [f"subject {subject} ({level.value}): {problem.describe()}" for problem in found]
        return reasons or [(f"subject {subject}: the registry finds the schema incompatible under {level.value} "
                            f"(the latest registered version is {previous[-1]})")]

    # ---------------------------------------------------------------- the Target protocol

    @property
    def finite_floats_only(self) -> bool:
        """JSON has no NaN or infinity (Avro has): such values are refused before writing."""
        return self.value_format == "json"

    def type_problems(self, schema: pa.Schema) -> list[str]:
        """The columns Avro cannot hold exactly, or name (one line each; JSON holds every column)."""
        if self.value_format != "avro":
            return []
        return type_problems(schema, lambda field: avro_schema(pa.schema([field]), "Value"))

    def prepare(self, schema: pa.Schema, key: str | tuple[str, ...]) -> None:
        """Check everything, then create the topic and register the schemas; writes no message.

        Raises:
            TypeMappingError: a column has no exact Avro type.
            TargetSchemaError: a subject exists with a schema the new one is incompatible with
                (naming the topic, subject, field and reason); nothing is created or registered.
        """
        from confluent_kafka.admin import AdminClient, NewTopic

        self.keys = (key,) if isinstance(key, str) else tuple(key)
        self.schema, self._latest = schema, None
        if self.value_format == "avro":
            problems = self.type_problems(schema)
            if problems:
                raise TypeMappingError.of(f"Kafka topic {self.topic}", problems)
            namespace = self.topic
            self.key_schema = avro_schema(pa.schema([schema.field(k) for k in self.keys]), "Key", namespace,
                                          required=self.keys)
            self.value_schema = avro_schema(schema, "Value", namespace, required=self.keys)
            problems = [reason for subject, avro in ((self.key_subject, self.key_schema),
                                                      (self.value_subject, self.value_schema))
                        for reason in self._incompatibilities(subject, avro)]
            if problems:
                raise TargetSchemaError(f"Kafka topic {self.topic} has schemas the source's rows cannot be "
                                        "written with; nothing was written: " + "; ".join(problems))
        admin = AdminClient(self._client_config({}))
        if self.topic not in admin.list_topics(timeout=METADATA_TIMEOUT).topics:
            admin.create_topics([NewTopic(self.topic, self.partitions, 1)])[self.topic].result(timeout=30)
        if self.value_format == "avro":
            from confluent_kafka.schema_registry import Schema

            for subject, avro in ((self.key_subject, self.key_schema), (self.value_subject, self.value_schema)):
                self._ids[subject] = self._client().register_schema(subject, Schema(json.dumps(avro), "AVRO"))

    def _prepared(self, schema: dict[str, Any] | None) -> dict[str, Any]:
        """An Avro schema that ``prepare`` makes."""
        if schema is None:
            raise RuntimeError(f"Kafka topic {self.topic}: its Avro schemas are made by prepare(), which has not run")
        return schema

    def _encode_keys(self, batch: pa.RecordBatch) -> list[bytes]:
        """The message keys of a batch of key columns (as ``_encode`` writes them)."""
        if self.value_format == "avro":
            key_header = b"\0" + self._ids[self.key_subject].to_bytes(4, "big")
            return encode_bodies(batch.select(list(self.keys)), self._prepared(self.key_schema), key_header).to_pylist()
        if len(self.keys) == 1:
            return json_keys(batch, self.keys[0])
        return json_lines(batch.select(list(self.keys)))

    def _encode(self, batch: pa.RecordBatch) -> tuple[list[bytes], list[bytes]]:
        """The keys and values of a batch's messages."""
        if self.value_format == "avro":
            value_header = b"\0" + self._ids[self.value_subject].to_bytes(4, "big")
            values = encode_bodies(batch, self._prepared(self.value_schema), value_header).to_pylist()
            return self._encode_keys(batch), values
        return self._encode_keys(batch), json_lines(batch)

    def _producer_config(self, key_range: KeyRange) -> dict[str, Any]:
        defaults = {**PRODUCER_DEFAULTS, **({"partitioner": AVRO_PARTITIONER} if self.value_format == "avro" else {})}
        return {**self._client_config(defaults),
                "transactional.id": f"airflow-mesh-backfill-{self.topic}-{key_range.id}"}

    def _client_config(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """librdkafka settings: ``defaults`` under the connection's own, and librdkafka's log lines
        (a broker that does not answer logs every retry) routed to Python logging, not stderr."""
        return {"logger": KAFKA_LOG, **defaults, **self.config}

    def write_range(self, key_range: KeyRange, data: pa.Table, upsert: bool = False) -> None:
        """Produce the range's rows in one transaction (a keyed topic has upsert semantics either way).

        The producer's transactional id is the topic's and range's: starting it fences (aborts) any
        earlier producer of the same range still alive, so a redone range is never doubled.

        Raises:
            TypeMappingError: a value has no representation in the format (NaN in JSON).
            KafkaException: the transaction failed; it is aborted, nothing of it is visible.
        """
        self._transaction(key_range, data, None)

    def apply_changes(self, key_range: KeyRange, upserts: pa.Table, deletes: pa.Table) -> None:
        """Produce ``upserts`` and a tombstone (a NULL value) for each of the ``deletes`` keys, in one
        transaction: a compacted topic, or a reader keeping the last value per key, then drops them."""
        self._transaction(key_range, upserts, deletes)

    def _transaction(self, key_range: KeyRange, data: pa.Table, deletes: pa.Table | None) -> None:
        from confluent_kafka import Producer

        if self.schema is None:
            raise BackfillError(f"Kafka topic {self.topic}: prepare() must run before writing")
        producer = Producer(self._producer_config(key_range))
        producer.init_transactions(60)
        producer.begin_transaction()

        def produce(value: bytes | None, message_key: bytes) -> None:
            while True:
                try:
                    producer.produce(self.topic, value, message_key)
                    return
                except BufferError:  # the queue is full: wait for deliveries to make room
                    producer.poll(0.5)

        try:
            for batch in data.to_batches(max_chunksize=ENCODE_ROWS):
                keys, values = self._encode(batch)
                for message_key, value in zip(keys, values, strict=True):
                    produce(value, message_key)
                producer.poll(0)  # serve delivery reports, a batch at a time
            if deletes is not None and deletes.num_rows:
                for batch in deletes.select(list(self.keys)).to_batches(max_chunksize=ENCODE_ROWS):
                    for message_key in self._encode_keys(batch):
                        produce(None, message_key)
            producer.commit_transaction(300)
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to report
                producer.abort_transaction(60)
            raise
        self._latest = None

    def _decode(self, values: list[bytes]) -> pa.Table:
        """Message values as a table of the target's schema.

        Raises:
            TargetSchemaError: the values are not in the target's format (e.g. Avro in a topic read
                as JSON), or do not hold the target's columns.
        """
        try:
            if self.value_format == "json":
                return json_lines_to_arrow(values, self.schema)
            return self._decode_avro(values)
        except BackfillError:
            raise
        except Exception as exc:
            raise TargetSchemaError(f"Kafka topic {self.topic}: its values cannot be read back as "
                                    f"{self.value_format} rows of the source's columns: {exc}") from exc

    def _decode_avro(self, values: list[bytes]) -> pa.Table:
        """Avro values, each read with the schema its id names (resolved to this run's schema when
        it is another one, e.g. a version registered by an earlier run)."""
        by_id: dict[int, list[bytes]] = {}
        for value in values:
            if len(value) < 5 or value[0] != 0:
                raise TargetSchemaError(f"Kafka topic {self.topic}: a value is not in the schema registry's "
                                        "wire format (a zero byte, then the schema id)")
            by_id.setdefault(int.from_bytes(value[1:5], "big"), []).append(value)
        tables = []
        for schema_id, group in by_id.items():
            if schema_id == self._ids.get(self.value_subject):
                tables.append(decode_bodies(group, self._prepared(self.value_schema), self.schema, offset=5))
            else:
                writer = json.loads(self._client().get_schema(schema_id).schema_str)
                tables.append(decode_bodies(group, writer, self.schema, offset=5, reader=self.value_schema))
        return pa.concat_tables(tables) if tables else empty_table(self.schema)

    def _read_all(self) -> pa.Table:
        """The topic's committed messages, the last value of each key (by its bytes, as log
        compaction keeps them; a tombstone removes the key), decoded."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

        consumer = Consumer({"logger": KAFKA_LOG, **CONSUMER_DEFAULTS, **self.config,
                             "group.id": f"airflow-mesh-verify-{uuid.uuid4().hex}", "enable.auto.commit": False,
                             "isolation.level": "read_committed", "enable.partition.eof": True,
                             "auto.offset.reset": "earliest"})
        latest: dict[bytes | None, bytes] = {}
        try:
            partitions = consumer.list_topics(self.topic, timeout=METADATA_TIMEOUT).topics[self.topic].partitions
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
            pending, idle_since = set(partitions), time.monotonic()
            while pending:
                messages = consumer.consume(10_000, timeout=1.0)
                if not messages and time.monotonic() - idle_since > 120:
                    raise BackfillError(f"reading {self.topic}: partitions {sorted(pending)} sent nothing for 120s")
                for message in messages:
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            pending.discard(message.partition())
                            continue
                        raise BackfillError(f"reading {self.topic}: {error}")
                    idle_since = time.monotonic()
                    key, value = message.key(), message.value()
                    if value is None:
                        latest.pop(key, None)
                    else:
                        latest[key] = value
        finally:
            consumer.close()
        table = self._decode(list(latest.values()))
        return table.sort_by([(k, "ascending") for k in self.keys]) if table.num_rows else table

    def read_range(self, key_range: KeyRange) -> pa.Table:
        """The range's rows as the topic holds them now (the whole topic is read once, then kept
        until the next write)."""
        with self._read_lock:  # ranges are verified in parallel: the topic is read once for all of them
            if self._latest is None:
                self._latest = self._read_all()
            latest = self._latest
        return latest.filter(in_range(latest, self.keys, key_range))


def in_range(table: pa.Table, keys: tuple[str, ...], key_range: KeyRange) -> pa.ChunkedArray | pa.Array:
    """Which rows of a table have their key in ``[lo, hi)`` (lexicographic for a composite key),
    comparing in the key columns' own types (a uuid by its 16 bytes, text by its bytes)."""
    def column(name: str) -> pa.ChunkedArray:
        values = table.column(name)
        if isinstance(values.type, pa.BaseExtensionType):
            return pa.chunked_array([chunk.storage for chunk in values.chunks], values.type.storage_type)
        return values

    def scalar(name: str, value: Any) -> pa.Scalar:
        t = table.schema.field(name).type
        if isinstance(t, pa.BaseExtensionType):
            return pa.scalar(uuid.UUID(str(value)).bytes if t.extension_name == "arrow.uuid" else value, t.storage_type)
        if isinstance(value, str) and not (pa.types.is_string(t) or pa.types.is_large_string(t)):
            return pa.scalar(value).cast(t)
        return pa.scalar(value, t)

    ops = {">": pc.greater, ">=": pc.greater_equal, "<": pc.less, "<=": pc.less_equal}
    return range_condition(
        keys, key_range,
        compare=lambda c, op, v: ops[op](column(c), scalar(c, v)),
        equal=lambda c, v: pc.equal(column(c), scalar(c, v)),
        all_of=lambda items: functools.reduce(pc.and_, items),
        any_of=lambda items: functools.reduce(pc.or_, items),
        always=lambda: pa.array([True] * table.num_rows))


# ------------------------------------------------------------------ JSON, a batch at a time


def _json_schema(schema: pa.Schema) -> pa.Schema:
    """The columns as the topic's JSON holds them: numbers and booleans as JSON values (integers of
    any width, uint64 too), lists as arrays, everything else as its exact text (``convert.to_text``)."""
    return pa.schema([pa.field(f.name, _json_type(f.type)) for f in schema])


def _json_type(t: pa.DataType) -> pa.DataType:
    stored = json_storage_type(t)
    if plain_type(t) == pa.uint64():
        return pa.uint64()
    if pa.types.is_list(stored):
        return pa.list_(_json_type(plain_type(t).value_type))
    return stored


def _non_finite(column: pa.ChunkedArray | pa.Array) -> bool:
    """Whether a float column (or a list of floats) holds NaN or an infinity."""
    values = column
    while pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        values = pc.list_flatten(values)
    return pa.types.is_floating(values.type) and pc.all(pc.is_finite(values)).as_py() is False


def json_lines(batch: pa.RecordBatch | pa.Table) -> list[bytes]:
    """Each row as one JSON object (UTF-8 bytes), columns in order; written by polars for the whole
    batch at once.

    Raises:
        TypeMappingError: a float column holds NaN or an infinity, which JSON cannot write.
    """
    if not batch.num_rows:
        return []
    for name in batch.schema.names:
        if _non_finite(batch.column(name)):
            raise TypeMappingError(f"column {name!r} holds NaN or an infinity, which JSON cannot hold; "
                                   "write the topic in Avro (value_format avro)")
    stored = table_to_storage(batch, _json_schema(batch.schema))
    frame = cast(pl.DataFrame, pl.from_arrow(stored, rechunk=False))  # a table in, a frame out
    out = io.BytesIO()
    frame.write_ndjson(out)
    return out.getvalue().split(b"\n")[:-1]


def json_keys(batch: pa.RecordBatch | pa.Table, key: str) -> list[bytes]:
    """Each row's message key: ``{"<key>": <value>}`` byte for byte as ``json.dumps`` writes it for an
    integer key (as earlier versions wrote keys, so a compacted topic keeps one message a row), else
    the key column as ``json_lines`` writes it (text quoted and escaped, uuids as their text...)."""
    column = batch.column(key)
    if not pa.types.is_integer(column.type):
        return json_lines(batch.select([key]))
    text = pc.cast(column if isinstance(column, pa.Array) else column.combine_chunks(), pa.string())
    keys = pc.binary_join_element_wise(pa.scalar("{" + json.dumps(key) + ": "), text, pa.scalar("}"), pa.scalar(""))
    return pc.cast(keys, pa.binary()).to_pylist()


def _polars_type(t: pa.DataType) -> pl.DataType | type[pl.DataType]:
    """How polars reads a column's JSON: integers as 64-bit ones (it reads no narrower), floats as
    doubles (a float32's shortest text read as a double rounds back exactly), lists of these."""
    if pa.types.is_list(t):
        return pl.List(_polars_type(t.value_type))
    if pa.types.is_integer(t):
        return pl.UInt64 if pa.types.is_unsigned_integer(t) else pl.Int64
    if pa.types.is_floating(t):
        return pl.Float64
    if pa.types.is_boolean(t):
        return pl.Boolean
    return pl.String


def json_lines_to_arrow(lines: list[bytes], schema: pa.Schema) -> pa.Table:
    """JSON objects (as ``json_lines`` writes them) as a table of ``schema``: the inverse of
    ``json_lines``. Fields a line lacks are NULL; fields the schema lacks are ignored."""
    if not lines:
        return empty_table(schema)
    stored = _json_schema(schema)
    frame = pl.read_ndjson(io.BytesIO(b"\n".join(lines)), schema={f.name: _polars_type(f.type) for f in stored})
    return table_from_storage(frame.to_arrow(), schema)
