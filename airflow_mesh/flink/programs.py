"""The programs a Flink job runs: a SQL script, a processor of the SDK, a PyFlink program or a jar.

A program knows how to check itself before anything is submitted and how to submit itself through
``FlinkHook``; the operators of ``airflow_mesh.operators.flink`` decide when.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException

from airflow_mesh.hooks.flink import FlinkHook
from airflow_mesh.processors import (
    Deployment,
    KafkaCluster,
    Processor,
    RegisteredProcessor,
    compile_sql,
    create_processor,
)
from airflow_mesh.processors.registry import ProcessorFactory

KAFKA_DEFAULT = "kafka_default"


@dataclass
class RunSettings:
    """How a program is run: the job's name and what ``FlinkHook.run_jar`` takes besides the program.

    Attributes:
        job_name: The job's name (``pipeline.name``).
        savepoint_path: A savepoint to restore the job's state from.
        allow_non_restored_state: Start even when some savepoint state maps to no operator.
        parallelism: The job's default parallelism.
        flink_configuration: Further settings of the job.
    """

    job_name: str
    savepoint_path: str | None = None
    allow_non_restored_state: bool = False
    parallelism: int | None = None
    flink_configuration: dict[str, str] = field(default_factory=dict)

    def run_options(self) -> dict[str, Any]:
        """``run_jar``'s keyword arguments, the job's name included in its configuration."""
        return {"savepoint_path": self.savepoint_path, "allow_non_restored_state": self.allow_non_restored_state,
                "parallelism": self.parallelism,
                "flink_configuration": {"pipeline.name": self.job_name, **self.flink_configuration}}


class FlinkProgram(ABC):
    """What a Flink job runs. Its ``template_fields`` are rendered with the operator's."""

    template_fields: Sequence[str] = ()

    def check(self, job_name: str) -> None:  # noqa: B027 - most programs have nothing to check here
        """Fail before anything is submitted when the program cannot run (default: nothing to check).

        Args:
            job_name: The name the job will have.
        """

    @abstractmethod
    def submit(self, hook: FlinkHook, settings: RunSettings) -> str:
        """Submit the program as a job.

        Returns:
            The new job's id.
        """

    @abstractmethod
    def describe(self) -> str:
        """One line naming the program, for logs."""

    def fingerprint(self, job_name: str) -> str:
        """A digest of what the job runs: equal for the same declaration, different for a changed one.

        Args:
            job_name: The name the job has (a processor's SQL depends on it).

        Returns:
            ``sha256:`` and 16 hex digits.
        """
        return _digest(self._declaration(job_name))

    @abstractmethod
    def _declaration(self, job_name: str) -> str:
        """The text the fingerprint is a digest of."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in vars(self).items())
        return f"{type(self).__name__}({fields})"


class FlinkSql(FlinkProgram):
    """A Flink SQL script: SET statements, DDL, then INSERTs that run as one job.

    Args:
        script: The statements, each ending with a semicolon at the end of a line (templated).
    """

    template_fields = ("script",)

    def __init__(self, script: str) -> None:
        self.script = script

    def submit(self, hook: FlinkHook, settings: RunSettings) -> str:
        return hook.submit_sql(self.script, job_name=settings.job_name, **settings.run_options())

    def describe(self) -> str:
        return f"Flink SQL script ({len(self.script.splitlines())} lines)"

    def _declaration(self, job_name: str) -> str:
        return self.script


class FlinkProcessor(FlinkProgram):
    """A processor of the SDK, compiled to Flink SQL at submission.

    Args:
        processor: A registered processor's name, a ``package.module:factory`` reference, a
            factory (e.g. a function of the DAG file), or a ``Processor`` object.
        params: The factory's keyword parameters, for a name, reference or factory (templated).
        kafka_conn_id: The Kafka connection whose ``bootstrap.servers`` the processor's topics live on.
        kafka_properties: Further Kafka client settings for Flink's connectors (Java client names,
            e.g. ``{"security.protocol": "SASL_SSL"}``).
    """

    # Not ``processor``: Airflow would call a factory in a template field to render it.
    template_fields = ("params", "kafka_conn_id")

    def __init__(self, processor: str | ProcessorFactory | Processor, params: dict[str, Any] | None = None,
                 kafka_conn_id: str = KAFKA_DEFAULT, kafka_properties: dict[str, str] | None = None) -> None:
        self.processor = processor
        self.params = params
        self.kafka_conn_id = kafka_conn_id
        self.kafka_properties = kafka_properties

    def declaration(self) -> Processor:
        """The processor object: as given, or created by its factory with ``params``.

        Raises:
            RegistryError: no such processor, or the parameters do not fit it.
        """
        if isinstance(self.processor, Processor):
            return self.processor
        if callable(self.processor):
            return RegisteredProcessor(self.processor.__name__, self.processor, "DAG").create(self.params)
        return create_processor(self.processor, self.params)

    def sql(self, job_name: str) -> str:
        """The compiled script for a job of that name.

        Raises:
            RegistryError: no such processor, or the parameters do not fit it.
            DeclarationError: the declaration is invalid.
            AirflowException: the Kafka connection has no ``bootstrap.servers``.
        """
        extra = BaseHook.get_connection(self.kafka_conn_id).extra_dejson
        if not extra.get("bootstrap.servers"):
            raise AirflowException(f"Kafka connection {self.kafka_conn_id!r} has no 'bootstrap.servers' extra")
        kafka = KafkaCluster(extra["bootstrap.servers"], dict(self.kafka_properties or {}))
        return compile_sql(self.declaration(), Deployment(job_name, kafka))

    def check(self, job_name: str) -> None:
        self.sql(job_name)

    def submit(self, hook: FlinkHook, settings: RunSettings) -> str:
        return hook.submit_sql(self.sql(settings.job_name), job_name=settings.job_name, **settings.run_options())

    def _declaration(self, job_name: str) -> str:
        return self.sql(job_name)

    def describe(self) -> str:
        if isinstance(self.processor, Processor):
            return f"processor {self.processor.name}"
        return f"processor {getattr(self.processor, '__name__', self.processor)}"


class PyFlinkProgram(FlinkProgram):
    """A PyFlink program, run by Flink's PythonDriver.

    Args:
        path: The program's path as the JobManager sees it (templated).
        args: The program's arguments (templated).
    """

    template_fields = ("path", "args")

    def __init__(self, path: str, args: Sequence[str] = ()) -> None:
        self.path = path
        self.args = args

    def submit(self, hook: FlinkHook, settings: RunSettings) -> str:
        return hook.submit_python(self.path, list(self.args), **settings.run_options())

    def describe(self) -> str:
        return f"PyFlink program {self.path}"

    def _declaration(self, job_name: str) -> str:
        return json.dumps({"path": self.path, "args": list(self.args)})


class FlinkJar(FlinkProgram):
    """A jar on this machine, uploaded for each submission and removed from the cluster after it.

    Args:
        jar: The jar's local path (templated).
        entry_class: The program's main class (default: the jar manifest's).
        args: The program's arguments (templated).
    """

    template_fields = ("jar", "entry_class", "args")

    def __init__(self, jar: str, entry_class: str | None = None, args: Sequence[str] = ()) -> None:
        self.jar = jar
        self.entry_class = entry_class
        self.args = args

    def check(self, job_name: str) -> None:
        if not Path(self.jar).is_file():
            raise FileNotFoundError(f"jar {self.jar} does not exist")

    def submit(self, hook: FlinkHook, settings: RunSettings) -> str:
        jar_id = hook.upload_jar(self.jar)
        try:
            return hook.run_jar(jar_id, entry_class=self.entry_class, args=list(self.args), **settings.run_options())
        finally:
            hook.delete_jar(jar_id)

    def describe(self) -> str:
        return f"jar {Path(self.jar).name}" + (f" ({self.entry_class})" if self.entry_class else "")

    def _declaration(self, job_name: str) -> str:
        jar = hashlib.sha256(Path(self.jar).read_bytes()).hexdigest() if Path(self.jar).is_file() else self.jar
        return json.dumps({"jar": jar, "entry_class": self.entry_class, "args": list(self.args)})


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]
