"""Keep the mesh's schema contracts: verify them, register them, and check what is on the topics.

1. ``verify_contracts``: every schema of ``schemas/`` against its subject in the schema registry, at the
   subject's compatibility level, and against the fields the declared consumers read; fails with the
   report of every problem.
2. ``register_schemas``: registers the schemas the registry does not have yet.
3. ``field_usage``: who reads which field of which topic (XCom, for a lineage view).
4. ``validate_records``: per topic with a contract, the newest records are checked against it (keys
   and values; Confluent wire format or Debezium's JSON); invalid ones are copied to
   ``<topic>.contract-dlq``. A topic that does not exist yet is skipped. No consumer offset moves.

Point ``MESH_SCHEMAS_DIR`` at another contracts folder to run the same DAG on it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.sdk import dag, task

from airflow_mesh.operators.contracts import (
    RegisterSchemasOperator,
    ValidateTopicRecordsOperator,
    VerifyContractsOperator,
)

SCHEMAS_DIR = os.environ.get("MESH_SCHEMAS_DIR", str(Path(__file__).resolve().parent.parent / "schemas"))
SAMPLE_SIZE = 500


@dag(dag_id="verify_contracts", schedule=None, catchup=False, tags=["airflow-mesh", "contracts"], doc_md=__doc__)
def verify_contracts():
    verified = VerifyContractsOperator(task_id="verify_contracts", schemas_path=SCHEMAS_DIR)
    registered = RegisterSchemasOperator(task_id="register_schemas", schemas_path=SCHEMAS_DIR)

    @task
    def field_usage() -> dict[str, Any]:
        from airflow_mesh.contracts.consumers import field_usage as usage_of
        from airflow_mesh.contracts.repository import load_repository

        return usage_of(load_repository(SCHEMAS_DIR))

    @task
    def topics_to_validate() -> list[dict[str, str]]:
        from airflow_mesh.contracts.repository import load_repository

        return [{"topic": topic, "dead_letter_topic": f"{topic}.contract-dlq"}
                for topic in load_repository(SCHEMAS_DIR).topics]

    validated = ValidateTopicRecordsOperator.partial(
        task_id="validate_records", schemas_path=SCHEMAS_DIR, max_records=SAMPLE_SIZE,
    ).expand_kwargs(topics_to_validate())

    verified >> registered >> validated
    verified >> field_usage()


verify_contracts_dag = verify_contracts()

if __name__ == "__main__":
    run = verify_contracts_dag.test()
    raise SystemExit(0 if run.state == "success" else 1)
