"""The connection forms of airflow-mesh's connection types: one source for provider info and the hooks.

Airflow 3.3's UI builds the Add/Edit Connection form from provider info alone (``get_provider_info``:
each ``connection-types`` entry's ``hook-name``, ``conn-fields`` and ``ui-field-behaviour``), without
importing the hooks; the hooks' ``get_ui_field_behaviour`` returns the same behaviour for the places
that still ask a hook. This module imports nothing from Airflow.

The form stores each extra field under its own name in the connection's extra, ``null`` when left
empty: the hooks read an empty field as not given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_OPTIONAL_TEXT: dict[str, Any] = {"type": ["string", "null"]}

# TLS settings of the REST hooks (RestApiHook reads them).
TLS_FIELDS: dict[str, dict[str, Any]] = {
    "verify": {"label": "TLS: CA bundle",
               "description": "https only: the path of the CA bundle that signed the server's certificate, or "
                              "false to skip verification. Empty: the system's trusted CAs.",
               "schema": _OPTIONAL_TEXT},
    "cert": {"label": "TLS: client certificate",
             "description": "Mutual TLS only: the path of the client certificate (PEM; it may hold the key too).",
             "schema": _OPTIONAL_TEXT},
    "key": {"label": "TLS: client key",
            "description": "Mutual TLS only: the path of the client certificate's key, when the certificate "
                           "file does not hold it.",
            "schema": _OPTIONAL_TEXT},
}

_BASIC_AUTH_LABELS = {"login": "Username (basic auth)", "password": "Password (basic auth)"}
_BASIC_AUTH_PLACEHOLDERS = {"login": "empty: no authentication", "password": "empty: no authentication"}


@dataclass(frozen=True)
class ConnectionForm:
    """How Airflow's UI shows one connection type.

    Attributes:
        hook_name: The type's name in the Connection Type dropdown.
        relabeling: Labels of the standard fields (host, port, schema, login, password).
        placeholders: Placeholders of the standard fields (and of ``extra``, for older UIs).
        hidden: Standard fields the type does not use.
        fields: Extra fields: name -> ``{"label", "description", "schema"}`` (a JSON schema).
    """

    hook_name: str
    relabeling: dict[str, str]
    placeholders: dict[str, str]
    hidden: tuple[str, ...] = ()
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)

    def provider_info(self, conn_type: str, hook_class_name: str) -> dict[str, Any]:
        """The type's ``connection-types`` entry of provider info.

        Args:
            conn_type: The connection type.
            hook_class_name: The dotted path of its hook class.

        Returns:
            ``connection-type``, ``hook-class-name``, ``hook-name``, ``ui-field-behaviour`` and, when
            the type has extra fields, ``conn-fields``.
        """
        entry: dict[str, Any] = {
            "connection-type": conn_type,
            "hook-class-name": hook_class_name,
            "hook-name": self.hook_name,
            "ui-field-behaviour": {"hidden-fields": list(self.hidden), "relabeling": dict(self.relabeling),
                                   "placeholders": dict(self.placeholders)},
        }
        if self.fields:
            entry["conn-fields"] = {name: dict(spec) for name, spec in self.fields.items()}
        return entry

    def ui_field_behaviour(self) -> dict[str, Any]:
        """The same behaviour as a hook's ``get_ui_field_behaviour()`` returns it."""
        return {"hidden_fields": list(self.hidden), "relabeling": dict(self.relabeling),
                "placeholders": dict(self.placeholders)}


KAFKA_CONNECT = ConnectionForm(
    hook_name="Kafka Connect",
    relabeling={"host": "Kafka Connect host", "port": "REST port", "schema": "Scheme (http or https)",
                **_BASIC_AUTH_LABELS},
    placeholders={"host": "any worker, e.g. kafka-connect.example.com or 127.0.0.1", "port": "8083",
                  "schema": "http", **_BASIC_AUTH_PLACEHOLDERS,
                  "extra": '{"verify": "/etc/ssl/certs/ca.pem", "cert": "/etc/ssl/client.pem", '
                           '"key": "/etc/ssl/client.key"}'},
    fields=TLS_FIELDS,
)

