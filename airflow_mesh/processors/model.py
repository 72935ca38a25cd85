"""The processor declaration: inputs, steps and one output, and the contracts each part fulfils.

A processor reads one or more inputs, runs its steps one after the other (each step turns the
relation before it into a new one), and writes the last relation to its output. Every part checks
itself against the columns it receives, so that an invalid declaration fails before submission with
a message that says which part and why (``DeclarationError``).

Inputs, steps and outputs are open: ``Input``, ``Step`` and ``Output`` are the contracts, and
``airflow_mesh.processors.kafka`` and ``airflow_mesh.processors.steps`` hold the implementations
shipped today (Kafka topics; project, filter, rename, derive, union, enrich, aggregate). An Iceberg
or Elasticsearch sink is one more ``Output``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from airflow_mesh.processors.sql import quote_identifier, type_problem

# The names the compiler gives to the relations it creates; an input may not take them.
RESERVED_PREFIX = "mesh_"


class Invalid(ValueError):
    """A part of a declaration (an input, a step, the output) is invalid.

    Attributes:
        problems: Every problem found in that part, each a sentence.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class DeclarationError(ValueError):
    """A processor declaration is invalid; nothing was compiled or submitted.

    Attributes:
        processor: The processor's name.
        problems: Every problem found, each prefixed with the part it concerns.
    """

    def __init__(self, processor: str, problems: Sequence[str]) -> None:
        self.processor = processor
        self.problems = list(problems)
        super().__init__(f"processor {processor!r} is invalid:\n" + "\n".join(f"- {p}" for p in self.problems))


@dataclass(frozen=True)
class Column:
    """A column: its name and its Flink SQL data type (e.g. ``DECIMAL(12, 2)``)."""

    name: str
    type: str

    def ddl(self) -> str:
        """The column as a CREATE TABLE declares it."""
        return f"{quote_identifier(self.name)} {self.type}"


def columns_of(declared: Mapping[str, str] | Sequence[Column]) -> tuple[Column, ...]:
    """Columns from ``{name: type}`` (in order) or from Column objects."""
    if isinstance(declared, Mapping):
        return tuple(Column(name, data_type) for name, data_type in declared.items())
    return tuple(declared)


def name_problem(name: str) -> str | None:
    """Why a column name cannot be used (blank, or holding a backquote or line break), else None."""
    if not name.strip() or any(char in name for char in "`\n\r"):
        return f"column name {name!r} is blank or holds a backquote or line break"
    return None


def column_problems(columns: Sequence[Column]) -> list[str]:
    """Problems of a column list: none at all, a name given twice, blank names, invalid types."""
    if not columns:
        return ["declares no column"]
    problems, seen = [], set()
    for column in columns:
        if problem := name_problem(column.name):
            problems.append(problem)
        if column.name in seen:
            problems.append(f"column {column.name!r} is declared twice")
        seen.add(column.name)
        if problem := type_problem(column.type):
            problems.append(f"column {column.name!r}: {problem}")
    return problems


def unknown_columns(names: Sequence[str], columns: Sequence[Column], what: str = "column") -> list[str]:
    """A problem for each name that is not one of ``columns``, listing the columns there are."""
    known = [column.name for column in columns]
    return [f"unknown {what} {name!r} (columns: {', '.join(known)})" for name in names if name not in known]


@dataclass(frozen=True)
class Relation:
    """What a step reads or makes: a table or view name, its columns, and whether it holds a changelog.

    Attributes:
        name: The table or view the generated SQL selects from.
        columns: Its columns, in order.
        changelog: True when it carries updates and deletes, not only appends.
    """

    name: str
    columns: tuple[Column, ...]
    changelog: bool

    def column(self, name: str) -> Column:
        """The column of that name.

        Raises:
            KeyError: there is none.
        """
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def has(self, name: str) -> bool:
        """Whether the relation has a column of that name."""
        return any(column.name == name for column in self.columns)

    def column_list(self, qualifier: str | None = None) -> str:
        """Its columns as a SELECT list, e.g. ```id`, `status```."""
        prefix = f"{qualifier}." if qualifier else ""
        return ", ".join(prefix + quote_identifier(column.name) for column in self.columns)


@dataclass(frozen=True)
class KafkaCluster:
    """The Kafka cluster that Kafka inputs and outputs use, resolved at deploy time.

    Attributes:
        bootstrap_servers: ``host:port,...``.
        properties: Further Kafka client settings (e.g. ``security.protocol``), passed to Flink's
            Kafka connectors as ``properties.<key>``.
    """

    bootstrap_servers: str
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Deployment:
    """Where a processor runs: what the declaration leaves to the environment.

    Attributes:
        job_name: The Flink job's name; also the Kafka consumer group of its inputs.
        kafka: The Kafka cluster of Kafka inputs and outputs.
    """

    job_name: str
    kafka: KafkaCluster | None = None


class Input(ABC):
    """A relation a processor reads (a Kafka topic today)."""

    name: str
    columns: tuple[Column, ...]

    @property
    @abstractmethod
    def changelog(self) -> bool:
        """Whether the input carries updates and deletes."""

    @abstractmethod
    def check(self) -> list[str]:
        """Every problem of the declaration (empty when valid)."""

    @abstractmethod
    def create_table(self, deployment: Deployment) -> str:
        """The CREATE TABLE statement (no trailing semicolon) of a table named ``self.name``."""

    def relation(self) -> Relation:
        """The relation steps read."""
        return Relation(self.name, self.columns, self.changelog)


class Output(ABC):
    """Where a processor writes its result (a Kafka topic today; Iceberg and Elasticsearch later)."""

    @abstractmethod
    def check(self, result: Relation) -> list[str]:
        """Every problem of writing ``result`` here (empty when it can be written)."""

    @abstractmethod
    def create_table(self, table: str, columns: Sequence[Column], deployment: Deployment) -> str:
        """The CREATE TABLE statement (no trailing semicolon) of the sink table named ``table``."""

    def as_input(self, name: str, columns: Sequence[Column]) -> Input:
        """The input another processor declares to read this output (chaining).

        Raises:
            NotImplementedError: this kind of output cannot be read back as an input.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot be read back as a processor input")


@dataclass(frozen=True)
class View:
    """A step's result before it is named: its columns, whether it is a changelog, and its SELECT."""

    columns: tuple[Column, ...]
    changelog: bool
    query: str


class Step(ABC):
    """One transformation of a relation."""

    @abstractmethod
    def plan(self, upstream: Relation, inputs: Mapping[str, Relation]) -> View:
        """The view this step makes of ``upstream``.

        Args:
            upstream: The relation before this step.
            inputs: The processor's inputs by name, for steps that read a second one (union, enrich).

        Returns:
            The resulting columns, whether the result is a changelog, and the SELECT that computes it.

        Raises:
            Invalid: listing every problem of the step against ``upstream``.
        """


NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Processor:
    """A processor: inputs, steps run in order from ``start``, and an output.

    Args:
        name: The processor's name (it appears in the generated SQL).
        inputs: The inputs; each one's ``name`` is how steps refer to it.
        output: Where the result goes.
        steps: The steps, in order; none copies ``start`` to the output as it is.
        start: The input the first step reads; the first input when None.
        settings: Flink settings for the job (``SET`` statements), over the compiler's defaults
            (e.g. ``{"table.exec.state.ttl": "1 d"}``).
        description: What the processor does, for listings.
    """

    name: str
    inputs: Sequence[Input]
    output: Output
    steps: Sequence[Step] = ()
    start: str | None = None
    settings: Mapping[str, str] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "steps", tuple(self.steps))
