"""airflow-mesh is a provider Airflow recognises, and Airflow's UI shows a form for each connection type it uses."""

from __future__ import annotations

import importlib
import json
from importlib.metadata import entry_points, version
from pathlib import Path

import jsonschema
import pytest

import airflow_mesh.get_provider_info as provider_info_module
from airflow_mesh.backfill.endpoints import ConnectionFields
from airflow_mesh.backfill.errors import PlanError
from airflow_mesh.get_provider_info import get_provider_info


def test_provider_info_describes_the_package():
    info = get_provider_info()
    assert info["package-name"] == "airflow-mesh"
    assert info["versions"] == [version("airflow-mesh")]
    assert info["name"] and info["description"]


def test_entry_point_resolves_to_get_provider_info():
    (entry_point,) = [ep for ep in entry_points(group="apache_airflow_provider") if ep.dist.name == "airflow-mesh"]
    assert entry_point.load() is get_provider_info


def test_airflow_providers_manager_lists_airflow_mesh():
    from airflow.providers_manager import ProvidersManager

    providers = ProvidersManager().providers
    assert "airflow-mesh" in providers
    assert providers["airflow-mesh"].version == version("airflow-mesh")


def test_every_declared_module_and_class_imports():
    info = get_provider_info()
    modules = [m for section in ("hooks", "operators", "sensors", "triggers")
               for entry in info[section] for m in entry.get("python-modules", [])]
    classes = [ct["hook-class-name"] for ct in info["connection-types"]]
    assert modules and classes
    for module in modules:
        importlib.import_module(module)
    for path in classes:
        module, _, name = path.rpartition(".")
        hook = getattr(importlib.import_module(module), name)
        conn_type = next(ct["connection-type"] for ct in info["connection-types"] if ct["hook-class-name"] == path)
        assert hook.conn_type == conn_type
        assert hook.default_conn_name == f"{conn_type}_default"


# ---------------------------------------------------------------- connection forms (Airflow 3.3's UI)

# The connection types of airflow-mesh, and every type the DAGs and the backfill read (README's table).
OUR_TYPES = {"kafka_connect", "flink", "schema_registry"}
DAG_TYPES = {"kafka", "kafka_connect", "flink", "postgres", "mysql", "iceberg", "elasticsearch", "schema_registry"}
# The standard fields each REST connection of ours uses, which its form must label and explain.
REST_FIELDS = ("host", "port", "schema", "login", "password")


def connection_types(info=None) -> dict[str, dict]:
    return {ct["connection-type"]: ct for ct in (info or get_provider_info())["connection-types"]}


def test_connection_types_follow_airflows_provider_schema():
    import airflow

    schema = json.loads((Path(airflow.__file__).parent / "provider.yaml.schema.json").read_text())
    jsonschema.validate(get_provider_info()["connection-types"], schema["properties"]["connection-types"])


@pytest.mark.parametrize("conn_type", sorted(OUR_TYPES))
def test_each_connection_type_of_ours_names_labels_and_explains_its_fields(conn_type):
    entry = connection_types()[conn_type]
    assert entry["hook-name"] and entry["hook-name"] != conn_type
    behaviour = entry["ui-field-behaviour"]
    assert set(REST_FIELDS) <= set(behaviour["relabeling"]), behaviour
    assert {"host", "port", "schema"} <= set(behaviour["placeholders"]), behaviour
    fields = entry["conn-fields"]
    assert {"verify", "cert", "key"} <= set(fields)
    for name, field in fields.items():
        assert field["label"] and field["description"], name
        assert "null" in field["schema"]["type"], f"{name}: an empty field must be allowed (stored as null)"


