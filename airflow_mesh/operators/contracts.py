"""Operators that keep the mesh's schema contracts: verify, register, and check live records.

The contracts live in the repository's ``schemas/`` folder (see
:mod:`airflow_mesh.contracts.repository`); the decisions are made by the pure modules of
:mod:`airflow_mesh.contracts`, and these operators bring the schema registry and Kafka to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from airflow_mesh.contracts.repository import ContractError, ContractRepository, load_repository
from airflow_mesh.contracts.sampling import TopicNotFoundError, plan_ranges
from airflow_mesh.contracts.validation import RecordFormat, RecordValidator, SchemaLookup, ValidationReport
from airflow_mesh.contracts.verify import (
    RegisteredVersion,
    SubjectVerdict,
    render_report,
    verify_contract,
    versions_to_check,
)
from airflow_mesh.hooks.kafka import DeadLetterProducerHook, KafkaRecord, NoCommitConsumerHook
from airflow_mesh.hooks.schema_registry import (
    IncompatibleSchemaError,
    RegistryInvalidSchemaError,
    SchemaNotFoundError,
    SchemaRegistryHook,
    SubjectNotFoundError,
)

DEAD_LETTER_HEADERS = ("mesh.contract.error", "mesh.source.topic", "mesh.source.partition", "mesh.source.offset")
"""Headers a dead-lettered record gets on top of its own: why it failed and where it came from."""


def _load(schemas_path: str) -> ContractRepository:
    try:
        return load_repository(schemas_path)
    except ContractError as exc:
        raise AirflowException(f"the contracts in {schemas_path} are invalid:\n{exc}") from None


class _ContractsOperator(BaseOperator):
    """Base of the operators that verify the contracts folder against a schema registry."""

    template_fields: Sequence[str] = ("schemas_path", "schema_registry_conn_id")
    ui_color = "#f3ecfb"

    def __init__(self, *, schemas_path: str, schema_registry_conn_id: str = SchemaRegistryHook.default_conn_name,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.schemas_path = schemas_path
        self.schema_registry_conn_id = schema_registry_conn_id

    def _verify(self, hook: SchemaRegistryHook, repository: ContractRepository) -> list[SubjectVerdict]:
        """Verify every schema of the folder against its subject's level, versions and consumers."""
        verdicts = []
        for contract in repository.contracts:
            level = hook.get_compatibility_level(contract.subject)
            try:
                versions = hook.list_versions(contract.subject)
            except SubjectNotFoundError:
                versions = []
            registered = [RegisteredVersion(version, hook.get_version(contract.subject, version).schema)
                          for version in versions_to_check(level, versions)]
            verdicts.append(verify_contract(contract, level, registered,
                                            repository.reads_of(contract.topic, contract.role)))
        return verdicts


class VerifyContractsOperator(_ContractsOperator):
    """Check every schema of the contracts folder before anything is registered.

    Each ``<topic>/<key|value>.avsc`` is checked against its subject (``<topic>-<key|value>``) in the
    registry, at the subject's compatibility level (the latest version, or every version for a
    ``*_TRANSITIVE`` level), and against what the declared consumers read of the latest version. The
    folder itself is validated first (schemas, declarations, field paths).

    Args:
        schemas_path: The contracts folder (templated).
        schema_registry_conn_id: The schema registry connection (templated).

    Returns (XCom):
        ``[{"subject", "file", "level", "latest_version"}, ...]``, one per schema.

    Raises:
        AirflowException: The folder is invalid, or some schema breaks its contracts; the message is
            the full report, every problem of every subject.
    """

    def execute(self, context: Any) -> list[dict[str, Any]]:
        repository = _load(self.schemas_path)
        verdicts = self._verify(SchemaRegistryHook(self.schema_registry_conn_id), repository)
        report = render_report(verdicts)
        if not all(verdict.passed for verdict in verdicts):
            raise AirflowException(report)
        self.log.info("%s", report)
        return [{"subject": v.subject, "file": str(v.contract.file), "level": v.level.value,
                 "latest_version": v.latest_version} for v in verdicts]


