"""SchemaRegistryHook: a schema registry over the Confluent Schema Registry REST API.

Confluent's own registry, and every registry with a Confluent-compatible API (Apicurio Registry under
``/apis/ccompat/v7``, Karapace, Redpanda), speak it. Subjects follow the TopicNameStrategy:
``<topic>-key`` and ``<topic>-value``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal
from urllib.parse import quote

import requests
from asgiref.sync import sync_to_async

from airflow_mesh.contracts.avro_compat import CompatibilityLevel
from airflow_mesh.contracts.registry_location import registry_url
from airflow_mesh.contracts.repository import subject_name
from airflow_mesh.hooks.forms import SCHEMA_REGISTRY
from airflow_mesh.hooks.rest import RestApiError, RestApiHook, ServiceUnreachableError
from airflow_mesh.http import DEFAULT_TIMEOUT

__all__ = [
    "CompatibilityResult",
    "IncompatibleSchemaError",
    "RegisteredSchema",
    "RegistryInvalidSchemaError",
    "SchemaNotFoundError",
    "SchemaRegistryApiError",
    "SchemaRegistryError",
    "SchemaRegistryHook",
    "ServiceUnreachableError",
    "SubjectNotFoundError",
    "VersionNotFoundError",
    "subject_name",
]

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
SERVICE_NAME = "schema registry"


class SchemaRegistryError(Exception):
    """Base class of the errors SchemaRegistryHook raises."""


class SchemaRegistryApiError(SchemaRegistryError, RestApiError):
    """The registry answered with an error (a RestApiError whose ``service`` is the schema registry).

    Attributes:
        service: ``schema registry``.
        method: The HTTP method of the request.
        url: The URL of the request.
        status: The HTTP status code.
        error_code: The ``error_code`` of the registry's JSON error body (e.g. 40401), None when the
            body had none (e.g. an HTML page from a proxy).
        message: The ``message`` of the registry's JSON error body, else the answer's text.
    """

    def __init__(self, method: str, url: str, status: int, message: str, error_code: int | None = None) -> None:
        self.error_code = error_code
        code = f" (error code {error_code})" if error_code is not None else ""
        RestApiError.__init__(self, SERVICE_NAME, method, url, status, message,
                              f"{SERVICE_NAME} {method} {url} returned {status}{code}: {message}")

    @classmethod
    def from_response(cls, response: requests.Response) -> SchemaRegistryApiError:
        """The error an answer of 400 or more stands for, typed by the registry's ``error_code``.

        Args:
            response: The error answer.

        Returns:
            An instance of the subclass for the error code (SubjectNotFoundError for 40401, ...),
            else of this class.
        """
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("message"):
            error_code, message = body.get("error_code"), str(body["message"])
        else:
            error_code, message = None, response.text.strip() or response.reason
        error_class = _ERRORS_BY_CODE.get(error_code, cls) if isinstance(error_code, int) else cls
        return error_class(str(response.request.method), response.url, response.status_code, message, error_code)


class SubjectNotFoundError(SchemaRegistryApiError):
    """40401: the registry has no such subject."""


class VersionNotFoundError(SchemaRegistryApiError):
    """40402: the subject has no such version."""


class SchemaNotFoundError(SchemaRegistryApiError):
    """40403: no schema has that id, or the schema looked up is not registered under the subject."""


class IncompatibleSchemaError(SchemaRegistryApiError):
    """409: registering the schema would break the subject's compatibility level."""


class RegistryInvalidSchemaError(SchemaRegistryApiError):
    """42201: the registry cannot parse the schema."""


_ERRORS_BY_CODE: dict[int, type[SchemaRegistryApiError]] = {
    40401: SubjectNotFoundError,
    40402: VersionNotFoundError,
    40403: SchemaNotFoundError,
    409: IncompatibleSchemaError,
    42201: RegistryInvalidSchemaError,
}


