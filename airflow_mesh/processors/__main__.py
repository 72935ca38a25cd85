"""``airflow-mesh processors`` (also ``python -m airflow_mesh.processors``): list, explain and validate processors.

    airflow-mesh processors [list]                  the registered processors, then the registry's problems
    airflow-mesh processors explain NAME [--param key=value ...] [--bootstrap-servers HOST:PORT] [--job-name NAME]
                                                    the Flink SQL the processor compiles to
    airflow-mesh processors validate [NAME ...] [--param key=value ...]
                                                    create and compile each processor (for CI): exit 1 if one fails

``NAME`` is a registered name or a ``package.module:factory`` reference. ``--param key=value`` gives a
string (``input_topic=orders``), or JSON when the value starts with ``{``, ``[`` or ``"``
(``columns={"id": "BIGINT"}``, ``key=["id"]``); ``--param key:=value`` gives any JSON value
(``limit:=3``, ``strict:=true``). Bad input is one line on stderr (add ``--debug`` for the traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from airflow_mesh.processors.compile import compile_sql
from airflow_mesh.processors.model import DeclarationError, Deployment, KafkaCluster
from airflow_mesh.processors.registry import RegistryError, UnknownProcessorError, default_registry

PLACEHOLDER_BOOTSTRAP_SERVERS = "kafka.invalid:9092"
DEFAULT_PROG = "python -m airflow_mesh.processors"


def list_processors() -> int:
    """Print every registered processor, then the registry's problems.

    Returns:
        The exit status (0: problems are shown, not failed; ``validate`` fails them).
    """
    registry = default_registry()
    for entry, error in registry.load_all():
        try:
            details = ("cannot be loaded (see the problems below)" if error
                       else f"{entry.description}\n    parameters: {entry.parameters}")
        except RegistryError as exc:  # loaded, but Python cannot tell its signature
            details = f"cannot be inspected: {exc}"
        print(f"{entry.name}  [{entry.origin}]\n    {details}")
    problems = registry.problems
    if problems:
        print(f"\n{len(problems)} problem{'s' if len(problems) != 1 else ''} in the registry:")
        for problem in problems:
            print(f"  - {problem}")
    return 0


def parse_param(text: str) -> tuple[str, Any]:
    """A ``--param``: ``key=value`` (a string, or JSON if it starts with ``{``, ``[`` or ``"``) or ``key:=json``.

    Args:
        text: ``key=value`` or ``key:=json``.

    Returns:
        ``(key, value)``.

    Raises:
        argparse.ArgumentTypeError: there is no ``=``, no key before it, or the JSON does not parse.
    """
    key, equals, value = text.partition("=")
    raw_json = key.endswith(":")
    key = key.removesuffix(":").strip()
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected key=value or key:=json, got {text!r}")
    if not raw_json and not value.lstrip().startswith(("{", "[", '"')):
        return key, value
    try:
        return key, json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"the value of {key!r} is not valid JSON ({exc}): {value!r}") from None


def _params(pairs: Sequence[tuple[str, Any]] | None) -> dict[str, Any]:
    return dict(pairs or ())


def _one_line(exc: BaseException) -> str:
    """An error's message on one line (a DeclarationError's problems joined by ``; ``)."""
    if isinstance(exc, DeclarationError):
        return f"processor {exc.processor!r} is invalid: " + "; ".join(exc.problems)
    return " ".join(str(exc).split())


def _hint(exc: BaseException, prog: str) -> str:
    """What to do about an error, when the message does not say it already."""
    if isinstance(exc, UnknownProcessorError):
        return f" (see '{prog} list')"
    if isinstance(exc, RegistryError) and ("missing a required argument" in str(exc)
                                           or "unexpected keyword argument" in str(exc)):
        return " (give them with --param key=value)"
    return ""


def explain(name: str, params: dict[str, Any], bootstrap_servers: str | None, job_name: str | None) -> int:
    """Print the Flink SQL a processor compiles to.

    Args:
        name: A registered name or a ``package.module:factory`` reference.
        params: The factory's keyword parameters.
        bootstrap_servers: The Kafka cluster (a placeholder, said in a comment, when ``None``).
        job_name: The Flink job's name (default: the processor's).

    Returns:
        The exit status: 0.

    Raises:
        RegistryError: the processor is unknown, refused, cannot be loaded, or the parameters do not fit.
        DeclarationError: the declaration is invalid.
    """
    processor = default_registry().resolve(name).create(params)
    script = compile_sql(processor, Deployment(job_name or processor.name,
                                               KafkaCluster(bootstrap_servers or PLACEHOLDER_BOOTSTRAP_SERVERS)))
    if bootstrap_servers is None:
        print(f"-- bootstrap servers: placeholder {PLACEHOLDER_BOOTSTRAP_SERVERS!r} "
              "(give the real ones with --bootstrap-servers HOST:PORT)")
    print(script, end="")
    return 0


def _validate_one(name: str, params: dict[str, Any]) -> tuple[bool, str]:
    entry = default_registry().resolve(name)
    missing = [parameter for parameter in entry.required_parameters() if parameter not in params]
    if missing:
        entry.factory  # noqa: B018 - loads it: a package that cannot be imported fails here
        return True, f"ok, loaded (pass --param {' '.join(f'{p}=...' for p in missing)} to compile it)"
    compile_sql(entry.create(params), Deployment(name, KafkaCluster(PLACEHOLDER_BOOTSTRAP_SERVERS)))
    return True, "ok, compiled"


def validate(names: Sequence[str], params: dict[str, Any], debug: bool = False) -> int:
    """Create and compile each processor, printing one line per processor.

    A processor whose factory needs parameters that were not given is loaded (its package imported)
    but not compiled; that is not a failure. Without names, every registered processor is checked,
    and each problem of the registry (a refused name) is a failure too.

    Args:
        names: Registered names or ``package.module:factory`` references (default: every registered one).
        params: Keyword parameters given to every factory.
        debug: Print the traceback of each failure.

    Returns:
        The exit status: 1 if any failed, else 0.
    """
    registry = default_registry()
    results: list[tuple[str, bool, str]] = []
    for name in names or [entry.name for entry in registry]:
        try:
            ok, what = _validate_one(name, params)
        except Exception as exc:  # noqa: BLE001 - a team's factory may raise anything: report it, check the rest
            if debug:
                traceback.print_exc()
            ok, what = False, _one_line(exc)
        results.append((name, ok, what))
    if not names:
        reported = {name for name, ok, _ in results if not ok}
        results += [("registry", False, problem.message) for problem in registry.problems
                    if problem.name not in reported]
    for name, ok, what in results:
        print(f"{name}: {what}" if ok else f"{name}: FAILED: {' '.join(what.split())}")
    failed = sum(not ok for _, ok, _ in results)
    print(f"{len(results)} processor{'s' if len(results) != 1 else ''}: {len(results) - failed} ok, {failed} failed")
    return 1 if failed else 0


def parser(prog: str = DEFAULT_PROG) -> argparse.ArgumentParser:
    """The command line's parser.

    Args:
        prog: The program's name in usage and errors.

    Returns:
        The parser.
    """
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of an error")
    params = argparse.ArgumentParser(add_help=False)
    params.add_argument("--param", dest="params", action="append", type=parse_param, metavar="KEY=VALUE",
                        help="a parameter of the factory (JSON if it parses as JSON, else a string); repeatable")
    main_parser = argparse.ArgumentParser(prog=prog, parents=[debug],
                                          description="List, explain and validate the registered stream processors.")
    commands = main_parser.add_subparsers(dest="command", metavar="{list,explain,validate}")
    commands.add_parser("list", parents=[debug], help="the registered processors and the registry's problems (default)")
    explain_parser = commands.add_parser("explain", parents=[debug, params], help="print a processor's Flink SQL")
    explain_parser.add_argument("name", help="a registered name or a package.module:factory reference")
    explain_parser.add_argument("--bootstrap-servers", metavar="HOST:PORT",
                                help=f"the Kafka cluster (default: the placeholder {PLACEHOLDER_BOOTSTRAP_SERVERS})")
    explain_parser.add_argument("--job-name", help="the Flink job's name (default: the processor's)")
    validate_parser = commands.add_parser("validate", parents=[debug, params],
                                          help="create and compile processors, one line each; exit 1 if one fails")
    validate_parser.add_argument("names", nargs="*", metavar="NAME", help="default: every registered processor")
    return main_parser


def main(argv: list[str] | None = None, prog: str = DEFAULT_PROG) -> int:
    """Run the command.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
        prog: The program's name in usage and errors.

    Returns:
        The exit status: 0, 1 when the processor (``explain``) or one of them (``validate``) failed.

    Raises:
        SystemExit: with status 2 on a usage error (argparse's own, e.g. an unknown option).
    """
    args = parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
    debug = getattr(args, "debug", False)
    command: Callable[[], int]
    if args.command == "explain":
        def command() -> int:
            return explain(args.name, _params(args.params), args.bootstrap_servers, args.job_name)
    elif args.command == "validate":
        def command() -> int:
            return validate(args.names, _params(args.params), debug)
    else:
        command = list_processors
    try:
        return command()
    except Exception as exc:  # noqa: BLE001 - a team's factory may raise anything: one line, the traceback on --debug
        if debug:
            traceback.print_exc()
        print(f"{prog} {args.command}: {_one_line(exc)}{_hint(exc, prog)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