class RegisterSchemasOperator(_ContractsOperator):
    """Register every schema of the contracts folder that passes verification.

    Verifies like VerifyContractsOperator, then registers each schema that passed and the subject does
    not already have (a schema already registered is left alone). Schemas that failed verification, or
    that the registry itself refuses, are not registered; the task fails after registering the others,
    with the report of what was refused.

    Args:
        schemas_path: The contracts folder (templated).
        schema_registry_conn_id: The schema registry connection (templated).

    Returns (XCom):
        ``[{"subject", "id", "version", "action": "registered" | "unchanged"}, ...]`` for the schemas
        that passed.

    Raises:
        AirflowException: The folder is invalid, or some schema was not registered (with why).
    """

    def execute(self, context: Any) -> list[dict[str, Any]]:
        repository = _load(self.schemas_path)
        hook = SchemaRegistryHook(self.schema_registry_conn_id)
        verdicts = self._verify(hook, repository)
        results, refused = [], []
        for verdict in verdicts:
            if not verdict.passed:
                continue
            try:
                results.append(self._register(hook, verdict))
            except (IncompatibleSchemaError, RegistryInvalidSchemaError) as exc:
                refused.append(f"{verdict.subject}: the registry refused it: {exc.message}")
        failed = [verdict for verdict in verdicts if not verdict.passed]
        if failed or refused:
            lines = [f"{len(results)} of {len(verdicts)} schemas are registered; not registered:"]
            if failed:
                lines.append(render_report(verdicts))
            lines += refused
            raise AirflowException("\n".join(lines))
        return results

    def _register(self, hook: SchemaRegistryHook, verdict: SubjectVerdict) -> dict[str, Any]:
        """Register one verified schema unless its subject has it already."""
        subject, text = verdict.subject, verdict.contract.text
        existing = hook.lookup_schema(subject, text)
        if existing is not None:
            return {"subject": subject, "id": existing.id, "version": existing.version, "action": "unchanged"}
        schema_id = hook.register_schema(subject, text)
        registered = hook.lookup_schema(subject, text)
        version = registered.version if registered is not None else None
        self.log.info("Registered %s as version %s (schema id %s)", subject, version, schema_id)
        return {"subject": subject, "id": schema_id, "version": version, "action": "registered"}


def _timestamp_ms(moment: datetime | str | None) -> int | None:
    """Milliseconds since the epoch of a datetime or ISO-8601 text; naive times are UTC."""
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


