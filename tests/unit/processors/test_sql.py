"""Quoting, and finding the columns an embedded SQL expression refers to."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_mesh.processors.sql import (
    ExpressionError,
    quote_identifier,
    quote_literal,
    referenced_columns,
    type_problem,
)

# Text that may appear on one line of a generated statement (no line breaks).
one_line = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), min_size=1)


@pytest.mark.parametrize(
    ("expression", "columns"),
    [
        ("status <> 'cancelled' AND amount >= 10", ["status", "amount"]),
        ("CAST(amount AS DECIMAL(12, 2)) * 100", ["amount"]),
        ("UPPER(name) LIKE 'A%' OR name IS NULL", ["name"]),
        ("COUNT(DISTINCT customer_id)", ["customer_id"]),
        ("COUNT(*)", []),
        ("CASE WHEN a > 1 THEN b ELSE c END", ["a", "b", "c"]),
        ("`order` = 'it''s' AND `we``ird` > 0", ["order", "we`ird"]),
        ("address.city = 'Oslo'", ["address"]),  # a field of a ROW column
        ("created_at > CURRENT_TIMESTAMP - INTERVAL '1' DAY", ["created_at"]),
        ("TRIM(BOTH ' ' FROM note) <> '' AND EXTRACT(YEAR FROM ts) = 2026", ["note", "ts"]),
        ("x IN (1, 2, 3) AND x NOT BETWEEN 5 AND 7 AND x IS NOT DISTINCT FROM y", ["x", "y"]),
        ("note = 'status AND amount'", ["note"]),  # words in a literal are not columns
    ],
)
def test_referenced_columns(expression, columns):
    assert referenced_columns(expression) == columns


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("a = 1; DROP TABLE t", "';' is not allowed"),
        ("a = 'open", "unterminated string literal"),
        ("`a = 1", "unterminated quoted identifier"),
        ("(a = 1", "'(' without a matching ')'"),
        ("a = 1)", "')' without a matching '('"),
        ("   ", "the expression is empty"),
        ("a = 'two\nlines'", "a string literal spans lines"),
    ],
)
def test_expressions_that_cannot_be_embedded(expression, reason):
    with pytest.raises(ExpressionError, match=re.escape(reason)):
        referenced_columns(expression)


@given(one_line)
def test_a_quoted_identifier_is_read_back_as_that_column(name):
    assert referenced_columns(quote_identifier(name)) == [name]


@given(one_line)
def test_a_quoted_literal_refers_to_no_column(value):
    assert referenced_columns(quote_literal(value)) == []


@given(one_line, one_line)
def test_a_literal_next_to_a_column_keeps_them_apart(name, value):
    assert referenced_columns(f"{quote_identifier(name)} = {quote_literal(value)}") == [name]


@pytest.mark.parametrize("data_type", ["BIGINT", "DECIMAL(12, 2)", "STRING NOT NULL", "TIMESTAMP(3)",
                                       "ARRAY<STRING>", "ROW<city STRING, zip INT>", "timestamp_ltz(3)"])
def test_flink_types_are_accepted(data_type):
    assert type_problem(data_type) is None


@pytest.mark.parametrize(("data_type", "reason"), [
    ("NUMBER", "unknown data type 'NUMBER'"),
    ("", "unknown data type ''"),
    ("STRING COMMENT 'x'", "holds a quote"),
    ("INT) WITH (x", "')' without a matching '('"),
    ("DECIMAL(12, 2", "'(' without a matching ')'"),
    ("INT; DROP", "';' is not allowed"),
])
def test_invalid_types_are_refused(data_type, reason):
    assert reason in type_problem(data_type)
