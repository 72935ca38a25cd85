"""Benchmark: a PostgreSQL table copied into Iceberg by airflow-mesh, by dlt, and the raw COPY limit.

What it measures
    A table shaped like `orders` (`id bigint pk, customer_id bigint, status text, amount numeric(12,2),
    created_at timestamptz, updated_at timestamptz, note text`, 30% NULL notes) of `--rows` rows,
    generated once with `generate_series` into its own table (`bench_orders_5m` for 5,000,000 rows;
    kept, and reused while it holds the wanted row count), is copied by each contender:

    airflow-mesh   the backfill engine (`benchmarks/airflow_mesh_pg_iceberg.py`: ADBC reads in key
                   ranges, Parquet files staged and committed to Iceberg) as it runs by default, with
                   verification (every range read back from Iceberg and checksummed, mostly while
                   later ranges still copy), with `--range-size` and `--parallelism` (default 500,000
                   and 2, for 2 cores);
    airflow-mesh-noverify
                   the same without verification: the copy alone, as dlt does it;
    dlt            dlt's `sql_table` source into its `filesystem` destination with
                   `table_format="iceberg"` (`benchmarks/dlt_pg_iceberg.py`), in the fastest
                   configuration found for this workload (ConnectorX backend, streamed Arrow batches),
                   installed in its own virtualenv `.stack/bench/dlt-venv` (created on first run);
    handwritten    (only when named in `--contenders`) `benchmarks/cx_pg_iceberg.py`: the least a
                   Python program does for the same copy with ConnectorX, pyarrow and pyiceberg (no
                   ranges, checkpoints or verification; one commit), as a yardstick of the engine's
                   own overhead;
    copy-limit     `psql`'s `\\copy (SELECT ...) TO '/dev/null' (FORMAT binary)`: PostgreSQL's binary
                   COPY read off the wire and discarded, the floor for anything that reads the table.

    Each Iceberg copy goes into a fresh SQLite catalog and local warehouse under a temporary folder
    in `.stack/bench`. Every contender is its own process: its wall time includes interpreter
    start-up and imports, and its peak RSS and CPU time (from `wait4`) are its own (PostgreSQL's
    CPU is in none of them). Rounds are interleaved (a b c, a b c, ...); `--warmup` untimed rounds
    (default 1) come first, to warm the page cache and the contenders' bytecode caches (see
    `child_env`). The table shows medians over `--runs` timed rounds, then the ratios. Each copy's
    row count (and, for Iceberg, its number of distinct ids) is checked against the source: a copy
    that lost or doubled rows stops the benchmark instead of being timed.

    Nothing here asserts a time: it prints numbers and ratios measured in the same run on the same
    machine (see benchmarks/README.md). On a shared machine, compare ratios and CPU seconds rather
    than wall times across runs.

How to run (the local stack must be up: `make up`)
    .venv/bin/python benchmarks/backfill_pg_iceberg.py          # 5M rows, 3 rounds of the default four
    .venv/bin/python benchmarks/backfill_pg_iceberg.py --rows 10000000 --runs 1 --contenders airflow-mesh

    The source defaults to the stack's `postgres_mesh` connection (`.stack/connections.env`), or
    `--source postgresql://user:pw@host:port/db`. `--keep` keeps each copy (and its logs) under
    `.stack/bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / ".stack" / "bench"
DLT_VENV = BENCH_DIR / "dlt-venv"
# dlt and what its sql_table source and Iceberg destination need, pinned so that reruns compare alike.
DLT_REQUIREMENTS = ["dlt[pyiceberg]==1.31.0", "sqlalchemy==2.1.9", "psycopg[binary]==3.3.9", "connectorx==0.4.6",
                    "pyarrow==26.0.1"]
CONTENDERS = ("airflow-mesh", "airflow-mesh-noverify", "dlt", "copy-limit", "handwritten")
DEFAULT_CONTENDERS = ("airflow-mesh", "airflow-mesh-noverify", "dlt", "copy-limit")
COLUMNS = "id, customer_id, status, amount, created_at, updated_at, note"

# Orders over three years (ids in creation order), 250k customers, 7 statuses, amounts 1.00-1000.00,
# updated up to 30 days after creation, notes of varied length and 30% NULL. Seeded: the same rows
# every time. `random()` in the inner select is evaluated once per row.
GENERATE = """
CREATE TABLE {table} (id bigint PRIMARY KEY, customer_id bigint, status text, amount numeric(12,2),
                      created_at timestamptz, updated_at timestamptz, note text);
