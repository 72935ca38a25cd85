"""Provider metadata that Airflow's ProvidersManager reads through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution
from typing import Any

from airflow_mesh import __version__
from airflow_mesh.hooks.forms import FLINK, KAFKA_CONNECT, MYSQL, SCHEMA_REGISTRY


def _official_provider_installed(conn_type: str) -> bool:
    """Whether Airflow's own provider of a connection type is installed (``mysql``: apache-airflow-providers-mysql)."""
    try:
        distribution(f"apache-airflow-providers-{conn_type}")
    except PackageNotFoundError:
        return False
    return True


def connection_types() -> list[dict[str, Any]]:
    """The ``connection-types`` of airflow-mesh, each with its form for Airflow's UI (``hook-name``,
    ``conn-fields``, ``ui-field-behaviour``; see ``airflow_mesh.hooks.forms``).

    ``mysql`` is declared only while Airflow's MySQL provider is absent (it needs mysqlclient, a C
    extension PyPI has as source only); with that provider installed, its MySqlHook serves the type.
    The other types the DAGs use come from Airflow's providers: ``kafka`` (apache-kafka), ``postgres``,
    ``elasticsearch``, ``iceberg`` (apache-iceberg).
    """
    types = [
        KAFKA_CONNECT.provider_info("kafka_connect", "airflow_mesh.hooks.kafka_connect.KafkaConnectHook"),
        FLINK.provider_info("flink", "airflow_mesh.hooks.flink.FlinkHook"),
        SCHEMA_REGISTRY.provider_info("schema_registry", "airflow_mesh.hooks.schema_registry.SchemaRegistryHook"),
    ]
    if not _official_provider_installed("mysql"):
        types.append(MYSQL.provider_info("mysql", "airflow_mesh.hooks.mysql.MySqlHook"))
    return types


def get_provider_info() -> dict[str, Any]:
    """Describe airflow-mesh to Airflow.

    Returns:
        The provider-info mapping (package name, name, description, versions, and the hooks,
        operators, sensors, triggers and connection types the package contributes).
    """
    return {
        "package-name": "airflow-mesh",
        "name": "Airflow Mesh",
        "description": "Airflow as the control plane of a data mesh: Debezium CDC connectors on Kafka Connect, "
        "Flink stream processors, Avro schema contracts and verified datastore backfills.",
        "versions": [__version__],
        "integrations": [
            {"integration-name": "Kafka Connect", "external-doc-url": "https://kafka.apache.org/documentation/#connect",
             "tags": ["apache"]},
            {"integration-name": "Apache Flink (REST)", "external-doc-url": "https://flink.apache.org/",
             "tags": ["apache"]},
            {"integration-name": "Backfills", "external-doc-url": "https://iceberg.apache.org/",
             "tags": ["software"]},
            {"integration-name": "Schema Registry",
             "external-doc-url": "https://docs.confluent.io/platform/current/schema-registry/develop/api.html",
             "tags": ["software"]},
            {"integration-name": "Debezium",
             "external-doc-url": "https://debezium.io/documentation/reference/stable/configuration/signalling.html",
             "tags": ["software"]},
            {"integration-name": "MariaDB / MySQL", "external-doc-url": "https://pymysql.readthedocs.io/",
             "tags": ["software"]},
            {"integration-name": "Kafka topics",
             "external-doc-url": "https://docs.confluent.io/platform/current/clients/confluent-kafka-python/html/index.html",
             "tags": ["apache"]},
        ],
        "hooks": [
            {"integration-name": "Kafka Connect", "python-modules": ["airflow_mesh.hooks.kafka_connect"]},
            {"integration-name": "Apache Flink (REST)", "python-modules": ["airflow_mesh.hooks.flink"]},
            {"integration-name": "Schema Registry", "python-modules": ["airflow_mesh.hooks.schema_registry"]},
            {"integration-name": "MariaDB / MySQL", "python-modules": ["airflow_mesh.hooks.mysql"]},
            {"integration-name": "Debezium", "python-modules": ["airflow_mesh.hooks.debezium"]},
            {"integration-name": "Kafka topics", "python-modules": ["airflow_mesh.hooks.kafka"]},
        ],
        "operators": [
            {"integration-name": "Kafka Connect", "python-modules": ["airflow_mesh.operators.kafka_connect"]},
            {"integration-name": "Backfills", "python-modules": ["airflow_mesh.operators.backfill"]},
            {"integration-name": "Debezium", "python-modules": ["airflow_mesh.operators.debezium"]},
            {"integration-name": "Schema Registry", "python-modules": ["airflow_mesh.operators.contracts"]},
            {"integration-name": "Apache Flink (REST)", "python-modules": ["airflow_mesh.operators.flink"]},
        ],
        "sensors": [
            {"integration-name": "Kafka Connect", "python-modules": ["airflow_mesh.sensors.kafka_connect"]},
            {"integration-name": "Debezium", "python-modules": ["airflow_mesh.sensors.debezium"]},
            {"integration-name": "Apache Flink (REST)", "python-modules": ["airflow_mesh.sensors.flink"]},
        ],
        "triggers": [
            {"integration-name": "Kafka Connect", "python-modules": ["airflow_mesh.triggers.kafka_connect"]},
            {"integration-name": "Debezium", "python-modules": ["airflow_mesh.triggers.debezium"]},
            {"integration-name": "Apache Flink (REST)", "python-modules": ["airflow_mesh.triggers.flink"]},
        ],
        "connection-types": connection_types(),
        "extra-links": [],
    }
