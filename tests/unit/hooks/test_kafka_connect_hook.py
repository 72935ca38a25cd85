"""KafkaConnectHook without a real Connect: requests-mock for the API, a scripted local HTTP server for retries."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from airflow_mesh.hooks.kafka_connect import (
    ConnectorNotFoundError,
    KafkaConnectApiError,
    KafkaConnectError,
    KafkaConnectHook,
)
from airflow_mesh.hooks.rest import RestApiError, ServiceUnreachableError
from airflow_mesh.http import CallPolicy

CONN_ID = "kc_test"
URL = "http://connect.test:8083"
PG = "io.debezium.connector.postgresql.PostgresConnector"


@pytest.fixture(autouse=True)
def tiny_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the pause between retries to milliseconds."""
    monkeypatch.setattr(CallPolicy, "pause", lambda self, attempt: 0.005)


@pytest.fixture
def define_connection(monkeypatch: pytest.MonkeyPatch):
    """Define the connection ``kc_test`` as an AIRFLOW_CONN_ variable in JSON form."""

    def define(**fields: Any) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "kafka_connect", **fields}))

    return define


@pytest.fixture
def hook(define_connection) -> KafkaConnectHook:
    define_connection(host="connect.test", port=8083)
    return KafkaConnectHook(CONN_ID)


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"status_code": status, "json": {"error_code": status, "message": message}}


# ---------------------------------------------------------------- the connection


