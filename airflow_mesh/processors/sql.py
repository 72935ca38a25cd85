"""Flink SQL text: quoting, and checking the SQL expressions a processor declaration embeds.

An expression (a filter condition, a derived column, an aggregate) is checked without a full SQL
parser: it is tokenized, and every word that is not a keyword, not a function or type name (a word
followed by ``(``) and not a field access (a word after ``.``) is a column reference, as is every
backquoted identifier. That is enough to name an unknown column before anything is submitted, and
to refuse text that would break out of the generated statement (a ``;``, an unterminated quote).
"""

from __future__ import annotations

import re
from typing import cast

# Words of Flink SQL that may appear in an expression without naming a column.
KEYWORDS = frozenset("""
    ALL AND ANY ARRAY AS ASC ASYMMETRIC BETWEEN BIGINT BINARY BOOLEAN BOTH BY BYTES CASE CAST CENTURY
    CHAR CHARACTER CURRENT CURRENT_DATE CURRENT_ROW_TIMESTAMP CURRENT_TIME CURRENT_TIMESTAMP DATE DAY
    DAYS DEC DECADE DECIMAL DESC DISTINCT DOUBLE DOW DOY ELSE END EPOCH ESCAPE EXISTS FALSE FILTER FIRST
    FLOAT FOLLOWING FOR FROM HOUR HOURS IN INT INTEGER INTERVAL IS ISODOW ISOYEAR JSON LAST LEADING LIKE
    LOCAL LOCALTIME LOCALTIMESTAMP MAP MICROSECOND MILLENNIUM MILLISECOND MINUTE MINUTES MONTH MONTHS
    MULTISET NANOSECOND NOT NULL NULLS NUMERIC OR ORDER OVER PARTITION PLACING PRECEDING PRECISION
    QUARTER RANGE RAW REAL ROW ROWS SECOND SECONDS SIMILAR SMALLINT SOME STRING SYMMETRIC THEN TIME
    TIMESTAMP TIMESTAMP_LTZ TINYINT TO TRAILING TRUE TRY_CAST UNBOUNDED UNKNOWN VARBINARY VARCHAR
    WEEK WHEN WHERE WITH WITHOUT YEAR YEARS ZONE
""".split())

# The data types a column may be declared with (the first word of the type).
TYPE_NAMES = frozenset("""
    ARRAY BIGINT BINARY BOOLEAN BYTES CHAR CHARACTER DATE DEC DECIMAL DOUBLE FLOAT INT INTEGER INTERVAL
    MAP MULTISET NUMERIC RAW REAL ROW SMALLINT STRING TIME TIMESTAMP TIMESTAMP_LTZ TINYINT VARBINARY
    VARCHAR VARIANT
""".split())

TOKEN = re.compile(
    r"""(?P<string>'(?:[^']|'')*')
      |(?P<quoted>`(?:[^`]|``)*`)
      |(?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)
      |(?P<word>[A-Za-z_][A-Za-z0-9_$]*)
      |(?P<space>\s+)
      |(?P<symbol>.)""",
    re.VERBOSE | re.DOTALL,
)


class ExpressionError(ValueError):
    """An expression cannot be embedded in the generated SQL (its message says why)."""


def quote_identifier(name: str) -> str:
    """A Flink SQL identifier in backquotes, e.g. ``order`` -> ```order```."""
    return "`" + name.replace("`", "``") + "`"


def quote_literal(value: str) -> str:
    """A Flink SQL string literal, e.g. ``it's`` -> ``'it''s'``."""
    return "'" + value.replace("'", "''") + "'"


def _tokens(expression: str) -> list[tuple[str, str]]:
    """``(kind, text)`` of each token but whitespace; raises ExpressionError on text that cannot be embedded."""
    tokens: list[tuple[str, str]] = []
    depth = 0
    for match in TOKEN.finditer(expression):
        kind, text = cast(str, match.lastgroup), match.group()  # every alternative of TOKEN is a named group
        if kind == "space":
            continue
        if kind == "string" and "\n" in text:
            raise ExpressionError("a string literal spans lines")
        if kind == "symbol":
            if text == ";":
                raise ExpressionError("';' is not allowed: an expression is part of one statement")
            if text in "'`":
                raise ExpressionError(f"unterminated {'string literal' if text == chr(39) else 'quoted identifier'}")
            depth += {"(": 1, ")": -1}.get(text, 0)
            if depth < 0:
                raise ExpressionError("')' without a matching '('")
        tokens.append((kind, text))
    if depth:
        raise ExpressionError("'(' without a matching ')'")
    if not tokens:
        raise ExpressionError("the expression is empty")
    return tokens


def referenced_columns(expression: str) -> list[str]:
    """The column names an expression refers to, in order of first use.

    Args:
        expression: A Flink SQL expression, e.g. ``status <> 'cancelled' AND amount >= 10``.

    Returns:
        Each name once: unquoted words that are neither keywords, functions nor field accesses,
        and backquoted identifiers (unquoted).

    Raises:
        ExpressionError: the expression is empty, holds a ``;``, an unterminated quote, or
            unbalanced parentheses.
    """
    tokens = _tokens(expression)
    names: list[str] = []
    for index, (kind, text) in enumerate(tokens):
        previous = tokens[index - 1][1] if index else ""
        following = tokens[index + 1][1] if index + 1 < len(tokens) else ""
        if previous == "." or kind not in ("word", "quoted"):
            continue
        if kind == "word" and (following == "(" or text.upper() in KEYWORDS):
            continue
        name = text[1:-1].replace("``", "`") if kind == "quoted" else text
        if name not in names:
            names.append(name)
    return names


def type_problem(data_type: str) -> str | None:
    """Why a column type is not a Flink SQL data type, or None when it looks like one.

    The first word must name a data type; the rest must not break out of the declaration.
    """
    first = re.match(r"\s*([A-Za-z_]+)", data_type)
    if not first or first.group(1).upper() not in TYPE_NAMES:
        return f"unknown data type {data_type!r} (e.g. BIGINT, STRING, DECIMAL(12, 2), TIMESTAMP(3))"
    try:
        _tokens(data_type)
    except ExpressionError as exc:
        return f"data type {data_type!r}: {exc}"
    if any(quote in data_type for quote in "'`"):
        return f"data type {data_type!r} holds a quote"
    return None
