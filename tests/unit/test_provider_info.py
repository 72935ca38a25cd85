"""airflow-mesh is a provider Airflow recognises."""

from __future__ import annotations

from importlib.metadata import entry_points, version

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
    import importlib

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
