"""What each target accepts as a name, checked before anything is contacted.

Names are quoted wherever they reach SQL (``sqltext``); these checks refuse names that are surely a
mistake (``orders; DROP TABLE x``, ``"bad name!"``) or that the store would refuse later with a
less clear message, and say what a good name looks like.
"""

from __future__ import annotations

import re

from airflow_mesh.backfill.errors import PlanError

_SQL_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_ICEBERG_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]+$")
_INDEX_FORBIDDEN = set('\\/*?"<>| ,#:')


def postgres_table(name: str) -> str:
    """A PostgreSQL target: ``schema.table`` or ``table``, each part a letter or ``_`` then letters,
    digits, ``_`` or ``$``, at most 63 bytes (PostgreSQL's limit; longer names are cut silently).

    Raises:
        PlanError: naming the problem and what a good name looks like.
    """
    parts = name.split(".")
    if len(parts) > 2 or not all(_SQL_PART.match(p) for p in parts):
        raise PlanError(f"PostgreSQL target name {name!r}: use schema.table or table, each part letters, digits, "
                        "_ or $ and not starting with a digit (e.g. public.orders_copy)")
    long = [p for p in parts if len(p.encode()) > 63]
    if long:
        raise PlanError(f"PostgreSQL target name {name!r}: {long[0]!r} is longer than PostgreSQL's 63 bytes")
    return name


def iceberg_table(name: str) -> str:
    """An Iceberg target: ``namespace.table`` (namespaces may nest: ``a.b.table``), each part letters,
    digits and ``_``, not starting with a digit.

    Raises:
        PlanError: naming the problem and what a good name looks like.
    """
    parts = name.split(".")
    if len(parts) < 2 or not all(_ICEBERG_PART.match(p) for p in parts):
        raise PlanError(f"Iceberg target name {name!r}: use namespace.table, each part letters, digits or _ and "
                        "not starting with a digit (e.g. mesh.orders)")
    return name


def elasticsearch_index(name: str) -> str:
    """An Elasticsearch target: Elasticsearch's index-name rules (lowercase; none of
    ``\\ / * ? " < > | , # :`` or a space; not starting with ``-``, ``_`` or ``+``; not ``.`` or
    ``..``; at most 255 bytes).

    Raises:
        PlanError: naming the rule broken.
    """
    problem = None
    if not name or name in (".", ".."):
        problem = "it is empty, '.' or '..'"
    elif name != name.lower():
        problem = "Elasticsearch index names are lowercase"
    elif forbidden := sorted(set(name) & _INDEX_FORBIDDEN):
        problem = f"it holds {' '.join(repr(c) for c in forbidden)}"
    elif name[0] in "-_+":
        problem = f"it starts with {name[0]!r}"
    elif len(name.encode()) > 255:
        problem = "it is longer than 255 bytes"
    if problem:
        raise PlanError(f"Elasticsearch index name {name!r}: {problem} (e.g. orders_copy)")
    return name


def kafka_topic(name: str) -> str:
    """A Kafka target: Kafka's topic-name rules (letters, digits, ``.``, ``_``, ``-``; 1 to 249
    characters; not ``.`` or ``..``).

    Raises:
        PlanError: naming the rule broken.
    """
    if not _TOPIC.match(name) or name in (".", "..") or len(name) > 249:
        raise PlanError(f"Kafka topic name {name!r}: use 1 to 249 letters, digits, '.', '_' or '-' "
                        "(e.g. backfill.orders)")
    return name
