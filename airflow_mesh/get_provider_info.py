"""Provider metadata that Airflow's ProvidersManager reads through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_mesh import __version__


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
        ],
        "hooks": [
            {"integration-name": "Kafka Connect", "python-modules": ["airflow_mesh.hooks.kafka_connect"]},
            {"integration-name": "Apache Flink (REST)", "python-modules": ["airflow_mesh.hooks.flink"]},
            {"integration-name": "Schema Registry", "python-modules": ["airflow_mesh.hooks.schema_registry"]},
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
        "connection-types": [
            {"hook-class-name": "airflow_mesh.hooks.kafka_connect.KafkaConnectHook", "connection-type": "kafka_connect"},
            {"hook-class-name": "airflow_mesh.hooks.flink.FlinkHook", "connection-type": "flink"},
            {"hook-class-name": "airflow_mesh.hooks.schema_registry.SchemaRegistryHook",
             "connection-type": "schema_registry"},
        ],
        "extra-links": [],
    }
