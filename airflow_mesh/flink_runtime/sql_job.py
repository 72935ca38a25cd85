"""Run a Flink SQL script as one job: executed by Flink's PythonDriver inside the cluster.

Usage (as PythonDriver program arguments): ``-py sql_job.py --sql-base64 <base64 of the script>``
or ``--sql-file <path readable by the JobManager>``, optionally ``--job-name <name>`` and
``--submission-id <id>``. Statements are separated by semicolons at the end of a line.
``SET 'key' = 'value'`` statements set the job's configuration (e.g. checkpointing, restart
strategy); other statements (DDL, views) run in order; all INSERT statements are submitted together
as a single job through a statement set, so that one script is one Flink job.

Flink's REST API answers a failed PythonDriver program with nothing but "Python process exits with
code: 1"; the program's output goes to the JobManager's log. So that the submitter can still report
the real error, a failure is printed there as one line: ``ERROR_MARKER``, the submission id, and a
JSON object with the failing statement and the error's message (``error_line`` builds and
``parse_error_line`` reads it).
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
from pathlib import Path
from typing import Any

ERROR_MARKER = "airflow-mesh-sql-job-error"
SET_STATEMENT = re.compile(r"(?is)^SET\s+'(?P<key>[^']+)'\s*=\s*'(?P<value>(?:[^']|'')*)'$")
INSERT_STATEMENT = re.compile(r"(?is)^\s*INSERT\b")


class ScriptError(ValueError):
    """The script cannot run: a malformed SET statement, or no INSERT statement at all."""


class StatementError(Exception):
    """Flink refused one statement of the script (or, for the INSERTs, the job they make).

    Attributes:
        statement: The statement (the INSERTs, joined, when submitting the job failed).
        cause: PyFlink's exception, carrying Flink's message.
    """

    def __init__(self, statement: str, cause: Exception) -> None:
        self.statement = statement
        self.cause = cause
        super().__init__(f"{cause} (in: {statement})")


def split_statements(script: str) -> list[str]:
    """Split a SQL script on semicolons that end a line, dropping `--` comment lines and blanks."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    parts = re.split(r";\s*(?:\n|$)", "\n".join(lines))
    return [part.strip() for part in parts if part.strip()]


def parse_set(statement: str) -> tuple[str, str] | None:
    """The ``(key, value)`` of a ``SET 'key' = 'value'`` statement, None for any other statement.

    Raises:
        ScriptError: the statement starts with SET but is not of that form.
    """
    if not re.match(r"(?i)^SET\b", statement):
        return None
    match = SET_STATEMENT.match(statement)
    if not match:
        raise ScriptError(f"malformed SET statement (expected SET 'key' = 'value'): {statement}")
    return match["key"], match["value"].replace("''", "'")


def error_line(submission_id: str, statement: str | None, error: BaseException) -> str:
    """The one log line that reports a failure of this program to its submitter.

    The error's text is kept whole (for PyFlink's errors, Java's stack trace with every cause).
    """
    return f"{ERROR_MARKER} {submission_id} " + json.dumps({"statement": statement, "error": str(error)})


def parse_error_line(line: str, submission_id: str) -> dict[str, Any] | None:
    """The ``{"statement", "error"}`` a log line reports for that submission, None when it reports none."""
    marker = f"{ERROR_MARKER} {submission_id} "
    _, found, payload = line.partition(marker)
    return json.loads(payload) if found else None


def run(script: str, job_name: str | None) -> None:
    """Run the script's statements and submit its INSERTs as one job.

    Args:
        script: The SQL script.
        job_name: The job's name (``pipeline.name``); a ``SET 'pipeline.name'`` in the script wins.

    Raises:
        ScriptError: a malformed SET statement, or no INSERT statement.
        StatementError: Flink refused a statement, or the job.
    """
    from pyflink.table import EnvironmentSettings, TableEnvironment  # only available inside Flink

    statements = split_statements(script)
    if not any(INSERT_STATEMENT.match(statement) for statement in statements):
        raise ScriptError("the SQL script has no INSERT statement: nothing to run")
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = env.get_config()
    if job_name:
        config.set("pipeline.name", job_name)
    statement_set, inserts = env.create_statement_set(), []
    for statement in statements:
        try:
            setting = parse_set(statement)
            if setting:
                config.set(*setting)
            elif INSERT_STATEMENT.match(statement):
                statement_set.add_insert_sql(statement)
                inserts.append(statement)
            else:
                env.execute_sql(statement)
        except ScriptError:
            raise
        except Exception as exc:
            raise StatementError(statement, exc) from exc
    try:
        statement_set.execute()
    except Exception as exc:
        raise StatementError(";\n".join(inserts), exc) from exc


def main(argv: list[str]) -> None:
    """Parse the program arguments, run the script, and report a failure on one log line before exiting 1."""
    parser = argparse.ArgumentParser()
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--sql-base64")
    source.add_argument("--sql-file")
    parser.add_argument("--job-name")
    parser.add_argument("--submission-id", default="-")
    args = parser.parse_args(argv)
    script = (base64.b64decode(args.sql_base64).decode() if args.sql_base64
              else Path(args.sql_file).read_text(encoding="utf-8"))
    try:
        run(script, args.job_name)
    except StatementError as exc:
        print(error_line(args.submission_id, exc.statement, exc.cause), flush=True)
        raise SystemExit(1) from None
    except ScriptError as exc:
        print(error_line(args.submission_id, None, exc), flush=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main(sys.argv[1:])
