"""``python -m airflow_mesh.processors``: list the registered processors (name, origin, parameters) and the problems."""

from __future__ import annotations

import sys

from airflow_mesh.processors.registry import RegistryError, default_registry


def list_processors() -> int:
    """Print every registered processor, then the registry's problems.

    Returns:
        The exit status (0: problems are shown, not failed; ``validate`` fails them).
    """
    registry = default_registry()
    for entry, error in registry.load_all():
        try:
            details = ("cannot be loaded (see the problems below)" if error
                       else f"{entry.description}\n    parameters: {entry.parameters}")
        except RegistryError as exc:  # loaded, but Python cannot tell its signature
            details = f"cannot be inspected: {exc}"
        print(f"{entry.name}  [{entry.origin}]\n    {details}")
    problems = registry.problems
    if problems:
        print(f"\n{len(problems)} problem{'s' if len(problems) != 1 else ''} in the registry:")
        for problem in problems:
            print(f"  - {problem}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    del argv
    return list_processors()


if __name__ == "__main__":
    sys.exit(main())