def test_the_hooks_field_behaviour_is_the_provider_infos():
    for conn_type, entry in connection_types().items():
        module, _, name = entry["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), name)
        behaviour = entry["ui-field-behaviour"]
        assert hook.get_ui_field_behaviour() == {"hidden_fields": behaviour["hidden-fields"],
                                                 "relabeling": behaviour["relabeling"],
                                                 "placeholders": behaviour["placeholders"]}, conn_type
        assert hook.hook_name == entry["hook-name"], conn_type


def test_providers_manager_lists_every_connection_type_the_dags_use():
    from airflow.providers_manager import ProvidersManager

    listed = {meta.connection_type: meta for meta in ProvidersManager().iter_connection_type_hook_ui_metadata()}
    assert set(listed) >= DAG_TYPES, sorted(DAG_TYPES - set(listed))
    for conn_type in OUR_TYPES:
        assert listed[conn_type].hook_name == connection_types()[conn_type]["hook-name"]


def test_the_ui_receives_our_labels_placeholders_and_extra_fields():
    """What the UI's Add Connection form is built from: Airflow's own hook-metadata service."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    served = {meta.connection_type: meta for meta in HookMetaService.hook_meta_data()}
    for conn_type in OUR_TYPES | ({"mysql"} & set(connection_types())):
        entry = connection_types()[conn_type]
        meta = served[conn_type]
        assert meta.hook_name == entry["hook-name"]
        assert meta.standard_fields.host.title == entry["ui-field-behaviour"]["relabeling"]["host"]
        assert meta.standard_fields.host.placeholder == entry["ui-field-behaviour"]["placeholders"]["host"]
        assert set(meta.extra_fields) == set(entry.get("conn-fields", {})), conn_type
        for name, field in entry.get("conn-fields", {}).items():
            assert meta.extra_fields[name]["schema"]["title"] == field["label"]
            assert meta.extra_fields[name]["description"] == field["description"]


def test_mysql_is_declared_here_only_while_airflows_mysql_provider_is_absent(monkeypatch):
    assert "mysql" in connection_types()  # this installation has no apache-airflow-providers-mysql
    entry = connection_types()["mysql"]
    assert entry["ui-field-behaviour"]["relabeling"]["schema"] == "Database"
    monkeypatch.setattr(provider_info_module, "_official_provider_installed", lambda name: name == "mysql")
    assert "mysql" not in connection_types()


def test_our_mysql_hook_reads_the_connection_its_form_writes(monkeypatch):
    from airflow_mesh.hooks.mysql import MySqlHook

    # As the form saves it: the extra fields left empty are null.
    monkeypatch.setenv("AIRFLOW_CONN_MYSQL_FORM", json.dumps({
        "conn_type": "mysql", "host": "db.example", "port": 3307, "login": "u", "password": "p", "schema": "mesh",
        "extra": {"ssl_mode": None, "ssl_ca": None}}))
    kwargs = MySqlHook("mysql_form").connect_kwargs()
    assert (kwargs["host"], kwargs["port"], kwargs["user"], kwargs["database"]) == ("db.example", 3307, "u", "mesh")
    assert "ssl" not in kwargs and "ssl_disabled" not in kwargs


@pytest.mark.parametrize("conn_type", sorted(OUR_TYPES))
def test_a_rest_connection_saved_with_empty_tls_fields_still_verifies_certificates(monkeypatch, conn_type):
    """The form stores every extra field, null when left empty; null must not turn TLS verification off."""
    entry = connection_types()[conn_type]
    module, _, name = entry["hook-class-name"].rpartition(".")
    hook_class = getattr(importlib.import_module(module), name)
    extra = dict.fromkeys(entry["conn-fields"])
    monkeypatch.setenv("AIRFLOW_CONN_FORM_TEST", json.dumps({"conn_type": conn_type, "host": "h", "schema": "https",
                                                             "extra": extra}))
    session = hook_class("form_test").session
    assert session.verify is True and session.cert is None


@pytest.mark.parametrize(("verify", "expected"), [("false", False), ("true", True), ("/etc/ca.pem", "/etc/ca.pem"),
                                                  (False, False), ("", True)])
def test_the_verify_field_typed_as_text_means_what_it_says(monkeypatch, verify, expected):
    from airflow_mesh.hooks.kafka_connect import KafkaConnectHook

    monkeypatch.setenv("AIRFLOW_CONN_FORM_TEST", json.dumps({"conn_type": "kafka_connect", "host": "h",
                                                             "extra": {"verify": verify}}))
    assert KafkaConnectHook("form_test").session.verify == expected


# ---------------------------------------------------------------- iceberg: ours and the official provider's

def test_an_iceberg_connection_of_ours_carries_the_catalog_in_its_extra():
    catalog = {"type": "sql", "uri": "sqlite:///c.db", "warehouse": "file:///wh"}
    assert ConnectionFields("iceberg", extra={"catalog": catalog}).iceberg_catalog() == catalog
    assert ConnectionFields("iceberg", extra={"catalog": json.dumps(catalog)}).iceberg_catalog() == catalog


def test_an_official_iceberg_connection_is_a_rest_catalog_with_oauth_credentials():
    fields = ConnectionFields("iceberg", host="https://catalog.example/ws/v1/", login="client", password="secret",
                              extra={"warehouse": "s3://wh/", "s3.region": "eu-west-1"})
    assert fields.iceberg_catalog() == {"type": "rest", "uri": "https://catalog.example/ws/v1",
                                        "credential": "client:secret", "warehouse": "s3://wh/",
                                        "s3.region": "eu-west-1"}


def test_an_official_iceberg_connection_may_name_another_catalog_type_in_its_extra():
    fields = ConnectionFields("iceberg", extra={"type": "sql", "uri": "sqlite:///c.db", "warehouse": "file:///wh",
                                                "unused": None})
    assert fields.iceberg_catalog() == {"type": "sql", "uri": "sqlite:///c.db", "warehouse": "file:///wh"}


@pytest.mark.parametrize(("fields", "reason"), [
    (ConnectionFields("iceberg"), "Catalog URI"),
    (ConnectionFields("iceberg", host="https://c", login="client"), "Client ID and Client Secret"),
])
def test_an_iceberg_connection_that_locates_no_catalog_is_refused_saying_what_to_fill(fields, reason):
    with pytest.raises(PlanError, match=reason):
        fields.iceberg_catalog()
