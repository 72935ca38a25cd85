"""airflow-mesh: Apache Airflow as the control plane of a data mesh.

Hooks, operators, sensors and triggers that deploy CDC connectors on Kafka Connect, run Flink
processors, keep Avro schema contracts and backfill datastores, orchestrated from Airflow DAGs.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("airflow-mesh")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
