"""Connector specs: the declarative files in ``connectors/`` and how they become Kafka Connect configs.

A spec names a connector, its class and settings, and refers to an Airflow connection for anything
secret or environment-specific::

    name: orders-cdc
    class: io.debezium.connector.postgresql.PostgresConnector
    database:
      conn_id: postgres_orders          # fills host, port, user, password, dbname at deploy time
      password: ${env:PG_PASSWORD}      # optional: send a config-provider reference, not the secret
    config:
      topic.prefix: orders
      plugin.name: pgoutput

Pure logic: nothing here imports Airflow or touches the network, so a spec is checked completely
before any side effect.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError, field_validator

POSTGRES_CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector"
MARIADB_CONNECTOR = "io.debezium.connector.mariadb.MariaDbConnector"
MYSQL_CONNECTOR = "io.debezium.connector.mysql.MySqlConnector"

# Which Kafka Connect settings each connection field fills, per connector class.
DATABASE_SETTINGS: dict[str, dict[str, str]] = {
    POSTGRES_CONNECTOR: {"host": "database.hostname", "port": "database.port", "login": "database.user",
                         "password": "database.password", "schema": "database.dbname"},
    MARIADB_CONNECTOR: {"host": "database.hostname", "port": "database.port", "login": "database.user",
                        "password": "database.password"},
    MYSQL_CONNECTOR: {"host": "database.hostname", "port": "database.port", "login": "database.user",
                      "password": "database.password"},
}

# A setting whose name says it holds a secret may only carry a config-provider reference.
SECRET_KEY = re.compile(r"(password|passwd|secret|token|credentials?|api[._-]?key|private[._-]?key|jaas\.config)$",
                        re.IGNORECASE)
PROVIDER_REFERENCE = re.compile(r"^\$\{[A-Za-z0-9_.-]+:[^}]*\}$")
CONNECTOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

ConfigValue = StrictBool | StrictInt | StrictFloat | str


class SpecError(ValueError):
    """A connector spec is invalid. The message names the file, the field and the reason.

    Attributes:
        source: The spec file (or a description of where the spec came from).
        problems: ``(field, reason)`` pairs, every problem found, not just the first.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {field}: {reason}" if field else f"{source}: {reason}" for field, reason in problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class ConnectionInfo:
    """The parts of an Airflow connection a spec can use; filled by the caller (the operator)."""

    host: str | None
    port: int | None
    login: str | None
    password: str | None
    schema: str | None


class DatabaseRef(BaseModel):
    """Where the connector's database settings come from."""

    model_config = ConfigDict(extra="forbid")

    conn_id: str = Field(min_length=1, description="Airflow connection with host, port, login, password, schema")
    password: str | None = Field(
        default=None,
        description="A Kafka config-provider reference (e.g. ${env:PG_PASSWORD}) sent instead of the "
        "connection's password, so that the secret never reaches Connect's config topic",
    )

    @field_validator("password")
    @classmethod
    def _password_is_a_reference(cls, value: str | None) -> str | None:
        if value is not None and not PROVIDER_REFERENCE.match(value):
            raise ValueError("must be a config-provider reference such as ${env:PG_PASSWORD}, "
                             "never the password itself")
        return value