@dataclass(frozen=True)
class RegisteredSchema:
    """A schema as the registry returns it.

    Attributes:
        schema: The schema text.
        schema_type: ``AVRO`` (the registry omits it for Avro), ``JSON`` or ``PROTOBUF``.
        id: The registry-wide schema id (the one in the wire format), when the answer carries it.
        subject: The subject, for a subject version.
        version: The version within the subject, for a subject version.
        references: Schema references, as the registry lists them.
    """

    schema: str
    schema_type: str = "AVRO"
    id: int | None = None
    subject: str | None = None
    version: int | None = None
    references: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> RegisteredSchema:
        """Build from a registry answer (``/schemas/ids/{id}`` or ``/subjects/{s}/versions/{v}``)."""
        return cls(schema=body["schema"], schema_type=body.get("schemaType") or "AVRO", id=body.get("id"),
                   subject=body.get("subject"), version=body.get("version"),
                   references=tuple(body.get("references") or ()))


@dataclass(frozen=True)
class CompatibilityResult:
    """The registry's verdict on a candidate schema.

    Attributes:
        is_compatible: Whether the registry would accept the schema under the subject's level.
        messages: Its reasons when it gives them (``verbose=true``; Apicurio Registry gives none).
    """

    is_compatible: bool
    messages: tuple[str, ...] = ()


def _compact(schema: str) -> str:
    """A JSON schema text without insignificant whitespace (a bare type name stays as is)."""
    try:
        return json.dumps(json.loads(schema), separators=(",", ":"))
    except ValueError:
        return schema


