"""Benchmark: a sync of a table that changed by 0.1% against a full re-copy, in the same run.

What it measures
    A PostgreSQL table shaped like `orders` (`id bigint pk, customer_id bigint, status text,
    amount numeric(12,2), created_at timestamptz, updated_at timestamptz, note text`) of `--rows`
    rows (`bench_sync_<rows>`, generated once and kept) is copied into a target (`--target`:
    `postgres`, a table beside it, or `iceberg`, a SQLite catalog and local warehouse under
    `.stack/bench`). Then, each round, `--changed` of its rows (0.1% by default) change, a third each
    as updates that move `updated_at`, updates that leave it alone ("silent") and deletes, and the
    target is brought level again by each contender, timed as its own process (interpreter start-up
    included):

    sync        `airflow-mesh backfill --mode sync`: from the baseline the last verified run left,
                PostgreSQL names the rows changed since (their row versions) and every key; only
                those rows are written, and read back;
    deep-sync   the same with `--deep`: every range of both sides compared by checksum, the ranges
                that differ compared row by row and repaired;
    full-copy   `airflow-mesh backfill --mode full`: the whole table copied again (each range
                replaced), with its verification.

    After every contender the target is compared with the source by an independent reader (a
    count and a sum of per-row md5 hashes in SQL for PostgreSQL, pyiceberg + polars for Iceberg):
    a contender that leaves the target different stops the benchmark instead of being timed.
    Rounds are interleaved (the changes are made anew before each contender); the table shows the
    median of `--runs` rounds and each contender's time as a multiple of the sync's.

    Nothing here asserts a time: it prints numbers and ratios measured in the same run. The goal
    (issue 11): the sync at least 10x faster than the full copy, the target exact afterwards.

How to run (the local stack must be up: `make up`)
    .venv/bin/python benchmarks/backfill_sync.py                      # 5M rows into PostgreSQL, 3 rounds
    .venv/bin/python benchmarks/backfill_sync.py --target iceberg --rows 1000000 --runs 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / ".stack" / "bench"


def stack_source() -> str:
    """The stack's PostgreSQL as a URI (from `.stack/connections.env`)."""
    for line in (ROOT / ".stack" / "connections.env").read_text().splitlines():
        if line.startswith("MESH_PG_URL="):
            return line.split("=", 1)[1].strip("'")
    raise SystemExit("the stack's connections are missing: run `make up` first")


def conninfo(uri: str) -> str:
    return uri


def ensure_table(uri: str, rows: int) -> str:
    """``bench_sync_<rows>``, created once with generate_series."""
    name = f"bench_sync_{rows}"
    with psycopg.connect(uri, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]
        if exists and conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0] >= rows * 0.99:
            return name
        print(f"creating {name} ({rows:,} rows)", flush=True)
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, customer_id bigint, status text, "
                     "amount numeric(12,2), created_at timestamptz, updated_at timestamptz, note text)")
        conn.execute(f"INSERT INTO {name} SELECT g, g % 97, (array['new','paid','shipped'])[1 + g % 3], "
                     f"(g * 7 % 100000) / 100.0 - 300, timestamptz '2026-01-01' + g * interval '1 second', "
                     f"timestamptz '2026-01-01' + g * interval '1 second', "
                     f"CASE WHEN g % 10 < 3 THEN NULL ELSE 'note ' || g END FROM generate_series(1, {rows}) g")
        conn.execute(f"VACUUM ANALYZE {name}")
    return name


