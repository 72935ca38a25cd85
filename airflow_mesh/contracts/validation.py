"""Validating Kafka records against their topic's contract, one record at a time.

A record's key and value are each decoded as one of:

* Confluent's wire format: byte 0 is 0, bytes 1-4 the writer schema's registry id (big-endian), then
  the Avro binary body. The writer schema is fetched once per id; the contract must be able to read it
  (checked once per id, with the schema-resolution checker), and each record must decode with it,
  using every byte. A record so decoded can be read with the contract, so the per-record cost is the
  decoding alone.
* JSON, as Kafka Connect's JsonConverter writes it with ``schemas.enable=false``: checked field by field
  against the contract's schema (see :mod:`airflow_mesh.contracts.json_check`).

With :attr:`RecordFormat.AUTO` each payload is told apart by its first byte: 0 is the wire format's
magic byte, and JSON text never starts with it. A record without a value is a tombstone (a deletion
marker of a compacted topic): valid, and counted apart.

Pure logic; no Airflow, no I/O (the caller passes the registry lookup).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from fastavro import schemaless_reader

from airflow_mesh.contracts.avro_compat import InvalidSchemaError, check_can_read, parse_avro_schema
from airflow_mesh.contracts.json_check import compile_json_check
from airflow_mesh.contracts.repository import Role, SchemaContract

__all__ = ["RecordFailure", "RecordFormat", "RecordValidator", "SchemaLookup", "ValidationReport"]

SchemaLookup = Callable[[int], "str | None"]
"""Returns the Avro schema text registered under an id, or None when the registry has no such id."""

MAGIC_BYTE = 0
WIRE_HEADER_SIZE = 5


class RecordFormat(str, Enum):
    """How the records' keys and values are encoded."""

    AUTO = "auto"
    """Each payload by its first byte: Confluent wire format when 0, else JSON."""
    AVRO = "avro"
    """Confluent wire format: magic byte, schema id, Avro binary."""
    JSON = "json"
    """JSON (Kafka Connect's JsonConverter without schemas)."""


@dataclass(frozen=True)
class _WriterSchema:
    """A registry schema as the validator uses it: parsed for fastavro, or why records written with it fail."""

    parsed: Any = None
    problem: str | None = None


class _PartValidator:
    """Validates one part (the key or the value) of records against that part's contract."""

    def __init__(self, contract: SchemaContract, record_format: RecordFormat, lookup: SchemaLookup | None) -> None:
        self._contract = contract
        self._format = record_format
        self._lookup = lookup
        self._writers: dict[int, _WriterSchema] = {}
        self._check_json = compile_json_check(contract.schema)

    def __call__(self, payload: bytes) -> str | None:
        """Why the payload breaks the contract, or None when it conforms."""
        if self._format is RecordFormat.AVRO or (self._format is RecordFormat.AUTO and payload[:1] == b"\x00"):
            return self._check_avro(payload)
        try:
            value = json.loads(payload)
        except ValueError as exc:  # UnicodeDecodeError included
            return f"not JSON: {exc}"
        return self._check_json(value)

    def _check_avro(self, payload: bytes) -> str | None:
        if len(payload) < WIRE_HEADER_SIZE or payload[0] != MAGIC_BYTE:
            return "not in Confluent's wire format (magic byte 0 and a 4-byte schema id)"
        schema_id = int.from_bytes(payload[1:WIRE_HEADER_SIZE], "big")
        writer = self._writers.get(schema_id) or self._load_writer(schema_id)
        if writer.problem is not None:
            return writer.problem
        stream = io.BytesIO(payload)
        stream.seek(WIRE_HEADER_SIZE)
        try:
            schemaless_reader(stream, writer.parsed, None)
        except Exception as exc:  # noqa: BLE001 - whatever the decoder trips on, the bytes are not such data
            return f"cannot be decoded with schema id {schema_id}: {type(exc).__name__}: {exc}"
        left = len(payload) - stream.tell()
        if left:
            return f"{left} bytes left over after decoding with schema id {schema_id}"
        return None

    def _load_writer(self, schema_id: int) -> _WriterSchema:
        """Fetch, parse and check a writer schema once; remember the outcome, good or bad."""
        if self._lookup is None:
            writer = _WriterSchema(problem=f"written with schema id {schema_id}, and no schema registry to look it up")
        else:
            writer = self._writer_for(schema_id, self._lookup(schema_id))
        self._writers[schema_id] = writer
        return writer

    def _writer_for(self, schema_id: int, text: str | None) -> _WriterSchema:
        if text is None:
            return _WriterSchema(problem=f"written with schema id {schema_id}, which the registry does not know")
        try:
            writer = parse_avro_schema(text, "Avro schema")
            problems = check_can_read(self._contract.text, text)
        except InvalidSchemaError as exc:
            return _WriterSchema(problem=f"written with schema id {schema_id}: {exc}")
        if problems:
            reasons = "; ".join(problem.describe() for problem in problems)
            return _WriterSchema(problem=f"written with schema id {schema_id}, which the contract "
                                         f"{self._contract.file} cannot read: {reasons}")
        return _WriterSchema(parsed=writer.root)