FLINK = ConnectionForm(
    hook_name="Apache Flink (REST)",
    relabeling={"host": "JobManager host", "port": "REST port", "schema": "Scheme (http or https)",
                **_BASIC_AUTH_LABELS},
    placeholders={"host": "the JobManager, e.g. flink-jobmanager.example.com or 127.0.0.1", "port": "8081",
                  "schema": "http", **_BASIC_AUTH_PLACEHOLDERS,
                  "extra": '{"python_jar": "/opt/flink/opt/flink-python-2.2.1.jar"}'},
    fields={
        "python_jar": {"label": "flink-python jar",
                       "description": "The path of the Flink distribution's opt/flink-python-*.jar, uploaded when "
                                      "the cluster has none: needed to run processors, SQL scripts and PyFlink "
                                      "programs.",
                       "schema": _OPTIONAL_TEXT},
        "sql_runner": {"label": "SQL runner path (as the JobManager sees it)",
                       "description": "Where the JobManager reads airflow-mesh's flink_runtime/sql_job.py. Empty: "
                                      "this installation's copy (right when Airflow and the JobManager share a "
                                      "filesystem).",
                       "schema": _OPTIONAL_TEXT},
        **TLS_FIELDS,
    },
)

SCHEMA_REGISTRY = ConnectionForm(
    hook_name="Schema Registry",
    relabeling={"host": "Registry host", "port": "Port", "schema": "Scheme (http or https)", **_BASIC_AUTH_LABELS},
    placeholders={"host": "e.g. schema-registry.example.com or 127.0.0.1", "port": "8081", "schema": "http",
                  **_BASIC_AUTH_PLACEHOLDERS, "extra": '{"api_path": "/apis/ccompat/v7"}'},
    fields={
        "api_path": {"label": "API path",
                     "description": "The path the Confluent-compatible API lives under, starting with /: "
                                    "/apis/ccompat/v7 for Apicurio Registry 3. Empty for Confluent Schema Registry.",
                     "schema": {"type": ["string", "null"], "pattern": "^/"}},
        **TLS_FIELDS,
    },
)

# Declared by airflow-mesh only while Airflow's MySQL provider is not installed (see get_provider_info).
MYSQL = ConnectionForm(
    hook_name="MySQL / MariaDB",
    relabeling={"host": "Host", "port": "Port", "schema": "Database", "login": "User", "password": "Password"},
    placeholders={"host": "e.g. mariadb.example.com or 127.0.0.1", "port": "3306", "schema": "e.g. mesh",
                  "login": "e.g. mesh", "extra": '{"ssl_mode": "VERIFY_IDENTITY", "ssl_ca": "/etc/ssl/certs/ca.pem"}'},
    fields={
        "ssl_mode": {"label": "TLS mode",
                     "description": "As MySQL's --ssl-mode: DISABLED, PREFERRED, REQUIRED (encrypted, unverified), "
                                    "VERIFY_CA, VERIFY_IDENTITY (certificate and host name); default: the driver's "
                                    "default, or VERIFY_IDENTITY when a CA is given.",
                     "schema": {"type": ["string", "null"],
                                "enum": [None, "DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"],
                                "values_display": {"null": "default"}}},
        "ssl_ca": {"label": "TLS: CA bundle",
                   "description": "The path of the CA bundle that signed the server's certificate. Other TLS "
                                  "settings (client certificate, the ssl object of Airflow's MySQL provider) go in "
                                  "the extra JSON.",
                   "schema": _OPTIONAL_TEXT},
    },
)

FORMS: dict[str, ConnectionForm] = {
    "kafka_connect": KAFKA_CONNECT,
    "flink": FLINK,
    "schema_registry": SCHEMA_REGISTRY,
    "mysql": MYSQL,
}
