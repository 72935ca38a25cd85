"""KafkaConnectHook: a Kafka Connect cluster over its REST API (connectors, plugins, offsets)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests
from asgiref.sync import sync_to_async

from airflow_mesh.hooks.forms import KAFKA_CONNECT
from airflow_mesh.hooks.rest import RestApiError, RestApiHook, ServiceUnreachableError
from airflow_mesh.http import DEFAULT_TIMEOUT

__all__ = [
    "ConnectorNotFoundError",
    "KafkaConnectApiError",
    "KafkaConnectError",
    "KafkaConnectHook",
    "ServiceUnreachableError",
    "unavailability",
]

SERVICE_NAME = "Kafka Connect"

# 409: a rebalance is in progress or the worker knows no leader yet; 500: Connect timed out a request.
RETRY_STATUSES = (409, 500, 502, 503, 504)


class KafkaConnectError(Exception):
    """Base class of the errors KafkaConnectHook raises."""


class KafkaConnectApiError(KafkaConnectError, RestApiError):
    """Kafka Connect's REST API answered with an error (a RestApiError whose ``service`` is Kafka Connect).

    Attributes:
        service: ``Kafka Connect``.
        method: The HTTP method of the request.
        url: The URL of the request.
        status: The HTTP status code.
        error_code: The ``error_code`` of Connect's JSON error body, None when the body had none
            (e.g. an HTML page from a proxy).
        message: The ``message`` of Connect's JSON error body, else the answer's text.
    """

    def __init__(self, method: str, url: str, status: int, message: str, error_code: int | None = None) -> None:
        self.error_code = error_code
        RestApiError.__init__(self, SERVICE_NAME, method, url, status, message)

    @classmethod
    def from_response(cls, response: requests.Response) -> KafkaConnectApiError:
        """The error an answer of 400 or more stands for.

        A 404 is a ConnectorNotFoundError only when Connect's own error body says so: a worker that
        is still starting answers every path with Jetty's HTML 404 page, which proves nothing about
        the connector.

        Args:
            response: The error answer.

        Returns:
            A ConnectorNotFoundError or a KafkaConnectApiError carrying Connect's message.
        """
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("message"):
            error_code, message = body.get("error_code"), body["message"]
        else:
            error_code, message = None, response.text.strip() or response.reason
        not_found = response.status_code == 404 and error_code is not None
        error_class = ConnectorNotFoundError if not_found else cls
        return error_class(str(response.request.method), response.url, response.status_code, message, error_code)

    @property
    def worker_not_ready(self) -> bool:
        """Whether the answer says the worker cannot serve the request yet, not that the request is wrong.

        True for 409 (rebalance, no leader), 5xx, and a 404 without Connect's error body (Jetty's
        page while the worker is starting).
        """
        return self.status == 409 or self.status >= 500 or (self.status == 404 and self.error_code is None)


class ConnectorNotFoundError(KafkaConnectApiError):
    """Kafka Connect answered 404 with its error body: it knows no connector (or task) by that name."""


def unavailability(exc: BaseException) -> str | None:
    """Why Kafka Connect could not answer a question now, when ``exc`` says so; None for a real error.

    Args:
        exc: What a KafkaConnectHook call raised.

    Returns:
        ``Kafka Connect at <url> unreachable (<reason>)`` for a ServiceUnreachableError,
        ``Kafka Connect at <url> not ready (<status>: <message>)`` for an answer that says the worker
        cannot serve yet (starting, rebalancing, timed out), None otherwise.
    """
    if isinstance(exc, ServiceUnreachableError):
        return f"{exc.service} at {exc.base_url} unreachable ({exc.reason})"
    if isinstance(exc, KafkaConnectApiError) and exc.worker_not_ready:
        base = exc.url.split("/connectors", 1)[0].split("/connector-plugins", 1)[0]
        message = exc.message.splitlines()[0][:200] if exc.message else ""
        return f"{exc.service} at {base} not ready ({exc.status}: {message})"
    return None


def _flag(value: bool) -> str:
    """A query parameter boolean as Connect's docs spell it."""
    return "true" if value else "false"