class TestConnection:
    def test_host_alone_means_http_on_port_8083(self, define_connection):
        define_connection(host="connect.internal")
        assert KafkaConnectHook(CONN_ID).base_url == "http://connect.internal:8083"

    def test_schema_is_the_scheme(self, define_connection):
        define_connection(host="connect.prod", port=443, schema="https")
        assert KafkaConnectHook(CONN_ID).base_url == "https://connect.prod:443"

    def test_login_and_password_are_sent_as_basic_auth(self, define_connection, requests_mock):
        define_connection(host="connect.test", port=8083, login="airflow", password="s3cret")
        requests_mock.get(f"{URL}/connectors", json=[])
        KafkaConnectHook(CONN_ID).list_connectors()
        assert requests_mock.last_request.headers["Authorization"] == "Basic YWlyZmxvdzpzM2NyZXQ="

    def test_no_auth_without_login(self, hook, requests_mock):
        requests_mock.get(f"{URL}/connectors", json=[])
        hook.list_connectors()
        assert "Authorization" not in requests_mock.last_request.headers

    def test_tls_extras_set_the_ca_bundle_and_client_certificate(self, define_connection):
        define_connection(host="connect.prod", schema="https",
                          extra={"verify": "/etc/ssl/ca.pem", "cert": "/etc/ssl/me.pem", "key": "/etc/ssl/me.key"})
        session = KafkaConnectHook(CONN_ID).session
        assert session.verify == "/etc/ssl/ca.pem"
        assert session.cert == ("/etc/ssl/me.pem", "/etc/ssl/me.key")

    def test_a_cert_alone_holds_both_certificate_and_key(self, define_connection):
        define_connection(host="connect.prod", schema="https", extra={"cert": "/etc/ssl/me-and-key.pem"})
        assert KafkaConnectHook(CONN_ID).session.cert == "/etc/ssl/me-and-key.pem"

    def test_verify_false_and_defaults(self, define_connection):
        define_connection(host="connect.prod", schema="https", extra={"verify": False})
        assert KafkaConnectHook(CONN_ID).session.verify is False
        define_connection(host="connect.prod", schema="https")
        session = KafkaConnectHook(CONN_ID).session
        assert (session.verify, session.cert) == (True, None)

    def test_a_key_without_a_cert_is_refused(self, define_connection):
        define_connection(host="connect.prod", extra={"key": "/etc/ssl/me.key"})
        with pytest.raises(ValueError, match="'key' needs a 'cert'"):
            KafkaConnectHook(CONN_ID).list_connectors()

    def test_one_session_and_a_policy_retrying_rebalances_and_server_errors(self, define_connection):
        define_connection(host="connect.test")
        hook = KafkaConnectHook(CONN_ID, retries=3)
        assert hook.session is hook.session
        assert hook.session.get_adapter(URL).max_retries.total == 0  # the hook's loop retries, not urllib3
        assert hook.policy.retries == 3
        assert set(hook.policy.retry_statuses) == {409, 500, 502, 503, 504}

    def test_every_call_has_a_connect_and_a_read_timeout(self, define_connection, requests_mock):
        define_connection(host="connect.test")
        requests_mock.get(f"{URL}/connectors", json=[])
        KafkaConnectHook(CONN_ID, timeout=7.5).list_connectors()
        assert requests_mock.last_request.timeout == (5.0, 7.5)

    def test_the_deadline_defaults_to_two_read_timeouts_and_a_connect_timeout(self):
        policy = KafkaConnectHook(timeout=10).policy
        assert (policy.connect_timeout, policy.read_timeout, policy.deadline) == (5.0, 10, 25.0)

    def test_a_polling_hook_is_bounded_to_a_few_seconds(self):
        policy = KafkaConnectHook.for_polling(call_timeout=4).policy
        assert (policy.connect_timeout, policy.read_timeout, policy.retries, policy.deadline) == (2.0, 4, 1, 4)

    def test_errors_derive_from_the_one_rest_api_error(self):
        assert issubclass(KafkaConnectApiError, RestApiError) and issubclass(KafkaConnectApiError, KafkaConnectError)
        assert issubclass(ServiceUnreachableError, RestApiError)
        assert issubclass(ServiceUnreachableError, requests.RequestException)
        error = KafkaConnectApiError("GET", f"{URL}/connectors", 500, "boom")
        assert (error.service, error.status, error.message) == ("Kafka Connect", 500, "boom")

    def test_default_connection_id(self):
        assert KafkaConnectHook().kafka_connect_conn_id == "kafka_connect_default"

    def test_ui_relabels_only_fields_of_the_form(self):
        behaviour = KafkaConnectHook.get_ui_field_behaviour()
        assert set(behaviour["relabeling"]) <= {"host", "port", "schema", "login", "password", "extra"}
        assert json.loads(behaviour["placeholders"]["extra"]).keys() == {"verify", "cert", "key"}

    def test_test_connection_reports_the_version(self, hook, requests_mock):
        requests_mock.get(f"{URL}/", json={"version": "4.3.1", "commit": "26b2", "kafka_cluster_id": "s3nd"})
        assert hook.test_connection() == (True, "Kafka Connect 4.3.1 on Kafka cluster s3nd")

    def test_test_connection_reports_the_failure(self, hook, requests_mock):
        requests_mock.get(f"{URL}/", status_code=401, text="Unauthorized")
        ok, message = hook.test_connection()
        assert not ok
        assert message == f"Kafka Connect GET {URL}/ returned 401: Unauthorized"


# ---------------------------------------------------------------- requests and answers


