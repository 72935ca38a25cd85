"""Connector specs: validation before any side effect, rendering, change detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_mesh.connectors.spec import (
    ConnectionInfo,
    SpecError,
    config_changes,
    describe_changes,
    load_spec,
    load_specs,
    render_config,
    secret_values,
    validation_errors,
)

ROOT = Path(__file__).resolve().parents[3]
PG = "io.debezium.connector.postgresql.PostgresConnector"
CONNECTIONS = {
    "pg": ConnectionInfo("db.internal", 5432, "cdc", "s3cret", "orders"),
    "maria": ConnectionInfo("maria.internal", 3306, "cdc", "s3cret", None),
}


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_specs_are_valid():
    specs = load_specs(ROOT / "connectors")
    assert {s.name for s in specs} == {"mesh-postgres-cdc", "mesh-mariadb-cdc"}
    pg = next(s for s in specs if s.name == "mesh-postgres-cdc")
    assert pg.config["plugin.name"] == "pgoutput"
    assert pg.config["publication.autocreate.mode"] == "filtered"
    assert int(pg.config["heartbeat.interval.ms"]) > 0
    assert pg.config["signal.data.collection"] == "public.debezium_signal"


def test_render_fills_database_settings_from_the_connection(tmp_path):
    spec = load_spec(write(tmp_path, f"""
name: orders-cdc
class: {PG}
database: {{conn_id: pg}}
config: {{topic.prefix: orders, tasks.max: 1, include.schema.changes: false}}
"""))
    config = render_config(spec, CONNECTIONS.__getitem__)
    assert config == {
        "name": "orders-cdc", "connector.class": PG, "topic.prefix": "orders", "tasks.max": "1",
        "include.schema.changes": "false", "database.hostname": "db.internal", "database.port": "5432",
        "database.user": "cdc", "database.password": "s3cret", "database.dbname": "orders",
    }
    assert secret_values(config) == ["s3cret"]


def test_render_sends_a_config_provider_reference_instead_of_the_password(tmp_path):
    spec = load_spec(write(tmp_path, """
name: ship-cdc
class: io.debezium.connector.mariadb.MariaDbConnector
database: {conn_id: maria, password: "${env:DB_PASSWORD}"}
config: {topic.prefix: ship}
"""))
    config = render_config(spec, CONNECTIONS.__getitem__)
    assert config["database.password"] == "${env:DB_PASSWORD}"
    assert "database.dbname" not in config
    assert secret_values(config) == []


def test_render_names_the_missing_connection_field(tmp_path):
    spec = load_spec(write(tmp_path, f"name: a\nclass: {PG}\ndatabase: {{conn_id: pg}}\n"))
    with pytest.raises(SpecError, match=r"database.conn_id: connection 'pg' has no schema"):
        render_config(spec, lambda _: ConnectionInfo("h", 1, "u", "p", None))


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("name: a\nconfig: {}\n", "class", "Field required"),
        (f"name: a\nclass: {PG}\nconfg: {{}}\n", "confg", "Extra inputs are not permitted"),
        (f"name: a\nclass: {PG}\nconfig: {{database.password: hunter2}}\n", "config.database.password",
         "secret written inline"),
        (f"name: a\nclass: {PG}\nconfig: {{sasl.jaas.config: 'x required;'}}\n", "config.sasl.jaas.config",
         "secret written inline"),
        (f"name: a\nclass: {PG}\ndatabase: {{conn_id: pg, password: hunter2}}\n", "database.password",
         "config-provider reference"),
        (f"name: a\nclass: {PG}\ndatabase: {{conn_id: pg}}\nconfig: {{database.hostname: x}}\n",
         "config.database.hostname", "filled from connection 'pg'"),
        (f"name: a b\nclass: {PG}\n", "name", "may hold only letters"),
        (f"name: a\nclass: {PG}\nconfig: {{connector.class: other}}\n", "config.connector.class", "spec's `class`"),
        ("name: a\nclass: com.example.Sink\ndatabase: {conn_id: pg}\n", "database", "cannot fill database"),
        (f"name: a\nclass: {PG}\nconfig: {{tasks.max: [1]}}\n", "config.tasks.max", "valid"),
    ],
)
def test_bad_specs_name_file_field_and_reason(tmp_path, text, field, reason):
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as excinfo:
        load_spec(path)
    message = str(excinfo.value)
    assert message.startswith(f"{path}: ")
    assert any(f == field or f.startswith(field + ".") for f, _ in excinfo.value.problems), excinfo.value.problems
    assert reason in message


def test_secret_from_a_config_provider_is_allowed(tmp_path):
    text = f"name: a\nclass: {PG}\nconfig: {{database.password: '${{dir:/run/secrets:pg}}'}}\n"
    spec = load_spec(write(tmp_path, text))
    assert spec.config["database.password"] == "${dir:/run/secrets:pg}"


def test_malformed_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "name: a\nclass: [unclosed\n")
    with pytest.raises(SpecError, match=rf"{path}: malformed YAML at line \d+"):
        load_spec(path)


def test_a_spec_must_be_a_mapping(tmp_path):
    with pytest.raises(SpecError, match="must be a mapping, got list"):
        load_spec(write(tmp_path, "- a\n- b\n"))


def test_folder_reports_every_bad_file_and_duplicate_names(tmp_path):
    write(tmp_path, f"name: dup\nclass: {PG}\n", "a.yaml")
    write(tmp_path, f"name: dup\nclass: {PG}\n", "b.yaml")
    write(tmp_path, "name: c\n", "c.yml")
    with pytest.raises(SpecError) as excinfo:
        load_specs(tmp_path)
    message = str(excinfo.value)
    assert "c.yml: class: Field required" in message
    assert "b.yaml: name: connector 'dup' is also declared in" in message


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(SpecError, match="no connector spec"):
        load_specs(tmp_path)


def test_config_changes_and_their_log_safe_description():
    current = {"name": "a", "tasks.max": "1", "database.password": "old", "gone": "x"}
    desired = {"name": "a", "tasks.max": "2", "database.password": "new"}
    changes = config_changes(desired, current)
    assert changes == {"tasks.max": ("1", "2"), "database.password": ("old", "new"), "gone": ("x", None)}
    text = describe_changes(changes)
    assert "tasks.max: '1' -> '2'" in text and "database.password (secret changed)" in text
    assert "old" not in text and "new" not in text
    assert config_changes(desired, dict(desired)) == {}


def test_validation_errors_picks_each_invalid_field():
    answer = {"error_count": 2, "configs": [
        {"value": {"name": "topic.prefix", "errors": ["Missing required configuration"]}},
        {"value": {"name": "slot.name", "errors": []}},
        {"definition": {"name": "transforms"}, "value": None},
        {"value": {"name": "snapshot.mode", "errors": ["Value must be one of initial, never"]}},
    ]}
    assert validation_errors(answer) == {
        "topic.prefix": ["Missing required configuration"],
        "snapshot.mode": ["Value must be one of initial, never"],
    }