class ValidateTopicRecordsOperator(BaseOperator):
    """Validate a bounded sample (or time window) of a topic's records against the topic's contract.

    Reads at most ``max_records`` records (the newest, or the oldest) below the high watermarks of
    the moment it starts, optionally only those whose timestamps fall in ``[since, until)``. Each key
    and value is decoded (Confluent wire format through the registry, or Debezium's JSON) and checked
    against ``<topic>/key.avsc`` and ``<topic>/value.avsc``. Invalid records can be copied, untouched
    and with headers saying why (``DEAD_LETTER_HEADERS``), to a dead-letter topic.

    Nothing is lost or moved: the operator assigns partitions itself under a throw-away group id and
    commits no offset, so the topic's real consumers are unaffected.

    Args:
        topic: The topic (templated); the contracts folder must have a schema for it.
        schemas_path: The contracts folder (templated).
        record_format: ``auto`` (each payload by its first byte), ``avro`` (Confluent wire format) or
            ``json``.
        max_records: The most records to read.
        newest: Read the newest records (of the window); False for the oldest.
        since: Only records with a timestamp at or after this (datetime or ISO-8601 text; naive is UTC;
            templated).
        until: Only records with a timestamp before this (same forms; templated).
        dead_letter_topic: Copy invalid records there (templated); None to copy nothing.
        fail_on_invalid: Fail the task when some record is invalid (after dead-lettering).
        max_failures: How many failures the report details (all are counted).
        read_timeout: Seconds the read may take.
        kafka_config_id: The Kafka connection (Airflow's Kafka provider; templated).
        schema_registry_conn_id: The schema registry connection, for the wire format (templated).

    Returns (XCom):
        ``{"topic", "records", "valid", "invalid", "tombstones", "failures": [{"partition", "offset",
        "part", "reason"}], "dead_lettered"}``.

    Raises:
        AirflowSkipException: The topic does not exist (yet): nothing to validate.
        AirflowException: No contract for the topic; some record is invalid (with ``fail_on_invalid``);
            the dead-letter topic did not take every invalid record.
    """

    template_fields: Sequence[str] = ("topic", "schemas_path", "since", "until", "dead_letter_topic",
                                      "kafka_config_id", "schema_registry_conn_id")
    ui_color = "#f3ecfb"

    def __init__(self, *, topic: str, schemas_path: str, record_format: str = RecordFormat.AUTO.value,
                 max_records: int = 1000, newest: bool = True, since: datetime | str | None = None,
                 until: datetime | str | None = None, dead_letter_topic: str | None = None,
                 fail_on_invalid: bool = True, max_failures: int = 10, read_timeout: float = 120.0,
                 kafka_config_id: str = KafkaBaseHook.default_conn_name,
                 schema_registry_conn_id: str = SchemaRegistryHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if record_format not in {f.value for f in RecordFormat}:
            raise ValueError(f"record_format must be one of {', '.join(f.value for f in RecordFormat)}, "
                             f"got {record_format!r}")
        self.topic = topic
        self.schemas_path = schemas_path
        self.record_format = record_format
        self.max_records = max_records
        self.newest = newest
        self.since = since
        self.until = until
        self.dead_letter_topic = dead_letter_topic
        self.fail_on_invalid = fail_on_invalid
        self.max_failures = max_failures
        self.read_timeout = read_timeout
        self.kafka_config_id = kafka_config_id
        self.schema_registry_conn_id = schema_registry_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        repository = _load(self.schemas_path)
        key_contract, value_contract = repository.contract(self.topic, "key"), repository.contract(self.topic, "value")
        if key_contract is None and value_contract is None:
            raise AirflowException(f"no contract for topic {self.topic} in {self.schemas_path} "
                                   f"(topics with one: {', '.join(repository.topics)})")
        record_format = RecordFormat(self.record_format)
        lookup = None if record_format is RecordFormat.JSON else self._schema_lookup()
        validator = RecordValidator(key_contract, value_contract, record_format, lookup)
        report = ValidationReport(self.topic, self.max_failures)
        invalid: list[tuple[KafkaRecord, str]] = []
        consumer = NoCommitConsumerHook(self.kafka_config_id)
        try:
            try:
                bounds = consumer.partition_bounds(self.topic, _timestamp_ms(self.since), _timestamp_ms(self.until))
            except TopicNotFoundError as exc:
                raise AirflowSkipException(f"{exc}: nothing to validate") from None
            ranges = plan_ranges(bounds, self.max_records, self.newest)
            planned = ", ".join(f"partition {r.partition} offsets {r.start}-{r.end - 1}" for r in ranges)
            self.log.info("Reading %s: %s", self.topic, planned or "nothing (empty)")
            for partition, offset, message in consumer.read_ranges(self.topic, ranges, self.read_timeout):
                outcome = validator.check(message.key(), message.value())
                report.add(partition, offset, message.value(), outcome)
                if outcome is not None and self.dead_letter_topic:
                    invalid.append((message, f"{outcome[0]}: {outcome[1]}"))
        finally:
            consumer.close()
        result = {**report.to_dict(), "dead_lettered": self._dead_letter(invalid)}
        self.log.info("%s", report.summary())
        if report.invalid and self.fail_on_invalid:
            raise AirflowException(f"records break their contract:\n{report.summary()}")
        return result

    def _schema_lookup(self) -> SchemaLookup:
        hook = SchemaRegistryHook(self.schema_registry_conn_id)

        def lookup(schema_id: int) -> str | None:
            try:
                return hook.get_schema_by_id(schema_id).schema
            except SchemaNotFoundError:
                return None

        return lookup

    def _dead_letter(self, invalid: list[tuple[KafkaRecord, str]]) -> int:
        """Copy the invalid records to the dead-letter topic; returns how many it took."""
        if not invalid or not self.dead_letter_topic:
            return 0
        copies = []
        for message, reason in invalid:
            where = (reason, self.topic, str(message.partition()), str(message.offset()))
            copies.append((message, list(zip(DEAD_LETTER_HEADERS, (text.encode() for text in where), strict=True))))
        not_taken, why = DeadLetterProducerHook(self.kafka_config_id).copy_records(self.dead_letter_topic, copies)
        if not_taken:
            raise AirflowException(f"the dead-letter topic {self.dead_letter_topic} did not take "
                                   f"{not_taken} of {len(invalid)} invalid records: {why}")
        self.log.info("Copied %d invalid records to %s", len(invalid), self.dead_letter_topic)
        return len(invalid)