class TestConnectors:
    def test_list_connectors(self, hook, requests_mock):
        requests_mock.get(f"{URL}/connectors", json=["orders-cdc", "users-cdc"])
        assert hook.list_connectors() == ["orders-cdc", "users-cdc"]

    @pytest.mark.parametrize(
        ("method", "path"),
        [("get_connector", "/connectors/orders-cdc"),
         ("get_connector_config", "/connectors/orders-cdc/config"),
         ("get_connector_status", "/connectors/orders-cdc/status"),
         ("get_offsets", "/connectors/orders-cdc/offsets")],
    )
    def test_reads_return_connects_answer(self, hook, requests_mock, method, path):
        answer = {"any": "thing"}
        requests_mock.get(f"{URL}{path}", json=answer)
        assert getattr(hook, method)("orders-cdc") == answer

    def test_names_are_quoted_into_the_path(self, hook, requests_mock):
        requests_mock.get(f"{URL}/connectors/orders%20cdc%2Fv1/config", json={})
        hook.get_connector_config("orders cdc/v1")
        assert requests_mock.called

    @pytest.mark.parametrize(("status", "created"), [(201, True), (200, False)])
    def test_put_connector_config_tells_create_from_update(self, hook, requests_mock, status, created):
        config = {"connector.class": PG, "topic.prefix": "shop"}
        requests_mock.put(f"{URL}/connectors/orders-cdc/config", status_code=status,
                          json={"name": "orders-cdc", "config": config, "tasks": [], "type": "source"})
        assert hook.put_connector_config("orders-cdc", config) is created
        assert requests_mock.last_request.json() == config

    def test_validate_config_returns_connects_answer_as_is(self, hook, requests_mock):
        answer = {"name": PG, "error_count": 1, "groups": [], "configs": []}
        requests_mock.put(f"{URL}/connector-plugins/{PG}/config/validate", json=answer)
        config = {"connector.class": PG, "name": "orders-cdc"}
        assert hook.validate_config(PG, config) == answer
        assert requests_mock.last_request.json() == config

    @pytest.mark.parametrize("action", ["pause", "resume", "stop"])
    def test_lifecycle_actions_put(self, hook, requests_mock, action):
        requests_mock.put(f"{URL}/connectors/orders-cdc/{action}", status_code=202)
        assert getattr(hook, f"{action}_connector")("orders-cdc") is None
        assert requests_mock.called_once

    @pytest.mark.parametrize(
        ("flags", "status", "query"),
        [({}, 204, {"includetasks": ["false"], "onlyfailed": ["false"]}),
         ({"include_tasks": True}, 202, {"includetasks": ["true"], "onlyfailed": ["false"]}),
         ({"include_tasks": True, "only_failed": True}, 202, {"includetasks": ["true"], "onlyfailed": ["true"]})],
    )
    def test_restart_connector_query(self, hook, requests_mock, flags, status, query):
        requests_mock.post(f"{URL}/connectors/orders-cdc/restart", status_code=status)
        hook.restart_connector("orders-cdc", **flags)
        assert requests_mock.last_request.qs == query

    def test_restart_task(self, hook, requests_mock):
        requests_mock.post(f"{URL}/connectors/orders-cdc/tasks/2/restart", status_code=204)
        hook.restart_task("orders-cdc", 2)
        assert requests_mock.called_once

    def test_delete_connector(self, hook, requests_mock):
        requests_mock.delete(f"{URL}/connectors/orders-cdc", status_code=204)
        hook.delete_connector("orders-cdc")
        assert requests_mock.called_once

    @pytest.mark.parametrize(("answer", "exists"),
                             [({"json": {"name": "orders-cdc"}}, True),
                              (error_body(404, "Connector orders-cdc not found"), False)])
    def test_connector_exists(self, hook, requests_mock, answer, exists):
        requests_mock.get(f"{URL}/connectors/orders-cdc", **answer)
        assert hook.connector_exists("orders-cdc") is exists

    @pytest.mark.parametrize(("connectors_only", "value"), [(True, "true"), (False, "false")])
    def test_list_plugins(self, hook, requests_mock, connectors_only, value):
        plugins = [{"class": PG, "type": "source", "version": "3.6.1.Final"}]
        requests_mock.get(f"{URL}/connector-plugins", json=plugins)
        assert hook.list_plugins(connectors_only=connectors_only) == plugins
        assert requests_mock.last_request.qs == {"connectorsonly": [value]}