def change(uri: str, table: str, count: int, round_number: int) -> None:
    """Change ``count`` rows: a third updated (updated_at moves), a third silently, a third deleted and
    put back as new rows elsewhere in the key space (the table keeps its size)."""
    third = max(1, count // 3)
    with psycopg.connect(uri, autocommit=True) as conn:
        top = conn.execute(f"SELECT max(id) FROM {table}").fetchone()[0]
        step = max(3, top // (3 * third))
        first = (3 * round_number) % (step - 2)  # other rows each round, spread over the whole table
        conn.execute(f"UPDATE {table} SET status = 'r{round_number}', updated_at = now() "
                     f"WHERE id IN (SELECT g * {step} + {first} FROM generate_series(0, {third - 1}) g)")
        conn.execute(f"UPDATE {table} SET note = 'silent {round_number}' "
                     f"WHERE id IN (SELECT g * {step} + {first + 1} FROM generate_series(0, {third - 1}) g)")
        conn.execute(f"DELETE FROM {table} WHERE id IN (SELECT g * {step} + {first + 2} "
                     f"FROM generate_series(0, {third - 1}) g)")
        conn.execute(f"INSERT INTO {table} SELECT {top} + g, 1, 'new', 1.00, now(), now(), NULL "
                     f"FROM generate_series(1, {third}) g")


def settle(uri: str, table: str, copy: str | None) -> None:
    """VACUUM what the last contender wrote (outside the timing), so that its dead rows are not the
    next contender's work: autovacuum would otherwise clean a full copy's 5M dead rows during it."""
    with psycopg.connect(uri, autocommit=True) as conn:
        for name in [table] + ([copy] if copy else []):
            conn.execute(f"VACUUM {name}")


def target_uri(kind: str, uri: str, workdir: Path) -> str:
    if kind == "postgres":
        return uri
    catalog = {"type": "sql", "uri": f"sqlite:///{workdir}/catalog.db", "warehouse": f"file://{workdir}/warehouse"}
    return "iceberg://?extra=" + json.dumps({"catalog": catalog})


def backfill(uri: str, table: str, target: str, target_name: str, checkpoints: Path, *extra: str) -> tuple[float, dict]:
    """One run of the command in its own process: (seconds, summary)."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "airflow_mesh.backfill", "--source", uri, "--table", table,
                             "--target", target, "--target-name", target_name, "--checkpoints", str(checkpoints),
                             "--range-size", "500000", "--parallelism", "2", *extra],
                            capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"backfill {' '.join(extra)} failed:\n{result.stderr[-3000:]}")
    return seconds, json.loads(result.stdout)


def fingerprint_pg(uri: str, table: str) -> tuple[int, str]:
    with psycopg.connect(uri) as conn:
        return conn.execute(f"SELECT count(*), sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint)::text "
                            f"FROM (SELECT id, customer_id, status, amount, created_at, updated_at, note "
                            f"FROM {table}) t").fetchone()


def same(kind: str, uri: str, table: str, target_name: str, workdir: Path) -> bool:
    """The target equals the source (read by psycopg, and by pyiceberg + polars for Iceberg)."""
    if kind == "postgres":
        return fingerprint_pg(uri, table) == fingerprint_pg(uri, target_name)
    import polars as pl
    from pyiceberg.catalog import load_catalog

    catalog = load_catalog("default", type="sql", uri=f"sqlite:///{workdir}/catalog.db",
                           warehouse=f"file://{workdir}/warehouse")
    copy = pl.from_arrow(catalog.load_table(target_name).scan().to_arrow())
    with psycopg.connect(uri) as conn:
        cur = conn.execute(f"SELECT id, status, amount::text, note, updated_at FROM {table}")
        source = pl.DataFrame(cur.fetchall(), schema=["id", "status", "amount", "note", "updated_at"], orient="row")
    copy = copy.select("id", "status", pl.col("amount").cast(pl.String), "note", "updated_at")
    return (source.height == copy.height
            and source.sort("id").with_columns(pl.col("updated_at").dt.replace_time_zone(None))
            .equals(copy.sort("id").with_columns(pl.col("updated_at").dt.replace_time_zone(None))))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=5_000_000)
    p.add_argument("--changed", type=float, default=0.001, help="the fraction of rows changed each round")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--target", choices=["postgres", "iceberg"], default="postgres")
    p.add_argument("--source", help="the source's URI (default: the stack's PostgreSQL)")
    p.add_argument("--contenders", default="sync,deep-sync,full-copy")
    args = p.parse_args()
    uri = args.source or stack_source()
    table = ensure_table(uri, args.rows)
    workdir = BENCH / f"sync-{args.target}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    target = target_uri(args.target, uri, workdir)
    target_name = f"public.{table}_copy" if args.target == "postgres" else f"bench.{table}"
    if args.target == "postgres":
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {target_name}")
    checkpoints = workdir / "checkpoints.sqlite"
    seconds, _ = backfill(uri, table, target, target_name, checkpoints)
    print(f"first copy: {seconds:.1f} s", flush=True)
    contenders = args.contenders.split(",")
    extra = {"sync": ["--mode", "sync"], "deep-sync": ["--mode", "sync", "--deep"], "full-copy": ["--mode", "full"]}
    times: dict[str, list[float]] = {c: [] for c in contenders}
    changed = int(args.rows * args.changed)
    for run in range(1, args.runs + 1):
        for contender in contenders:
            change(uri, table, changed, run * 10 + contenders.index(contender))
            seconds, summary = backfill(uri, table, target, target_name, checkpoints, *extra[contender])
            settle(uri, table, target_name if args.target == "postgres" else None)
            if not same(args.target, uri, table, target_name, workdir):
                raise SystemExit(f"{contender} left the target different from the source: {summary}")
            times[contender].append(seconds)
            detail = (f"inserted {summary['inserted']}, updated {summary['updated']}, deleted {summary['deleted']}"
                      if summary.get("mode") == "sync" else f"{summary['rows']:,} rows")
            print(f"round {run} {contender:10} {seconds:7.2f} s  ({detail}; exact)", flush=True)
    base = statistics.median(times["sync"]) if "sync" in times else None
    print(f"\n{args.rows:,} rows, {changed:,} changed a round, target {args.target}, median of {args.runs}:")
    for contender, values in times.items():
        median = statistics.median(values)
        ratio = f"{median / base:6.1f}x the sync" if base else ""
        print(f"  {contender:10} {median:7.2f} s  {ratio}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
