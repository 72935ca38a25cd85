"""The Airflow UI as a new user meets it: the real Airflow, driven with headless Chromium.

``airflow standalone`` (API server, scheduler, dag-processor, triggerer) runs in a temporary
AIRFLOW_HOME on a free loopback port, with the stack's connections, except ``iceberg_default``,
which points at a temporary SQLite catalog and warehouse. Playwright drives Debian's Chromium
(``make install`` installs it; Playwright's own browser download is never used). Screenshots land
in ``.stack/logs/ui/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from playwright import sync_api as playwright_api  # the test extra (make install); its browsers are never installed
from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".stack" / "logs" / "ui"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Rows the test puts into the default source table (public.orders, empty between tests), and removes.
ORDERS = 3_000
STARTUP_TIMEOUT = 240.0
RUN_TIMEOUT = 300.0
# The page renders what it fetched in its own time on a loaded 2-core machine: assertions wait that long.
expect.set_options(timeout=20_000)

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 1.0,
              alive: Callable[[], str | None] = lambda: None) -> Any:
    """Poll ``condition`` until it returns something true; fail naming ``what`` after ``timeout``
    seconds, or as soon as ``alive`` reports why waiting is pointless."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if (dead := alive()) is not None:
            pytest.fail(f"{what}: {dead}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {timeout:.0f}s")
        time.sleep(interval)