class TestOffsets:
    def test_alter_offsets_patches_the_offsets_list(self, hook, requests_mock):
        offsets = [{"partition": {"server": "shop"}, "offset": {"lsn": 26835424}},
                   {"partition": {"server": "old"}, "offset": None}]
        requests_mock.patch(f"{URL}/connectors/orders-cdc/offsets", json={"message": "altered"})
        assert hook.alter_offsets("orders-cdc", offsets) == {"message": "altered"}
        assert requests_mock.last_request.json() == {"offsets": offsets}

    def test_reset_offsets_deletes_them(self, hook, requests_mock):
        requests_mock.delete(f"{URL}/connectors/orders-cdc/offsets", json={"message": "reset"})
        assert hook.reset_offsets("orders-cdc") == {"message": "reset"}

    def test_offsets_of_a_running_connector_are_refused(self, hook, requests_mock):
        message = "Connectors must be in the STOPPED state before their offsets can be modified."
        requests_mock.delete(f"{URL}/connectors/orders-cdc/offsets", **error_body(400, message))
        with pytest.raises(KafkaConnectApiError, match="STOPPED state") as raised:
            hook.reset_offsets("orders-cdc")
        assert raised.type is KafkaConnectApiError


# ---------------------------------------------------------------- errors


class TestErrors:
    def test_connects_error_body_makes_the_error(self, hook, requests_mock):
        message = "Connector name configuration (other) doesn't match connector name in the URL (orders-cdc)"
        requests_mock.put(f"{URL}/connectors/orders-cdc/config", **error_body(400, message))
        with pytest.raises(KafkaConnectApiError) as raised:
            hook.put_connector_config("orders-cdc", {"name": "other"})
        error = raised.value
        assert (error.status, error.error_code, error.message) == (400, 400, message)
        assert (error.method, error.url) == ("PUT", f"{URL}/connectors/orders-cdc/config")
        assert str(error) == f"Kafka Connect PUT {URL}/connectors/orders-cdc/config returned 400: {message}"

    def test_a_body_that_is_not_connects_falls_back_to_the_text(self, hook, requests_mock):
        requests_mock.get(f"{URL}/connectors", status_code=401, text="<html>login required</html>\n")
        with pytest.raises(KafkaConnectApiError) as raised:
            hook.list_connectors()
        assert (raised.value.error_code, raised.value.message) == (None, "<html>login required</html>")

    def test_an_empty_body_falls_back_to_the_reason(self, hook, requests_mock):
        requests_mock.get(f"{URL}/connectors", status_code=403, reason="Forbidden")
        with pytest.raises(KafkaConnectApiError, match="returned 403: Forbidden"):
            hook.list_connectors()

    def test_404_with_connects_body_is_connector_not_found(self, hook, requests_mock):
        requests_mock.get(f"{URL}/connectors/gone/status", **error_body(404, "No status found for connector gone"))
        with pytest.raises(ConnectorNotFoundError) as raised:
            hook.get_connector_status("gone")
        assert raised.value.status == 404
        assert raised.value.message == "No status found for connector gone"

    def test_jettys_404_page_of_a_starting_worker_is_not_connector_not_found(self, hook, requests_mock):
        requests_mock.get(f"{URL}/connectors/orders-cdc", status_code=404,
                          text="<html><title>Error 404 Not Found</title></html>")
        with pytest.raises(KafkaConnectApiError) as raised:
            hook.connector_exists("orders-cdc")
        assert raised.type is KafkaConnectApiError


# ---------------------------------------------------------------- async variants


