"""The backfill_ui trigger form: submittable with its defaults, and a bad value says why.

Airflow 3.3's React trigger form marks a param as required when its schema has a ``type`` that is
not a list containing ``"null"`` (``isParamRequired.tsx``), and disables Trigger while a required
param is ``null`` or ``""``; the value is then validated by Airflow's ``Param``/``ParamsDict``
(JSON schema) when the run is created. These tests apply both rules to the DAG's own params.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import structlog
from airflow.sdk.exceptions import ParamValidationError
from airflow.serialization.serialized_objects import DagSerialization

from airflow_mesh.backfill.kafka_target import KafkaTarget
from airflow_mesh.backfill.targets import ElasticsearchTarget, IcebergTarget, PostgresTarget

ROOT = Path(__file__).resolve().parents[2]
# One connection per target kind, as a user would pick them in the form.
TARGETS = {
    "iceberg": ("iceberg_ui_test", "mesh.orders", IcebergTarget),
    "postgres": ("postgres_ui_test", "public.orders_copy", PostgresTarget),
    "elasticsearch": ("elasticsearch_ui_test", "orders", ElasticsearchTarget),
    "kafka": ("kafka_ui_test", "mesh.orders.backfill", KafkaTarget),
}


@pytest.fixture(scope="module")
def dag():
    spec = importlib.util.spec_from_file_location("backfill_ui_form_test", ROOT / "dags" / "backfill_ui.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.backfill_ui_dag


@pytest.fixture(scope="module")
def served(dag) -> dict[str, dict[str, Any]]:
    """Each param as the API server hands it to the trigger form: the DAG serialized, as the
    dag-processor stores it, then read back as the server does (value, schema, description)."""
    params = DagSerialization.from_dict(DagSerialization.to_dict(dag)).params
    return {name: params.get_param(name).dump() for name in params}


@pytest.fixture
def connections(tmp_path, monkeypatch) -> None:
    """A connection of each target kind (and a source and a registry) as AIRFLOW_CONN_ variables;
    nothing is contacted: building a target opens no connection (Iceberg: a SQLite catalog in tmp_path)."""
    catalog = {"type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/wh"}
    database = {"host": "127.0.0.1", "port": 5432, "login": "mesh", "password": "mesh", "schema": "mesh"}
    defined = {
        "postgres_ui_source": {"conn_type": "postgres", **database},
        "iceberg_ui_test": {"conn_type": "iceberg", "extra": {"catalog": catalog}},
        "postgres_ui_test": {"conn_type": "postgres", **database},
        "elasticsearch_ui_test": {"conn_type": "elasticsearch", "host": "127.0.0.1", "port": 9200},
        "kafka_ui_test": {"conn_type": "kafka", "extra": {"bootstrap.servers": "127.0.0.1:9092"}},
        "schema_registry_default": {"conn_type": "schema_registry", "host": "127.0.0.1", "port": 8085,
                                    "schema": "http", "extra": {"api_path": "/apis/ccompat/v7"}},
    }
    for conn_id, fields in defined.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def ui_required(schema: dict[str, Any]) -> bool:
    """The trigger form's rule (isParamRequired.tsx): a type that does not admit null."""
    kind = schema.get("type")
    return bool(kind) and not (isinstance(kind, list) and "null" in kind)


def validated(dag, conf: dict[str, Any]) -> dict[str, Any]:
    """The params as the API server resolves them when it creates a run triggered with ``conf``
    (``SerializedDAG.create_dagrun``: ``params.deep_merge(conf).validate()``)."""
    return DagSerialization.from_dict(DagSerialization.to_dict(dag)).params.deep_merge(conf).validate()


def rendered_operator(dag, conf: dict[str, Any]):
    """A copy of the plan task with its template fields rendered by Airflow for a run of ``conf``."""
    import copy

    task = copy.deepcopy(dag.get_task("plan"))
    task.render_template_fields({"params": validated(dag, conf)}, jinja_env=dag.get_template_env())
    return task


def test_no_param_is_required_and_empty_by_default(served):
    blocking = [name for name, param in served.items()
                if ui_required(param["schema"]) and param["value"] in (None, "")]
    assert blocking == [], f"the trigger form shows these as required and empty, and disables Trigger: {blocking}"


