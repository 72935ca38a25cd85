"""The SQL each step generates, the columns it passes on, and the problems it reports before any SQL."""

from __future__ import annotations

import pytest

from airflow_mesh.processors import Aggregate, Column, Derive, Enrich, Filter, Invalid, Project, Relation, Rename, Union

ORDERS = Relation("orders", (Column("id", "BIGINT"), Column("customer_id", "BIGINT"), Column("status", "STRING"),
                             Column("amount", "DECIMAL(12, 2)")), changelog=False)
CUSTOMERS = Relation("customers", (Column("id", "BIGINT"), Column("name", "STRING"), Column("country", "STRING")),
                     changelog=True)
MORE_ORDERS = Relation("more_orders", ORDERS.columns, changelog=False)
INPUTS = {"orders": ORDERS, "customers": CUSTOMERS, "more_orders": MORE_ORDERS}


def names(columns) -> list[str]:
    return [column.name for column in columns]


def problems(step, upstream: Relation = ORDERS) -> list[str]:
    with pytest.raises(Invalid) as excinfo:
        step.plan(upstream, INPUTS)
    return excinfo.value.problems


class TestProject:
    def test_sql_and_columns(self):
        view = Project(["amount", "id"]).plan(ORDERS, INPUTS)
        assert view.query == "SELECT `amount`, `id` FROM `orders`"
        assert view.columns == (Column("amount", "DECIMAL(12, 2)"), Column("id", "BIGINT"))
        assert view.changelog is False

    def test_unknown_and_repeated_columns(self):
        assert problems(Project(["id", "amout", "id"])) == [
            "unknown column 'amout' (columns: id, customer_id, status, amount)",
            "column 'id' is listed twice",
        ]
        assert problems(Project([])) == ["keeps no column"]


class TestFilter:
    def test_sql_keeps_every_column(self):
        view = Filter("status <> 'cancelled' AND amount >= 10").plan(ORDERS, INPUTS)
        assert view.query == ("SELECT `id`, `customer_id`, `status`, `amount` FROM `orders` "
                              "WHERE status <> 'cancelled' AND amount >= 10")
        assert view.columns == ORDERS.columns

    def test_unknown_column_in_the_condition(self):
        assert problems(Filter("state = 'paid'")) == [
            "condition (state = 'paid'): unknown column 'state' (columns: id, customer_id, status, amount)"]

    def test_a_condition_that_would_break_the_statement(self):
        assert problems(Filter("status = 'paid'; DROP TABLE x")) == [
            "condition (status = 'paid'; DROP TABLE x): ';' is not allowed: an expression is part of one statement"]


class TestRename:
    def test_sql_keeps_the_order(self):
        view = Rename({"customer_id": "customer", "amount": "total"}).plan(ORDERS, INPUTS)
        assert view.query == "SELECT `id`, `customer_id` AS `customer`, `status`, `amount` AS `total` FROM `orders`"
        assert names(view.columns) == ["id", "customer", "status", "total"]
        assert view.columns[3].type == "DECIMAL(12, 2)"

    def test_unknown_column_and_collision(self):
        assert problems(Rename({"amout": "total", "status": "id"})) == [
            "unknown column 'amout' (columns: id, customer_id, status, amount)",
            "column 'id' would appear twice after renaming",
        ]

    def test_swapping_two_names_is_fine(self):
        view = Rename({"id": "customer_id", "customer_id": "id"}).plan(ORDERS, INPUTS)
        assert names(view.columns) == ["customer_id", "id", "status", "amount"]


class TestDerive:
    def test_a_new_column_is_appended_and_cast_to_its_type(self):
        view = Derive("cents", "amount * 100", "BIGINT").plan(ORDERS, INPUTS)
        assert view.query == ("SELECT `id`, `customer_id`, `status`, `amount`, "
                              "CAST((amount * 100) AS BIGINT) AS `cents` FROM `orders`")
        assert view.columns[-1] == Column("cents", "BIGINT")

    def test_a_column_of_the_same_name_is_replaced_in_place(self):
        view = Derive("amount", "CAST(amount AS DOUBLE)", "DOUBLE").plan(ORDERS, INPUTS)
        assert view.query == ("SELECT `id`, `customer_id`, `status`, "
                              "CAST((CAST(amount AS DOUBLE)) AS DOUBLE) AS `amount` FROM `orders`")
        assert view.columns[3] == Column("amount", "DOUBLE")

    def test_unknown_column_and_type(self):
        assert problems(Derive("x", "price * 2", "NUMBER")) == [
            "expression of 'x' (price * 2): unknown column 'price' (columns: id, customer_id, status, amount)",
            "column 'x': unknown data type 'NUMBER' (e.g. BIGINT, STRING, DECIMAL(12, 2), TIMESTAMP(3))",
        ]