class TestAsync:
    def test_async_variants_answer_like_the_sync_ones(self, hook, requests_mock):
        status = {"name": "orders-cdc", "connector": {"state": "RUNNING"}, "tasks": []}
        requests_mock.get(f"{URL}/connectors/orders-cdc/status", json=status)
        requests_mock.get(f"{URL}/connectors/orders-cdc/config", json={"topic.prefix": "shop"})
        requests_mock.get(f"{URL}/connectors/orders-cdc", json={})

        async def main():
            return await asyncio.gather(hook.aget_connector_status("orders-cdc"),
                                        hook.aget_connector_config("orders-cdc"),
                                        hook.aconnector_exists("orders-cdc"))

        assert asyncio.run(main()) == [status, {"topic.prefix": "shop"}, True]

    def test_async_calls_run_off_the_event_loop_thread(self, hook, requests_mock):
        threads = []

        def answer(request, context):
            threads.append(threading.get_ident())
            return {}

        requests_mock.get(f"{URL}/connectors/orders-cdc/status", json=answer)

        async def main():
            await hook.aget_connector_status("orders-cdc")
            return threading.get_ident()

        loop_thread = asyncio.run(main())
        assert len(threads) == 1
        assert threads[0] != loop_thread

    def test_async_errors_are_the_same(self, hook, requests_mock):
        requests_mock.get(f"{URL}/connectors/gone/status", **error_body(404, "No status found for connector gone"))
        with pytest.raises(ConnectorNotFoundError):
            asyncio.run(hook.aget_connector_status("gone"))


# ---------------------------------------------------------------- retries, over real HTTP


@dataclass
class ScriptedConnect:
    """A local HTTP server that answers with the scripted (status, body) pairs in turn, the last one for ever."""

    answers: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        script = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                script.seen.append(f"{self.command} {self.path}")
                status, body = script.answers.pop(0) if len(script.answers) > 1 else script.answers[0]
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = answer  # noqa: N815 - http.server's names

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def connect_server(define_connection) -> Iterator[ScriptedConnect]:
    """A ScriptedConnect on 127.0.0.1, which the connection ``kc_test`` points at."""
    script = ScriptedConnect()
    server = ThreadingHTTPServer(("127.0.0.1", 0), script.handler())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    define_connection(host="127.0.0.1", port=server.server_port)
    yield script
    server.shutdown()
    server.server_close()
    thread.join()


REBALANCING = (409, {"error_code": 409, "message": "Cannot complete request because of a conflicting operation "
                                                 "(e.g. worker rebalance)"})


class TestRetries:
    def test_a_rebalance_is_retried_until_connect_answers(self, connect_server):
        connect_server.answers = [REBALANCING, REBALANCING, (201, {"name": "orders-cdc"})]
        assert KafkaConnectHook(CONN_ID, retries=3).put_connector_config("orders-cdc", {"topic.prefix": "shop"}) is True
        assert connect_server.seen == ["PUT /connectors/orders-cdc/config"] * 3

    def test_a_server_error_that_persists_raises_connects_message_after_the_retries(self, connect_server):
        connect_server.answers = [(500, {"error_code": 500, "message": "Request timed out"})]
        with pytest.raises(KafkaConnectApiError, match="returned 500: Request timed out") as raised:
            KafkaConnectHook(CONN_ID, retries=2).get_connector_status("orders-cdc")
        assert raised.value.status == 500
        assert len(connect_server.seen) == 3

    @pytest.mark.parametrize("status", [400, 404])
    def test_client_errors_are_not_retried(self, connect_server, status):
        connect_server.answers = [(status, {"error_code": status, "message": "no"})]
        with pytest.raises(KafkaConnectApiError):
            KafkaConnectHook(CONN_ID, retries=3).restart_connector("orders-cdc", include_tasks=True)
        assert connect_server.seen == ["POST /connectors/orders-cdc/restart?includeTasks=true&onlyFailed=false"]

    def test_the_async_variant_retries_the_same_way(self, connect_server):
        connect_server.answers = [REBALANCING, (200, {"connector": {"state": "RUNNING"}})]
        status = asyncio.run(KafkaConnectHook(CONN_ID, retries=2).aget_connector_status("orders-cdc"))
        assert status == {"connector": {"state": "RUNNING"}}
        assert len(connect_server.seen) == 2

    def test_a_refused_connection_raises_one_line_naming_service_and_url(self, define_connection):
        port = closed_port()
        define_connection(host="127.0.0.1", port=port)
        hook = KafkaConnectHook(CONN_ID, retries=2)
        started = time.monotonic()
        with pytest.raises(ServiceUnreachableError) as raised:
            hook.get_connector_status("orders-cdc")
        assert time.monotonic() - started < 2
        assert str(raised.value) == (f"Kafka Connect at http://127.0.0.1:{port} is unreachable: connection refused "
                                     f"(GET /connectors/orders-cdc/status; 3 attempts in {raised.value.elapsed:.1f}s)")
        assert "\n" not in str(raised.value)
        assert raised.value.attempts == 3


