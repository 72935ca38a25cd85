"""Operators that deploy and operate Kafka Connect connectors from the specs in ``connectors/``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook, BaseOperator
from airflow.sdk.exceptions import AirflowException
from airflow.sdk.log import mask_secret

from airflow_mesh.connectors.spec import (
    ConnectionInfo,
    ConnectorSpec,
    config_changes,
    describe_changes,
    load_specs,
    render_config,
    secret_values,
    validation_errors,
)
from airflow_mesh.hooks.kafka_connect import KafkaConnectHook


def airflow_connection_info(conn_id: str) -> ConnectionInfo:
    """Resolve a spec's connection reference through Airflow (UI, secrets backend or AIRFLOW_CONN_*)."""
    conn = BaseHook.get_connection(conn_id)
    return ConnectionInfo(conn.host, conn.port, conn.login, conn.password, conn.schema)


class DeployConnectorOperator(BaseOperator):
    """Deploy one connector spec, or every spec of a folder, to Kafka Connect.

    Every spec is loaded, validated and rendered first, then validated by the connector plugin's
    own ``config/validate`` endpoint; only when all pass is anything created or updated. A connector
    whose deployed config already equals the spec is left alone (no restart).

    Args:
        spec_path: A spec file or a folder of ``*.yaml`` specs (templated).
        kafka_connect_conn_id: The Kafka Connect connection.
        validate: Ask the plugin to validate each config before deploying.

    Returns (XCom):
        ``[{"name": ..., "action": "created" | "updated" | "unchanged"}, ...]`` in spec order.

    Raises:
        ServiceUnreachableError: Kafka Connect did not answer. Each call to Connect ends within the
            hook's deadline (65 s at most; a refused connection fails after ~12 s of retries), with
            one line naming Kafka Connect, its URL and the request; nothing was deployed when it
            happens during validation. Airflow's task retries are the retry.
        KafkaConnectApiError: Connect answered with an error (its message).
        AirflowException: the plugin rejected a config (each invalid field's message).
    """

    template_fields: Sequence[str] = ("spec_path", "kafka_connect_conn_id")
    ui_color = "#e8f1fb"

    def __init__(self, *, spec_path: str, kafka_connect_conn_id: str = KafkaConnectHook.default_conn_name,
                 validate: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec_path = spec_path
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self.validate = validate

    def execute(self, context: Any) -> list[dict[str, str]]:
        specs = load_specs(self.spec_path)
        rendered = [(spec, render_config(spec, airflow_connection_info)) for spec in specs]
        for _, config in rendered:
            for secret in secret_values(config):
                mask_secret(secret)
        hook = KafkaConnectHook(self.kafka_connect_conn_id)
        if self.validate:
            self._validate_all(hook, rendered)
        return [{"name": spec.name, "action": self._deploy(hook, spec, config)} for spec, config in rendered]

    def _validate_all(self, hook: KafkaConnectHook, rendered: list[tuple[ConnectorSpec, dict[str, str]]]) -> None:
        problems = []
        for spec, config in rendered:
            for field, messages in validation_errors(hook.validate_config(spec.connector_class, config)).items():
                problems += [f"{spec.name}: {field}: {message}" for message in messages]
        if problems:
            raise AirflowException("Kafka Connect rejected the config; nothing was deployed:\n" + "\n".join(problems))

    def _deploy(self, hook: KafkaConnectHook, spec: ConnectorSpec, config: dict[str, str]) -> str:
        if hook.connector_exists(spec.name):
            changes = config_changes(config, hook.get_connector_config(spec.name))
            if not changes:
                self.log.info("Connector %s is unchanged: nothing to do", spec.name)
                return "unchanged"
            self.log.info("Updating connector %s: %s", spec.name, describe_changes(changes))
        action = "created" if hook.put_connector_config(spec.name, config) else "updated"
        self.log.info("Connector %s %s", spec.name, action)
        return action


class _ConnectorOperator(BaseOperator):
    """Base of the operators acting on one named connector."""

    template_fields: Sequence[str] = ("connector_name", "kafka_connect_conn_id")
    ui_color = "#e8f1fb"

    def __init__(self, *, connector_name: str,
                 kafka_connect_conn_id: str = KafkaConnectHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.connector_name = connector_name
        self.kafka_connect_conn_id = kafka_connect_conn_id

    @cached_property
    def hook(self) -> KafkaConnectHook:
        return KafkaConnectHook(self.kafka_connect_conn_id)


class PauseConnectorOperator(_ConnectorOperator):
    """Pause a connector and its tasks (``PUT /connectors/{name}/pause``)."""

    def execute(self, context: Any) -> None:
        self.hook.pause_connector(self.connector_name)


class ResumeConnectorOperator(_ConnectorOperator):
    """Resume a paused or stopped connector (``PUT /connectors/{name}/resume``)."""

    def execute(self, context: Any) -> None:
        self.hook.resume_connector(self.connector_name)


class StopConnectorOperator(_ConnectorOperator):
    """Stop a connector: its tasks are shut down, its config kept (``PUT /connectors/{name}/stop``)."""

    def execute(self, context: Any) -> None:
        self.hook.stop_connector(self.connector_name)


class RestartConnectorOperator(_ConnectorOperator):
    """Restart a connector and, by default, only its failed tasks.

    Args:
        include_tasks: Restart the tasks too, not only the connector instance.
        only_failed: Restart only what is FAILED.
    """

    def __init__(self, *, include_tasks: bool = True, only_failed: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.include_tasks = include_tasks
        self.only_failed = only_failed

    def execute(self, context: Any) -> None:
        self.hook.restart_connector(self.connector_name, include_tasks=self.include_tasks,
                                    only_failed=self.only_failed)


class DeleteConnectorOperator(_ConnectorOperator):
    """Delete a connector.

    Args:
        ignore_missing: Succeed when the connector does not exist.
    """

    def __init__(self, *, ignore_missing: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ignore_missing = ignore_missing

    def execute(self, context: Any) -> None:
        if self.ignore_missing and not self.hook.connector_exists(self.connector_name):
            self.log.info("Connector %s does not exist: nothing to delete", self.connector_name)
            return
        self.hook.delete_connector(self.connector_name)


class ResetConnectorOffsetsOperator(_ConnectorOperator):
    """Stop a connector, reset or alter its offsets (KIP-875), and resume it.

    With no ``offsets`` the connector's offsets are deleted, so a Debezium source snapshots again
    (per its ``snapshot.mode``); with ``offsets`` they are altered to the given partition/offset pairs.

    Args:
        offsets: ``[{"partition": {...}, "offset": {...} or None}, ...]`` to alter instead of reset.
        resume: Resume the connector afterwards.
        stop_timeout: Seconds to wait for the connector to reach STOPPED.

    Returns (XCom):
        Kafka Connect's answer to the reset/alter request.
    """

    template_fields: Sequence[str] = (*_ConnectorOperator.template_fields, "offsets")

    def __init__(self, *, offsets: list[dict[str, Any]] | None = None, resume: bool = True,
                 stop_timeout: float = 120.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.offsets = offsets
        self.resume = resume
        self.stop_timeout = stop_timeout

    def execute(self, context: Any) -> dict[str, Any]:
        self.hook.stop_connector(self.connector_name)
        self._wait_stopped()
        if self.offsets is None:
            answer = self.hook.reset_offsets(self.connector_name)
        else:
            answer = self.hook.alter_offsets(self.connector_name, self.offsets)
        self.log.info("Offsets of %s: %s", self.connector_name, answer.get("message", answer))
        if self.resume:
            self.hook.resume_connector(self.connector_name)
        return answer

    def _wait_stopped(self) -> None:
        deadline = time.monotonic() + self.stop_timeout
        while True:
            status = self.hook.get_connector_status(self.connector_name)
            if status["connector"]["state"] == "STOPPED" and not status.get("tasks"):
                return
            if time.monotonic() > deadline:
                raise AirflowException(f"connector {self.connector_name} did not stop in {self.stop_timeout:.0f}s: "
                                       f"{status['connector']['state']}")
            time.sleep(1)
