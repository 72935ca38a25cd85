"""The steps a processor can run: each turns the relation before it into a SELECT over it.

Every step checks the column names it uses (including those inside its SQL expressions) against the
relation it receives, and raises ``Invalid`` with every problem before any SQL is generated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from airflow_mesh.processors.model import Column, Invalid, Relation, Step, View, name_problem, unknown_columns
from airflow_mesh.processors.sql import ExpressionError, quote_identifier, referenced_columns, type_problem


def _expression_problems(what: str, expression: str, relation: Relation) -> list[str]:
    try:
        names = referenced_columns(expression)
    except ExpressionError as exc:
        return [f"{what} ({expression}): {exc}"]
    return [f"{what} ({expression}): {problem}" for problem in unknown_columns(names, relation.columns)]


def _raise_if(problems: list[str]) -> None:
    if problems:
        raise Invalid(problems)


def _normal_type(data_type: str) -> str:
    return re.sub(r"\s+", " ", data_type.strip().upper()).replace("( ", "(").replace(" )", ")").replace(" ,", ",")


@dataclass(frozen=True)
class Project(Step):
    """Keep only these columns, in this order.

    Args:
        columns: The columns to keep.
    """

    columns: Sequence[str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))

    def plan(self, upstream: Relation, inputs: Mapping[str, Relation]) -> View:
        problems = unknown_columns(self.columns, upstream.columns)
        if not self.columns:
            problems.append("keeps no column")
        problems += [f"column {name!r} is listed twice" for name in sorted(set(self.columns))
                     if self.columns.count(name) > 1]
        _raise_if(problems)
        select = ", ".join(quote_identifier(name) for name in self.columns)
        columns = tuple(upstream.column(name) for name in self.columns)
        return View(columns, upstream.changelog, f"SELECT {select} FROM {quote_identifier(upstream.name)}")


@dataclass(frozen=True)
class Filter(Step):
    """Keep only the rows for which a SQL condition holds.

    On a changelog, a row that an update moves out of the condition is deleted downstream, and one
    that an update moves in is inserted.

    Args:
        condition: A Flink SQL boolean expression over the columns, e.g. ``status <> 'cancelled'``.
    """

    condition: str

    def plan(self, upstream: Relation, inputs: Mapping[str, Relation]) -> View:
        _raise_if(_expression_problems("condition", self.condition, upstream))
        query = f"SELECT {upstream.column_list()} FROM {quote_identifier(upstream.name)} WHERE {self.condition}"
        return View(upstream.columns, upstream.changelog, query)


@dataclass(frozen=True)
class Rename(Step):
    """Rename columns, keeping their order.

    Args:
        columns: ``{old name: new name}``.
    """

    columns: Mapping[str, str]

    def plan(self, upstream: Relation, inputs: Mapping[str, Relation]) -> View:
        problems = unknown_columns(list(self.columns), upstream.columns)
        if not self.columns:
            problems.append("renames no column")
        renamed = [Column(self.columns.get(c.name, c.name), c.type) for c in upstream.columns]
        names = [column.name for column in renamed]
        problems += [f"column {name!r} would appear twice after renaming" for name in sorted(set(names))
                     if names.count(name) > 1]
        problems += [problem for new in self.columns.values() if (problem := name_problem(new))]
        _raise_if(problems)
        items = [quote_identifier(old.name) + (f" AS {quote_identifier(new.name)}" if new.name != old.name else "")
                 for old, new in zip(upstream.columns, renamed, strict=True)]
        select = ", ".join(items)
        return View(tuple(renamed), upstream.changelog, f"SELECT {select} FROM {quote_identifier(upstream.name)}")


@dataclass(frozen=True)
class Derive(Step):
    """Compute a column with a SQL expression: a new one (appended) or a replacement (in place).

    The value is cast to ``type``, so the declared type is the column's type downstream. As a
    measure of ``Aggregate``, the expression is an aggregate such as ``COUNT(*)``.

    Args:
        column: The column's name.
        expression: A Flink SQL expression over the columns, e.g. ``CAST(amount AS DECIMAL(12, 2)) * 100``.
        type: The column's Flink SQL type.
    """

    column: str
    expression: str
    type: str

    def problems(self, upstream: Relation) -> list[str]:
        """The problems of the expression and the type against ``upstream`` (for this step and for measures)."""
        problems = _expression_problems(f"expression of {self.column!r}", self.expression, upstream)
        if problem := type_problem(self.type):
            problems.append(f"column {self.column!r}: {problem}")
        if problem := name_problem(self.column):
            problems.append(problem)
        return problems

    def select(self) -> str:
        """The SELECT item computing the column."""
        return f"CAST(({self.expression}) AS {self.type}) AS {quote_identifier(self.column)}"

    def plan(self, upstream: Relation, inputs: Mapping[str, Relation]) -> View:
        _raise_if(self.problems(upstream))
        derived = Column(self.column, self.type)
        if upstream.has(self.column):
            columns = tuple(derived if c.name == self.column else c for c in upstream.columns)
        else:
            columns = (*upstream.columns, derived)
        select = ", ".join(self.select() if c.name == self.column else quote_identifier(c.name) for c in columns)
        return View(columns, upstream.changelog, f"SELECT {select} FROM {quote_identifier(upstream.name)}")


@dataclass(frozen=True)
class Union(Step):
    """Append the rows of other inputs: each must have every upstream column, with the same type
    (columns only they have are left out).

    Args:
        inputs: The names of the processor's inputs to add to the upstream relation.
    """

    inputs: Sequence[str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))

    def plan(self, upstream: Relation, inputs: Mapping[str, Relation]) -> View:
        problems = [] if self.inputs else ["names no input to add"]
        others = []
        for name in self.inputs:
            other = inputs.get(name)
            if other is None:
                problems.append(f"no input named {name!r} (inputs: {', '.join(inputs)})")
                continue
            others.append(other)
            theirs = {c.name: _normal_type(c.type) for c in other.columns}
            for column in upstream.columns:
                if column.name not in theirs:
                    problems.append(f"input {name!r} has no column {column.name!r}")
                elif theirs[column.name] != _normal_type(column.type):
                    problems.append(f"column {column.name!r} is {column.type} here but {theirs[column.name]} "
                                    f"in input {name!r}")
        _raise_if(problems)
        selects = [f"SELECT {upstream.column_list()} FROM {quote_identifier(r.name)}" for r in (upstream, *others)]
        return View(upstream.columns, any(r.changelog for r in (upstream, *others)), "\nUNION ALL\n".join(selects))


@dataclass(frozen=True)
class Enrich(Step):
    """Add columns of another input, looked up by key (a LEFT JOIN: unmatched rows get NULLs).

    Both sides are streams: when the looked-up row changes (or arrives late), the enriched rows are
    updated, so the result is a changelog.

    Args:
        lookup: The input to look up in.
        on: ``{upstream column: lookup column}`` pairs that must be equal.
        columns: ``{lookup column: new column name}`` to add.
    """

    lookup: str
    on: Mapping[str, str]
    columns: Mapping[str, str] = field(default_factory=dict)

    def plan(self, upstream: Relation, inputs: Mapping[str, Relation]) -> View:
        lookup = inputs.get(self.lookup)
        if lookup is None:
            raise Invalid([f"no input named {self.lookup!r} to look up in (inputs: {', '.join(inputs)})"])
        problems = [] if self.on else ["names no join column ('on')"]
        problems += unknown_columns(list(self.on), upstream.columns)
        problems += [f"lookup {p}" for p in unknown_columns(list(self.on.values()), lookup.columns)]
        problems += [f"lookup {p}" for p in unknown_columns(list(self.columns), lookup.columns)]
        problems += [f"new column {new!r} is already a column" for new in self.columns.values() if upstream.has(new)]
        _raise_if(problems)
        _raise_if([f"join column {mine!r} is {upstream.column(mine).type} but lookup column {theirs!r} is "
                   f"{lookup.column(theirs).type}" for mine, theirs in self.on.items()
                   if _normal_type(upstream.column(mine).type) != _normal_type(lookup.column(theirs).type)])
        condition = " AND ".join(f"u.{quote_identifier(mine)} = l.{quote_identifier(theirs)}"
                                 for mine, theirs in self.on.items())
        added = [Column(new, lookup.column(old).type) for old, new in self.columns.items()]
        select = ", ".join([upstream.column_list("u")] + [
            f"l.{quote_identifier(old)} AS {quote_identifier(new)}" for old, new in self.columns.items()])
        query = (f"SELECT {select} FROM {quote_identifier(upstream.name)} AS u "
                 f"LEFT JOIN {quote_identifier(lookup.name)} AS l ON {condition}")
        return View((*upstream.columns, *added), True, query)


@dataclass(frozen=True)
class Aggregate(Step):
    """Group rows and compute measures per group; the result is a changelog keyed by the group.

    Args:
        group_by: The grouping columns (they come first in the result).
        measures: The computed columns, each a Derive whose expression aggregates (e.g. ``COUNT(*)``).
    """

    group_by: Sequence[str]
    measures: Sequence[Derive]

    def __post_init__(self) -> None:
        object.__setattr__(self, "group_by", tuple(self.group_by))
        object.__setattr__(self, "measures", tuple(self.measures))

    def plan(self, upstream: Relation, inputs: Mapping[str, Relation]) -> View:
        problems = unknown_columns(self.group_by, upstream.columns)
        if not self.group_by:
            problems.append("groups by no column")
        if not self.measures:
            problems.append("computes no measure")
        names = [*self.group_by, *(measure.column for measure in self.measures)]
        problems += [f"column {name!r} appears twice in the result" for name in sorted(set(names))
                     if names.count(name) > 1]
        for measure in self.measures:
            problems += measure.problems(upstream)
        _raise_if(problems)
        keys = ", ".join(quote_identifier(name) for name in self.group_by)
        select = ", ".join([keys] + [measure.select() for measure in self.measures])
        columns = (*(upstream.column(name) for name in self.group_by),
                   *(Column(measure.column, measure.type) for measure in self.measures))
        return View(columns, True, f"SELECT {select} FROM {quote_identifier(upstream.name)} GROUP BY {keys}")