class RecordValidator:
    """Validates the key and value of each record of one topic against the topic's contracts.

    Args:
        key_contract: The topic's key schema; None to leave keys unchecked.
        value_contract: The topic's value schema; None to leave values unchecked.
        record_format: How keys and values are encoded.
        schema_lookup: Fetches a writer schema by registry id, for the Confluent wire format.
    """

    def __init__(self, key_contract: SchemaContract | None, value_contract: SchemaContract | None,
                 record_format: RecordFormat = RecordFormat.AUTO, schema_lookup: SchemaLookup | None = None) -> None:
        self._key = _PartValidator(key_contract, record_format, schema_lookup) if key_contract else None
        self._value = _PartValidator(value_contract, record_format, schema_lookup) if value_contract else None

    def check(self, key: bytes | None, value: bytes | None) -> tuple[Role, str] | None:
        """Validate one record.

        Args:
            key: The record's key bytes, None when it has none.
            value: The record's value bytes, None for a tombstone.

        Returns:
            None when the record conforms, else the part that does not (``"key"`` first) and why.
        """
        if self._key is not None:
            if key is None:
                return "key", "the record has no key, and the contract has a key schema"
            reason = self._key(key)
            if reason is not None:
                return "key", reason
        if self._value is not None and value is not None:
            reason = self._value(value)
            if reason is not None:
                return "value", reason
        return None


@dataclass(frozen=True)
class RecordFailure:
    """A record that breaks its contract.

    Attributes:
        partition: Its partition.
        offset: Its offset.
        part: ``"key"`` or ``"value"``.
        reason: Why (field paths and types, never the data).
    """

    partition: int
    offset: int
    part: Role
    reason: str

    def __str__(self) -> str:
        return f"partition {self.partition} offset {self.offset} {self.part}: {self.reason}"


@dataclass
class ValidationReport:
    """Counts of a validation run and its first failures.

    Attributes:
        topic: The topic validated.
        max_failures: How many failures to keep (all are counted).
        records: Records validated.
        valid: Records that conform (tombstones included).
        invalid: Records that do not.
        tombstones: Records without a value.
        failures: The first ``max_failures`` failures, in reading order.
    """

    topic: str
    max_failures: int = 10
    records: int = 0
    valid: int = 0
    invalid: int = 0
    tombstones: int = 0
    failures: list[RecordFailure] = field(default_factory=list)

    def add(self, partition: int, offset: int, value: bytes | None, outcome: tuple[Role, str] | None) -> None:
        """Count one validated record.

        Args:
            partition: Its partition.
            offset: Its offset.
            value: Its value (None makes it a tombstone).
            outcome: What :meth:`RecordValidator.check` returned for it.
        """
        self.records += 1
        self.tombstones += value is None
        if outcome is None:
            self.valid += 1
            return
        self.invalid += 1
        if len(self.failures) < self.max_failures:
            self.failures.append(RecordFailure(partition, offset, *outcome))

    def summary(self) -> str:
        """One line of counts, then the failures kept, one per line."""
        lines = [(f"{self.topic}: {self.records} records, {self.valid} valid ({self.tombstones} tombstones), "
                  f"{self.invalid} invalid")]
        lines += [f"  - {failure}" for failure in self.failures]
        if self.invalid > len(self.failures):
            lines.append(f"  ... and {self.invalid - len(self.failures)} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (for XCom)."""
        return {
            "topic": self.topic, "records": self.records, "valid": self.valid, "invalid": self.invalid,
            "tombstones": self.tombstones,
            "failures": [{"partition": f.partition, "offset": f.offset, "part": f.part, "reason": f.reason}
                         for f in self.failures],
        }