class TestUnion:
    def test_sql_appends_each_input_with_the_upstream_columns(self):
        view = Union(["more_orders"]).plan(ORDERS, INPUTS)
        assert view.query == ("SELECT `id`, `customer_id`, `status`, `amount` FROM `orders`\nUNION ALL\n"
                              "SELECT `id`, `customer_id`, `status`, `amount` FROM `more_orders`")
        assert view.columns == ORDERS.columns

    def test_a_changelog_input_makes_a_changelog(self):
        narrow = Relation("narrow", CUSTOMERS.columns[:2], changelog=False)
        assert Union(["customers"]).plan(narrow, INPUTS).changelog is True

    def test_missing_input_columns_and_types(self):
        assert problems(Union(["returns", "customers"])) == [
            "no input named 'returns' (inputs: orders, customers, more_orders)",
            "input 'customers' has no column 'customer_id'",
            "input 'customers' has no column 'status'",
            "input 'customers' has no column 'amount'",
        ]
        other = Relation("x", (Column("id", "INT"),), False)
        assert problems(Union(["customers"]), other) == [
            "column 'id' is INT here but BIGINT in input 'customers'"]

    def test_types_are_compared_regardless_of_case_and_spaces(self):
        spaced = Relation("spaced", (Column("id", "bigint"), Column("name", "string"), Column("country", "STRING")),
                          False)
        assert Union(["customers"]).plan(spaced, INPUTS).columns == spaced.columns


class TestEnrich:
    def test_sql_is_a_left_join_and_a_changelog(self):
        view = Enrich("customers", on={"customer_id": "id"}, columns={"name": "customer_name"}).plan(ORDERS, INPUTS)
        assert view.query == ("SELECT u.`id`, u.`customer_id`, u.`status`, u.`amount`, l.`name` AS `customer_name` "
                              "FROM `orders` AS u LEFT JOIN `customers` AS l ON u.`customer_id` = l.`id`")
        assert view.columns[-1] == Column("customer_name", "STRING")
        assert view.changelog is True

    def test_missing_lookup_input(self):
        assert problems(Enrich("clients", on={"customer_id": "id"})) == [
            "no input named 'clients' to look up in (inputs: orders, customers, more_orders)"]

    def test_unknown_columns_on_both_sides_and_collisions(self):
        assert problems(Enrich("customers", on={"client": "cid"}, columns={"name": "status", "email": "e"})) == [
            "unknown column 'client' (columns: id, customer_id, status, amount)",
            "lookup unknown column 'cid' (columns: id, name, country)",
            "lookup unknown column 'email' (columns: id, name, country)",
            "new column 'status' is already a column",
        ]

    def test_join_columns_of_different_types(self):
        assert problems(Enrich("customers", on={"status": "id"})) == [
            "join column 'status' is STRING but lookup column 'id' is BIGINT"]


class TestAggregate:
    def test_sql_groups_and_casts_each_measure(self):
        step = Aggregate(["customer_id"], [Derive("orders", "COUNT(*)", "BIGINT"),
                                           Derive("total", "SUM(amount)", "DECIMAL(38, 2)")])
        view = step.plan(ORDERS, INPUTS)
        assert view.query == ("SELECT `customer_id`, CAST((COUNT(*)) AS BIGINT) AS `orders`, "
                              "CAST((SUM(amount)) AS DECIMAL(38, 2)) AS `total` FROM `orders` GROUP BY `customer_id`")
        assert names(view.columns) == ["customer_id", "orders", "total"]
        assert view.changelog is True

    def test_unknown_group_and_measure_columns(self):
        step = Aggregate(["client"], [Derive("client", "SUM(price)", "DECIMAL(38, 2)")])
        assert problems(step) == [
            "unknown column 'client' (columns: id, customer_id, status, amount)",
            "column 'client' appears twice in the result",
            "expression of 'client' (SUM(price)): unknown column 'price' (columns: id, customer_id, status, amount)",
        ]
        assert problems(Aggregate([], [])) == ["groups by no column", "computes no measure"]
