"""FlinkHook's error paths and polling logic, with requests-mock standing in for the JobManager.

The happy paths run against the real Flink in tests/integration; here Flink's error answers, which a
healthy cluster rarely gives on demand, are replayed in the shapes Flink 2.2 answers with.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from airflow_mesh.flink.health import Health, HealthPolicy
from airflow_mesh.flink_runtime.sql_job import ScriptError, error_line, parse_error_line, parse_set
from airflow_mesh.hooks.flink import (
    PYTHON_DRIVER,
    FlinkApiError,
    FlinkHook,
    FlinkJobFailedError,
    FlinkJobNotFoundError,
    FlinkProgramError,
    FlinkTimeoutError,
    SavepointError,
    stack_trace_summary,
)

CONN_ID = "flink_test"
URL = "http://flink.test:8081"
JAR = "6c70_flink-python-2.2.1.jar"
TRACE = ("org.apache.flink.runtime.JobException: Recovery is suppressed by NoRestartBackoffTimeStrategy\n"
         "\tat org.apache.flink.runtime.executiongraph.failover.ExecutionFailureHandler.handleFailure(X.java:213)\n"
         "Caused by: java.io.IOException: Failed to deserialize consumer record due to\n"
         "\tat org.apache.flink.connector.kafka.source.reader.KafkaRecordEmitter.emitRecord(Y.java:56)\n"
         "\t... 15 more\n"
         "Caused by: java.lang.NumberFormatException: For input string: 'abc'. Invalid character found.\n"
         "\tat org.apache.flink.table.data.binary.BinaryStringDataUtil.toInt(Z.java:518)\n")


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> FlinkHook:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}",
                       json.dumps({"conn_type": "flink", "host": "flink.test", "port": 8081}))
    return FlinkHook(CONN_ID, retries=0)


def flink_error(status: int, *errors: str) -> dict[str, Any]:
    return {"status_code": status, "json": {"errors": list(errors)}}


def job(state: str = "RUNNING", vertex: str = "RUNNING", jid: str = "j1") -> dict[str, Any]:
    return {"jid": jid, "name": "orders", "state": state, "now": 2_000, "start-time": 1_000,
            "vertices": [{"id": "v1", "status": vertex}]}


def test_stack_trace_summary_keeps_each_exception_headline():
    assert stack_trace_summary(TRACE) == (
        "org.apache.flink.runtime.JobException: Recovery is suppressed by NoRestartBackoffTimeStrategy\n"
        "java.io.IOException: Failed to deserialize consumer record due to\n"
        "java.lang.NumberFormatException: For input string: 'abc'. Invalid character found.")


class TestErrors:
    def test_an_error_answer_carries_flinks_message(self, hook, requests_mock):
        requests_mock.post(f"{URL}/jars/{JAR}/run", **flink_error(
            400, "org.apache.flink.runtime.rest.handler.RestHandlerException: Could not execute application.\n"
                 "\tat org.apache.flink.runtime.rest.handler.AbstractHandler.respondAsLeader(A.java:1)\n"
                 "Caused by: java.lang.RuntimeException: Python process exits with code: 1\n"))
        with pytest.raises(FlinkApiError) as excinfo:
            hook.run_jar(JAR)
        error = excinfo.value
        assert (error.method, error.status) == ("POST", 400)
        assert error.message == ("org.apache.flink.runtime.rest.handler.RestHandlerException: Could not execute "
                                 "application.\njava.lang.RuntimeException: Python process exits with code: 1")
        assert str(error).startswith(f"Flink POST {URL}/jars/{JAR}/run returned 400: org.apache")

    def test_an_unknown_job_is_a_job_not_found_error(self, hook, requests_mock):
        requests_mock.get(f"{URL}/jobs/j9", **flink_error(
            404, "org.apache.flink.runtime.rest.NotFoundException: Job j9 not found\n\tat x.y(Z.java:1)\n"))
        with pytest.raises(FlinkJobNotFoundError, match="NotFoundException: Job j9 not found"):
            hook.get_job("j9")

    def test_a_404_that_is_not_flinks_is_a_plain_api_error(self, hook, requests_mock):
        requests_mock.get(f"{URL}/jobs/j1", status_code=404, text="<html>proxy: no route</html>")
        with pytest.raises(FlinkApiError) as excinfo:
            hook.get_job("j1")
        assert type(excinfo.value) is FlinkApiError and excinfo.value.message == "<html>proxy: no route</html>"


class TestJobs:
    def test_find_jobs_by_name_newest_first(self, hook, requests_mock):
        requests_mock.get(f"{URL}/jobs/overview", json={"jobs": [
            {"jid": "a", "name": "orders", "state": "CANCELED", "start-time": 1},
            {"jid": "b", "name": "orders", "state": "RUNNING", "start-time": 3},
            {"jid": "c", "name": "other", "state": "RUNNING", "start-time": 4},
            {"jid": "d", "name": "orders", "state": "FAILED", "start-time": 5}]})
        assert [j["jid"] for j in hook.find_jobs("orders")] == ["d", "b", "a"]
        assert [j["jid"] for j in hook.find_jobs("orders", active_only=True)] == ["b"]
        assert hook.latest_job_id("orders") == "b"  # the one that runs, though not the newest
        assert hook.latest_job_id("nobody") is None

    def test_latest_job_id_falls_back_to_the_newest_that_ran(self, hook, requests_mock):
        requests_mock.get(f"{URL}/jobs/overview", json={"jobs": [
            {"jid": "a", "name": "orders", "state": "CANCELED", "start-time": 1},
            {"jid": "d", "name": "orders", "state": "FAILED", "start-time": 5}]})
        assert hook.latest_job_id("orders") == "d"

    def test_failure_cause_is_the_latest_exception_chain(self, hook, requests_mock):
        requests_mock.get(f"{URL}/jobs/j1/exceptions", json={"exceptionHistory": {"truncated": False, "entries": [
            {"exceptionName": "org.apache.flink.runtime.JobException", "stacktrace": TRACE, "timestamp": 2,
             "taskName": "Source: orders -> Calc (1/1)"},
            {"exceptionName": "java.lang.OldException", "stacktrace": "java.lang.OldException: older",
             "timestamp": 1}]}})
        cause = hook.failure_cause("j1")
        assert cause.splitlines()[-2:] == [("java.lang.NumberFormatException: For input string: 'abc'. Invalid "
                                            "character found."), "(in task Source: orders -> Calc (1/1))"]
        assert "OldException" not in cause

    def test_no_exception_no_cause(self, hook, requests_mock):
        requests_mock.get(f"{URL}/jobs/j1/exceptions", json={"exceptionHistory": {"entries": [], "truncated": False}})
        assert hook.failure_cause("j1") is None

    def test_restarts_come_from_the_num_restarts_metric(self, hook, requests_mock):
        requests_mock.get(f"{URL}/jobs/j1/metrics?get=numRestarts", json=[{"id": "numRestarts", "value": "4"}])
        assert hook.get_restarts("j1") == 4
        requests_mock.get(f"{URL}/jobs/j1/metrics?get=numRestarts", json=[])
        assert hook.get_restarts("j1") == 0


class TestHealth:
    def mock_job(self, requests_mock, answer: dict, restarts: int = 0, failures: tuple[int, ...] = (),
                 checkpoint_ack: int | None = None) -> None:
        requests_mock.get(f"{URL}/jobs/j1", json=answer)
        requests_mock.get(f"{URL}/jobs/j1/metrics", json=[{"id": "numRestarts", "value": str(restarts)}])
        requests_mock.get(f"{URL}/jobs/j1/exceptions", json={"exceptionHistory": {"entries": [
            {"exceptionName": "x", "stacktrace": TRACE, "timestamp": ts} for ts in failures]}})
        if checkpoint_ack is None:
            requests_mock.get(f"{URL}/jobs/j1/checkpoints/config", status_code=404, json={"errors": [
                ("org.apache.flink.runtime.rest.handler.RestHandlerException: Checkpointing is not enabled for "
                "this job (j1).")]})
        else:
            requests_mock.get(f"{URL}/jobs/j1/checkpoints/config", json={"interval": 1_000, "timeout": 60_000})
            requests_mock.get(f"{URL}/jobs/j1/checkpoints", json={"latest": {"completed": {
                "id": 3, "latest_ack_timestamp": checkpoint_ack, "external_path": "file:/cp/j1/chk-3"}}})

    def test_a_failed_job_carries_its_cause(self, hook, requests_mock):
        self.mock_job(requests_mock, job("FAILED", "FAILED"), failures=(1_900,))
        health = hook.job_health("j1", HealthPolicy())
        assert health.health is Health.FAILED
        assert "NumberFormatException: For input string: 'abc'" in health.failure_message()

    def test_checkpoints_are_read_when_the_job_checkpoints(self, hook, requests_mock):
        self.mock_job(requests_mock, job())
        assert hook.job_health("j1", HealthPolicy()).checkpoint_age is None
        self.mock_job(requests_mock, job(), checkpoint_ack=1_500)
        health = hook.job_health("j1", HealthPolicy())
        assert (health.checkpoint_age, health.latest_checkpoint) == (0.5, "file:/cp/j1/chk-3")

    def test_waiting_ends_with_the_failure(self, hook, requests_mock):
        self.mock_job(requests_mock, job("RUNNING", "RUNNING"), restarts=2, failures=(1_500, 1_800))
        with pytest.raises(FlinkJobFailedError) as excinfo:
            hook.wait_until_healthy("j1", HealthPolicy(max_restarts=1), poll_interval=0)
        assert "failed 2 times in the last 600s, more than the 1 allowed" in str(excinfo.value)
        assert "NumberFormatException" in str(excinfo.value)

    def test_waiting_runs_out_of_time(self, hook, requests_mock):
        self.mock_job(requests_mock, job("RUNNING", "INITIALIZING"))
        with pytest.raises(FlinkTimeoutError, match=r"not healthy after 0s: .*0 of 1 vertices RUNNING"):
            hook.wait_until_healthy("j1", timeout=0, poll_interval=0)

    def test_an_unreachable_jobmanager_is_waited_for_until_the_timeout(self, hook, requests_mock):
        import requests

        requests_mock.get(f"{URL}/jobs/j1", exc=requests.ConnectionError("connection refused"))
        with pytest.raises(FlinkTimeoutError, match=r"not healthy after 0s: Flink at http://flink.test:8081 is "
                                                    r"unreachable: connection refused \(GET /jobs/j1\)"):
            hook.wait_until_healthy("j1", timeout=0, poll_interval=0)

    def test_source_progress_reads_each_source_operators_metrics(self, hook, requests_mock):
        answer = {**job(), "vertices": [{"id": "v1", "name": "Source: orders[1] -> Calc[2]", "status": "RUNNING"},
                                        {"id": "v2", "name": "mesh_output[3]: Writer", "status": "RUNNING"}]}
        requests_mock.get(f"{URL}/jobs/j1/vertices/v1/subtasks/0/metrics", json=[
            {"id": "Source__orders[1].pendingRecords"}, {"id": "Source__orders[1].numRecordsOutPerSecond"},
            {"id": "numRecordsOut"}])
        requests_mock.get(f"{URL}/jobs/j1/vertices/v1/subtasks/metrics", json=[
            {"id": "Source__orders[1].pendingRecords", "sum": 1200.0},
            {"id": "Source__orders[1].numRecordsOutPerSecond", "sum": 0.0}])
        progress = hook.source_progress(answer)
        assert [(p.name, p.pending, p.rate) for p in progress] == [("Source__orders[1]", 1200.0, 0.0)]
        assert requests_mock.last_request.qs == {"get": [("source__orders[1].pendingrecords,"
                                                         "source__orders[1].numrecordsoutpersecond")]}

    def test_the_async_twin_answers_the_same(self, hook, requests_mock):
        self.mock_job(requests_mock, job())
        requests_mock.get(f"{URL}/jobs/overview", json={"jobs": [{"jid": "j1", "name": "orders", "state": "RUNNING",
                                                                   "start-time": 1}]})
        assert asyncio.run(hook.ajob_health("j1", HealthPolicy())) == hook.job_health("j1", HealthPolicy())
        assert asyncio.run(hook.alatest_job_id("orders")) == "j1"


class TestSavepoints:
    def test_stop_with_savepoint_polls_the_trigger_then_waits_for_the_end(self, hook, requests_mock):
        requests_mock.post(f"{URL}/jobs/j1/stop", json={"request-id": "t1"})
        requests_mock.get(f"{URL}/jobs/j1/savepoints/t1", [
            {"json": {"status": {"id": "IN_PROGRESS"}}},
            {"json": {"status": {"id": "COMPLETED"}, "operation": {"location": "file:/sp/savepoint-1"}}}])
        requests_mock.get(f"{URL}/jobs/j1", [{"json": job("RUNNING")}, {"json": job("FINISHED", "FINISHED")}])
        assert hook.stop_with_savepoint("j1", "file:/sp", timeout=10) == "file:/sp/savepoint-1"
        stop = next(r for r in requests_mock.request_history if r.path == "/jobs/j1/stop")
        assert stop.json() == {"drain": False, "targetDirectory": "file:/sp"}

    def test_a_failed_savepoint_carries_flinks_cause(self, hook, requests_mock):
        requests_mock.post(f"{URL}/jobs/j1/savepoints", json={"request-id": "t2"})
        requests_mock.get(f"{URL}/jobs/j1/savepoints/t2", json={"status": {"id": "COMPLETED"}, "operation": {
            "failure-cause": {"class": "java.util.concurrent.CompletionException", "stack-trace":
                              "java.util.concurrent.CompletionException: org.apache.flink.runtime.checkpoint."
                              "CheckpointException: Checkpoint Coordinator is suspending.\n\tat a.b(C.java:1)\n"}}})
        with pytest.raises(SavepointError, match=r"savepoint of Flink job j1 failed: .*Checkpoint Coordinator is "
                                                 r"suspending") as excinfo:
            hook.savepoint("j1")
        assert requests_mock.request_history[0].json() == {"cancel-job": False}
        assert "\tat" not in excinfo.value.cause

    def test_a_savepoint_that_takes_too_long(self, hook, requests_mock):
        requests_mock.get(f"{URL}/jobs/j1/savepoints/t3", json={"status": {"id": "IN_PROGRESS"}})
        with pytest.raises(FlinkTimeoutError, match="savepoint of Flink job j1 not done after 0s"):
            hook.wait_for_savepoint("j1", "t3", timeout=0, poll_interval=0)


class TestSubmission:
    @pytest.fixture
    def jars(self, requests_mock) -> None:
        requests_mock.get(f"{URL}/jars", json={"files": [{"id": JAR, "name": "flink-python-2.2.1.jar"}]})

    def test_submit_sql_runs_the_runner_through_the_python_driver(self, hook, requests_mock, jars):
        requests_mock.post(f"{URL}/jars/{JAR}/run", json={"jobid": "j1"})
        assert hook.submit_sql("INSERT INTO a SELECT 1;", job_name="orders", savepoint_path="file:/sp/1",
                               flink_configuration={"restart-strategy.type": "none"}) == "j1"
        body = requests_mock.last_request.json()
        assert body["entryClass"] == PYTHON_DRIVER
        assert body["savepointPath"] == "file:/sp/1" and body["allowNonRestoredState"] is False
        assert body["flinkConfiguration"] == {"restart-strategy.type": "none"}
        args = body["programArgsList"]
        assert args[0] == "-py" and args[1].endswith("airflow_mesh/flink_runtime/sql_job.py")
        assert base64.b64decode(args[args.index("--sql-base64") + 1]).decode() == "INSERT INTO a SELECT 1;"
        assert args[args.index("--job-name") + 1] == "orders"
        assert len(args[args.index("--submission-id") + 1]) == 32

    def test_a_refused_statement_is_read_from_the_jobmanager_log(self, hook, requests_mock, jars):
        def log(request, context) -> str:
            run = next(r for r in requests_mock.request_history if r.path.endswith("/run")).json()["programArgsList"]
            submission = run[run.index("--submission-id") + 1]
            refused = ValueError("An error occurred while calling o35.addInsertSql.\n: org.apache.flink.table.api."
                                 "ValidationException: Object 'nope' not found\n\tat org.x.Y.z(Y.java:1)")
            return "\n".join(["INFO other line", "INFO " + error_line("someone-else", "SELECT 2", ValueError("no")),
                              "INFO  org.apache.flink.client.python.PythonDriver [] - "
                              + error_line(submission, "INSERT INTO a SELECT * FROM nope", refused)])

        requests_mock.post(f"{URL}/jars/{JAR}/run", **flink_error(
            400, "RestHandlerException: Could not execute application.\n"
                 "Caused by: java.lang.RuntimeException: Python process exits with code: 1"))
        requests_mock.get(f"{URL}/jobmanager/log", text=log)
        with pytest.raises(FlinkProgramError) as excinfo:
            hook.submit_sql("INSERT INTO a SELECT * FROM nope;")
        assert excinfo.value.statement == "INSERT INTO a SELECT * FROM nope"
        assert excinfo.value.cause.endswith("ValidationException: Object 'nope' not found")
        assert isinstance(excinfo.value.__cause__, FlinkApiError)

    def test_without_the_log_the_api_error_stands(self, hook, requests_mock, jars):
        requests_mock.post(f"{URL}/jars/{JAR}/run", **flink_error(
            400, "java.lang.RuntimeException: Python process exits with code: 1"))
        requests_mock.get(f"{URL}/jobmanager/log", status_code=404, json={"errors": ["Not found: /jobmanager/log"]})
        with pytest.raises(FlinkApiError, match="Python process exits with code: 1"):
            hook.submit_sql("INSERT INTO a SELECT 1;")

    def test_a_job_whose_id_flink_lost_is_found_by_its_name(self, hook, requests_mock, jars):
        """Flink 2.2 sometimes answers "No jobs included in application" for a program that did submit its job."""
        import time

        requests_mock.post(f"{URL}/jars/{JAR}/run", **flink_error(
            400, "org.apache.flink.runtime.rest.handler.RestHandlerException: No jobs included in application."))
        now = int(time.time() * 1000)
        requests_mock.get(f"{URL}/jobs/overview", json={"jobs": [
            {"jid": "old", "name": "orders", "state": "CANCELED", "start-time": now - 3_600_000},
            {"jid": "new", "name": "orders", "state": "RUNNING", "start-time": now},
            {"jid": "other", "name": "payments", "state": "RUNNING", "start-time": now}]})
        assert hook.submit_sql("INSERT INTO a SELECT 1;", job_name="orders") == "new"

    def test_without_a_job_of_that_name_the_error_stands(self, hook, requests_mock, jars):
        requests_mock.post(f"{URL}/jars/{JAR}/run", **flink_error(
            400, "org.apache.flink.runtime.rest.handler.RestHandlerException: No jobs included in application."))
        requests_mock.get(f"{URL}/jobs/overview", json={"jobs": []})
        hook.lost_job_wait = 0.0
        with pytest.raises(FlinkApiError, match="No jobs included in application"):
            hook.submit_sql("INSERT INTO a SELECT 1;", job_name="orders")

    def test_the_python_jar_is_uploaded_when_the_cluster_has_none(self, monkeypatch, requests_mock, tmp_path):
        jar = tmp_path / "flink-python-2.2.1.jar"
        jar.write_bytes(b"PK")
        monkeypatch.setenv("AIRFLOW_CONN_FLINK_UPLOAD", json.dumps(
            {"conn_type": "flink", "host": "flink.test", "port": 8081, "extra": {"python_jar": str(jar)}}))
        requests_mock.get(f"{URL}/jars", json={"files": []})
        requests_mock.post(f"{URL}/jars/upload", json={"filename": f"/tmp/flink-web/upload/{JAR}", "status": "success"})
        assert FlinkHook("flink_upload").python_jar_id() == JAR


class TestSqlRunnerProtocol:
    """What the runner inside Flink and the hook outside agree on."""

    def test_an_error_line_is_read_back_for_its_submission_only(self):
        line = "2026-11-26 INFO PythonDriver [] - " + error_line("s1", "INSERT 1", ValueError("bad\n\tat x"))
        assert parse_error_line(line, "s1") == {"statement": "INSERT 1", "error": "bad\n\tat x"}
        assert parse_error_line(line, "s2") is None

    @pytest.mark.parametrize(("statement", "setting"), [
        ("SET 'restart-strategy.type' = 'none'", ("restart-strategy.type", "none")),
        ("set 'pipeline.name'='it''s mine'", ("pipeline.name", "it's mine")),
        ("CREATE TABLE t (a INT)", None),
    ])
    def test_set_statements(self, statement, setting):
        assert parse_set(statement) == setting

    def test_a_malformed_set_is_refused(self):
        with pytest.raises(ScriptError, match="malformed SET statement"):
            parse_set("SET restart-strategy.type = none")
