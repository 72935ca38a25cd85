"""One line that says why something failed, from whichever library raised it.

The backfill talks to PostgreSQL (ADBC, psycopg), MariaDB (ConnectorX, PyMySQL), Iceberg
(pyiceberg), Elasticsearch and Kafka; each raises its own exceptions, with the server's message
buried in a multi-line text. ``explain`` digs out the server's message and adds what to do where the
cause is a common one (a wrong password, a server that does not answer).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from airflow_mesh.backfill.errors import BackfillError, SourceError, TargetError

T = TypeVar("T")

_HINTS = [
    (re.compile(r"password authentication failed|Access denied for user|authentication failed|"
                r"no password supplied|security_exception|401 Unauthorized", re.IGNORECASE),
     "check the connection's user and password"),
    (re.compile(r"Connection refused|could not translate host name|Name or service not known|"
                r"Broker transport failure|Failed to establish a new connection|timed out waiting for connection|"
                r"Can't connect to|Connection timed out|No route to host", re.IGNORECASE),
     "is the server running, and reachable at that address and port?"),
    (re.compile(r"permission denied|command denied|insufficient privilege|TOPIC_AUTHORIZATION_FAILED", re.IGNORECASE),
     "grant the connection's user the privileges it needs"),
]
_MAX = 500


def _one_line(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= _MAX else text[: _MAX - 3] + "..."


def _adbc(text: str) -> str:
    """ADBC's ``IO: [libpq] Failed to connect: ...`` / ``NOT_FOUND: Failed to prepare query: ERROR: ...
    Query was: ...`` as the server's own words (the query, which can be long, left out)."""
    text = text.split("\nQuery was:", 1)[0]
    text = re.sub(r"^[A-Z_]+: (\[libpq\] )?", "", text.strip())
    text = re.sub(r"^Failed to (prepare query|execute query|connect): ", "", text)
    text = re.sub(r"\nLINE \d+: .*\n\s*\^", "", text)
    return text.replace("ERROR:  ", "").replace("FATAL:  ", "")


def _pydantic(exc: Exception) -> str:
    problems = []
    for error in exc.errors():  # type: ignore[attr-defined]
        where = ".".join(str(part) for part in error.get("loc", ())) or "request"
        problems.append(f"{where}: {error.get('msg', '').removeprefix('Value error, ')}")
    return "; ".join(problems)


def message(exc: BaseException) -> str:
    """The failure's own words, on one line: the server's message where there is one."""
    module = type(exc).__module__.split(".")[0]
    name = type(exc).__name__
    if name == "ValidationError" and module in ("pydantic", "pydantic_core"):
        return _pydantic(exc)  # type: ignore[arg-type]
    if module == "adbc_driver_manager":
        return _one_line(_adbc(str(exc)))
    if module == "psycopg":
        diag = getattr(exc, "diag", None)
        primary = getattr(diag, "message_primary", None)
        return _one_line(primary or str(exc))
    if module == "pymysql" and len(getattr(exc, "args", ())) == 2:
        code, text = exc.args
        return _one_line(f"{text} (MariaDB error {code})")
    connectorx = r"(?:MySqlError|PostgresError|Error) \{ (.*) \}"
    if isinstance(exc, RuntimeError) and (found := re.search(connectorx, str(exc))):
        return _one_line(found.group(1))  # ConnectorX
    if module in ("elasticsearch", "elastic_transport"):
        body = getattr(exc, "body", None)
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            error = body["error"]
            status = getattr(getattr(exc, "meta", None), "status", "")
            return _one_line(f"Elasticsearch {status} {error.get('type', '')}: {error.get('reason', '')}")
        return _one_line(f"Elasticsearch: {exc}")
    if name == "KafkaException" and exc.args and hasattr(exc.args[0], "str"):
        return _one_line(f"Kafka: {exc.args[0].str()}")
    if isinstance(exc, OSError) and exc.strerror:
        return _one_line(f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror)
    text = str(exc) or name
    return text if module == "airflow_mesh" else _one_line(f"{name}: {text}")  # our own messages are written to be read


def hint(text: str) -> str | None:
    """What to do about a failure whose message is ``text``, when its cause is a common one."""
    return next((advice for pattern, advice in _HINTS if pattern.search(text)), None)


def explain(exc: BaseException) -> str:
    """``message(exc)``, followed by what to do when the cause is a common one."""
    text = message(exc)
    advice = hint(text)
    return f"{text} ({advice})" if advice and advice not in text else text


@contextlib.contextmanager
def at(side: str, name: str, doing: str) -> Iterator[None]:
    """Turn whatever a driver raises into a ``SourceError`` or ``TargetError`` that names the side,
    what was being done and the server's own message (``explain``); errors of the engine's own
    pass unchanged.

    Args:
        side: ``source`` or ``target``.
        name: The endpoint's name (e.g. ``postgresql://host:5432/db``).
        doing: What was being done, e.g. ``reading range 1-5001``.
    """
    try:
        yield
    except BackfillError:
        raise
    except Exception as exc:
        kind = SourceError if side == "source" else TargetError
        raise kind(f"{side} {name}: {doing}: {explain(exc)}") from exc


def reading(source: Any, batches: Iterable[T], doing: str) -> Iterator[T]:
    """A source's batches, with its failures (even in the middle of a stream) as ``SourceError``."""
    with at("source", source.name, doing):
        yield from batches
