"""SchemaRegistryHook without a registry: requests-mock answers as Confluent's API documents it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from airflow_mesh.contracts.avro_compat import CompatibilityLevel
from airflow_mesh.hooks.schema_registry import (
    CONTENT_TYPE,
    IncompatibleSchemaError,
    RegisteredSchema,
    RegistryInvalidSchemaError,
    SchemaNotFoundError,
    SchemaRegistryApiError,
    SchemaRegistryHook,
    SubjectNotFoundError,
    VersionNotFoundError,
    subject_name,
)

CONN_ID = "sr_test"
URL = "http://registry.test:8085/apis/ccompat/v7"
SCHEMA = '{\n  "type": "record",\n  "name": "T",\n  "fields": [{"name": "a", "type": "long"}]\n}'
COMPACT = '{"type":"record","name":"T","fields":[{"name":"a","type":"long"}]}'


@pytest.fixture
def define_connection(monkeypatch: pytest.MonkeyPatch):
    def define(**fields: Any) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "schema_registry", **fields}))

    return define


@pytest.fixture
def hook(define_connection) -> SchemaRegistryHook:
    define_connection(host="registry.test", port=8085, extra={"api_path": "/apis/ccompat/v7/"})
    return SchemaRegistryHook(CONN_ID)


def error(status: int, code: int, message: str) -> dict[str, Any]:
    return {"status_code": status, "json": {"error_code": code, "message": message}}


class TestConnection:
    def test_api_path_extends_the_base_url(self, hook):
        assert hook.base_url == URL

    def test_confluent_registry_on_its_default_port(self, define_connection):
        define_connection(host="sr.prod", schema="https")
        assert SchemaRegistryHook(CONN_ID).base_url == "https://sr.prod:8081"

    def test_api_path_must_be_absolute(self, define_connection):
        define_connection(host="sr", extra={"api_path": "apis/ccompat/v7"})
        with pytest.raises(ValueError, match="must start with '/'"):
            _ = SchemaRegistryHook(CONN_ID).base_url

    def test_test_connection_reports_the_global_level(self, hook, requests_mock):
        requests_mock.get(f"{URL}/config", json={"compatibilityLevel": "BACKWARD"})
        assert hook.test_connection() == (True, (f"Schema registry at {URL} answers; global compatibility level "
                                                 "BACKWARD"))
        requests_mock.get(f"{URL}/config", status_code=503, text="down")
        ok, message = hook.test_connection()
        assert not ok and "503" in message

    def test_default_connection_and_topic_name_strategy(self):
        assert SchemaRegistryHook().conn_id == "schema_registry_default"
        assert (subject_name("mesh.pg.public.orders", "key"), subject_name("t", "value")) == \
            ("mesh.pg.public.orders-key", "t-value")


class TestSubjects:
    def test_register_sends_the_compact_schema_with_the_registry_media_type(self, hook, requests_mock):
        requests_mock.post(f"{URL}/subjects/orders-value/versions", json={"id": 12})
        assert hook.register_schema("orders-value", SCHEMA) == 12
        request = requests_mock.last_request
        assert request.headers["Content-Type"] == CONTENT_TYPE and request.headers["Accept"] == CONTENT_TYPE
        assert request.json() == {"schema": COMPACT}

    def test_register_other_schema_types(self, hook, requests_mock):
        requests_mock.post(f"{URL}/subjects/s/versions", json={"id": 1})
        hook.register_schema("s", "syntax = 'proto3';", schema_type="PROTOBUF")
        assert requests_mock.last_request.json() == {"schema": "syntax = 'proto3';", "schemaType": "PROTOBUF"}

    def test_incompatible_and_invalid_schemas_are_typed(self, hook, requests_mock):
        requests_mock.post(f"{URL}/subjects/s/versions", [
            error(409, 409, "Schema being registered is incompatible with an earlier schema"),
            error(422, 42201, "Invalid schema"),
        ])
        with pytest.raises(IncompatibleSchemaError) as incompatible:
            hook.register_schema("s", SCHEMA)
        assert (incompatible.value.status, incompatible.value.error_code) == (409, 409)
        assert str(incompatible.value) == (f"schema registry POST {URL}/subjects/s/versions returned 409 (error code "
                                           "409): Schema being registered is incompatible with an earlier schema")
        with pytest.raises(RegistryInvalidSchemaError, match="Invalid schema"):
            hook.register_schema("s", SCHEMA)

    def test_versions(self, hook, requests_mock):
        requests_mock.get(f"{URL}/subjects", json=["a-value"])
        requests_mock.get(f"{URL}/subjects/a-value/versions", json=[1, 3])
        requests_mock.get(f"{URL}/subjects/a-value/versions/latest",
                          json={"subject": "a-value", "version": 3, "id": 9, "schema": COMPACT})
        assert hook.list_subjects() == ["a-value"]
        assert hook.list_versions("a-value") == [1, 3]
        assert hook.get_version("a-value") == RegisteredSchema(COMPACT, "AVRO", 9, "a-value", 3)
        hook.list_subjects(deleted=True)
        assert requests_mock.last_request.qs == {"deleted": ["true"]}

    def test_not_found_errors_are_typed_by_error_code(self, hook, requests_mock):
        requests_mock.get(f"{URL}/subjects/gone/versions", **error(404, 40401, "Subject 'gone' not found."))
        requests_mock.get(f"{URL}/subjects/a/versions/9", **error(404, 40402, "Version 9 not found."))
        requests_mock.get(f"{URL}/schemas/ids/99", **error(404, 40403, "Schema 99 not found."))
        with pytest.raises(SubjectNotFoundError, match="Subject 'gone' not found"):
            hook.list_versions("gone")
        with pytest.raises(VersionNotFoundError):
            hook.get_version("a", 9)
        with pytest.raises(SchemaNotFoundError) as not_found:
            hook.get_schema_by_id(99)
        assert not_found.value.error_code == 40403

    def test_a_proxy_page_is_no_registry_verdict(self, hook, requests_mock):
        requests_mock.get(f"{URL}/subjects/a/versions", status_code=404, text="<html>Not Found</html>")
        with pytest.raises(SchemaRegistryApiError) as raised:
            hook.list_versions("a")
        assert type(raised.value) is SchemaRegistryApiError
        assert (raised.value.error_code, raised.value.message) == (None, "<html>Not Found</html>")

    def test_subject_names_are_quoted(self, hook, requests_mock):
        requests_mock.get(f"{URL}/subjects/a%2Fb%20c/versions", json=[1])
        assert hook.list_versions("a/b c") == [1]

    def test_schema_by_id(self, hook, requests_mock):
        requests_mock.get(f"{URL}/schemas/ids/7", json={"schema": "x", "schemaType": "JSON", "references": [{"n": 1}]})
        assert hook.get_schema_by_id(7) == RegisteredSchema("x", "JSON", 7, references=({"n": 1},))

    def test_lookup(self, hook, requests_mock):
        requests_mock.post(f"{URL}/subjects/a", [
            {"json": {"subject": "a", "version": 2, "id": 5, "schema": COMPACT}},
            error(404, 40403, "The given schema does not match any schema under the subject a"),
            error(404, 40401, "Subject 'a' not found."),
        ])
        assert hook.lookup_schema("a", SCHEMA) == RegisteredSchema(COMPACT, "AVRO", 5, "a", 2)
        assert requests_mock.last_request.json() == {"schema": COMPACT}
        assert hook.lookup_schema("a", SCHEMA) is None
        assert hook.lookup_schema("a", SCHEMA) is None

    def test_delete(self, hook, requests_mock):
        requests_mock.delete(f"{URL}/subjects/a", json=[1, 2])
        assert hook.delete_subject("a") == [1, 2]
        assert requests_mock.last_request.qs == {}
        hook.delete_subject("a", permanent=True)
        assert requests_mock.last_request.qs == {"permanent": ["true"]}


class TestCompatibility:
    def test_check_is_verbose_and_keeps_the_reasons(self, hook, requests_mock):
        requests_mock.post(f"{URL}/compatibility/subjects/a/versions/latest",
                           json={"is_compatible": False, "messages": ["READER_FIELD_MISSING_DEFAULT_VALUE"]})
        result = hook.check_compatibility("a", SCHEMA)
        assert (result.is_compatible, result.messages) == (False, ("READER_FIELD_MISSING_DEFAULT_VALUE",))
        assert requests_mock.last_request.qs == {"verbose": ["true"]}

    def test_check_without_reasons(self, hook, requests_mock):
        requests_mock.post(f"{URL}/compatibility/subjects/a/versions/2", json={"is_compatible": True})
        assert hook.check_compatibility("a", SCHEMA, version=2).messages == ()

    def test_subject_level_else_global(self, hook, requests_mock):
        requests_mock.get(f"{URL}/config/a", json={"compatibilityLevel": "FULL_TRANSITIVE"})
        requests_mock.get(f"{URL}/config/new", **error(404, 40401, "Subject 'new' not found."))
        requests_mock.get(f"{URL}/config", json={"compatibilityLevel": "BACKWARD"})
        assert hook.get_compatibility_level("a") is CompatibilityLevel.FULL_TRANSITIVE
        assert requests_mock.request_history[-1].qs == {"defaulttoglobal": ["true"]}
        assert hook.get_compatibility_level("new") is CompatibilityLevel.BACKWARD
        assert hook.get_compatibility_level() is CompatibilityLevel.BACKWARD

    def test_other_config_errors_are_raised(self, hook, requests_mock):
        requests_mock.get(f"{URL}/config/a", **error(500, 50001, "Error in the backend data store"))
        with pytest.raises(SchemaRegistryApiError, match="backend data store"):
            hook.get_compatibility_level("a")

    def test_set_level(self, hook, requests_mock):
        requests_mock.put(f"{URL}/config/a", json={"compatibility": "FORWARD"})
        requests_mock.put(f"{URL}/config", json={"compatibility": "NONE"})
        assert hook.set_compatibility_level(CompatibilityLevel.FORWARD, "a") is CompatibilityLevel.FORWARD
        assert requests_mock.last_request.json() == {"compatibility": "FORWARD"}
        assert hook.set_compatibility_level(CompatibilityLevel.NONE) is CompatibilityLevel.NONE


def test_async_twins_give_the_same_answers_and_errors(hook, requests_mock):
    requests_mock.get(f"{URL}/schemas/ids/3", json={"schema": COMPACT})
    requests_mock.get(f"{URL}/subjects/a/versions", json=[1])
    requests_mock.get(f"{URL}/subjects/a/versions/1", **error(404, 40402, "Version 1 not found."))
    requests_mock.post(f"{URL}/compatibility/subjects/a/versions/latest", json={"is_compatible": True})

    async def run() -> None:
        assert (await hook.aget_schema_by_id(3)).schema == COMPACT
        assert await hook.alist_versions("a") == [1]
        assert (await hook.acheck_compatibility("a", SCHEMA)).is_compatible
        with pytest.raises(VersionNotFoundError):
            await hook.aget_version("a", 1)

    asyncio.run(run())
