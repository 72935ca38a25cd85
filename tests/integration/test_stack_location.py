"""The stack runs from a clone that other users cannot enter, and gives its databases a real password.

Run as root, PostgreSQL, MariaDB and Elasticsearch run as postgres, mysql and nobody, who cannot
enter a clone in a 0700 folder (root's home, a ``mktemp -d`` folder). These tests run the stack's own
``up`` for those three services, on spare ports, from a ``.stack`` inside such a folder, and use them.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pymysql
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
STACK_PY = ROOT / "stack" / "stack.py"
# The running stack's downloads (`make up` made them): Elasticsearch's distribution is read from there, as root.
JVM = Path(os.environ.get("MESH_STACK_DIR", ROOT / ".stack")) / "jvm"
# The three that run as other users, and Kafka Connect (with Kafka), whose worker gets the password.
SERVICES = ["postgres", "mariadb", "elasticsearch", "connect"]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="only a stack run as root runs services as other users")


def spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Clone:
    """A stack whose ``.stack`` is inside a folder only root can enter."""

    closed: Path
    state: Path
    env: dict[str, str]

    def stack(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(STACK_PY), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=self.closed, check=False)

    def up(self) -> subprocess.CompletedProcess:
        result = self.stack("up", "--only", *SERVICES)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def connection(self, conn_id: str) -> dict:
        for line in (self.state / "connections.env").read_text().splitlines():
            key, _, value = line.partition("=")
            if key == f"AIRFLOW_CONN_{conn_id.upper()}":
                return json.loads(shlex.split(value)[0])
        raise AssertionError(f"no {conn_id} in {self.state / 'connections.env'}")

    def password(self) -> str:
        return (self.state / "secrets" / "db-password").read_text().strip()


@pytest.fixture(scope="module")
def clone() -> Iterator[Clone]:
    if not (JVM / "elasticsearch" / ".complete").exists():
        pytest.fail(f"{JVM} has no Elasticsearch distribution: run `make up` first")
    closed = Path(tempfile.mkdtemp(prefix="mesh-closed-"))
    assert stat.S_IMODE(closed.stat().st_mode) == 0o700
    state = closed / "deep" / "clone" / ".stack"
    state.mkdir(parents=True)
    (state / "jvm").symlink_to(JVM, target_is_directory=True)
    env = {**os.environ, "MESH_STACK_DIR": str(state), "MESH_PG_PORT": str(spare_port()),
           "MESH_MARIADB_PORT": str(spare_port()), "MESH_ELASTICSEARCH_PORT": str(spare_port()),
           "MESH_ELASTICSEARCH_TRANSPORT_PORT": str(spare_port()), "MESH_KAFKA_PORT": str(spare_port()),
           "MESH_KAFKA_CONTROLLER_PORT": str(spare_port()), "MESH_CONNECT_PORT": str(spare_port())}
    made = Clone(closed, state, env)
    try:
        made.up()
        yield made
    finally:
        down = made.stack("down")
        clean = made.stack("clean")
        home = (state / "service-home").read_text().strip() if (state / "service-home").exists() else None
        shutil.rmtree(closed)
        assert down.returncode == 0 and clean.returncode == 0, down.stderr + clean.stderr
        assert home is None or not Path(home).exists()


def as_user(user: str, *command: str) -> int:
    return subprocess.run(list(command), user=user, group="nogroup" if user == "nobody" else user, cwd="/",
                          capture_output=True, check=False).returncode


def test_postgres_mariadb_and_elasticsearch_run_from_a_clone_other_users_cannot_enter(clone: Clone) -> None:
    pg = clone.connection("postgres_mesh")
    with psycopg.connect(host=pg["host"], port=pg["port"], user=pg["login"], password=pg["password"],
                         dbname=pg["schema"]) as conn:
        found = conn.execute("SELECT current_user, to_regclass('public.orders') IS NOT NULL").fetchone()
        assert found == ("mesh", True)
    maria = clone.connection("mariadb_mesh")
    with pymysql.connect(host=maria["host"], port=maria["port"], user=maria["login"], password=maria["password"],
                         database=maria["schema"]) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'shipments'")
        assert cursor.fetchone() == (1,)
    es = clone.connection("elasticsearch_default")
    health = requests.get(f"http://{es['host']}:{es['port']}/_cluster/health", timeout=10).json()
    assert health["cluster_name"] == "mesh" and health["status"] in ("green", "yellow")


def test_their_data_lives_where_their_users_can_reach_it(clone: Clone) -> None:
    home = Path((clone.state / "service-home").read_text().strip())
    assert clone.closed not in home.parents
    assert as_user("postgres", "test", "-x", str(clone.state)) != 0  # the reason for all this
    assert as_user("postgres", "test", "-r", str(home / "postgres" / "data" / "PG_VERSION")) == 0
    assert as_user("mysql", "test", "-r", str(home / "mariadb" / "mariadb.cnf")) == 0
    assert as_user("nobody", "test", "-w", str(home / "elasticsearch" / "data")) == 0
    # .stack/ still leads to them: clients (as root) use the socket folders through the symlinks.
    assert (clone.state / "postgres").resolve() == home / "postgres"
    with psycopg.connect(host=str(clone.state / "postgres" / "run"), port=clone.env["MESH_PG_PORT"], user="postgres",
                         dbname="mesh") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    root_sql = subprocess.run(["mariadb", f"--defaults-file={clone.state / 'conf' / 'mariadb.cnf'}", "-u", "root",
                               "-N", "-e", "SELECT 1"], capture_output=True, text=True, check=False)
    assert root_sql.stdout.strip() == "1", root_sql.stderr


def test_the_password_is_generated_kept_private_and_never_printed(clone: Clone) -> None:
    password = clone.password()
    assert len(password) >= 20 and password != "mesh"
    assert stat.S_IMODE((clone.state / "secrets" / "db-password").stat().st_mode) == 0o600
    assert stat.S_IMODE((clone.state / "connections.env").stat().st_mode) == 0o600
    assert clone.connection("postgres_mesh")["password"] == password == clone.connection("mariadb_mesh")["password"]
    status = clone.stack("status")
    assert "postgres" in status.stdout and password not in status.stdout + status.stderr


def login_works(clone: Clone, password: str) -> tuple[bool, bool]:
    """Whether user mesh logs in with ``password`` to PostgreSQL and to MariaDB."""
    pg, maria = clone.connection("postgres_mesh"), clone.connection("mariadb_mesh")
    try:
        psycopg.connect(host=pg["host"], port=pg["port"], user="mesh", password=password, dbname="mesh").close()
        pg_ok = True
    except psycopg.OperationalError as error:
        if "password authentication failed" not in str(error):
            raise
        pg_ok = False
    try:
        pymysql.connect(host=maria["host"], port=maria["port"], user="mesh", password=password, database="mesh").close()
        maria_ok = True
    except pymysql.err.OperationalError as error:
        if error.args[0] != 1045:  # access denied
            raise
        maria_ok = False
    return pg_ok, maria_ok


def test_up_brings_users_with_the_old_password_to_the_stack_s_password(clone: Clone) -> None:
    # What a stack made before passwords were generated has: user mesh with password "mesh".
    with psycopg.connect(host=str(clone.state / "postgres" / "run"), port=clone.env["MESH_PG_PORT"], user="postgres",
                         dbname="postgres", autocommit=True) as conn:
        conn.execute("ALTER ROLE mesh PASSWORD 'mesh'")
    subprocess.run(["mariadb", f"--defaults-file={clone.state / 'conf' / 'mariadb.cnf'}", "-u", "root", "-e",
                    "ALTER USER 'mesh'@'127.0.0.1' IDENTIFIED BY 'mesh'"], check=True)
    assert login_works(clone, "mesh") == (True, True)
    assert login_works(clone, clone.password()) == (False, False)

    for _ in range(2):  # idempotent: a second `up` changes nothing
        clone.up()
        assert login_works(clone, clone.password()) == (True, True)
        assert login_works(clone, "mesh") == (False, False)


def test_a_data_folder_its_user_cannot_enter_is_refused_in_one_line_before_anything_starts() -> None:
    """A stack initialised in place by the stack.py of before (its PostgreSQL data under .stack/) in a
    folder postgres cannot enter: there is nothing to move, so `up` says what to do."""
    closed = Path(tempfile.mkdtemp(prefix="mesh-closed-"))
    try:
        state = closed / "clone" / ".stack"
        (state / "postgres" / "data").mkdir(parents=True)
        (state / "postgres" / "data" / "PG_VERSION").write_text("17\n")
        env = {**os.environ, "MESH_STACK_DIR": str(state), "MESH_PG_PORT": str(spare_port())}
        result = subprocess.run([sys.executable, str(STACK_PY), "up", "--only", "postgres"], env=env,
                                capture_output=True, text=True, timeout=120, cwd=closed, check=False)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"[stack] error: postgres runs as user postgres, who cannot enter {closed}: ")
        assert "make clean" in lines[0]
        assert not (state / "run" / "postgres.pid").exists() and "starting" not in result.stdout
    finally:
        shutil.rmtree(closed)


def test_up_restarts_a_connect_worker_whose_password_is_not_the_stack_s(clone: Clone) -> None:
    """A worker started before the password changed (e.g. with "mesh", by the stack.py of before) would
    resolve ${env:MESH_DB_PASSWORD} to the old password: `up` restarts it."""
    pid_file = clone.state / "run" / "connect.pid"
    worker = pid_file.read_text().split()[0]
    new_password = secrets.token_urlsafe(24)
    (clone.state / "secrets" / "db-password").write_text(new_password + "\n")

    result = clone.up()

    assert "connect            restarting: its MESH_DB_PASSWORD is not the stack's" in result.stdout
    assert pid_file.read_text().split()[0] != worker
    assert login_works(clone, new_password) == (True, True)
    connect, maria = clone.connection("kafka_connect_default"), clone.connection("mariadb_mesh")
    cls = "io.debezium.connector.mariadb.MariaDbConnector"
    config = {"name": "probe", "connector.class": cls, "database.hostname": maria["host"],
              "database.port": str(maria["port"]), "database.user": "mesh",
              "database.password": "${env:MESH_DB_PASSWORD}",
              "database.server.id": "5401", "topic.prefix": "probe", "database.include.list": "mesh",
              "schema.history.internal.kafka.topic": "probe-history",
              "schema.history.internal.kafka.bootstrap.servers": "${env:MESH_KAFKA_BOOTSTRAP}"}
    answer = requests.put(f"http://{connect['host']}:{connect['port']}/connector-plugins/{cls}/config/validate",
                          json=config, timeout=60).json()
    assert {c["value"]["name"]: c["value"]["errors"] for c in answer["configs"] if c["value"]["errors"]} == {}
    assert "restarting" not in clone.up().stdout  # and only once
