"""From a connection's fields (an Airflow connection, or a URI on the command line) to a source or target.

The connection type decides the datastore: ``postgres``, ``mysql`` (MariaDB or MySQL), ``iceberg``
(extra ``catalog``: pyiceberg catalog properties), ``elasticsearch``, ``kafka`` (extra: librdkafka
settings with ``bootstrap.servers``).

A Kafka target writes JSON, or Avro when it is given a schema registry: a ``schema_registry``
connection (host, port, scheme; login/password for basic auth; extra ``api_path``, e.g.
``/apis/ccompat/v7`` for Apicurio, and ``verify``/``cert``/``key`` for TLS), or its URL on the
command line. The format is the target's option, not the Kafka connection's: Airflow's Kafka
provider hands that connection's extra to librdkafka as it is, where any other key is an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from airflow_mesh.backfill import names
from airflow_mesh.backfill.errors import PlanError
from airflow_mesh.backfill.explain import at
from airflow_mesh.backfill.kafka_target import VALUE_FORMATS, KafkaTarget
from airflow_mesh.backfill.sources import DatabaseLocation, IcebergSource, MariaDbSource, PostgresSource, Source
from airflow_mesh.backfill.targets import ElasticsearchTarget, IcebergTarget, PostgresTarget, Target

SOURCE_KINDS = ("postgres", "mysql", "iceberg")
TARGET_KINDS = ("postgres", "iceberg", "elasticsearch", "kafka")
_SCHEME_ALIASES = {"postgresql": "postgres", "mariadb": "mysql", "es": "elasticsearch", "http": "elasticsearch",
                   "https": "elasticsearch", "ess": "elasticsearch"}
# librdkafka settings spelled without a dot that a Kafka connection's extra may carry.
_UNDOTTED_KAFKA_SETTINGS = frozenset({"acks", "debug", "partitioner", "retries"})


@dataclass(frozen=True)
class ConnectionFields:
    """The fields of an Airflow connection that locate a datastore."""

    conn_type: str | None  # None: an Airflow connection without a type (refused as a source or target)
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
        if parts.scheme in ("https", "ess"):  # Elasticsearch over TLS
            extra.setdefault("scheme", "https")
        return cls(kind, parts.hostname, parts.port, unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None, parts.path.lstrip("/") or None, extra)

    def location(self) -> DatabaseLocation:
        missing = [n for n in ("host", "login", "schema") if not getattr(self, n)]
        if missing or not self.host or not self.login or not self.schema:
            raise PlanError(f"{self.conn_type} connection lacks {', '.join(missing)} (schema = the database)")
        default_port = 5432 if self.conn_type == "postgres" else 3306
        return DatabaseLocation(self.host, self.port or default_port, self.login, self.password or "", self.schema)

    def iceberg_catalog(self) -> dict[str, str]:
        """The pyiceberg catalog properties of an ``iceberg`` connection, in either of its two shapes.

        airflow-mesh's: the extra ``catalog`` holds the properties (e.g. the stack's SQLite catalog).
        Airflow's Iceberg provider's (its form): host = the catalog's URI, login/password = the
        OAuth2 client id and secret (pyiceberg's ``credential``), the other extras = further
        properties; the type is ``rest`` unless the extra names another (e.g. ``sql`` with its ``uri``).

        Raises:
            PlanError: neither shape locates a catalog, or only one of client id and secret is given.
        """
        catalog = self.extra.get("catalog")
        if isinstance(catalog, str):
            catalog = json.loads(catalog)
        if catalog:
            return dict(catalog)
        properties = {key: value for key, value in self.extra.items() if key != "catalog" and value is not None}
        if self.host:
            properties["uri"] = self.host.rstrip("/")
        properties.setdefault("type", "rest")
        if properties["type"] == "rest" and not properties.get("uri"):
            raise PlanError("iceberg connection locates no catalog: fill in its Catalog URI (host) for a REST catalog, "
                            'or give pyiceberg catalog properties in the extra, e.g. {"catalog": {"type": "sql", '
                            '"uri": "sqlite:///catalog.db", "warehouse": "file:///warehouse"}}')
        if properties["type"] == "rest" and (self.login or self.password):
            if not (self.login and self.password):
                raise PlanError("iceberg connection: give both Client ID and Client Secret (login and password, "
                                "OAuth2 credentials of the REST catalog), or neither")
            properties["credential"] = f"{self.login}:{self.password}"
        return properties


def _local_catalog_folders(catalog: dict[str, str]) -> None:
    """Create the folder of an embedded SQLite catalog (and of a local warehouse) when missing, as a
    fresh local setup expects; a server catalog is left alone."""
    uri, warehouse = str(catalog.get("uri", "")), str(catalog.get("warehouse", ""))
    if uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if warehouse.startswith("file://"):
        Path(urlsplit(warehouse).path).mkdir(parents=True, exist_ok=True)


def make_source(conn: ConnectionFields) -> Source:
    """The source for a connection.

    Raises:
        PlanError: the connection's type cannot be a source.
        SourceError: the source cannot be opened (e.g. an Iceberg catalog that does not answer).
    """
    if conn.conn_type == "postgres":
        return PostgresSource(conn.location())
    if conn.conn_type == "mysql":
        return MariaDbSource(conn.location())
    if conn.conn_type == "iceberg":
        catalog = conn.iceberg_catalog()
        with at("source", f"iceberg://{catalog.get('uri', '')}", "opening the catalog"):
            return IcebergSource(catalog)
    raise PlanError(f"a {conn.conn_type!r} connection cannot be a backfill source (one of {', '.join(SOURCE_KINDS)})")


def schema_registry_from_url(url: str) -> ConnectionFields:
    """A schema registry given by its API's URL, e.g. ``https://user:pw@registry:8081`` or
    ``http://127.0.0.1:8085/apis/ccompat/v7`` (the path is the extra ``api_path``).

    Raises:
        PlanError: not an http(s) URL with a host.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PlanError(f"schema registry URL {url!r} is not an http(s) URL with a host")
    extra = {"api_path": parts.path.rstrip("/")} if parts.path.rstrip("/") else {}
    return ConnectionFields("schema_registry", parts.hostname, parts.port,
                            unquote(parts.username) if parts.username else None,
                            unquote(parts.password) if parts.password else None, parts.scheme, extra)


def schema_registry_settings(conn: ConnectionFields) -> dict[str, Any]:
    """KafkaTarget's registry arguments for a schema registry connection (as SchemaRegistryHook reads it).

    Returns:
        ``schema_registry_url``, ``schema_registry_auth`` and ``schema_registry_config``.

    Raises:
        PlanError: the connection has no host, a bad ``api_path``, or ``verify`` false (the
            registry client checks certificates; give it the CA bundle's path instead).
    """
    if not conn.host:
        raise PlanError("schema registry connection lacks a host")
    from airflow_mesh.contracts.registry_location import registry_url  # the contracts package loads fastavro

    try:
        url = registry_url(conn.schema, conn.host, conn.port, conn.extra.get("api_path"))
    except ValueError as exc:
        raise PlanError(f"schema registry connection: {exc}") from None
    config: dict[str, Any] = {}
    verify = conn.extra.get("verify", True)
    if verify is False or str(verify).lower() == "false":
        raise PlanError("schema registry connection: extra 'verify' false is not supported by the backfill's "
                        "registry client; set it to the path of the CA bundle that signed the registry's certificate")
    if isinstance(verify, str) and verify.lower() != "true":
        config["ssl.ca.location"] = verify
    if conn.extra.get("cert"):
        config["ssl.certificate.location"] = conn.extra["cert"]
    if conn.extra.get("key"):
        config["ssl.key.location"] = conn.extra["key"]
    auth = (conn.login, conn.password or "") if conn.login else None
    return {"schema_registry_url": url, "schema_registry_auth": auth, "schema_registry_config": config}


def kafka_value_format(value_format: str | None, schema_registry: ConnectionFields | None) -> str:
    """The value format of a Kafka target: the one asked for, else Avro when a registry is named,
    else JSON.

    Raises:
        PlanError: an unknown format, or Avro without a registry.
    """
    chosen = (value_format or "").strip().lower() or ("avro" if schema_registry is not None else "json")
    if chosen not in VALUE_FORMATS:
        raise PlanError(f"value format {value_format!r} is not one of {', '.join(VALUE_FORMATS)}")
    if chosen == "avro" and schema_registry is None:
        raise PlanError("value format avro needs a schema registry (a schema_registry connection, or its URL)")
    return chosen


def make_target(conn: ConnectionFields, name: str, value_format: str | None = None,
                schema_registry: ConnectionFields | None = None) -> Target:
    """The target for a connection and a table, index or topic name.

    Args:
        conn: The target's connection.
        name: The table, index or topic.
        value_format: For a Kafka target: ``json`` or ``avro``; None or empty: Avro when
            ``schema_registry`` is given, else JSON.
        schema_registry: For a Kafka target in Avro: the registry its schemas go to.

    Returns:
        The target (nothing is contacted yet).

    Raises:
        PlanError: the connection's type cannot be a target, or the Kafka options are bad (or given
            to a target that is not Kafka).
    """
    if conn.conn_type != "kafka" and ((value_format or "").strip() or schema_registry is not None):
        raise PlanError(f"a value format and a schema registry apply to kafka targets only, not to {conn.conn_type!r}")
    if conn.conn_type == "postgres":
        return PostgresTarget(conn.location(), name)
    if conn.conn_type == "iceberg":
        catalog = conn.iceberg_catalog()
        names.iceberg_table(name)  # before anything is created
        _local_catalog_folders(catalog)
        with at("target", f"iceberg://{catalog.get('uri', '')}", "opening the catalog"):
            return IcebergTarget(catalog, name)
    if conn.conn_type == "elasticsearch":
        from elasticsearch import Elasticsearch

        auth = (conn.login, conn.password or "") if conn.login else None
        # Airflow's Elasticsearch form keeps the scheme in its Schema field; older connections in the extra.
        scheme = (conn.schema if conn.schema in ("http", "https") else None) or conn.extra.get("scheme") \
            or ("https" if str(conn.extra.get("use_ssl", "")).lower() in ("1", "true") else "http")
        client = Elasticsearch(f"{scheme}://{conn.host}:{conn.port or 9200}", basic_auth=auth, request_timeout=120)
        return ElasticsearchTarget(client, name)
    if conn.conn_type == "kafka":
        config = {k: v for k, v in conn.extra.items() if "." in k or k in _UNDOTTED_KAFKA_SETTINGS}
        if "bootstrap.servers" not in config:
            raise PlanError("kafka connection needs 'bootstrap.servers' in its extra")
        chosen = kafka_value_format(value_format, schema_registry)
        if chosen == "avro" and schema_registry is not None:  # kafka_value_format refused avro without a registry
            return KafkaTarget(config, name, value_format="avro", **schema_registry_settings(schema_registry))
        return KafkaTarget(config, name)
    raise PlanError(f"a {conn.conn_type!r} connection cannot be a backfill target (one of {', '.join(TARGET_KINDS)})")
