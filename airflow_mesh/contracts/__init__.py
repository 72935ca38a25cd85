"""Data contracts: checks that schema changes keep producers and consumers compatible."""

from airflow_mesh.contracts.avro_compat import (
    AvroCompatibilityError,
    CompatibilityLevel,
    Direction,
    Incompatibility,
    InvalidSchemaError,
    SchemaInput,
    check_can_read,
    check_compatibility,
)

__all__ = [
    "AvroCompatibilityError",
    "CompatibilityLevel",
    "Direction",
    "Incompatibility",
    "InvalidSchemaError",
    "SchemaInput",
    "check_can_read",
    "check_compatibility",
]
