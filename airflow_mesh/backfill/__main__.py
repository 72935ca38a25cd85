"""``python -m airflow_mesh.backfill``: run or verify a backfill from the command line, with a progress bar."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from airflow_mesh.backfill import engine
from airflow_mesh.backfill.checkpoint import CheckpointStore
from airflow_mesh.backfill.endpoints import ConnectionFields, make_source, make_target, schema_registry_from_url
from airflow_mesh.backfill.errors import BackfillError
from airflow_mesh.backfill.plan import BackfillRequest, parse_casts

DEFAULT_CHECKPOINTS = Path.home() / ".airflow-mesh" / "backfill-checkpoints.sqlite"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m airflow_mesh.backfill", description=__doc__)
    parser.add_argument("--source", required=True, help="source URI, e.g. postgresql://user:pw@host:5432/db")
    parser.add_argument("--table", required=True, help="source table, e.g. public.orders")
    parser.add_argument("--target", required=True,
                        help='target URI, e.g. iceberg://?extra={"catalog": {...}}, postgresql://..., '
                             "es://host:9200, kafka://?bootstrap.servers=host:9092")
    parser.add_argument("--target-name", required=True, help="target table, index or topic")
    parser.add_argument("--value-format", choices=["json", "avro"],
                        help="a Kafka target's message format (default: avro with --schema-registry, else json)")
    parser.add_argument("--schema-registry", metavar="URL",
                        help="the schema registry a Kafka target's Avro schemas go to, e.g. "
                             "http://user:pw@registry:8081 or http://127.0.0.1:8085/apis/ccompat/v7 (Apicurio)")
    parser.add_argument("--key")
    parser.add_argument("--mode", default="full", choices=["full", "incremental"])
    parser.add_argument("--cursor-column")
    parser.add_argument("--cursor-after")
    parser.add_argument("--where")
    parser.add_argument("--range-size", type=int, default=250_000)
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--cast", action="append", default=[], metavar="COLUMN=TYPE",
                        help="read COLUMN as CAST(COLUMN AS TYPE) and copy it with that type's exact type, e.g. "
                             "amount=numeric(38,20) or shape=text; a value the cast would change (round, cut) fails "
                             "the run naming the column (repeatable)")
    parser.add_argument("--exclude", action="append", default=[], metavar="COLUMN",
                        help="leave COLUMN out: neither read nor in the target (repeatable)")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--verify-only", action="store_true", help="compare an existing copy; write nothing")
    parser.add_argument("--checkpoints", type=Path, default=DEFAULT_CHECKPOINTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    args = parse_args(argv)
    console = Console(stderr=True)
    try:
        request = BackfillRequest(table=args.table, key=args.key, mode=args.mode, cursor_column=args.cursor_column,
                                  cursor_after=args.cursor_after, where=args.where, range_size=args.range_size,
                                  parallelism=args.parallelism, dry_run=args.dry_run, casts=parse_casts(args.cast),
                                  exclude=args.exclude)
        source = make_source(ConnectionFields.from_uri(args.source))
        registry = schema_registry_from_url(args.schema_registry) if args.schema_registry else None
        target = make_target(ConnectionFields.from_uri(args.target), args.target_name, value_format=args.value_format,
                             schema_registry=registry)
        if args.verify_only:
            summary = engine.verify(source, target, request)
        else:
            with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("rows"), TimeRemainingColumn(), console=console) as bar:
                task = bar.add_task(f"{args.table} -> {args.target_name}", total=None)
                summary = engine.run(source, target, request, CheckpointStore(args.checkpoints),
                                     on_progress=lambda done, total: bar.update(task, completed=done, total=total))
    except (BackfillError, ValidationError) as exc:
        console.print(f"[red]backfill failed:[/red] {exc}")
        return 1
    print(json.dumps(summary.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
