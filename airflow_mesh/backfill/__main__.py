"""``airflow-mesh backfill`` (``python -m airflow_mesh.backfill``): copy a table between datastores,
resumable and verified, with a progress bar; or verify an existing copy.

Every failure prints one line (what failed, where, the server's words, what to do) and exits 1;
``--debug`` adds the traceback. Ctrl-C exits 130: rerunning the same command resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

DEFAULT_CHECKPOINTS = Path.home() / ".airflow-mesh" / "backfill-checkpoints.sqlite"
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class _Help(argparse.HelpFormatter):
    """Shows an option's default when it has one worth showing (not None or False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def _default(setting: str) -> str:
    """`` (default: ...)`` for a help text: the backfill request's own default of a setting (the
    options default to None, so that only what was given reaches ``BackfillRequest``)."""
    from airflow_mesh.backfill.plan import BackfillRequest

    value = BackfillRequest.model_fields[setting].default
    return f" (default: {getattr(value, 'value', value)})"


def parser() -> argparse.ArgumentParser:
    """The command's options, each with its help."""
    p = argparse.ArgumentParser(
        prog="airflow-mesh backfill",
        description="Copy a table between datastores (PostgreSQL, MariaDB, Iceberg -> Iceberg, PostgreSQL, "
                    "Elasticsearch, Kafka), range by range, resumable and verified; or verify an existing copy. "
                    "A failure prints one line and exits 1 (--debug: the traceback); Ctrl-C exits 130.",
        formatter_class=_Help,
        epilog="A rerun of the same command resumes from the checkpoints; --restart starts over.")
    where = p.add_argument_group("where from and where to")
    where.add_argument("--source", required=True, metavar="URI",
                       help="the source: postgresql://user:pw@host:5432/db, mysql://user:pw@host:3306/db, or "
                            'iceberg://?extra={"catalog": {...pyiceberg catalog properties...}}')
    where.add_argument("--table", required=True, help="the source table: schema.table (PostgreSQL), "
                                                      "database.table (MariaDB) or namespace.table (Iceberg)")
    where.add_argument("--target", required=True, metavar="URI",
                       help='the target: iceberg://?extra={"catalog": {...}}, postgresql://..., es://host:9200 '
                            "or kafka://?bootstrap.servers=host:9092")
    where.add_argument("--target-name", required=True, metavar="NAME",
                       help="the target table (schema.table, namespace.table), index or topic; created when missing")
    kafka = p.add_argument_group("Kafka targets")
    kafka.add_argument("--value-format", choices=["json", "avro"],
                       help="message format (default: avro with --schema-registry, else json)")
    kafka.add_argument("--schema-registry", metavar="URL",
                       help="where Avro schemas are registered, e.g. http://user:pw@registry:8081 or "
                            "http://127.0.0.1:8085/apis/ccompat/v7 (Apicurio)")
    what = p.add_argument_group("what to copy")
    what.add_argument("--key", metavar="COLUMNS",
                      help="the column(s) ranges are cut on, comma-separated for a composite key (default: the "
                           "primary key, else a unique key); must identify one row")
    what.add_argument("--where", metavar="CONDITION",
                      help="copy only the rows matching one SQL condition in the source's dialect, "
                           "e.g. \"status <> 'test'\"")
    what.add_argument("--cast", action="append", default=[], metavar="COLUMN=TYPE",
                      help="read COLUMN as CAST(COLUMN AS TYPE) and copy it with that type's exact type, e.g. "
                           "amount=numeric(38,20) or shape=text; a value the cast would change (round, cut) fails "
                           "the run naming the column (repeatable)")
    what.add_argument("--exclude", action="append", default=[], metavar="COLUMN",
                      help="leave COLUMN out: neither read nor in the target (repeatable)")
    what.add_argument("--mode", choices=["full", "incremental", "sync"],
                      help="full: every row of one snapshot of the source; incremental: the rows whose "
                           "--cursor-column is at or past the last run's mark (it does NOT see deletes, nor updates "
                           "that leave the cursor alone or set it into the past); sync: compare both sides range "
                           "by range and repair what differs (sees inserts, updates and deletes)"
                           + _default("mode"))
    what.add_argument("--cursor-column", metavar="COLUMN",
                      help="incremental mode: a column every insert and update moves forward, e.g. updated_at")
    what.add_argument("--cursor-after", metavar="VALUE",
                      help="incremental mode: copy the rows at or past this value instead of the stored mark")
    what.add_argument("--cursor-lag", type=float, metavar="SECONDS",
                      help="hold the new mark back by this much beyond what the source's snapshot proves (cursor "
                           "values written by other clocks than the database's)")
    how = p.add_argument_group("how")
    how.add_argument("--range-size", type=int, metavar="ROWS",
                     help="rows per key range: the unit of parallelism, checkpoints and verification"
                          + _default("range_size"))
    how.add_argument("--parallelism", type=int, metavar="N", help="ranges moved at once" + _default("parallelism"))
    how.add_argument("--dry-run", action="store_true", help="plan and count only; write nothing")
    how.add_argument("--verify-only", action="store_true",
                     help="compare an existing copy with the source, range by range; write nothing")
    how.add_argument("--checkpoints", type=Path, default=DEFAULT_CHECKPOINTS, metavar="FILE",
                     help="the SQLite file of done ranges and high-water marks")
    how.add_argument("--deep", action="store_true",
                     help="sync: compare every range of both sides, even where the source can tell which rows "
                          "changed since the last verified run (also repairs a target someone else changed)")
    how.add_argument("--no-verify", action="store_true",
                     help="skip the read-back of what was written (faster; a mismatch then goes unnoticed)")
    how.add_argument("--restart", action="store_true",
                     help="forget this job's checkpoints (and incremental mark) and copy everything again")
    out = p.add_argument_group("output")
    out.add_argument("--details", action="store_true", help="put every range's row count and checksum in the summary")
    out.add_argument("--debug", action="store_true", help="show tracebacks and the drivers' logs")
    return p


