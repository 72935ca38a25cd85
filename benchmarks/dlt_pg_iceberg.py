"""dlt's side of `backfill_pg_iceberg.py`: one PostgreSQL table into a fresh Iceberg table with dlt.

Runs with the python of dlt's own virtualenv (`.stack/bench/dlt-venv`, which `backfill_pg_iceberg.py`
creates), never airflow-mesh's. It uses dlt's `sql_table` source and its `filesystem` destination with
`table_format="iceberg"` on a SQLite catalog and a local warehouse, i.e. dlt's documented Iceberg
path (dlt 1.31), in the configuration that was fastest for this workload on the benchmark machine:

- `backend="connectorx"` with `return_type="arrow_stream"` in batches of `--chunk-size` rows:
  ConnectorX reads PostgreSQL's binary protocol straight into Arrow. The `pyarrow` backend (rows
  through SQLAlchemy) took about 3x as long; reading without the stream, or in 2 parallel
  partitions, was no faster and held the whole table; chunks of 100k to 1M rows, or Iceberg's
  snappy codec instead of zstd, made no difference beyond the machine's noise;
- Parquet as the intermediate file format (Arrow items pass through dlt's normalizer untouched);
- dlt's defaults elsewhere (one normalize worker; loading reads every Parquet file of the table
  into memory and appends it in one pyiceberg commit, which is where its peak RSS comes from).

Note that ConnectorX maps `numeric(12,2)` to `decimal(38,10)`: dlt keeps its hints' precision in
its schema but writes the data's type, so the Iceberg table gets `decimal(38, 10)`.

Prints one JSON line: the rows dlt reports loaded and the seconds of each phase.

    set -a; . .stack/connections.env; set +a   # MESH_PG_URL: the stack's database, with its password
    .stack/bench/dlt-venv/bin/python benchmarks/dlt_pg_iceberg.py \
        --source "$MESH_PG_URL" --table bench_orders_5m --workdir /tmp/x
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="postgresql://user:pw@host:port/db")
    parser.add_argument("--table", required=True, help="table in the public schema")
    parser.add_argument("--workdir", required=True, type=Path, help="fresh folder: catalog, warehouse, dlt's files")
    parser.add_argument("--backend", default="connectorx", choices=["connectorx", "pyarrow"])
    parser.add_argument("--chunk-size", type=int, default=100_000, help="rows per batch read from PostgreSQL")
    parser.add_argument("--no-stream", action="store_true", help="connectorx: read the whole table at once")
    parser.add_argument("--partitions", type=int, default=0,
                        help="connectorx: read in this many parallel partitions of the key (implies --no-stream)")
    parser.add_argument("--iceberg-codec", help="Iceberg's write.parquet.compression-codec (pyiceberg's default: zstd)")
    args = parser.parse_args()

    workdir = args.workdir.resolve()
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ["DLT_DATA_DIR"] = str(workdir / "dlt-data")
    import dlt
    from dlt.sources.sql_database import sql_table

    # A persistent SQLite catalog (dlt's default is an in-memory one), so the copy can be checked.
    dlt.config["iceberg_catalog.iceberg_catalog_type"] = "sql"
    dlt.config["iceberg_catalog.iceberg_catalog_config"] = {
        "type": "sql", "uri": f"sqlite:///{workdir}/catalog.db", "warehouse": f"file://{workdir}/warehouse"}

    backend_kwargs = {}
    if args.backend == "connectorx":
        # Postgres' `postgres://` scheme is what ConnectorX expects; binary protocol is dlt's default.
        backend_kwargs = {"conn": args.source.replace("postgresql://", "postgres://", 1)}
        if args.partitions:
            backend_kwargs |= {"partition_on": "id", "partition_num": args.partitions}
        elif not args.no_stream:
            backend_kwargs |= {"return_type": "arrow_stream", "batch_size": args.chunk_size}
    resource = sql_table(credentials=args.source, table=args.table, schema="public", backend=args.backend,
                         chunk_size=args.chunk_size, reflection_level="full_with_precision",
                         backend_kwargs=backend_kwargs)
    table_properties = {"write.parquet.compression-codec": args.iceberg_codec} if args.iceberg_codec else None
    destination = dlt.destinations.filesystem(bucket_url=f"file://{workdir}/warehouse",
                                              iceberg_table_properties=table_properties)
    pipeline = dlt.pipeline(pipeline_name="bench", pipelines_dir=str(workdir / "pipelines"), destination=destination,
                            dataset_name="bench", progress=None)
    phases = {}
    started = time.monotonic()
    pipeline.extract(resource, table_format="iceberg", loader_file_format="parquet")
    phases["extract"] = time.monotonic() - started
    pipeline.normalize()
    phases["normalize"] = time.monotonic() - started - phases["extract"]
    load_info = pipeline.load()
    phases["load"] = time.monotonic() - started - phases["extract"] - phases["normalize"]
    load_info.raise_on_failed_jobs()
    rows = pipeline.last_trace.last_normalize_info.row_counts.get(args.table)
    print(json.dumps({"rows": rows, "table": f"bench.{args.table}", "catalog": f"sqlite:///{workdir}/catalog.db",
                      "phases": {k: round(v, 3) for k, v in phases.items()}}))


if __name__ == "__main__":
    main()
