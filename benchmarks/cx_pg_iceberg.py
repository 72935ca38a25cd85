"""A hand-written baseline for `backfill_pg_iceberg.py`: ConnectorX into Parquet files, one pyiceberg commit.

No engine, no key ranges, no checkpoints, no verification: the least a Python program has to do to
copy a PostgreSQL table into Iceberg with the same libraries' fast paths, as a yardstick for the
engine's own overhead. ConnectorX streams the table (binary protocol, decoded in Rust on its own
thread) in Arrow batches; each batch is cast to the exact Arrow schema (ConnectorX reads
`numeric(12,2)` as `decimal(38,10)`), written into Parquet files of about `--file-rows` rows (zstd
level 1, dictionaries for strings, as the engine writes them), and all files are added to a new
Iceberg table in one commit.

Runs with airflow-mesh's virtualenv (for its ConnectorX, pyarrow and pyiceberg). Prints one JSON line.

    set -a; . .stack/connections.env; set +a   # MESH_PG_URL: the stack's database, with its password
    .venv/bin/python benchmarks/cx_pg_iceberg.py \
        --source "$MESH_PG_URL" --table bench_orders_5m --workdir /tmp/x
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path

import connectorx
import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.catalog import load_catalog

SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), ("customer_id", pa.int64()), ("status", pa.string()),
                    ("amount", pa.decimal128(12, 2)), ("created_at", pa.timestamp("us", tz="UTC")),
                    ("updated_at", pa.timestamp("us", tz="UTC")), ("note", pa.string())])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="postgresql://user:pw@host:port/db")
    parser.add_argument("--table", required=True, help="table in the public schema")
    parser.add_argument("--workdir", required=True, type=Path, help="fresh folder: catalog and warehouse")
    parser.add_argument("--batch-rows", type=int, default=131_072)
    parser.add_argument("--file-rows", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=1, help="read this many key partitions in parallel")
    args = parser.parse_args()

    workdir = args.workdir.resolve()
    catalog = load_catalog("default", type="sql", uri=f"sqlite:///{workdir}/catalog.db",
                           warehouse=f"file://{workdir}/warehouse")
    catalog.create_namespace("bench")
    table = catalog.create_table(f"bench.{args.table}", schema=SCHEMA)
    file_schema = table.schema().as_arrow()
    started = time.monotonic()
    uri = args.source.replace("postgresql://", "postgres://", 1)
    query = f"SELECT {', '.join(SCHEMA.names)} FROM {args.table}"
    if args.partitions > 1:  # parallel reads of key partitions, the whole table in memory at once
        reader = connectorx.read_sql(uri, query, return_type="arrow", partition_on="id",
                                     partition_num=args.partitions).to_batches(max_chunksize=args.batch_rows)
    else:
        reader = connectorx.read_sql(uri, query, return_type="arrow_stream", batch_size=args.batch_rows)
    paths: list[str] = []
    stream = writer = None
    rows_in_file = 0
    for batch in reader:
        if writer is None:
            paths.append(f"{table.location()}/data/cx-{uuid.uuid4().hex}.parquet")
            stream = table.io.new_output(paths[-1]).create()
            writer = pq.ParquetWriter(stream, file_schema, compression="zstd", compression_level=1,
                                      use_dictionary=["status", "note"])
        writer.write_batch(batch.cast(file_schema))
        rows_in_file += batch.num_rows
        if rows_in_file >= args.file_rows:
            writer.close()
            stream.close()
            stream = writer = None
            rows_in_file = 0
    if writer is not None:
        writer.close()
        stream.close()
    table.add_files(paths, check_duplicate_files=False)
    print(json.dumps({"table": f"bench.{args.table}", "catalog": f"sqlite:///{workdir}/catalog.db",
                      "phases": {"copy": round(time.monotonic() - started, 3)}}))


if __name__ == "__main__":
    main()
