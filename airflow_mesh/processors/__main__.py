"""``python -m airflow_mesh.processors``: list the registered processors (name, origin, parameters)."""

from __future__ import annotations

from airflow_mesh.processors.registry import RegistryError, default_registry


def main() -> None:
    for entry in default_registry():
        try:
            details = f"{entry.description}\n    parameters: {entry.parameters}"
        except RegistryError as exc:
            details = f"cannot be loaded: {exc}"
        print(f"{entry.name}  [{entry.origin}]\n    {details}")


if __name__ == "__main__":
    main()
