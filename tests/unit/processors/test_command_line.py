"""``airflow-mesh processors`` (``python -m airflow_mesh.processors``): list, explain, validate."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from airflow_mesh.processors import default_registry, registry
from airflow_mesh.processors.__main__ import PLACEHOLDER_BOOTSTRAP_SERVERS, main, parse_param

COLUMNS = json.dumps({"id": "BIGINT", "status": "STRING"})
FILTER = ["--param", "input_topic=orders", "--param", f"columns={COLUMNS}", "--param", "condition=status = 'paid'",
          "--param", "output_topic=orders.paid"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = main(list(argv), prog="airflow-mesh processors")
    except SystemExit as exit_:  # argparse's own refusals
        status = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


class TestList:
    def test_list_is_the_default(self, capsys):
        status, out, _ = run(capsys)
        assert status == 0
        assert "filter  [built-in]\n    Keep the records" in out
        assert run(capsys, "list")[1] == out

    def test_an_unknown_option_is_an_error(self, capsys):
        status, out, err = run(capsys, "--show-sql")
        assert status == 2 and out == ""
        assert err.splitlines()[-1].endswith("error: unrecognized arguments: --show-sql")


class TestExplain:
    def test_prints_the_compiled_sql_with_a_placeholder_for_the_servers(self, capsys):
        status, out, err = run(capsys, "explain", "filter", *FILTER)
        assert (status, err) == (0, "")
        assert out.startswith(f"-- bootstrap servers: placeholder {PLACEHOLDER_BOOTSTRAP_SERVERS!r}")
        assert "FROM `source_1` WHERE status = 'paid'" in out
        assert f"'properties.bootstrap.servers' = '{PLACEHOLDER_BOOTSTRAP_SERVERS}'" in out

    def test_given_servers_and_job_name(self, capsys):
        status, out, _ = run(capsys, "explain", "filter", *FILTER, "--bootstrap-servers", "kafka:9092",
                             "--job-name", "paid")
        assert status == 0
        assert "placeholder" not in out and "'properties.bootstrap.servers' = 'kafka:9092'" in out

    def test_json_values_and_strings(self, capsys):
        status, out, _ = run(capsys, "explain", "projection", "--param", "input_topic=123", "--param",
                             f"columns={COLUMNS}", "--param", 'keep=["id"]', "--param", "output_topic=o")
        assert status == 0
        assert "'topic' = '123'" in out and "SELECT `id` FROM `source_1`" in out

    @pytest.mark.parametrize(("text", "expected"), [
        ("topic=orders", ("topic", "orders")), ("limit=3", ("limit", "3")), ("limit:=3", ("limit", 3)),
        ("strict:=true", ("strict", True)), ('key=["id"]', ("key", ["id"])), ('name="a b"', ("name", "a b")),
        ("condition=a = b", ("condition", "a = b")),
    ])
    def test_param_values(self, text, expected):
        assert parse_param(text) == expected

    @pytest.mark.parametrize(("argv", "expected"), [
        (["explain", "filtre"], "airflow-mesh processors explain: no processor is registered as 'filtre'"),
        (["explain", "filter"], "airflow-mesh processors explain: processor 'filter' takes (input_topic"),
        (["explain", "filter", *FILTER[:-2], "--param", "output_topic=o", "--param", "condition=nope = 1"],
         ("airflow-mesh processors explain: processor 'filter' is invalid: step 1 (Filter): condition (nope = 1): "
          "unknown column 'nope'")),
    ])
    def test_bad_input_is_one_line_without_traceback(self, capsys, argv, expected):
        status, out, err = run(capsys, *argv)
        assert status == 1 and out == ""
        assert len(err.splitlines()) == 1 and err.startswith(expected), err
        assert "Traceback" not in err

    def test_bad_input_says_what_to_do(self, capsys):
        assert run(capsys, "explain", "filtre")[2].rstrip().endswith("(see 'airflow-mesh processors list')")
        assert run(capsys, "explain", "filter")[2].rstrip().endswith("(give them with --param key=value)")

    def test_debug_shows_the_traceback(self, capsys):
        status, _, err = run(capsys, "--debug", "explain", "filtre")
        assert status == 1 and "Traceback" in err

    @pytest.mark.parametrize(("param", "reason"), [("input_topic", "expected key=value or key:=json"),
                                                   ("columns={id", "the value of 'columns' is not valid JSON")])
    def test_a_malformed_param_is_a_usage_error(self, capsys, param, reason):
        status, _, err = run(capsys, "explain", "filter", "--param", param)
        assert status == 2 and reason in err.splitlines()[-1]

    def test_needs_a_name(self, capsys):
        assert run(capsys, "explain")[0] == 2


class TestValidate:
    def test_every_registered_processor(self, capsys):
        status, out, _ = run(capsys, "validate")
        assert status == 0
        assert ("filter: ok, loaded (pass --param input_topic=... columns=... condition=... output_topic=... "
                "to compile it)") in out
        assert out.splitlines()[-1].startswith(f"{len(list(default_registry()))} processors: ")

    def test_named_with_params_compiles(self, capsys):
        status, out, _ = run(capsys, "validate", "filter", *FILTER)
        assert status == 0
        assert out.splitlines()[0] == "filter: ok, compiled"

    def test_failures_exit_1_with_one_line_each(self, capsys):
        status, out, _ = run(capsys, "validate", "filter", "filtre", *FILTER[:-2], "--param", "output_topic=o",
                             "--param", "condition=nope = 1")
        assert status == 1
        lines = out.splitlines()
        assert lines[0].startswith("filter: FAILED: processor 'filter' is invalid: ")
        assert lines[1].startswith("filtre: FAILED: no processor is registered as 'filtre'")
        assert lines[-1] == "2 processors: 0 ok, 2 failed"

    def test_registry_problems_fail(self, capsys, monkeypatch):
        monkeypatch.setattr(registry, "entry_points", lambda group: [
            registry.EntryPoint("filter", "x.y:z", group), registry.EntryPoint("team.gone", "gone_pkg:f", group)])
        default_registry.cache_clear()
        try:
            status, out, _ = run(capsys, "validate")
        finally:
            default_registry.cache_clear()
        assert status == 1
        assert ("team.gone: FAILED: processor 'team.gone' (entry point 'team.gone = gone_pkg:f' of an unknown "
                "distribution) cannot be loaded") in out
        assert "registry: FAILED: entry point 'filter = x.y:z' of an unknown distribution is refused" in out
        assert "filter: ok, loaded" in out


def test_the_module_and_the_console_script_run_it():
    module = subprocess.run([sys.executable, "-m", "airflow_mesh.processors", "--show-sql"], capture_output=True,
                            text=True, check=False)
    assert module.returncode == 2 and "unrecognized arguments: --show-sql" in module.stderr
    assert module.stderr.startswith("usage: python -m airflow_mesh.processors")
    from airflow_mesh.cli import main as airflow_mesh

    with pytest.raises(SystemExit) as exit_:
        airflow_mesh(["processors", "--show-sql"])
    assert exit_.value.code == 2