class KafkaConnectHook(RestApiHook):
    """Talk to a Kafka Connect cluster's REST API.

    The connection locates any worker of the cluster (a distributed worker forwards writes to the
    leader), with basic auth and TLS settings as RestApiHook describes; the port defaults to 8083.

    Every call retries, with backoff, failed connections, read timeouts of idempotent calls, 409
    (rebalance in progress), 500 (Connect's request timeout) and 502/503/504, and ends within its
    deadline (RestApiHook; 65 s with the defaults), raising the last error: ServiceUnreachableError
    when there was no answer, a KafkaConnectApiError with Connect's message otherwise. Waiters
    (sensors, triggers) build it with ``for_polling`` instead: a few seconds per call.

    Args:
        kafka_connect_conn_id: The Airflow connection to use.
        timeout: Seconds to wait for an answer once connected.
        retries: Attempts after the first.
        connect_timeout: Seconds to wait for a connection (default 5, at most ``timeout``).
        deadline: Seconds one call may take in all (default ``2 * timeout + connect_timeout``).
    """

    conn_name_attr = "kafka_connect_conn_id"
    default_conn_name = "kafka_connect_default"
    conn_type = "kafka_connect"
    hook_name = KAFKA_CONNECT.hook_name
    service_name = SERVICE_NAME
    default_port = 8083
    retry_statuses = RETRY_STATUSES

    def __init__(self, kafka_connect_conn_id: str = default_conn_name, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = 5, *, connect_timeout: float | None = None, deadline: float | None = None) -> None:
        super().__init__(kafka_connect_conn_id, timeout, retries, connect_timeout=connect_timeout, deadline=deadline)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form's labels and placeholders (the same as in provider info)."""
        return KAFKA_CONNECT.ui_field_behaviour()

    def _error_for(self, response: requests.Response) -> KafkaConnectApiError:
        return KafkaConnectApiError.from_response(response)

    @staticmethod
    def _connector_path(name: str, *parts: str) -> str:
        return "/".join(["/connectors", quote(name, safe=""), *parts])

    def test_connection(self) -> tuple[bool, str]:
        """Check that the worker answers and report its version and Kafka cluster."""
        try:
            info = self.get_server_info()
        except (RestApiError, requests.RequestException) as exc:
            return False, str(exc)
        return True, f"Kafka Connect {info.get('version')} on Kafka cluster {info.get('kafka_cluster_id')}"

    def get_server_info(self) -> dict[str, Any]:
        """``GET /``: the worker's ``version``, ``commit`` and ``kafka_cluster_id``."""
        return self._send("GET", "/").json()

    # ---------------------------------------------------------------- connectors

    def list_connectors(self) -> list[str]:
        """``GET /connectors``.

        Returns:
            The names of every connector of the cluster.
        """
        return self._send("GET", "/connectors").json()

    def get_connector(self, name: str) -> dict[str, Any]:
        """``GET /connectors/{name}``.

        Args:
            name: The connector's name.

        Returns:
            Connect's description: ``name``, ``config``, ``tasks`` and ``type``.

        Raises:
            ConnectorNotFoundError: no connector has that name.
        """
        return self._send("GET", self._connector_path(name)).json()

    def get_connector_config(self, name: str) -> dict[str, str]:
        """``GET /connectors/{name}/config``.

        Args:
            name: The connector's name.

        Returns:
            The connector's configuration, including the ``name`` Connect adds to it.

        Raises:
            ConnectorNotFoundError: no connector has that name.
        """
        return self._send("GET", self._connector_path(name, "config")).json()

    def get_connector_status(self, name: str) -> dict[str, Any]:
        """``GET /connectors/{name}/status``.

        Args:
            name: The connector's name.

        Returns:
            ``{"name", "connector": {"state", "worker_id"}, "tasks": [{"id", "state", "worker_id",
            "trace"?}], "type"}``; states are UNASSIGNED, RUNNING, PAUSED, STOPPED (connector only),
            FAILED or RESTARTING, and a FAILED connector or task carries a ``trace``.

        Raises:
            ConnectorNotFoundError: no connector has that name, or Connect has not recorded a
                status yet for one created a moment ago.
        """
        return self._send("GET", self._connector_path(name, "status")).json()

    def connector_exists(self, name: str) -> bool:
        """Whether the cluster has a connector of that name.

        Args:
            name: The connector's name.

        Returns:
            True when ``GET /connectors/{name}`` answers, False when Connect says it has none (404).

        Raises:
            KafkaConnectApiError: any other error, e.g. the HTML 404 of a worker that is still starting.
        """
        try:
            self.get_connector(name)
        except ConnectorNotFoundError:
            return False
        return True

    def put_connector_config(self, name: str, config: dict[str, str]) -> bool:
        """``PUT /connectors/{name}/config``: create the connector, or replace its whole configuration.

        Idempotent, so it is the way to deploy: the same call creates and updates.

        Args:
            name: The connector's name.
            config: The full configuration (``connector.class`` and the rest); a ``name`` in it
                must equal ``name``.

        Returns:
            True when Connect created the connector (201), False when it updated one (200).

        Raises:
            KafkaConnectApiError: 400 when ``name`` differs or no plugin matches ``connector.class``.
                Connect 4.3 answers an otherwise invalid configuration (e.g. a bad Debezium
                ``snapshot.mode``) with a 500 about a NullPointerException in its error reporting,
                after the retries: check with ``validate_config`` first for the errors themselves.
        """
        response = self._send("PUT", self._connector_path(name, "config"), json=config)
        return response.status_code == 201

    def validate_config(self, connector_class: str, config: dict[str, str]) -> dict[str, Any]:
        """``PUT /connector-plugins/{class}/config/validate``: check a configuration without deploying it.

        Args:
            connector_class: The connector's class (or its alias, e.g. ``PostgresConnector``).
            config: The configuration to check, with ``connector.class`` and ``name`` (Connect
                counts a missing ``name`` as an error).

        Returns:
            Connect's answer as is: ``{"name", "error_count", "groups", "configs": [{"definition",
            "value": {"name", "value", "errors", ...}}]}``; ``airflow_mesh.connectors.spec.validation_errors``
            picks each invalid field's messages out of it.

        Raises:
            KafkaConnectApiError: 500 (after the retries) when no installed plugin matches ``connector_class``.
        """
        path = f"/connector-plugins/{quote(connector_class, safe='')}/config/validate"
        return self._send("PUT", path, json=config).json()

    def pause_connector(self, name: str) -> None:
        """``PUT /connectors/{name}/pause``: suspend the connector and its tasks; they keep their resources.

        Args:
            name: The connector's name.

        Raises:
            ConnectorNotFoundError: no connector has that name.
        """
        self._send("PUT", self._connector_path(name, "pause"))

    def resume_connector(self, name: str) -> None:
        """``PUT /connectors/{name}/resume``: run a paused or stopped connector again.

        Args:
            name: The connector's name.

        Raises:
            ConnectorNotFoundError: no connector has that name.
        """
        self._send("PUT", self._connector_path(name, "resume"))

    def stop_connector(self, name: str) -> None:
        """``PUT /connectors/{name}/stop``: shut the connector and its tasks down, keeping its config and offsets.

        A stopped connector's offsets can be altered or reset.

        Args:
            name: The connector's name.

        Raises:
            ConnectorNotFoundError: no connector has that name.
        """
        self._send("PUT", self._connector_path(name, "stop"))

    def restart_connector(self, name: str, include_tasks: bool = False, only_failed: bool = False) -> None:
        """``POST /connectors/{name}/restart?includeTasks=...&onlyFailed=...``.

        Connect answers 202 and restarts asynchronously when either flag is set, 204 once the
        connector alone restarted otherwise; poll ``get_connector_status`` for the outcome.

        Args:
            name: The connector's name.
            include_tasks: Restart the tasks as well as the connector.
            only_failed: Restart only the instances (connector, tasks) that are FAILED.

        Raises:
            ConnectorNotFoundError: no connector has that name.
        """
        params = {"includeTasks": _flag(include_tasks), "onlyFailed": _flag(only_failed)}
        self._send("POST", self._connector_path(name, "restart"), params=params)

    def restart_task(self, name: str, task_id: int) -> None:
        """``POST /connectors/{name}/tasks/{task_id}/restart``.

        Args:
            name: The connector's name.
            task_id: The task's id (its index in the status' ``tasks``).

        Raises:
            ConnectorNotFoundError: no connector has that name, or it has no such task.
        """
        self._send("POST", self._connector_path(name, "tasks", str(task_id), "restart"))

    def delete_connector(self, name: str) -> None:
        """``DELETE /connectors/{name}``: stop the connector and remove its configuration.

        Its offsets stay in Connect's offsets topic (a connector created again under the same name
        resumes from them), and a source's external state (e.g. a replication slot) stays too.

        Args:
            name: The connector's name.

        Raises:
            ConnectorNotFoundError: no connector has that name.
        """
        self._send("DELETE", self._connector_path(name))

    # ---------------------------------------------------------------- offsets (KIP-875)

    def get_offsets(self, name: str) -> dict[str, Any]:
        """``GET /connectors/{name}/offsets``.

        Args:
            name: The connector's name.

        Returns:
            ``{"offsets": [{"partition": {...}, "offset": {...}}]}``; the keys inside ``partition``
            and ``offset`` are the connector's own (e.g. Debezium's ``server`` and ``lsn``).

        Raises:
            ConnectorNotFoundError: no connector has that name.
        """
        return self._send("GET", self._connector_path(name, "offsets")).json()

    def alter_offsets(self, name: str, offsets: list[dict[str, Any]]) -> dict[str, Any]:
        """``PATCH /connectors/{name}/offsets``: set the offsets of some partitions; the connector must be STOPPED.

        Args:
            name: The connector's name.
            offsets: ``[{"partition": {...}, "offset": {...}}]``; an ``offset`` of None resets that partition.

        Returns:
            Connect's answer, ``{"message": ...}``.

        Raises:
            ConnectorNotFoundError: no connector has that name.
            KafkaConnectApiError: 400 when the connector is not STOPPED or the offsets are malformed.
        """
        return self._send("PATCH", self._connector_path(name, "offsets"), json={"offsets": offsets}).json()

    def reset_offsets(self, name: str) -> dict[str, Any]:
        """``DELETE /connectors/{name}/offsets``: forget every offset; the connector must be STOPPED.

        Args:
            name: The connector's name.

        Returns:
            Connect's answer, ``{"message": ...}``.

        Raises:
            ConnectorNotFoundError: no connector has that name.
            KafkaConnectApiError: 400 when the connector is not STOPPED.
        """
        return self._send("DELETE", self._connector_path(name, "offsets")).json()

    # ---------------------------------------------------------------- plugins

    def list_plugins(self, connectors_only: bool = True) -> list[dict[str, Any]]:
        """``GET /connector-plugins?connectorsOnly=...``.

        Args:
            connectors_only: List only connector plugins; False adds transformations, predicates
                and converters.

        Returns:
            ``[{"class", "type", "version"}]`` for each installed plugin.
        """
        return self._send("GET", "/connector-plugins", params={"connectorsOnly": _flag(connectors_only)}).json()

    # ---------------------------------------------------------------- async, for triggers
    # Each runs its sync twin in the event loop's default executor (thread_sensitive=False), so a
    # slow Connect holds up no other trigger sharing the loop.

    async def aget_connector_status(self, name: str) -> dict[str, Any]:
        """``get_connector_status`` without blocking the event loop (same retries and errors)."""
        return await sync_to_async(self.get_connector_status, thread_sensitive=False)(name)

    async def aget_connector_config(self, name: str) -> dict[str, str]:
        """``get_connector_config`` without blocking the event loop (same retries and errors)."""
        return await sync_to_async(self.get_connector_config, thread_sensitive=False)(name)

    async def aconnector_exists(self, name: str) -> bool:
        """``connector_exists`` without blocking the event loop (same retries and errors)."""
        return await sync_to_async(self.connector_exists, thread_sensitive=False)(name)

    async def arestart_connector(self, name: str, include_tasks: bool = False, only_failed: bool = False) -> None:
        """``restart_connector`` without blocking the event loop (same retries and errors)."""
        await sync_to_async(self.restart_connector, thread_sensitive=False)(name, include_tasks, only_failed)
