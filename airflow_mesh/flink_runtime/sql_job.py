"""Run a Flink SQL script as one job: executed by Flink's PythonDriver inside the cluster.

Usage (as PythonDriver program arguments): ``-py sql_job.py --sql-base64 <base64 of the script>``
or ``--sql-file <path readable by the JobManager>``. Statements are separated by semicolons at the
end of a line. DDL and SET statements run first; all INSERT statements are submitted together as a
single job through a statement set, so that one script is one Flink job.
"""

from __future__ import annotations

import argparse
import base64
import re
import sys


def split_statements(script: str) -> list[str]:
    """Split a SQL script on semicolons that end a line, dropping `--` comment lines and blanks."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    parts = re.split(r";\s*(?:\n|$)", "\n".join(lines))
    return [part.strip() for part in parts if part.strip()]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--sql-base64")
    source.add_argument("--sql-file")
    parser.add_argument("--job-name")
    args = parser.parse_args(argv)
    script = (base64.b64decode(args.sql_base64).decode() if args.sql_base64
              else open(args.sql_file, encoding="utf-8").read())

    from pyflink.table import EnvironmentSettings, TableEnvironment  # only available inside Flink

    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    if args.job_name:
        env.get_config().set("pipeline.name", args.job_name)
    inserts = env.create_statement_set()
    has_insert = False
    for statement in split_statements(script):
        if re.match(r"(?is)^\s*INSERT\b", statement):
            inserts.add_insert_sql(statement)
            has_insert = True
        else:
            env.execute_sql(statement)
    if not has_insert:
        raise SystemExit("the SQL script has no INSERT statement: nothing to run")
    inserts.execute()


if __name__ == "__main__":
    main(sys.argv[1:])