class SchemaRegistryHook(RestApiHook):
    """Talk to a schema registry through the Confluent Schema Registry REST API.

    The connection locates the registry (host, port, scheme; basic auth and TLS as RestApiHook
    describes; the port defaults to 8081). Extra ``api_path``: the path the API lives under, empty
    for Confluent's registry, ``/apis/ccompat/v7`` for Apicurio Registry 3.

    Every call retries failed connections, read timeouts of idempotent calls and 502/503/504 with
    backoff, and ends within its deadline (RestApiHook; 65 s with the defaults), raising
    ServiceUnreachableError when there was no answer, else a SchemaRegistryApiError subclass chosen
    by the registry's ``error_code``.

    Args:
        schema_registry_conn_id: The Airflow connection to use.
        timeout: Seconds to wait for an answer once connected.
        retries: Attempts after the first.
        connect_timeout: Seconds to wait for a connection (default 5, at most ``timeout``).
        deadline: Seconds one call may take in all (default ``2 * timeout + connect_timeout``).
    """

    conn_name_attr = "schema_registry_conn_id"
    default_conn_name = "schema_registry_default"
    conn_type = "schema_registry"
    hook_name = SCHEMA_REGISTRY.hook_name
    service_name = "Schema registry"
    default_port = 8081

    def __init__(self, schema_registry_conn_id: str = default_conn_name, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = 5, *, connect_timeout: float | None = None, deadline: float | None = None) -> None:
        super().__init__(schema_registry_conn_id, timeout, retries, connect_timeout=connect_timeout,
                         deadline=deadline)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form's labels and placeholders (the same as in provider info)."""
        return SCHEMA_REGISTRY.ui_field_behaviour()

    @cached_property
    def base_url(self) -> str:
        """The API's root, e.g. ``http://127.0.0.1:8085/apis/ccompat/v7``.

        Raises:
            ValueError: The extra ``api_path`` does not start with ``/``.
        """
        conn = self._conn
        try:
            return registry_url(conn.schema, conn.host, conn.port or self.default_port,
                                conn.extra_dejson.get("api_path"))
        except ValueError as exc:
            raise ValueError(f"connection {self.conn_id!r}: {exc}") from None

    def _error_for(self, response: requests.Response) -> SchemaRegistryApiError:
        return SchemaRegistryApiError.from_response(response)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              params: dict[str, str] | None = None) -> Any:
        """Send one request with the registry's media type and return the decoded JSON answer."""
        headers = {"Accept": CONTENT_TYPE}
        data = None
        if body is not None:
            headers["Content-Type"] = CONTENT_TYPE
            data = json.dumps(body)
        return self._send(method, path, data=data, headers=headers, params=params).json()

    @staticmethod
    def _subject_path(subject: str, *parts: str) -> str:
        return "/".join(["/subjects", quote(subject, safe=""), *parts])

    @staticmethod
    def _schema_body(schema: str, schema_type: str) -> dict[str, Any]:
        body: dict[str, Any] = {"schema": _compact(schema)}
        if schema_type != "AVRO":
            body["schemaType"] = schema_type
        return body

    def test_connection(self) -> tuple[bool, str]:
        """Check that the registry answers, and report its global compatibility level."""
        try:
            level = self.get_compatibility_level()
        except (RestApiError, requests.RequestException) as exc:
            return False, str(exc)
        return True, f"Schema registry at {self.base_url} answers; global compatibility level {level.value}"

    # ---------------------------------------------------------------- subjects and versions

    def list_subjects(self, deleted: bool = False) -> list[str]:
        """``GET /subjects``.

        Args:
            deleted: Include soft-deleted subjects.

        Returns:
            The subjects' names.
        """
        return self._call("GET", "/subjects", params={"deleted": "true"} if deleted else None)

    def list_versions(self, subject: str) -> list[int]:
        """``GET /subjects/{subject}/versions``.

        Args:
            subject: The subject, e.g. ``orders-value``.

        Returns:
            The subject's version numbers, oldest first.

        Raises:
            SubjectNotFoundError: The registry has no such subject.
        """
        return self._call("GET", self._subject_path(subject, "versions"))

    def get_version(self, subject: str, version: int | Literal["latest"] = "latest") -> RegisteredSchema:
        """``GET /subjects/{subject}/versions/{version}``.

        Args:
            subject: The subject.
            version: A version number, or ``"latest"``.

        Returns:
            The schema with its id, subject and version.

        Raises:
            SubjectNotFoundError: The registry has no such subject.
            VersionNotFoundError: The subject has no such version.
        """
        return RegisteredSchema.from_json(self._call("GET", self._subject_path(subject, "versions", str(version))))

    def get_schema_by_id(self, schema_id: int) -> RegisteredSchema:
        """``GET /schemas/ids/{id}``: the schema a wire-format record names.

        Args:
            schema_id: The registry-wide schema id.

        Returns:
            The schema (its ``id`` set to ``schema_id``; no subject or version).

        Raises:
            SchemaNotFoundError: No schema has that id.
        """
        body = self._call("GET", f"/schemas/ids/{int(schema_id)}")
        return RegisteredSchema.from_json({**body, "id": schema_id})

    def register_schema(self, subject: str, schema: str, schema_type: str = "AVRO") -> int:
        """``POST /subjects/{subject}/versions``: register a schema as the subject's next version.

        Registering a schema the subject already has returns its id and adds no version.

        Args:
            subject: The subject; created when new.
            schema: The schema text (sent without insignificant whitespace).
            schema_type: ``AVRO``, ``JSON`` or ``PROTOBUF``.

        Returns:
            The schema's registry-wide id.

        Raises:
            IncompatibleSchemaError: The schema breaks the subject's compatibility level.
            RegistryInvalidSchemaError: The registry cannot parse the schema.
        """
        return self._call("POST", self._subject_path(subject, "versions"),
                          self._schema_body(schema, schema_type))["id"]

    def lookup_schema(self, subject: str, schema: str, schema_type: str = "AVRO") -> RegisteredSchema | None:
        """``POST /subjects/{subject}``: whether the subject already has this schema.

        Args:
            subject: The subject.
            schema: The schema text.
            schema_type: ``AVRO``, ``JSON`` or ``PROTOBUF``.

        Returns:
            The registered version (with id and version number), or None when the subject does not
            exist or has no such schema.
        """
        try:
            body = self._call("POST", self._subject_path(subject), self._schema_body(schema, schema_type))
        except (SubjectNotFoundError, SchemaNotFoundError):
            return None
        return RegisteredSchema.from_json(body)

    def delete_subject(self, subject: str, permanent: bool = False) -> list[int]:
        """``DELETE /subjects/{subject}``: soft-delete a subject, or (``permanent``) purge a soft-deleted one.

        Args:
            subject: The subject.
            permanent: Purge it for good; the registry requires a soft delete first.

        Returns:
            The deleted version numbers.

        Raises:
            SubjectNotFoundError: The registry has no such subject.
        """
        return self._call("DELETE", self._subject_path(subject),
                          params={"permanent": "true"} if permanent else None)

    # ---------------------------------------------------------------- compatibility

    def check_compatibility(self, subject: str, schema: str, version: int | Literal["latest"] = "latest",
                            schema_type: str = "AVRO") -> CompatibilityResult:
        """``POST /compatibility/subjects/{subject}/versions/{version}?verbose=true``.

        Args:
            subject: The subject.
            schema: The candidate schema text.
            version: The version to check against, or ``"latest"``.
            schema_type: ``AVRO``, ``JSON`` or ``PROTOBUF``.

        Returns:
            The registry's verdict, with its reasons when it gives them.

        Raises:
            VersionNotFoundError: The subject has no such version.
            RegistryInvalidSchemaError: The registry cannot parse the schema.
        """
        path = f"/compatibility{self._subject_path(subject, 'versions', str(version))}"
        body = self._call("POST", path, self._schema_body(schema, schema_type), params={"verbose": "true"})
        return CompatibilityResult(bool(body["is_compatible"]), tuple(body.get("messages") or ()))

    def get_compatibility_level(self, subject: str | None = None) -> CompatibilityLevel:
        """``GET /config[/{subject}]``: the level the registry enforces.

        Args:
            subject: A subject, or None for the global level.

        Returns:
            The subject's own level when it has one, else the global level (also for a subject that
            does not exist yet: it will get the global level when first registered).
        """
        if subject is not None:
            try:
                body = self._call("GET", f"/config/{quote(subject, safe='')}", params={"defaultToGlobal": "true"})
                return CompatibilityLevel(body["compatibilityLevel"])
            except SubjectNotFoundError:
                pass  # Apicurio's answer for a subject not registered yet; it will get the global level
        return CompatibilityLevel(self._call("GET", "/config")["compatibilityLevel"])

    def set_compatibility_level(self, level: CompatibilityLevel, subject: str | None = None) -> CompatibilityLevel:
        """``PUT /config[/{subject}]``: set a subject's level, or the global one.

        Args:
            level: The level to enforce.
            subject: A subject, or None for the global level.

        Returns:
            The level the registry now reports.
        """
        path = f"/config/{quote(subject, safe='')}" if subject is not None else "/config"
        return CompatibilityLevel(self._call("PUT", path, {"compatibility": level.value})["compatibility"])

    # ---------------------------------------------------------------- async, for triggers
    # Each runs its sync twin in the event loop's default executor (thread_sensitive=False), so a
    # slow registry holds up no other trigger sharing the loop.

    async def alist_versions(self, subject: str) -> list[int]:
        """``list_versions`` without blocking the event loop (same retries and errors)."""
        return await sync_to_async(self.list_versions, thread_sensitive=False)(subject)

    async def aget_version(self, subject: str, version: int | Literal["latest"] = "latest") -> RegisteredSchema:
        """``get_version`` without blocking the event loop (same retries and errors)."""
        return await sync_to_async(self.get_version, thread_sensitive=False)(subject, version)

    async def aget_schema_by_id(self, schema_id: int) -> RegisteredSchema:
        """``get_schema_by_id`` without blocking the event loop (same retries and errors)."""
        return await sync_to_async(self.get_schema_by_id, thread_sensitive=False)(schema_id)

    async def acheck_compatibility(self, subject: str, schema: str, version: int | Literal["latest"] = "latest",
                                   schema_type: str = "AVRO") -> CompatibilityResult:
        """``check_compatibility`` without blocking the event loop (same retries and errors)."""
        return await sync_to_async(self.check_compatibility, thread_sensitive=False)(
            subject, schema, version, schema_type)
