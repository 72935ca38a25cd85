"""What the backfill command shows: a progress line that fits 80 columns, one-line failures."""

from __future__ import annotations

import io
import re
from itertools import pairwise

from rich.console import Console
from rich.progress import Progress

from airflow_mesh.backfill.__main__ import progress_columns
from airflow_mesh.backfill.engine import Progress as RowProgress
from airflow_mesh.backfill.errors import SourceError
from airflow_mesh.backfill.explain import at, explain, message


def test_the_progress_line_keeps_its_numbers_whole_in_80_columns():
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system=None)
    with Progress(*progress_columns(), console=console, auto_refresh=False, expand=True) as bar:
        bar.add_task("copying", total=12_345_678, completed=740_000, unit="rows")
        bar.refresh()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # terminal control sequences
    last = [line for line in text.replace("\r", "\n").splitlines() if "copying" in line][-1]
    assert "740000/12345678 rows" in last and len(last.rstrip()) <= 80


def test_progress_moves_batch_by_batch_and_never_runs_past_its_total():
    seen = []
    progress = RowProgress(1000, on_update=lambda done, total: seen.append((done, total)))
    progress.resume(200)
    for _ in range(10):
        progress.add(100)  # an estimate that was low: 1,200 rows moved of 1,000 planned
    assert seen[0] == (200, 1000) and seen[-1] == (1200, 1200)
    assert all(b[0] - a[0] <= 100 for a, b in pairwise(seen))
    assert all(done <= total for done, total in seen)


def test_driver_errors_become_one_line_with_the_side_the_step_and_what_to_do():
    class OperationalError(Exception):
        pass

    OperationalError.__module__ = "adbc_driver_manager"
    raw = OperationalError('IO: [libpq] Failed to connect: connection to server at "db", port 5432 failed: '
                           'FATAL:  password authentication failed for user "mesh"\n')
    try:
        with at("source", "postgresql://db:5432/mesh", "reading the description of public.orders"):
            raise raw
    except SourceError as exc:
        text = str(exc)
    assert text == ('source postgresql://db:5432/mesh: reading the description of public.orders: connection to server '
                    'at "db", port 5432 failed: password authentication failed for user "mesh" (check the '
                    "connection's user and password)")
    assert "\n" not in explain(RuntimeError("MySqlError { ERROR 1054 (42S22): Unknown column 'x' in 'SELECT' }"))
    assert message(RuntimeError("MySqlError { ERROR 1054 (42S22): Unknown column 'x' in 'SELECT' }")) == \
        "ERROR 1054 (42S22): Unknown column 'x' in 'SELECT'"


def test_an_elasticsearch_connection_keeps_its_scheme_wherever_it_is_written():
    from airflow_mesh.backfill.endpoints import ConnectionFields, make_target

    def url(conn: ConnectionFields) -> str:
        return make_target(conn, "orders").client.transport.node_pool.all()[0].base_url

    # Airflow's Elasticsearch form: the scheme in Schema; older connections: extra scheme/use_ssl; the CLI: the URI.
    assert url(ConnectionFields("elasticsearch", "es.example", 9243, schema="https")) == "https://es.example:9243"
    assert url(ConnectionFields("elasticsearch", "es.example", 9243, extra={"use_ssl": "true"})) == "https://es.example:9243"
    assert url(ConnectionFields.from_uri("https://es.example:9243")) == "https://es.example:9243"
    assert url(ConnectionFields.from_uri("es://es.example")) == "http://es.example:9200"