def closed_port() -> int:
    """A port of 127.0.0.1 nobody listens on (a probe binds it, then closes)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def black_hole(define_connection) -> Iterator[int]:
    """A real TCP socket that accepts connections (the kernel completes the handshake) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        define_connection(host="127.0.0.1", port=port)
        yield port


class TestBounds:
    """Each call ends within its deadline, whatever the server does; the message names service and URL."""

    def test_a_refused_connection_with_many_retries_stops_at_the_deadline(self, define_connection, monkeypatch):
        monkeypatch.setattr(CallPolicy, "pause", lambda self, attempt: 0.2)
        define_connection(host="127.0.0.1", port=closed_port())
        started = time.monotonic()
        with pytest.raises(ServiceUnreachableError, match="connection refused"):
            KafkaConnectHook(CONN_ID, retries=100, deadline=1.0).list_connectors()
        assert 0.5 < time.monotonic() - started < 1.5

    def test_a_server_that_never_answers_fails_within_the_polling_bound(self, black_hole):
        hook = KafkaConnectHook.for_polling(CONN_ID, call_timeout=2.0)
        started = time.monotonic()
        with pytest.raises(ServiceUnreachableError) as raised:
            hook.get_connector_status("orders-cdc")
        elapsed = time.monotonic() - started
        assert 1.5 < elapsed < 3.0
        assert str(raised.value).startswith(f"Kafka Connect at http://127.0.0.1:{black_hole} is unreachable: "
                                            "no answer within ")
        assert "(GET /connectors/orders-cdc/status" in str(raised.value)

    def test_read_timeouts_of_idempotent_calls_are_retried_within_the_deadline(self, black_hole):
        hook = KafkaConnectHook(CONN_ID, timeout=0.5, retries=10, deadline=2.0)
        started = time.monotonic()
        with pytest.raises(ServiceUnreachableError) as raised:
            hook.get_connector_status("orders-cdc")
        assert time.monotonic() - started < 2.6
        assert raised.value.attempts >= 2

    def test_a_read_timeout_of_a_post_is_not_retried(self, black_hole):
        hook = KafkaConnectHook(CONN_ID, timeout=0.5, retries=10, deadline=30.0)
        started = time.monotonic()
        with pytest.raises(ServiceUnreachableError, match=r"no answer within 0\.5s") as raised:
            hook.restart_connector("orders-cdc", include_tasks=True)
        assert time.monotonic() - started < 1.5
        assert raised.value.attempts == 1

    def test_a_tls_failure_is_not_retried(self, connect_server, define_connection):
        connect_server.answers = [(200, {})]
        port = int(json.loads(os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"])["port"])
        define_connection(host="127.0.0.1", port=port, schema="https")  # TLS to a plain HTTP server
        with pytest.raises(ServiceUnreachableError, match=f"Kafka Connect at https://127.0.0.1:{port} is unreachable: "
                           ) as raised:
            KafkaConnectHook(CONN_ID, retries=5).list_connectors()
        assert raised.value.attempts == 1

    def test_test_connection_reports_an_unreachable_worker(self, define_connection):
        port = closed_port()
        define_connection(host="127.0.0.1", port=port)
        ok, message = KafkaConnectHook(CONN_ID, retries=0).test_connection()
        assert not ok
        assert message == f"Kafka Connect at http://127.0.0.1:{port} is unreachable: connection refused (GET /)"