SELECT setseed(0.42);
INSERT INTO {table}
SELECT g,
       1 + floor(random() * 250000)::bigint,
       (ARRAY['new', 'paid', 'packed', 'shipped', 'delivered', 'cancelled', 'refunded'])[1 + floor(random() * 7)::int],
       round((1 + random() * 999)::numeric, 2),
       created_at,
       created_at + random() * interval '30 days',
       CASE WHEN random() < 0.3 THEN NULL
            ELSE (ARRAY['leave at the door', 'gift wrap, no invoice in the box', 'call before delivery',
                        'fragile', 'deliver to the side entrance after 6pm, ring twice'])[1 + floor(random() * 5)::int]
                 || ' (ref ' || md5(g::text) || ')' END
FROM (SELECT g, timestamptz '2023-01-01 00:00:00+00' + (g * 94608000.0 / {rows}) * interval '1 second'
                + random() * interval '1 second' AS created_at
      FROM generate_series(1, {rows}) g) AS s;
VACUUM (FREEZE, ANALYZE) {table};
"""


# ---------------------------------------------------------------------------------------------- setup

def default_source() -> str:
    """The stack's `postgres_mesh` connection as a URI."""
    env = os.environ.get("AIRFLOW_CONN_POSTGRES_MESH")
    if env is None:
        for line in (ROOT / ".stack" / "connections.env").read_text().splitlines():
            if line.startswith("AIRFLOW_CONN_POSTGRES_MESH="):
                env = line.split("=", 1)[1].strip().strip("'")
    if env is None:
        raise SystemExit("no --source, and no postgres_mesh connection in the environment or .stack/connections.env")
    c = json.loads(env)
    return f"postgresql://{c['login']}:{c['password']}@{c['host']}:{c['port']}/{c['schema']}"