class ConnectorSpec(BaseModel):
    """One connector, as declared in a spec file."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=249)
    connector_class: str = Field(alias="class", min_length=1)
    description: str | None = None
    database: DatabaseRef | None = None
    config: dict[str, ConfigValue] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name_is_url_safe(cls, value: str) -> str:
        if not CONNECTOR_NAME.match(value):
            raise ValueError("may hold only letters, digits, '.', '_' and '-', and must start with a letter or digit")
        return value


def _config_problems(spec: ConnectorSpec) -> list[tuple[str, str]]:
    """Checks that need the whole spec: secrets written inline, settings given twice."""
    problems = []
    filled = set(DATABASE_SETTINGS.get(spec.connector_class, {}).values()) if spec.database else set()
    conn_id = spec.database.conn_id if spec.database else None
    if spec.database and spec.connector_class not in DATABASE_SETTINGS:
        problems.append(("database", (f"cannot fill database settings for class {spec.connector_class}; "
                                      f"supported: {', '.join(sorted(DATABASE_SETTINGS))}")))
    for key, value in spec.config.items():
        where = f"config.{key}"
        if key == "name":
            problems.append((where, "the connector's name is the spec's `name`"))
        elif key == "connector.class":
            problems.append((where, "the connector's class is the spec's `class`"))
        elif key in filled:
            problems.append((where, f"filled from connection {conn_id!r}; remove it here"))
        elif SECRET_KEY.search(key) and not (isinstance(value, str) and PROVIDER_REFERENCE.match(value)):
            problems.append((where, ("secret written inline; take it from an Airflow connection (`database.conn_id`) "
                                     "or send a config-provider reference such as ${env:NAME}")))
    return problems


def parse_spec(data: Any, source: str) -> ConnectorSpec:
    """Validate one spec's parsed content.

    Args:
        data: The spec as parsed from YAML (a mapping).
        source: Where it came from, for error messages (usually the file path).

    Returns:
        The validated spec.

    Raises:
        SpecError: listing every invalid field with its reason.
    """
    if not isinstance(data, dict):
        raise SpecError(source, [("", f"a spec must be a mapping, got {type(data).__name__}")])
    try:
        spec = ConnectorSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(source, [(".".join(str(p) for p in err["loc"]), err["msg"]) for err in exc.errors()]) from None
    problems = _config_problems(spec)
    if problems:
        raise SpecError(source, problems)
    return spec


def load_spec(path: str | Path) -> ConnectorSpec:
    """Read and validate one spec file.

    Raises:
        SpecError: the file is missing, is not valid YAML, or the spec is invalid.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(str(path), [("", f"cannot read: {exc.strerror}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(str(path), [("", f"malformed YAML{where}: {getattr(exc, 'problem', None) or exc}")]) from None
    return parse_spec(data, str(path))


def load_specs(path: str | Path) -> list[ConnectorSpec]:
    """Read one spec file, or every ``*.yaml``/``*.yml`` file of a folder (sorted by file name).

    Raises:
        SpecError: any file is invalid (all files' problems are reported together), the folder
            holds no spec, or two specs share a connector name.
    """
    path = Path(path)
    files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
    if not files:
        raise SpecError(str(path), [("", "no connector spec (*.yaml) in this folder")])
    specs, problems = [], []
    for file in files:
        try:
            specs.append((file, load_spec(file)))
        except SpecError as exc:
            problems += [(f"{exc.source}: {field}" if field else exc.source, reason) for field, reason in exc.problems]
    seen: dict[str, Path] = {}
    for file, spec in specs:
        if spec.name in seen:
            problems.append((f"{file}: name", f"connector {spec.name!r} is also declared in {seen[spec.name]}"))
        seen.setdefault(spec.name, file)
    if problems:
        raise SpecError(str(path), problems)
    return [spec for _, spec in specs]


def _as_config_string(value: ConfigValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_config(spec: ConnectorSpec, resolve: Callable[[str], ConnectionInfo]) -> dict[str, str]:
    """The Kafka Connect config for a spec, with database settings filled from its connection.

    Args:
        spec: A validated spec.
        resolve: Looks up an Airflow connection by id (the operator passes one backed by Airflow).

    Returns:
        The config to PUT to ``/connectors/{name}/config``: every value a string, including
        ``name`` and ``connector.class``.

    Raises:
        SpecError: the referenced connection lacks a field the connector needs.
    """
    config = {"connector.class": spec.connector_class, "name": spec.name}
    config.update({key: _as_config_string(value) for key, value in spec.config.items()})
    if spec.database:
        conn = resolve(spec.database.conn_id)
        missing = []
        for field, setting in DATABASE_SETTINGS[spec.connector_class].items():
            value = spec.database.password if field == "password" and spec.database.password else getattr(conn, field)
            if value in (None, ""):
                missing.append(field)
            else:
                config[setting] = str(value)
        if missing:
            raise SpecError(spec.name, [("database.conn_id", (f"connection {spec.database.conn_id!r} has no "
                                                              f"{', '.join(missing)}"))])
    return config


def secret_values(config: dict[str, str]) -> list[str]:
    """The values of a rendered config that must never be logged in clear (to register with a masker)."""
    return [value for key, value in config.items()
            if SECRET_KEY.search(key) and not PROVIDER_REFERENCE.match(value)]


def config_changes(desired: dict[str, str], current: dict[str, str]) -> dict[str, tuple[str | None, str | None]]:
    """Settings that differ between the desired and the deployed config: ``key -> (current, desired)``."""
    keys = set(desired) | set(current)
    return {key: (current.get(key), desired.get(key)) for key in sorted(keys) if current.get(key) != desired.get(key)}


def validation_errors(answer: dict[str, Any]) -> dict[str, list[str]]:
    """Each invalid field's messages from Kafka Connect's ``config/validate`` answer."""
    errors: dict[str, list[str]] = {}
    for entry in answer.get("configs", []):
        value = entry.get("value") or {}
        if value.get("errors"):
            errors[value["name"]] = list(value["errors"])
    return errors


def describe_changes(changes: dict[str, tuple[str | None, str | None]]) -> str:
    """A one-line, log-safe summary of config changes (secret values are never shown)."""
    parts = []
    for key, (old, new) in changes.items():
        if SECRET_KEY.search(key):
            parts.append(f"{key} (secret changed)")
        else:
            parts.append(f"{key}: {old!r} -> {new!r}")
    return "; ".join(parts)
