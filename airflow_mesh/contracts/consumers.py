"""Consumer-aware compatibility: a producer change is checked against the fields consumers read.

Every field a consumer declares becomes that consumer's own reader schema (see
:func:`~airflow_mesh.contracts.fields.consumer_view`): the fields leading to it and everything under
it, as the current producer schema defines them, without defaults. A new producer schema breaks the
consumer when that reader schema cannot read data written with it, so removing a field somebody
reads, or changing it incompatibly, is reported with the consumer and the field, while removing a
field nobody reads is fine whatever the compatibility level would say.

Pure logic; no Airflow, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from airflow_mesh.contracts.avro_compat import SchemaInput, check_can_read, parse_avro_schema
from airflow_mesh.contracts.fields import FieldNotFoundError, FieldPath, consumer_view, field_paths, resolve_path
from airflow_mesh.contracts.repository import ContractRepository, FieldRead

__all__ = ["ConsumerBreak", "FieldUsage", "check_consumer_reads", "field_usage"]

FieldUsage = dict[str, dict[str, dict[str, list[str]]]]
"""``topic -> "key" | "value" -> field path -> consumers``."""

_UNION_BRANCH = re.compile(r"<[^>]*>")


@dataclass(frozen=True)
class ConsumerBreak:
    """A field a consumer reads that a new producer schema breaks.

    Attributes:
        read: The consumer's declared read.
        at: Where the problem is: the declared field, or a field under it.
        reason: Why the consumer cannot read it any more.
    """

    read: FieldRead
    at: str
    reason: str

    def describe(self) -> str:
        """One line naming the consumer, its owner and declaration, the field, and the reason.

        Returns:
            For example ``consumer finance-ledger (owner finance-data, schemas/consumers/finance.yaml)
            reads orders value field after.amount: the new schema no longer has it: ...``.
        """
        read = self.read
        field = read.path.text if self.at == read.path.text else f"{read.path.text} (at {self.at})"
        return (f"consumer {read.consumer} (owner {read.owner}, {read.file}) reads {read.topic} {read.role} field "
                f"{field}: {self.reason}")

    def __str__(self) -> str:
        return self.describe()


def check_consumer_reads(new_schema: SchemaInput, current_schema: SchemaInput,
                         reads: Sequence[FieldRead]) -> list[ConsumerBreak]:
    """Check a new producer schema against what consumers read of the current one.

    A field a consumer declares but the current schema lacks is new: no data of the current schema
    holds it, so nothing can break it, and it is not checked.

    Args:
        new_schema: The producer's candidate schema.
        current_schema: The schema the topic's data is written with today (e.g. the latest registered
            version).
        reads: What consumers read of this topic's keys or values (for the same role as the schemas).

    Returns:
        Every break, consumer by consumer in the order of ``reads``; empty when no consumer is affected.

    Raises:
        InvalidSchemaError: Either schema is not a valid Avro schema.
    """
    current = parse_avro_schema(current_schema, "current schema")
    new = parse_avro_schema(new_schema, "new schema")
    breaks: list[ConsumerBreak] = []
    for read in reads:
        try:
            view = consumer_view(current, read.path)
        except FieldNotFoundError:
            continue
        try:
            resolve_path(new, read.path)
        except FieldNotFoundError as exc:
            breaks.append(ConsumerBreak(read, read.path.text, f"the new schema no longer has it: {exc.reason}"))
            continue
        breaks += [ConsumerBreak(read, _UNION_BRANCH.sub("", problem.path) or read.path.text, problem.message)
                   for problem in check_can_read(view, new_schema)]
    return breaks


def field_usage(repository: ContractRepository) -> FieldUsage:
    """Who reads what: every field of every producer schema with the consumers it matters to.

    A consumer is listed under a field when it reads that field, a field under it (removing ``after``
    breaks a reader of ``after.id``), or the record holding it as a whole. A field with no consumer
    can be removed without breaking anyone.

    Args:
        repository: The contracts.

    Returns:
        ``topic -> "key" | "value" -> field path -> sorted consumer names``, fields in schema order;
        ready for ``json.dumps``.
    """
    usage: FieldUsage = {}
    for contract in repository.contracts:
        reads = repository.reads_of(contract.topic, contract.role)
        usage.setdefault(contract.topic, {})[contract.role] = {
            text: sorted({read.consumer for read in reads if read.path.overlaps(FieldPath.parse(text))})
            for text in field_paths(contract.schema)
        }
    return usage
