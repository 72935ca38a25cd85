"""From a connection's fields (an Airflow connection, or a URI on the command line) to a source or target.

The connection type decides the datastore: ``postgres``, ``mysql`` (MariaDB or MySQL), ``iceberg``
(extra ``catalog``: pyiceberg catalog properties), ``elasticsearch``, ``kafka`` (extra: librdkafka
settings with ``bootstrap.servers``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from airflow_mesh.backfill.errors import PlanError
from airflow_mesh.backfill.sources import DatabaseLocation, IcebergSource, MariaDbSource, PostgresSource, Source
from airflow_mesh.backfill.targets import ElasticsearchTarget, IcebergTarget, KafkaTarget, PostgresTarget, Target

SOURCE_KINDS = ("postgres", "mysql", "iceberg")
TARGET_KINDS = ("postgres", "iceberg", "elasticsearch", "kafka")
_SCHEME_ALIASES = {"postgresql": "postgres", "mariadb": "mysql", "es": "elasticsearch", "http": "elasticsearch"}


@dataclass(frozen=True)
class ConnectionFields:
    """The fields of an Airflow connection that locate a datastore."""

    conn_type: str
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = None
    schema: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_uri(cls, uri: str) -> ConnectionFields:
        """Parse ``postgresql://user:pw@host:5432/db`` (query parameters become extras;
        ``extra=<json>`` is read as JSON)."""
        parts = urlsplit(uri)
        extra: dict[str, Any] = {}
        for name, value in parse_qsl(parts.query):
            extra.update(json.loads(value) if name == "extra" else {name: value})
        kind = _SCHEME_ALIASES.get(parts.scheme, parts.scheme)
        return cls(kind, parts.hostname, parts.port, unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None, parts.path.lstrip("/") or None, extra)

    def location(self) -> DatabaseLocation:
        missing = [n for n in ("host", "login", "schema") if not getattr(self, n)]
        if missing:
            raise PlanError(f"{self.conn_type} connection lacks {', '.join(missing)} (schema = the database)")
        default_port = 5432 if self.conn_type == "postgres" else 3306
        return DatabaseLocation(self.host, self.port or default_port, self.login, self.password or "", self.schema)

    def iceberg_catalog(self) -> dict[str, str]:
        catalog = self.extra.get("catalog")
        if isinstance(catalog, str):
            catalog = json.loads(catalog)
        if not catalog:
            raise PlanError("iceberg connection needs an extra 'catalog' with pyiceberg catalog properties, "
                            'e.g. {"type": "sql", "uri": "sqlite:///catalog.db", "warehouse": "file:///warehouse"}')
        return catalog


def make_source(conn: ConnectionFields) -> Source:
    """The source for a connection.

    Raises:
        PlanError: the connection's type cannot be a source.
    """
    if conn.conn_type == "postgres":
        return PostgresSource(conn.location())
    if conn.conn_type == "mysql":
        return MariaDbSource(conn.location())
    if conn.conn_type == "iceberg":
        return IcebergSource(conn.iceberg_catalog())
    raise PlanError(f"a {conn.conn_type!r} connection cannot be a backfill source (one of {', '.join(SOURCE_KINDS)})")


def make_target(conn: ConnectionFields, name: str) -> Target:
    """The target for a connection and a table, index or topic name.

    Raises:
        PlanError: the connection's type cannot be a target.
    """
    if conn.conn_type == "postgres":
        return PostgresTarget(conn.location(), name)
    if conn.conn_type == "iceberg":
        return IcebergTarget(conn.iceberg_catalog(), name)
    if conn.conn_type == "elasticsearch":
        from elasticsearch import Elasticsearch

        auth = (conn.login, conn.password or "") if conn.login else None
        scheme = conn.extra.get("scheme") or ("https" if conn.extra.get("use_ssl") else "http")
        client = Elasticsearch(f"{scheme}://{conn.host}:{conn.port or 9200}", basic_auth=auth, request_timeout=120)
        return ElasticsearchTarget(client, name)
    if conn.conn_type == "kafka":
        config = {k: v for k, v in conn.extra.items() if "." in k}
        if "bootstrap.servers" not in config:
            raise PlanError("kafka connection needs 'bootstrap.servers' in its extra")
        return KafkaTarget(config, name)
    raise PlanError(f"a {conn.conn_type!r} connection cannot be a backfill target (one of {', '.join(TARGET_KINDS)})")
