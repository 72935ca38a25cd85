"""The contracts kept in the repository: producer schemas per topic, and what each consumer reads.

Layout of the contracts folder (``schemas/``)::

    <topic>/key.avsc             the Avro schema of the topic's record keys (optional)
    <topic>/value.avsc           the Avro schema of the topic's record values (optional; one of the two)
    consumers/<consumer>.yaml    a consumer's declaration: the fields it reads, by path

A consumer declaration::

    name: finance-ledger
    owner: finance-data@example.com     # who is told when a producer change would break it
    description: Books every paid order.
    reads:
      mesh.pg.public.orders:
        key: [id]
        value: [op, after.id, after.amount]

Field paths are those of :mod:`airflow_mesh.contracts.fields`. Loading checks everything and reports
every problem at once, each with its file, where in the file, and why.

Pure logic: reads files, imports no Airflow and touches no network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from airflow_mesh.contracts.avro_compat import InvalidSchemaError, ParsedSchema, parse_avro_schema
from airflow_mesh.contracts.fields import FieldNotFoundError, FieldPath, FieldPathError, resolve_path

__all__ = [
    "CONSUMERS_DIR",
    "ROLES",
    "ConsumerDeclaration",
    "ContractError",
    "ContractProblem",
    "ContractRepository",
    "FieldRead",
    "Role",
    "SchemaContract",
    "TopicReads",
    "load_repository",
    "subject_name",
]

Role = Literal["key", "value"]
ROLES: tuple[Role, ...] = ("key", "value")
CONSUMERS_DIR = "consumers"
TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
CONSUMER_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


def subject_name(topic: str, role: Role) -> str:
    """The Schema Registry subject of a topic's key or value schema (TopicNameStrategy).

    Args:
        topic: The Kafka topic.
        role: ``"key"`` or ``"value"``.

    Returns:
        ``<topic>-key`` or ``<topic>-value``.
    """
    return f"{topic}-{role}"


@dataclass(frozen=True)
class ContractProblem:
    """One problem of a contracts folder.

    Attributes:
        file: The file (or folder) concerned.
        path: Where in the file, e.g. ``reads.mesh.pg.public.orders.value[1]``; empty for the whole file.
        reason: What is wrong.
    """

    file: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.reason}" if self.path else f"{self.file}: {self.reason}"


class ContractError(ValueError):
    """The contracts folder is invalid; the message lists every problem, one per line.

    Attributes:
        problems: Every problem found, not just the first.
    """

    def __init__(self, problems: list[ContractProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(map(str, problems)))


@dataclass(frozen=True)
class SchemaContract:
    """A producer schema: the key or value schema of one topic.

    Attributes:
        topic: The topic.
        role: ``"key"`` or ``"value"``.
        file: The ``.avsc`` file.
        text: The schema as written in the file.
        schema: The validated, parsed schema.
    """

    topic: str
    role: Role
    file: Path
    text: str
    schema: ParsedSchema

    @property
    def subject(self) -> str:
        """The Schema Registry subject, ``<topic>-<role>``."""
        return subject_name(self.topic, self.role)


class TopicReads(BaseModel):
    """The fields a consumer reads from one topic."""

    model_config = ConfigDict(extra="forbid")

    key: list[str] = Field(default_factory=list, description="Field paths read from the record keys")
    value: list[str] = Field(default_factory=list, description="Field paths read from the record values")


class ConsumerDeclaration(BaseModel):
    """A consumer declaration file, as written."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=CONSUMER_NAME, description="The consumer's name, unique among the declarations")
    owner: str = Field(min_length=1, description="Who to tell when a producer change would break this consumer")
    description: str | None = None
    reads: dict[str, TopicReads] = Field(min_length=1, description="Per topic, the fields read")


@dataclass(frozen=True)
class FieldRead:
    """One field a consumer reads.

    Attributes:
        consumer: The consumer's name.
        owner: The consumer's owner.
        file: The declaration file.
        topic: The topic read.
        role: ``"key"`` or ``"value"``.
        path: The field.
    """

    consumer: str
    owner: str
    file: Path
    topic: str
    role: Role
    path: FieldPath


@dataclass(frozen=True)
class ContractRepository:
    """A validated contracts folder.

    Attributes:
        root: The folder.
        contracts: Every producer schema, by topic then role (key before value).
        reads: Every field every consumer reads, by consumer file then declaration order.
    """

    root: Path
    contracts: tuple[SchemaContract, ...]
    reads: tuple[FieldRead, ...]

    @property
    def topics(self) -> list[str]:
        """The topics that have a contract, sorted."""
        return sorted({contract.topic for contract in self.contracts})

    @property
    def consumers(self) -> list[str]:
        """The declared consumers' names, sorted."""
        return sorted({read.consumer for read in self.reads})

    def contract(self, topic: str, role: Role) -> SchemaContract | None:
        """The producer schema of a topic's keys or values.

        Args:
            topic: The topic.
            role: ``"key"`` or ``"value"``.

        Returns:
            The contract, or None when the folder has none for it.
        """
        return next((c for c in self.contracts if (c.topic, c.role) == (topic, role)), None)

    def reads_of(self, topic: str, role: Role) -> list[FieldRead]:
        """What the consumers read from a topic's keys or values.

        Args:
            topic: The topic.
            role: ``"key"`` or ``"value"``.

        Returns:
            The declared field reads, in declaration order.
        """
        return [read for read in self.reads if (read.topic, read.role) == (topic, role)]