@dataclass
class AirflowUI:
    """A running Airflow: its base URL, admin password and API token, and its log."""

    url: str
    password: str
    token: str
    log: Path
    iceberg_catalog: dict[str, str]

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A call to Airflow's REST API (``/api/v2``) as the admin."""
        return requests.request(method, f"{self.url}/api/v2{path}", timeout=30,
                                headers={"Authorization": f"Bearer {self.token}"}, **kwargs)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _start_airflow(home: Path, port: int, iceberg: dict[str, str]) -> subprocess.Popen:
    env = {
        **os.environ,  # the stack's AIRFLOW_CONN_* (tests/conftest.py loads them)
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONN_ICEBERG_DEFAULT": json.dumps({"conn_type": "iceberg", "extra": {"catalog": iceberg}}),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        # standalone starts its components as `airflow ...`: this virtualenv's.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    # A session of its own, so that the whole group (standalone, its components, their workers)
    # can be stopped together.
    with (home / "standalone.log").open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", "airflow", "standalone"], env=env, cwd=home,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    """Stop the process group we started: SIGTERM, then SIGKILL what is left after 30 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        process.poll()
        time.sleep(0.5)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def airflow_ui(tmp_path_factory) -> Iterator[AirflowUI]:
    home = tmp_path_factory.mktemp("airflow-ui")
    (home / "iceberg" / "warehouse").mkdir(parents=True)
    iceberg = {"type": "sql", "uri": f"sqlite:///{home}/iceberg/catalog.db",
               "warehouse": f"file://{home}/iceberg/warehouse"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = _start_airflow(home, port, iceberg)
    log = home / "standalone.log"

    def exited() -> str | None:
        if process.poll() is None:
            return None
        return f"airflow standalone exited with {process.returncode}:\n" + log.read_text(errors="replace")[-4000:]

    try:
        password_file = home / "simple_auth_manager_passwords.json.generated"
        wait_for(password_file.exists, STARTUP_TIMEOUT, "the admin password file", alive=exited)
        password = json.loads(password_file.read_text())["admin"]

        def healthy() -> bool:
            try:
                health = requests.get(f"{url}/api/v2/monitor/health", timeout=5).json()
            except (requests.RequestException, ValueError):
                return False
            return all(health.get(part, {}).get("status") == "healthy"
                       for part in ("metadatabase", "scheduler", "triggerer", "dag_processor"))

        wait_for(healthy, STARTUP_TIMEOUT, "Airflow's components healthy", alive=exited)
        token = requests.post(f"{url}/auth/token", json={"username": "admin", "password": password},
                              timeout=30).json()["access_token"]
        ui = AirflowUI(url, password, token, log, iceberg)
        wait_for(lambda: ui.api("GET", "/dags/backfill_ui").status_code == 200, STARTUP_TIMEOUT,
                 "backfill_ui parsed by the dag-processor", alive=exited)
        yield ui
    finally:
        _stop(process)
        if log.exists():
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, SCREENSHOTS / "airflow-standalone.log")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make install` installs Debian's chromium (as root), "
                    "or run `sudo apt-get install chromium fonts-liberation`")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, airflow_ui, request) -> Iterator[Any]:
    """A logged-in page (the simple auth manager's admin); its last state is kept as a screenshot."""
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(f"{airflow_ui.url}/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(airflow_ui.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{airflow_ui.url}/")
    yield page
    page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}-last.png"), full_page=True)
    context.close()


def shot(target: Any, name: str) -> None:
    target.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


# ---------------------------------------------------------------- the backfill_ui trigger form

@pytest.fixture
def orders(postgres_conninfo) -> Iterator[int]:
    """ORDERS rows in the default source table public.orders (kept empty by the other tests), removed afterwards."""
    note = f"airflow-ui-test {uuid.uuid4().hex[:8]}"
    first = 7_000_000_000 + secrets.randbelow(10**9) * 10_000
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute("INSERT INTO orders (id, customer_id, status, amount, note) "
                     "SELECT %s + g, g %% 97, 'new', g / 4.0, %s FROM generate_series(1, %s) g",
                     (first, note, ORDERS))
    yield ORDERS
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute("DELETE FROM orders WHERE note = %s", (note,))


def source_count(postgres_conninfo: str) -> int:
    with psycopg.connect(postgres_conninfo) as conn:
        return conn.execute("SELECT count(*) FROM public.orders").fetchone()[0]


def test_the_backfill_form_submits_with_its_defaults_and_the_run_copies_every_row(
        airflow_ui, page, orders, postgres_conninfo):
    from pyiceberg.catalog import load_catalog

    before = source_count(postgres_conninfo)
    page.goto(f"{airflow_ui.url}/dags/backfill_ui")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    submit = dialog.get_by_test_id("trigger-dag-submit")
    expect(dialog.get_by_text("Trigger Dag - backfill_ui")).to_be_visible()
    shot(dialog, "backfill_ui-trigger-form")

    # Every section opens without an error, its fields described; Trigger is enabled with the defaults.
    params = airflow_ui.api("GET", "/dags/backfill_ui/details").json()["params"]
    sections: dict[str, list[dict]] = {}
    for param in params.values():
        sections.setdefault(param["schema"]["section"], []).append(param)
    for section, members in sections.items():
        dialog.get_by_role("button", name=section, exact=True).click()
        for param in members:
            expect(dialog.get_by_text(param["description"], exact=True)).to_be_visible()
        expect(dialog.get_by_text("This field is required")).to_have_count(0)
        shot(dialog, f"backfill_ui-trigger-form-{section.lower()}")
        expect(submit).to_be_enabled()

    submit.click()
    expect(dialog).to_be_hidden()

    run = wait_for(lambda: (airflow_ui.api("GET", "/dags/backfill_ui/dagRuns").json().get("dag_runs") or [None])[0],
                   60, "the run the form triggered")
    assert run["triggered_by"] == "ui" and run["conf"]["target_conn_id"] == "iceberg_default", run

    def ended() -> dict | None:
        state = airflow_ui.api("GET", f"/dags/backfill_ui/dagRuns/{run['dag_run_id']}").json()
        return state if state["state"] in ("success", "failed") else None

    final = wait_for(ended, RUN_TIMEOUT, f"run {run['dag_run_id']} to end", interval=2.0)
    page.goto(f"{airflow_ui.url}/dags/backfill_ui/runs/{run['dag_run_id']}")
    expect(page.get_by_text("commit_and_verify").first).to_be_visible()
    shot(page, "backfill_ui-run")
    instances = airflow_ui.api("GET", f"/dags/backfill_ui/dagRuns/{run['dag_run_id']}/taskInstances").json()
    states = {(ti["task_id"], ti["map_index"]): ti["state"] for ti in instances["task_instances"]}
    assert final["state"] == "success", f"{states}\n{airflow_ui.log_tail()}"

    copied = load_catalog("default", **airflow_ui.iceberg_catalog).load_table("mesh.orders").scan().to_arrow()
    after = source_count(postgres_conninfo)
    assert before >= orders
    assert copied.num_rows in {before, after}, (copied.num_rows, before, after)


def test_editing_the_configuration_json_keeps_the_form_submittable(airflow_ui, page):
    """The form's values follow the JSON of Advanced Options, and Trigger stays enabled (nothing is triggered)."""
    params = airflow_ui.api("GET", "/dags/backfill_ui/details").json()["params"]
    conf = {name: param["value"] for name, param in params.items()}
    conf.update(range_size=1000, target_conn_id="elasticsearch_default", target_name="orders-ui")
    page.goto(f"{airflow_ui.url}/dags/backfill_ui")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Advanced Options", exact=True).click()
    dialog.locator(".monaco-editor").first.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(json.dumps(conf))  # one line: the editor's auto-indent and auto-close stay out of it
    page.keyboard.press("Control+Home")  # back to the start of the text, for the screenshot
    dialog.get_by_text("Configuration JSON").click()  # leave the editor
    expect(dialog.get_by_text("Invalid JSON")).to_have_count(0)
    shot(dialog, "backfill_ui-trigger-form-json")
    expect(dialog.get_by_test_id("trigger-dag-submit")).to_be_enabled()
    dialog.get_by_role("button", name="How", exact=True).click()
    expect(dialog.get_by_label("Rows per range")).to_have_value("1000")
    dialog.get_by_role("button", name="Target", exact=True).click()
    expect(dialog.locator("#element_target_conn_id")).to_have_value("elasticsearch_default")
    expect(dialog.get_by_test_id("trigger-dag-submit")).to_be_enabled()


def test_a_value_out_of_bounds_is_refused_saying_why(airflow_ui, page):
    """Typed in the JSON (the number field itself clamps to its bounds on leaving it), -5 rows per
    range reaches the server, which refuses the run naming the param and the bound."""
    params = airflow_ui.api("GET", "/dags/backfill_ui/details").json()["params"]
    conf = {name: param["value"] for name, param in params.items()}
    conf["range_size"] = -5
    runs_before = airflow_ui.api("GET", "/dags/backfill_ui/dagRuns").json()["total_entries"]
    page.goto(f"{airflow_ui.url}/dags/backfill_ui")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Advanced Options", exact=True).click()
    dialog.locator(".monaco-editor").first.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(json.dumps(conf))
    page.keyboard.press("Control+Home")
    dialog.get_by_text("Configuration JSON").click()
    dialog.get_by_test_id("trigger-dag-submit").click()
    expect(dialog.get_by_text(re.compile(r"range_size.*-5 is less than the minimum of 1"))).to_be_visible()
    shot(dialog, "backfill_ui-trigger-form-refused")
    assert airflow_ui.api("GET", "/dags/backfill_ui/dagRuns").json()["total_entries"] == runs_before


# ---------------------------------------------------------------- connection forms

def our_connection_types() -> dict[str, dict]:
    from airflow_mesh.get_provider_info import get_provider_info

    return {ct["connection-type"]: ct for ct in get_provider_info()["connection-types"]}


def open_add_connection(page: Any, url: str, hook_name: str) -> Any:
    page.goto(f"{url}/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("combobox").fill(hook_name)
    dialog.get_by_role("option", name=hook_name, exact=True).click()
    expect(dialog.get_by_text("Standard Fields")).to_be_visible()
    return dialog


def test_the_connection_type_dropdown_offers_every_type_the_dags_use(airflow_ui, page):
    from airflow.providers_manager import ProvidersManager

    names = {meta.connection_type: meta.hook_name
             for meta in ProvidersManager().iter_connection_type_hook_ui_metadata()}
    used = ["kafka", "kafka_connect", "flink", "postgres", "mysql", "iceberg", "elasticsearch", "schema_registry"]
    page.goto(f"{airflow_ui.url}/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("combobox").click()
    offered = page.get_by_role("option").all_inner_texts()
    shot(page, "connections-types")
    missing = [f"{conn_type} ({names.get(conn_type)})" for conn_type in used if names.get(conn_type) not in offered]
    assert not missing, f"missing from the Connection Type dropdown: {missing}; offered: {offered}"
    assert not set(used) & set(offered), f"types offered under their raw names: {set(used) & set(offered)}"
    # Airflow's Iceberg provider's form (a REST catalog), which the backfill reads too: for people to look at.
    page.keyboard.press("Escape")
    shot(open_add_connection(page, airflow_ui.url, names["iceberg"]), "connection-iceberg-standard-fields")


@pytest.mark.parametrize("conn_type", ["kafka_connect", "flink", "schema_registry", "mysql"])
def test_add_connection_labels_and_explains_every_field_of_our_types(airflow_ui, page, conn_type):
    entry = our_connection_types().get(conn_type)
    if entry is None:
        pytest.skip(f"{conn_type} is served by Airflow's own provider here")
    dialog = open_add_connection(page, airflow_ui.url, entry["hook-name"])
    behaviour = entry["ui-field-behaviour"]
    for label in behaviour["relabeling"].values():
        expect(dialog.get_by_text(label, exact=True)).to_be_visible()
    placeholders: dict[str, int] = {}
    for field, placeholder in behaviour["placeholders"].items():
        if field != "extra":  # the extra JSON editor shows no placeholder in Airflow 3.3
            placeholders[placeholder] = placeholders.get(placeholder, 0) + 1
    for placeholder, fields in placeholders.items():
        expect(dialog.get_by_placeholder(placeholder, exact=True)).to_have_count(fields)
    shot(dialog, f"connection-{conn_type}-standard-fields")
    if entry.get("conn-fields"):
        dialog.get_by_role("button", name="Extra Fields", exact=True).click()
        for field in entry["conn-fields"].values():
            expect(dialog.get_by_text(field["label"], exact=True)).to_be_visible()
            expect(dialog.get_by_text(field["description"], exact=True)).to_be_visible()
        shot(dialog, f"connection-{conn_type}-extra-fields")


def test_a_kafka_connect_connection_made_in_the_form_works(airflow_ui, page, connect_url):
    """Fill in and save the form as a user would, then use the saved connection against the stack's Connect."""
    from airflow_mesh.hooks.kafka_connect import KafkaConnectHook

    entry = our_connection_types()["kafka_connect"]
    conn_id = f"ui_test_{uuid.uuid4().hex[:8]}"
    connect = re.match(r"(?P<schema>https?)://(?P<host>[^:/]+):(?P<port>\d+)", connect_url)
    dialog = open_add_connection(page, airflow_ui.url, entry["hook-name"])
    dialog.locator("input[name=connection_id]").fill(conn_id)
    placeholders = entry["ui-field-behaviour"]["placeholders"]
    for field in ("host", "port", "schema"):
        dialog.get_by_placeholder(placeholders[field], exact=True).fill(connect[field])
    shot(dialog, "connection-kafka_connect-filled")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    try:
        saved = airflow_ui.api("GET", f"/connections/{conn_id}").json()
        assert (saved["conn_type"], saved["host"], saved["port"]) == ("kafka_connect", connect["host"],
                                                                     int(connect["port"])), saved
        extra = json.loads(saved["extra"] or "{}")
        fields = {"conn_type": saved["conn_type"], "host": saved["host"], "port": saved["port"],
                  "schema": saved["schema"], "extra": extra}
        os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(fields)
        hook = KafkaConnectHook(conn_id)
        assert hook.session.verify is True, extra
        ok, message = hook.test_connection()
        assert ok, message
    finally:
        os.environ.pop(f"AIRFLOW_CONN_{conn_id.upper()}", None)
        airflow_ui.api("DELETE", f"/connections/{conn_id}")
