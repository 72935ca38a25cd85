"""airflow-mesh's side of `backfill_pg_iceberg.py`: the backfill engine copies one table into a fresh Iceberg table.

Runs with airflow-mesh's virtualenv. It builds the source and target exactly as the CLI
(`python -m airflow_mesh.backfill`) does and runs `engine.run(...)` with verification (each range
read back from Iceberg, counted and checksummed against the checksum recorded when it was copied),
or without it (`--no-verify`). Most ranges are read back while later ones still copy; the `verify`
phase is what is left after the last commit (the end's check of files, and the last ranges' reads).

Prints one JSON line: rows copied, ranges, the seconds of each phase and the peak RSS before verifying.

    set -a; . .stack/connections.env; set +a   # MESH_PG_URL: the stack's database, with its password
    .venv/bin/python benchmarks/airflow_mesh_pg_iceberg.py \
        --source "$MESH_PG_URL" --table public.bench_orders_5m --workdir /tmp/x
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from airflow_mesh.backfill import engine
from airflow_mesh.backfill.checkpoint import CheckpointStore
from airflow_mesh.backfill.endpoints import ConnectionFields, make_source, make_target
from airflow_mesh.backfill.plan import BackfillRequest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="postgresql://user:pw@host:port/db")
    parser.add_argument("--table", required=True, help="source table, e.g. public.bench_orders_5m")
    parser.add_argument("--workdir", required=True, type=Path, help="fresh folder: catalog, warehouse, checkpoints")
    parser.add_argument("--range-size", type=int, default=500_000)
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--no-verify", action="store_true")
    args = parser.parse_args()

    workdir = args.workdir.resolve()
    catalog = {"type": "sql", "uri": f"sqlite:///{workdir}/catalog.db", "warehouse": f"file://{workdir}/warehouse"}
    source = make_source(ConnectionFields.from_uri(args.source))
    target = make_target(ConnectionFields("iceberg", extra={"catalog": catalog}), f"bench.{args.table.split('.')[-1]}")
    request = BackfillRequest(table=args.table, range_size=args.range_size, parallelism=args.parallelism)

    # One run with verification, as the CLI and the operator run it; verification is timed apart by
    # wrapping the engine's verify_target (which run() calls once, after the last range's commit).
    phases = {"verify": 0.0}
    rss_copy_mb = 0.0
    verify_target = engine.verify_target

    def timed_verify_target(*positional, **keywords):
        nonlocal rss_copy_mb
        rss_copy_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.monotonic()
        try:
            return verify_target(*positional, **keywords)
        finally:
            phases["verify"] += time.monotonic() - started

    engine.verify_target = timed_verify_target
    started = time.monotonic()
    summary = engine.run(source, target, request, CheckpointStore(workdir / "checkpoints.sqlite"),
                         verify=not args.no_verify)
    phases["copy"] = time.monotonic() - started - phases["verify"]
    if args.no_verify:
        rss_copy_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": summary.rows, "ranges": summary.ranges, "verified": summary.verified,
                      "table": target.identifier, "catalog": catalog["uri"], "rss_copy_mb": round(rss_copy_mb, 1),
                      "phases": {"copy": round(phases["copy"], 3), "verify": round(phases["verify"], 3)}}))


if __name__ == "__main__":
    main()
