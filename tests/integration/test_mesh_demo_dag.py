"""The demo DAG runs green end to end under dag.test() against the real stack."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "mesh_demo.py"


def _load_dag():
    spec = importlib.util.spec_from_file_location("mesh_demo", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.demo_dag


def test_mesh_demo_dag_succeeds(airflow_db):
    dag = _load_dag()
    dag_run = dag.test(run_conf={"orders": 30, "threshold": 120})
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states
    assert set(states.values()) == {"success"}
    assert set(states) == {"create_topics", "submit_processor", "produce_orders", "read_results", "clean_up"}