def test_optional_params_are_nullable_and_default_to_none(served):
    optional = {"key", "where", "cursor_column", "schema_registry_conn_id", "value_format"}
    for name in optional:
        assert served[name]["value"] is None, name
        assert "null" in served[name]["schema"]["type"], name


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_the_defaults_validate_for_every_target_kind(dag, kind):
    conn_id, name, _ = TARGETS[kind]
    values = validated(dag, {"target_conn_id": conn_id, "target_name": name})
    assert values["target_conn_id"] == conn_id and values["range_size"] == dag.params["range_size"]


def test_every_param_has_a_title_a_section_and_a_description(served):
    for name, param in served.items():
        assert param["schema"].get("title"), name
        assert param["schema"].get("section"), name
        assert param["description"], name


def test_numeric_bounds_are_stated_in_the_description(served):
    """The form shows no message for an out-of-range number: its description has to say the bounds."""
    bounded = {name: param for name, param in served.items() if "minimum" in param["schema"]}
    assert bounded
    for name, param in bounded.items():
        for bound in (param["schema"]["minimum"], param["schema"]["maximum"]):
            assert str(bound) in param["description"] or f"{bound:,}" in param["description"], (name, bound)


@pytest.mark.parametrize(("conf", "reason"), [
    ({"range_size": -5}, r"-5 is less than the minimum of 1"),
    ({"range_size": 0}, r"0 is less than the minimum of 1"),
    ({"parallelism": 65}, r"65 is greater than the maximum of 64"),
    ({"table": "orders; drop table x"}, r"does not match"),
    ({"value_format": "xml"}, r"'xml' is not one of"),
    ({"mode": "sideways"}, r"'sideways' is not one of"),
    ({"target_name": ""}, r"should be non-empty|is too short"),
])
def test_a_bad_value_is_refused_saying_why(dag, conf, reason):
    with pytest.raises(ParamValidationError, match=reason):
        validated(dag, conf)


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_the_form_defaults_make_a_target_of_every_kind(dag, connections, kind):
    conn_id, name, target_class = TARGETS[kind]
    task = rendered_operator(dag, {"source_conn_id": "postgres_ui_source", "target_conn_id": conn_id,
                                   "target_name": name})
    _, target = task.endpoints()
    assert isinstance(target, target_class)
    if kind == "kafka":
        assert target.value_format == "json"


@pytest.mark.parametrize("kind", ["iceberg", "postgres", "elasticsearch"])
def test_kafka_options_left_filled_for_another_target_are_ignored_with_one_warning(dag, connections, kind):
    conn_id, name, target_class = TARGETS[kind]
    task = rendered_operator(dag, {"source_conn_id": "postgres_ui_source", "target_conn_id": conn_id,
                                   "target_name": name, "schema_registry_conn_id": "schema_registry_default",
                                   "value_format": "avro"})
    with structlog.testing.capture_logs() as logs:  # the task logger of Airflow 3 is structlog's
        _, target = task.endpoints()
    assert isinstance(target, target_class)
    warnings = [log["event"] for log in logs if log["log_level"] == "warning"]
    assert len(warnings) == 1, logs
    message = warnings[0]
    assert "ignored" in message.lower()
    assert "schema_registry_default" in message and "avro" in message and kind in message


def test_kafka_options_still_apply_to_a_kafka_target(dag, connections):
    conn_id, name, _ = TARGETS["kafka"]
    task = rendered_operator(dag, {"source_conn_id": "postgres_ui_source", "target_conn_id": conn_id,
                                   "target_name": name, "value_format": "avro",
                                   "schema_registry_conn_id": "schema_registry_default"})
    _, target = task.endpoints()
    assert target.value_format == "avro"


@pytest.mark.parametrize("flags", [["--schema-registry", "http://127.0.0.1:1"], ["--value-format", "avro"]])
def test_the_cli_still_refuses_kafka_options_for_another_target(tmp_path, flags):
    """Only the form's operator forgives them (a form keeps what was typed); flags on a command line are meant."""
    import subprocess
    import sys

    catalog = {"type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/wh"}
    result = subprocess.run(
        [sys.executable, "-m", "airflow_mesh.backfill", "--source", "postgresql://u:p@127.0.0.1:1/db",
         "--table", "public.orders", "--target", f"iceberg://?extra={json.dumps({'catalog': catalog})}",
         "--target-name", "mesh.orders", *flags], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0
    assert "kafka targets only" in " ".join(result.stderr.split())
    assert not (tmp_path / "catalog.db").exists()