def psql(source: str, *args: str, script: str | None = None) -> str:
    """Run psql quietly (unaligned, tuples only); a `script` is fed on stdin to one session."""
    return subprocess.run(["psql", source, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", *args], input=script,
                          check=True, capture_output=True, text=True).stdout.strip()


def table_name(rows: int) -> str:
    label = f"{rows // 1_000_000}m" if rows % 1_000_000 == 0 else str(rows)
    return f"bench_orders_{label}"


def ensure_source_table(source: str, rows: int) -> str:
    """Create the benchmark table unless it exists with `rows` rows; returns its name."""
    table = table_name(rows)
    exists = psql(source, "-c", f"SELECT to_regclass('public.{table}') IS NOT NULL") == "t"
    if exists and int(psql(source, "-c", f"SELECT count(*) FROM {table}")) == rows:
        return table
    print(f"generating {table} ({rows:,} rows)...", flush=True)
    psql(source, script=f"DROP TABLE IF EXISTS {table};\n" + GENERATE.format(table=table, rows=rows))
    return table


def ensure_dlt_venv() -> Path:
    """dlt's own virtualenv (never airflow-mesh's), created or updated when its requirements change."""
    python, marker = DLT_VENV / "bin" / "python", DLT_VENV / "bench-requirements.txt"
    wanted = "\n".join(DLT_REQUIREMENTS) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    print(f"installing {', '.join(DLT_REQUIREMENTS)} into {DLT_VENV}...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(DLT_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *DLT_REQUIREMENTS], check=True)
    marker.write_text(wanted)
    return python


# ------------------------------------------------------------------------------------------ running

@dataclass
class Sample:
    seconds: float  # the process' wall time
    cpu: float  # its CPU time, user + system (PostgreSQL's share is not in it)
    rss_mb: float  # its peak resident set (ru_maxrss of the process and any children it waited for)
    report: dict = field(default_factory=dict)  # what the contender printed (phases, table...)


def child_env() -> dict[str, str]:
    """The contenders' environment: Python bytecode cached under .stack/bench for every contender.

    This environment sets PYTHONDONTWRITEBYTECODE=1 and uv installs the project's virtualenv without
    .pyc files, while pip compiled dlt's at install: without a shared cache, airflow-mesh would
    recompile every module it imports (pyiceberg, SQLAlchemy, polars...; about a second) at each
    start and dlt would not. With it, after the warm-up round, both start as an installed service does.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(BENCH_DIR / "pycache")
    return env


def run_process(argv: list[str], workdir: Path) -> Sample:
    """Run one contender, timing it and taking its own peak RSS from wait4.

    Linux seeds a child's peak RSS with its parent's at fork, so this process stays small (it
    imports nothing heavy and counts the copied rows in another process).
    """
    stdout, stderr = workdir / "stdout.txt", workdir / "stderr.txt"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=err, cwd=workdir, env=child_env())
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{argv[0]} ... failed ({process.returncode}):\n" + stderr.read_text()[-3000:])
    last_line = (stdout.read_text().strip().splitlines() or [""])[-1]
    report = json.loads(last_line) if last_line.startswith("{") else {"output": last_line}
    return Sample(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, report)


def count_iceberg_rows(catalog_uri: str, table: str) -> None:
    """Print (rows, distinct ids) of an Iceberg table (both contenders name their catalog `default`)."""
    import pyarrow.compute as pc
    from pyiceberg.catalog.sql import SqlCatalog

    ids = SqlCatalog("default", uri=catalog_uri).load_table(table).scan(selected_fields=("id",)).to_arrow()["id"]
    print(json.dumps([len(ids), pc.count_distinct(ids).as_py()]))


def check_rows(name: str, sample: Sample, rows: int) -> None:
    """Fail unless the copy holds every source row exactly once."""
    if name == "copy-limit":
        found = distinct = int(sample.report["output"].split()[-1])  # psql prints `COPY <rows>`
    else:
        counted = subprocess.run([sys.executable, __file__, "--count-rows", sample.report["catalog"],
                                  sample.report["table"]], check=True, capture_output=True, text=True)
        found, distinct = json.loads(counted.stdout)
    if found != rows or distinct != rows:
        raise SystemExit(f"{name} copied {found:,} rows ({distinct:,} distinct ids), the source has {rows:,}: "
                         "not a result")


def command(name: str, args: argparse.Namespace, table: str, workdir: Path) -> list[str]:
    """The contender's command line."""
    here = Path(__file__).resolve().parent
    if name.startswith("airflow-mesh"):
        return [str(ROOT / ".venv" / "bin" / "python"), str(here / "airflow_mesh_pg_iceberg.py"),
                "--source", args.source, "--table", f"public.{table}", "--workdir", str(workdir),
                "--range-size", str(args.range_size), "--parallelism", str(args.parallelism),
                *(["--no-verify"] if name == "airflow-mesh-noverify" else [])]
    if name == "dlt":
        return [str(DLT_VENV / "bin" / "python"), str(here / "dlt_pg_iceberg.py"),
                "--source", args.source, "--table", table, "--workdir", str(workdir)]
    if name == "handwritten":
        return [str(ROOT / ".venv" / "bin" / "python"), str(here / "cx_pg_iceberg.py"),
                "--source", args.source, "--table", table, "--workdir", str(workdir)]
    return ["psql", args.source, "-X", "-v", "ON_ERROR_STOP=1",
            "-c", f"\\copy (SELECT {COLUMNS} FROM {table}) TO '/dev/null' WITH (FORMAT binary)"]


# ------------------------------------------------------------------------------------------ results

LABELS = {"airflow-mesh": "airflow-mesh (copy + verify)", "airflow-mesh-noverify": "airflow-mesh (copy only)",
          "dlt": "dlt (connectorx -> iceberg)", "copy-limit": "COPY limit (binary, discarded)",
          "handwritten": "handwritten (connectorx, 1 commit)"}


def summarize(samples: dict[str, list[Sample]], rows: int) -> None:
    """Print each contender's medians, then the ratios."""
    medians = {name: statistics.median(s.seconds for s in runs) for name, runs in samples.items()}
    print(f"\n{'contender':<36}{'median s':>10}{'rows/s':>13}{'peak RSS MB':>13}{'CPU s':>8}")
    for name, runs in samples.items():
        cpu = statistics.median(s.cpu for s in runs)
        rss = max(s.rss_mb for s in runs)
        print(f"{LABELS[name]:<36}{medians[name]:>10.2f}{rows / medians[name]:>13,.0f}{rss:>13,.0f}{cpu:8.1f}")
    print("(seconds: process wall time, start-up included; peak RSS: the process' own, the maximum over the\n"
          " rounds; CPU: the process', PostgreSQL's not included. airflow-mesh (copy + verify) is the engine's\n"
          " default: every range read back from Iceberg and checked, mostly while later ranges copy)\n")
    def ratio(text: str, value: str) -> None:
        print(f"{text + ':':<48}{value}")

    for name in (n for n in ("airflow-mesh-noverify", "airflow-mesh") if n in medians):
        label = LABELS[name].removeprefix("airflow-mesh ")
        if "dlt" in medians:
            ratio(f"airflow-mesh {label} vs dlt", f"{medians['dlt'] / medians[name]:.2f}x faster")
        if "handwritten" in medians:
            ratio(f"airflow-mesh {label} vs handwritten", f"{medians[name] / medians['handwritten']:.2f}x its time")
        if "copy-limit" in medians:
            ratio(f"airflow-mesh {label} vs COPY limit",
                  f"{medians[name] / medians['copy-limit']:.2f}x the limit's time")
    if "dlt" in medians and "copy-limit" in medians:
        ratio("dlt vs COPY limit", f"{medians['dlt'] / medians['copy-limit']:.2f}x the limit's time")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows in the source table (default 5,000,000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each contender (default 3)")
    parser.add_argument("--contenders", default=",".join(DEFAULT_CONTENDERS),
                        help=f"comma-separated, in run order, of {', '.join(CONTENDERS)} "
                             f"(default {','.join(DEFAULT_CONTENDERS)})")
    parser.add_argument("--source", help="PostgreSQL URI (default: the stack's postgres_mesh connection)")
    parser.add_argument("--range-size", type=int, default=500_000, help="airflow-mesh rows per key range")
    parser.add_argument("--parallelism", type=int, default=2, help="airflow-mesh ranges moved at once")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1; fills bytecode caches)")
    parser.add_argument("--keep", action="store_true", help="keep each run's catalog and warehouse")
    parser.add_argument("--count-rows", nargs=2, metavar=("CATALOG_URI", "TABLE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.count_rows:
        return count_iceberg_rows(*args.count_rows)
    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    if unknown := set(contenders) - set(CONTENDERS):
        parser.error(f"unknown contender(s) {', '.join(sorted(unknown))}; choose from {', '.join(CONTENDERS)}")
    args.source = args.source or default_source()

    table = ensure_source_table(args.source, args.rows)
    if "dlt" in contenders:
        ensure_dlt_venv()
    size = psql(args.source, "-c", f"SELECT pg_size_pretty(pg_table_size('{table}'))")
    print(f"{table}: {args.rows:,} rows, {size} in PostgreSQL; {args.warmup} warm-up + {args.runs} timed round(s) "
          f"of {', '.join(contenders)}, interleaved; {os.cpu_count()} CPUs; airflow-mesh "
          f"range_size={args.range_size:,} parallelism={args.parallelism}", flush=True)

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    samples: dict[str, list[Sample]] = {name: [] for name in contenders}
    for round_ in range(1 - args.warmup, args.runs + 1):
        label = f"run {round_}/{args.runs}" if round_ > 0 else "warm-up"
        for name in contenders:
            workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=BENCH_DIR))
            try:
                sample = run_process(command(name, args, table, workdir), workdir)
                check_rows(name, sample, args.rows)
            finally:
                if not args.keep:
                    shutil.rmtree(workdir, ignore_errors=True)
            if round_ > 0:
                samples[name].append(sample)
            phases = ", ".join(f"{k} {v:.2f}s" for k, v in sample.report.get("phases", {}).items())
            print(f"{label:<9} {name:<13}{sample.seconds:7.2f} s  {sample.rss_mb:7,.0f} MB peak RSS  "
                  f"{sample.cpu:5.1f} s CPU" + (f"  ({phases})" if phases else ""), flush=True)
    summarize(samples, args.rows)


if __name__ == "__main__":
    main()
