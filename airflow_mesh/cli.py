"""``airflow-mesh``: the provider's command line, one subcommand per capability.

    airflow-mesh backfill --source ... --table ... --target ... --target-name ...   (see ``backfill --help``)
    airflow-mesh processors [list|explain NAME|validate [NAME ...]]                  (see ``processors --help``)

Each subcommand is also a module: ``python -m airflow_mesh.backfill``, ``python -m airflow_mesh.processors``.
"""

from __future__ import annotations

import sys

COMMANDS = {
    "backfill": "copy a table between datastores, resumable and verified",
    "processors": "list, explain (print the Flink SQL) and validate the registered stream processors",
}


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand.

    Args:
        argv: The arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        usage = "usage: airflow-mesh {" + ",".join(COMMANDS) + "} ...\n\n" + "\n".join(
            f"  {name:<12}{what}" for name, what in COMMANDS.items())
        known = not argv or argv[0] in ("-h", "--help")
        print(usage if known else f"airflow-mesh: unknown command {argv[0]!r}\n\n{usage}",
              file=sys.stdout if known else sys.stderr)
        return 0 if known else 2
    command, rest = argv[0], argv[1:]
    if command == "backfill":
        from airflow_mesh.backfill.__main__ import main as backfill

        return backfill(rest)
    from airflow_mesh.processors.__main__ import main as processors

    return processors(rest, prog="airflow-mesh processors")


if __name__ == "__main__":
    sys.exit(main())
