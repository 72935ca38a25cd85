"""A backfill's ``where`` filter: parsed as one boolean expression of the source's SQL dialect.

The filter is parsed (sqlglot) and must be one read-only boolean expression before it reaches a
query, in parentheses: ``id < 10) OR (true`` (which would escape the range predicate),
``1; DROP TABLE x``, ``id > 5 label`` or a data-modifying subquery are refused before anything runs;
a filter holding a comment or a backslash is written back from its parse tree (so a ``-- comment``
cannot swallow the SQL after it).
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from airflow_mesh.backfill.errors import PlanError

# Nodes a filter may not hold anywhere: statements that write or change anything.
_WRITES = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.Command,
           exp.TruncateTable, exp.Set, exp.Use, exp.Into)
# What a boolean expression can be at its top (a column or a function may be boolean; a number,
# a string or arithmetic cannot).
_NOT_BOOLEAN = (exp.Literal, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.DPipe, exp.Select,
                exp.Subquery, exp.Star, exp.Null, exp.Tuple, exp.Array)
# A filter holding a comment (which could swallow the SQL after it) or a backslash (which dialects
# read differently in strings) is written back from its parse tree; any other is kept as written, so
# that sqlglot's rewriting of a dialect's own words (MariaDB's REGEXP into a REGEXP_LIKE it lacks)
# never reaches the database.
_REWRITE_IF = ("--", "/*", "#", "\\")


def parse_filter(text: str, dialect: str) -> str:
    """The filter as SQL of ``dialect``, in parentheses, ready to be AND-ed to a range predicate.

    Args:
        text: What the user wrote, e.g. ``status <> 'test' AND amount > 0``.
        dialect: The source's SQL dialect (sqlglot's name: ``postgres``, ``mysql``).

    Returns:
        The filter in parentheses: as written, or, if it holds a comment, written back from its
        parse tree, e.g. ``(status <> 'test' AND amount > 0)``.

    Raises:
        PlanError: the text is not exactly one boolean expression, or it would write anything.
    """
    shown = text if len(text) <= 80 else text[:77] + "..."
    try:
        expressions = [e for e in sqlglot.parse(text, read=dialect) if e is not None]
    except ParseError as exc:
        detail = exc.errors[0]["description"] if exc.errors else str(exc).splitlines()[0]
        raise PlanError(f"filter {shown!r} is not an SQL expression ({detail}); write one condition, "
                        "e.g. status <> 'test' AND amount > 0") from None
    if len(expressions) != 1:
        raise PlanError(f"filter {shown!r} holds {len(expressions)} statements; a filter is one condition, "
                        "without ';'")
    tree = expressions[0]
    writes = sorted({type(node).__name__.upper() for node in tree.walk() if isinstance(node, _WRITES)})
    if writes:
        raise PlanError(f"filter {shown!r} holds {', '.join(writes)}: a filter only reads")
    top = tree.unnest() if isinstance(tree, exp.Paren) else tree
    if isinstance(top, exp.Alias):
        raise PlanError(f"filter {shown!r} is not one condition: {top.alias!r} after it reads as a column alias; "
                        "join conditions with AND or OR")
    if isinstance(top, _NOT_BOOLEAN):
        what = "a value" if isinstance(top, (exp.Literal, exp.Null)) else "not true or false"
        raise PlanError(f"filter {shown!r} is not a condition ({what}); write e.g. amount > 0")
    if any(marker in text for marker in _REWRITE_IF):
        return f"({tree.sql(dialect=dialect)})"
    return f"({text.strip()})"
