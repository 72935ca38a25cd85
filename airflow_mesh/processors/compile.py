"""From a processor declaration to the Flink SQL script that runs it as one job.

The script holds, in order: ``SET`` statements for the job's settings, a CREATE TABLE per input, a
CREATE TEMPORARY VIEW per step (``mesh_step_1``, ...), the output's CREATE TABLE (``mesh_output``)
and one INSERT. ``airflow_mesh.flink_runtime.sql_job`` runs it inside the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_mesh.processors.model import (
    NAME,
    RESERVED_PREFIX,
    DeclarationError,
    Deployment,
    Input,
    Invalid,
    Processor,
    Relation,
)
from airflow_mesh.processors.sql import quote_identifier, quote_literal

OUTPUT_TABLE = f"{RESERVED_PREFIX}output"

# Settings of every processor job unless the processor overrides them: checkpoints are what a
# savepoint-based upgrade and the health check on checkpoint age rely on; retained ones are what a
# job the JobManager lost is resumed from. Operator ids stay Flink's own (hashes of the job's
# topology): the planner's (table.exec.uid.generation=ALWAYS) number the plan's nodes in order, so
# adding a step moves every id after it and no state maps any more.
DEFAULT_SETTINGS = {
    "execution.checkpointing.interval": "10 s",
    "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
}


@dataclass(frozen=True)
class Plan:
    """A validated processor: the relation each step makes, and what reaches the output.

    Attributes:
        views: ``(relation, query)`` for each step, in order.
        result: The relation written to the output.
    """

    views: tuple[tuple[Relation, str], ...]
    result: Relation


def _input_problems(processor: Processor) -> list[str]:
    problems = [] if processor.inputs else ["declares no input"]
    names = [source.name for source in processor.inputs]
    for index, source in enumerate(processor.inputs):
        where = f"input {source.name!r}"
        if not NAME.match(source.name) or source.name.startswith(RESERVED_PREFIX):
            problems.append(f"{where}: the name must be a SQL identifier not starting with {RESERVED_PREFIX!r}")
        if source.name in names[:index]:
            problems.append(f"{where}: declared twice")
        problems += [f"{where}: {problem}" for problem in source.check()]
    if processor.start is not None and processor.start not in names:
        problems.append(f"start: no input named {processor.start!r} (inputs: {', '.join(names) or 'none'})")
    return problems


def plan(processor: Processor) -> Plan:
    """Check a declaration completely and work out each step's relation.

    Inputs are checked one by one, then each step against the relation before it (a step that fails
    stops the walk: what follows it would only repeat its problem), then the output against the
    result.

    Args:
        processor: The declaration.

    Returns:
        The plan.

    Raises:
        DeclarationError: listing every problem found, each prefixed with its part (``input 'orders'``,
            ``step 2 (Filter)``, ``output``).
    """
    problems = _input_problems(processor)
    if problems:
        raise DeclarationError(processor.name, problems)
    inputs = {source.name: source.relation() for source in processor.inputs}
    current = inputs[processor.start or processor.inputs[0].name]
    views = []
    for number, step in enumerate(processor.steps, start=1):
        try:
            view = step.plan(current, inputs)
        except Invalid as exc:
            where = f"step {number} ({type(step).__name__})"
            raise DeclarationError(processor.name, [f"{where}: {problem}" for problem in exc.problems]) from None
        current = Relation(f"{RESERVED_PREFIX}step_{number}", view.columns, view.changelog)
        views.append((current, view.query))
    output_problems = processor.output.check(current)
    if output_problems:
        raise DeclarationError(processor.name, [f"output: {problem}" for problem in output_problems])
    return Plan(tuple(views), current)


def compile_sql(processor: Processor, deployment: Deployment) -> str:
    """The Flink SQL script of a processor.

    Args:
        processor: The declaration.
        deployment: The job's name and the clusters its inputs and outputs use.

    Returns:
        The script: statements separated by a semicolon at the end of a line.

    Raises:
        DeclarationError: the declaration is invalid (see ``plan``).
    """
    checked = plan(processor)
    settings = {**DEFAULT_SETTINGS, **processor.settings}
    statements = [f"SET {quote_literal(key)} = {quote_literal(value)}" for key, value in settings.items()]
    statements += [source.create_table(deployment) for source in processor.inputs]
    statements += [f"CREATE TEMPORARY VIEW {quote_identifier(view.name)} AS\n{query}" for view, query in checked.views]
    result = checked.result
    statements.append(processor.output.create_table(OUTPUT_TABLE, result.columns, deployment))
    statements.append(f"INSERT INTO {quote_identifier(OUTPUT_TABLE)}\n"
                      f"SELECT {result.column_list()} FROM {quote_identifier(result.name)}")
    header = "-- processor " + " ".join(f"{processor.name}: {processor.description or 'no description'}".split())
    return header + "\n" + ";\n\n".join(statements) + ";\n"


def output_as_input(processor: Processor, name: str) -> Input:
    """The input by which another processor reads this one's output: how processors are chained.

    Args:
        processor: The upstream processor.
        name: The name the downstream processor gives the input.

    Returns:
        An input with the output's columns and format (an upsert input for a keyed Kafka output).

    Raises:
        DeclarationError: the upstream declaration is invalid.
        NotImplementedError: its output cannot be read back (see ``Output.as_input``).
    """
    return processor.output.as_input(name, plan(processor).result.columns)