def _quiet_drivers(debug: bool) -> None:
    """Keep the drivers' own chatter (librdkafka's retries, ConnectorX's pool) out of the terminal."""
    os.environ.setdefault("RUST_LOG", "debug" if debug else "off")
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not debug:
        for noisy in ("pyiceberg", "elastic_transport", "urllib3", "airflow_mesh.backfill"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


def progress_columns() -> list[Any]:
    """The progress line: what, a bar, percent, ``done/total`` and unit, time left. The bar takes
    only what the rest leaves, so the numbers stay whole on an 80-column terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn

    return [TextColumn("{task.description:<9}"), BarColumn(bar_width=None), TaskProgressColumn(),
            MofNCompleteColumn(), TextColumn("{task.fields[unit]}"), TimeRemainingColumn(compact=True)]


def run(args: argparse.Namespace, console: Any) -> dict[str, Any]:
    """Carry out the parsed command; returns the summary (as JSON-ready data)."""
    from rich.progress import Progress

    from airflow_mesh.backfill import engine
    from airflow_mesh.backfill.checkpoint import CheckpointStore
    from airflow_mesh.backfill.endpoints import ConnectionFields, make_source, make_target, schema_registry_from_url
    from airflow_mesh.backfill.plan import BackfillRequest, parse_casts

    given = {"key": args.key, "mode": args.mode, "cursor_column": args.cursor_column, "cursor_after": args.cursor_after,
             "where": args.where, "range_size": args.range_size, "parallelism": args.parallelism,
             "cursor_lag": args.cursor_lag}
    # What was not given takes the request's own defaults (they live in BackfillRequest only).
    request = BackfillRequest(table=args.table, dry_run=args.dry_run, casts=parse_casts(args.cast),
                              exclude=args.exclude, deep=args.deep,
                              **{name: value for name, value in given.items() if value is not None})
    source = make_source(ConnectionFields.from_uri(args.source))
    registry = schema_registry_from_url(args.schema_registry) if args.schema_registry else None
    target = make_target(ConnectionFields.from_uri(args.target), args.target_name, value_format=args.value_format,
                         schema_registry=registry)
    console.print(f"[bold]{args.table}[/bold] -> [bold]{args.target_name}[/bold] "
                  f"({'verify only' if args.verify_only else request.mode.value})")
    if not args.verify_only:
        console.print(f"checkpoints: {args.checkpoints}", soft_wrap=True)
    # Each task appears once it has a total (planning comes first).
    with Progress(*progress_columns(), console=console, transient=False, expand=True) as bar:
        tasks: dict[str, Any] = {}

        def show(name: str, unit: str) -> Any:
            def update(done: int, total: int) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(name, total=total, unit=unit)
                bar.update(tasks[name], completed=done, total=total)
            return update

        if args.verify_only:
            summary = engine.verify(source, target, request, on_verify=show("verifying", "ranges"))
        else:
            summary = engine.run(source, target, request, CheckpointStore(args.checkpoints), restart=args.restart,
                                 verify=not args.no_verify,
                                 on_progress=show("copying", "rows"), on_verify=show("verifying", "ranges"))
    return summary.to_dict(details=args.details)


def main(argv: list[str] | None = None) -> int:
    """Run the command.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 1 when the backfill failed (one line on stderr says why), 2 for bad options,
        130 when interrupted.
    """
    from rich.console import Console

    args = parser().parse_args(argv)
    _quiet_drivers(args.debug)
    console = Console(stderr=True, highlight=False)
    try:
        summary = run(args, console)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]; rerun the same command to resume")
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)  # ranges still moving in threads are redone by the rerun
    except Exception as exc:  # noqa: BLE001 - every failure ends in one line
        from airflow_mesh.backfill.explain import explain

        if args.debug:
            traceback.print_exc()
        from rich.text import Text

        console.print(Text.assemble(("backfill failed: ", "red"), explain(exc)), soft_wrap=True)
        if not args.debug:
            console.print("[dim](--debug shows the traceback)[/dim]")
        return EXIT_FAILED
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