def load_repository(path: str | Path) -> ContractRepository:
    """Load and validate a contracts folder.

    Args:
        path: The folder (``schemas/``).

    Returns:
        The validated contracts.

    Raises:
        ContractError: Listing every problem: an unreadable file, malformed JSON or YAML, an invalid Avro
            schema, a misplaced schema file, an invalid declaration, a consumer reading a topic, key/value
            or field that has no schema, two consumers of the same name.
    """
    root = Path(path)
    if not root.is_dir():
        raise ContractError([ContractProblem(str(root), "", "not a folder")])
    problems: list[ContractProblem] = []
    contracts, broken = _load_contracts(root, problems)
    reads = _load_declarations(root / CONSUMERS_DIR, {(c.topic, c.role): c for c in contracts}, broken, problems)
    if problems:
        raise ContractError(problems)
    return ContractRepository(root, tuple(contracts), tuple(reads))


def _load_contracts(root: Path, problems: list[ContractProblem]
                    ) -> tuple[list[SchemaContract], set[tuple[str, Role]]]:
    """The valid schemas, and which topic parts have a schema file that is not (reported already)."""
    contracts, broken = [], set()
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != CONSUMERS_DIR):
        if folder.name.startswith("."):
            continue
        if not TOPIC_NAME.match(folder.name):
            problems.append(ContractProblem(str(folder), "", "not a valid Kafka topic name (letters, digits, '.', "
                                                             "'_' and '-', at most 249)"))
            continue
        files = {file.name: file for file in folder.glob("*.avsc")}
        problems += [ContractProblem(str(folder / name), "", "unexpected schema file: a topic folder holds "
                                                             "key.avsc and/or value.avsc")
                     for name in sorted(set(files) - {f"{role}.avsc" for role in ROLES})]
        if not any(f"{role}.avsc" in files for role in ROLES):
            problems.append(ContractProblem(str(folder), "", "neither key.avsc nor value.avsc in this topic folder"))
        for role in ROLES:
            if f"{role}.avsc" in files:
                contract = _load_schema(files[f"{role}.avsc"], folder.name, role, problems)
                if contract is not None:
                    contracts.append(contract)
                else:
                    broken.add((folder.name, role))
    return contracts, broken


def _load_schema(file: Path, topic: str, role: Role, problems: list[ContractProblem]) -> SchemaContract | None:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(ContractProblem(str(file), "", f"cannot read: {exc}"))
        return None
    try:
        schema = parse_avro_schema(text, "Avro schema")
    except InvalidSchemaError as exc:
        problems.append(ContractProblem(str(file), "", str(exc)))
        return None
    return SchemaContract(topic, role, file, text, schema)


def _load_declarations(folder: Path, contracts: dict[tuple[str, Role], SchemaContract],
                       broken: set[tuple[str, Role]], problems: list[ContractProblem]) -> list[FieldRead]:
    reads: list[FieldRead] = []
    seen: dict[str, Path] = {}
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []
    for file in files:
        declaration = _parse_declaration(file, problems)
        if declaration is None:
            continue
        if declaration.name in seen:
            problems.append(ContractProblem(str(file), "name", f"consumer {declaration.name!r} is also declared in "
                                                               f"{seen[declaration.name]}"))
            continue
        seen[declaration.name] = file
        topics = sorted({topic for topic, _ in [*contracts, *broken]})
        for topic, topic_reads in declaration.reads.items():
            if topic not in topics:
                problems.append(ContractProblem(str(file), f"reads.{topic}", f"no schema for topic {topic} (topics "
                                                f"with a contract: {', '.join(topics) or 'none'})"))
                continue
            if not topic_reads.key and not topic_reads.value:
                problems.append(ContractProblem(str(file), f"reads.{topic}", "reads no field: list the key and/or "
                                                                             "value fields read"))
            for role in ROLES:
                paths = getattr(topic_reads, role)
                if (topic, role) in broken:
                    continue  # the schema's own problem is reported; its fields cannot be checked
                if paths and (topic, role) not in contracts:
                    problems.append(ContractProblem(str(file), f"reads.{topic}.{role}",
                                                    f"topic {topic} has no {role} schema ({role}.avsc)"))
                elif paths:
                    reads += _field_reads(file, declaration, contracts[topic, role], paths, problems)
    return reads


def _parse_declaration(file: Path, problems: list[ContractProblem]) -> ConsumerDeclaration | None:
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(ContractProblem(str(file), "", f"cannot read: {exc}"))
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or exc
        problems.append(ContractProblem(str(file), "", f"malformed YAML{where}: {reason}"))
        return None
    if not isinstance(data, dict):
        problems.append(ContractProblem(str(file), "", f"a consumer declaration must be a mapping, "
                                                       f"got {type(data).__name__}"))
        return None
    try:
        return ConsumerDeclaration.model_validate(data)
    except ValidationError as exc:
        problems += [ContractProblem(str(file), _location(error["loc"]), error["msg"]) for error in exc.errors()]
        return None


def _location(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a path: ``reads.<topic>.value[1]``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _field_reads(file: Path, declaration: ConsumerDeclaration, contract: SchemaContract, paths: list[str],
                 problems: list[ContractProblem]) -> list[FieldRead]:
    """Validate the paths a consumer reads from one topic's keys or values against their schema."""
    reads = []
    seen: set[str] = set()
    for index, text in enumerate(paths):
        where = f"reads.{contract.topic}.{contract.role}[{index}]"
        if text in seen:
            problems.append(ContractProblem(str(file), where, f"{text} is listed twice"))
            continue
        seen.add(text)
        try:
            path = FieldPath.parse(text)
            resolve_path(contract.schema, path)
        except FieldPathError as exc:
            problems.append(ContractProblem(str(file), where, str(exc)))
            continue
        except FieldNotFoundError as exc:
            problems.append(ContractProblem(str(file), where, f"field {text} does not exist in {contract.file}: "
                                                              f"{exc.reason}"))
            continue
        reads.append(FieldRead(declaration.name, declaration.owner, file, contract.topic, contract.role, path))
    return reads
