"""The backfill command as people use it against the real stack: wrong inputs, dead services, Ctrl-C,
dropped targets and killed runs. Each failure is one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROWS = 20_000  # the `pg_table` fixture's rows


def _uri(conn_id: str, password: str | None = None, port: int | None = None) -> str:
    c = json.loads(os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"])
    scheme = {"postgres": "postgresql", "mysql": "mysql"}[c["conn_type"]]
    return (f"{scheme}://{c['login']}:{password or c['password']}@{c['host']}:{port or c['port']}/{c['schema']}")


def _iceberg(tmp_path: Path) -> str:
    return "iceberg://?extra=" + json.dumps({"catalog": {"type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db",
                                                         "warehouse": f"file://{tmp_path}/warehouse"}})


def _command(source: str, table: str, target: str, name: str, checkpoints: Path, *more: str) -> list[str]:
    return [sys.executable, "-m", "airflow_mesh.backfill", "--source", source, "--table", table, "--target", target,
            "--target-name", name, "--checkpoints", str(checkpoints), *more]


def backfill(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)


def _one_line_failure(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    failures = [line for line in result.stderr.splitlines() if line.startswith("backfill failed:")]
    assert len(failures) == 1, result.stderr
    assert result.stdout == ""
    return failures[0]


def test_help_explains_every_option_and_shows_where_checkpoints_are():
    from airflow_mesh.backfill.__main__ import DEFAULT_CHECKPOINTS, parser

    options = [a for a in parser()._actions if a.option_strings and a.dest != "help"]
    assert options and all(a.help for a in options), [a.dest for a in options if not a.help]
    shown = subprocess.run([sys.executable, "-m", "airflow_mesh.backfill", "--help"], capture_output=True, text=True,
                           env={**os.environ, "COLUMNS": "200"}, check=False).stdout
    for name in ("--restart", "--details", "--debug", "--key", "--where"):
        assert name in shown
    assert str(DEFAULT_CHECKPOINTS) in shown


@pytest.mark.parametrize("case", ["pg-password", "mariadb-password", "pg-down", "es-down", "filter-column",
                                  "no-table", "bad-key", "pg-target-name", "es-target-name"])
def test_each_failure_is_one_clear_line(case, pg_table, tmp_path):
    checkpoints = tmp_path / "cp.sqlite"
    pg = _uri("postgres_mesh")
    source, table, target, name, more = pg, pg_table, _iceberg(tmp_path), "mesh.cli", []
    expect = {
        "pg-password": "password authentication failed",
        "mariadb-password": "Access denied",
        "pg-down": "Connection refused",
        "es-down": "Connection refused",
        "filter-column": 'column "nope" does not exist',
        "no-table": "does not exist",
        "bad-key": "key column 'nope' does not exist",
        "pg-target-name": "PostgreSQL target name",
        "es-target-name": "Elasticsearch index name",
    }[case]
    if case == "pg-password":
        source = _uri("postgres_mesh", password="wrong-password")
    elif case == "mariadb-password":
        source, table = _uri("mariadb_mesh", password="wrong-password"), "mesh.shipments"
    elif case == "pg-down":
        source = _uri("postgres_mesh", port=1)
    elif case == "es-down":
        target, name = "es://127.0.0.1:1", "cli"
    elif case == "filter-column":
        more = ["--where", "nope > 1"]
    elif case == "no-table":
        table = "public.no_such_table"
    elif case == "bad-key":
        more = ["--key", "nope"]
    elif case == "pg-target-name":
        target, name = pg, "public.x; DROP TABLE y"
    elif case == "es-target-name":
        target, name = "es://127.0.0.1:9200", "Bad Name"
    line = _one_line_failure(backfill(*_command(source, table, target, name, checkpoints, *more)))
    assert expect in line
    if case in ("pg-password", "mariadb-password"):
        assert "check the connection's user and password" in line
    if case in ("pg-down", "es-down"):
        assert "is the server running" in line


def test_debug_shows_the_traceback(pg_table, tmp_path):
    result = backfill(*_command(_uri("postgres_mesh", password="wrong-password"), pg_table, _iceberg(tmp_path),
                                "mesh.cli", tmp_path / "cp.sqlite", "--debug"))
    assert result.returncode == 1 and "Traceback (most recent call last)" in result.stderr
    assert "backfill failed:" in result.stderr


def test_the_summary_is_short_and_details_add_the_checksums(pg_table, tmp_path):
    args = _command(_uri("postgres_mesh"), pg_table, _iceberg(tmp_path), "mesh.short", tmp_path / "cp.sqlite",
                    "--range-size", "2000")
    short = json.loads(backfill(*args).stdout)
    assert short["verified"] and short["rows"] == ROWS and "checksums" not in short
    detailed = json.loads(backfill(*args, "--details").stdout)
    assert len(detailed["checksums"]) == detailed["ranges"] == short["ranges"]


def _wait_for_done_ranges(checkpoints: Path, count: int, run: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert run.poll() is None, run.communicate()
        if checkpoints.exists():
            try:
                if sqlite3.connect(checkpoints).execute("SELECT count(*) FROM done_ranges").fetchone()[0] >= count:
                    return
            except sqlite3.OperationalError:  # the table is not there yet
                pass
        time.sleep(0.05)
    raise AssertionError("the run did not get going")


def test_ctrl_c_exits_130_and_the_same_command_resumes(pg_table, tmp_path):
    checkpoints = tmp_path / "cp.sqlite"
    args = _command(_uri("postgres_mesh"), pg_table, _iceberg(tmp_path), "mesh.interrupted", checkpoints,
                    "--range-size", "250", "--parallelism", "1")
    run = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_done_ranges(checkpoints, 3, run)
    run.send_signal(signal.SIGINT)
    _stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, stderr
    assert "interrupted; rerun the same command to resume" in stderr and "Traceback" not in stderr
    resumed = json.loads(backfill(*args).stdout)
    assert resumed["verified"] and resumed["rows"] == ROWS and resumed["ranges_skipped"] >= 3


def test_a_dropped_target_is_detected_and_restart_copies_everything_again(pg_table, tmp_path):
    from pyiceberg.catalog import load_catalog

    checkpoints = tmp_path / "cp.sqlite"
    args = _command(_uri("postgres_mesh"), pg_table, _iceberg(tmp_path), "mesh.dropped", checkpoints,
                    "--range-size", "250", "--parallelism", "1")
    run = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_done_ranges(checkpoints, 5, run)
    run.send_signal(signal.SIGKILL)  # the run stays open, 5+ ranges done
    run.wait()
    catalog = load_catalog("default", type="sql", uri=f"sqlite:///{tmp_path}/catalog.db",
                           warehouse=f"file://{tmp_path}/warehouse")
    catalog.drop_table("mesh.dropped")
    line = _one_line_failure(backfill(*args))
    assert "--restart" in line and str(checkpoints) in line and "holds 0 rows" in line
    restarted = json.loads(backfill(*args, "--restart").stdout)
    assert restarted["verified"] and restarted["rows"] == ROWS and restarted["ranges_skipped"] == 0
    assert catalog.load_table("mesh.dropped").scan().count() == ROWS


def _data_files(tmp_path: Path, table: str) -> tuple[set[str], set[str]]:
    """(files in the table's data folder, files the table's snapshots hold)."""
    from pyiceberg.catalog import load_catalog

    catalog = load_catalog("default", type="sql", uri=f"sqlite:///{tmp_path}/catalog.db",
                           warehouse=f"file://{tmp_path}/warehouse")
    iceberg = catalog.load_table(table)
    folder = Path(iceberg.location().removeprefix("file://")) / "data"
    on_disk = {str(p) for p in folder.glob("*.parquet")}
    held = {p.removeprefix("file://") for p in iceberg.inspect.all_files().column("file_path").to_pylist()}
    return on_disk, held


def test_a_killed_run_leaves_no_staged_files_behind_once_resumed(pg_table, tmp_path):
    checkpoints = tmp_path / "cp.sqlite"
    args = _command(_uri("postgres_mesh"), pg_table, _iceberg(tmp_path), "mesh.orphans", checkpoints,
                    "--range-size", "250", "--parallelism", "2")
    run = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while True:  # kill it the moment a staged file waits for its commit
        assert run.poll() is None and time.monotonic() < deadline, "no staged file was ever seen uncommitted"
        try:
            on_disk, held = _data_files(tmp_path, "mesh.orphans")
        except Exception:  # noqa: BLE001 - the table is not created yet
            time.sleep(0.02)
            continue
        if on_disk - held:
            run.send_signal(signal.SIGKILL)
            run.wait()
            break
        time.sleep(0.01)
    on_disk, held = _data_files(tmp_path, "mesh.orphans")
    assert on_disk - held  # what the kill left behind
    summary = json.loads(backfill(*args).stdout)
    assert summary["verified"] and summary["rows"] == ROWS
    on_disk, held = _data_files(tmp_path, "mesh.orphans")
    assert on_disk <= held  # every file left is one the table holds
