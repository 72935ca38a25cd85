#!/usr/bin/env python3
"""Start, stop and inspect the local airflow-mesh stack: real services on 127.0.0.1.

``python stack/stack.py up [--only SERVICE ...]|down|status|env|clean``

Everything the stack writes (downloaded jars, the Flink virtualenv, data, logs, pid files) lives under
``.stack/`` at the project root, with one exception: run as root, PostgreSQL, MariaDB and Elasticsearch
run as their own users (postgres, mysql, nobody), who may not be able to enter the clone (a 0700 home
or ``mktemp -d`` folder). Their data then lives in a folder of its own for this clone,
``/var/lib/airflow-mesh/<clone>-<hash of .stack's path>`` (``MESH_SERVICE_ROOT`` moves
``/var/lib/airflow-mesh``), named in ``.stack/service-home``, with ``.stack/postgres``, ``.stack/mariadb`` and
``.stack/elasticsearch`` as symlinks to it; ``clean`` removes it. Versions are pinned in
``stack/versions.env``; ports can be moved with ``MESH_*_PORT`` environment variables (``up`` keeps them in
``.stack/ports.json`` for later commands). ``up`` installs what is missing (Maven Central, PyPI, Debian's
packages), leaves services that already run alone, and waits until each answers its health check; ``down``
stops, by pid, only what ``up`` started.

The databases' user ``mesh`` has a password made once per stack (``.stack/secrets/db-password``, mode
0600); ``up`` gives it to both databases (also to users that still have an older one), to Kafka
Connect's worker (``MESH_DB_PASSWORD``) and to ``.stack/connections.env``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
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
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STACK_SRC = ROOT / "stack"
STATE = Path(os.environ.get("MESH_STACK_DIR", ROOT / ".stack")).resolve()
RUN = STATE / "run"
LOGS = STATE / "logs"
JVM = STATE / "jvm"
FLINK_VENV = STATE / "flink-venv"
CONNECTIONS_ENV = STATE / "connections.env"
SECRETS = STATE / "secrets"
DB_PASSWORD_FILE = SECRETS / "db-password"
SERVICE_ROOT = Path(os.environ.get("MESH_SERVICE_ROOT", "/var/lib/airflow-mesh"))
SERVICE_HOME_POINTER = STATE / "service-home"
SERVICE_HOME_MARKER = ".airflow-mesh-stack"  # in a service home: the .stack it belongs to
HOST = "127.0.0.1"


class StackError(RuntimeError):
    """A service could not be installed, started or reached."""


def _versions() -> dict[str, str]:
    versions = {}
    for raw in (STACK_SRC / "versions.env").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


VERSIONS = _versions()
_DEFAULT_PORTS = {  # name: (environment variable, default)
    "postgres": ("MESH_PG_PORT", 55432),
    "mariadb": ("MESH_MARIADB_PORT", 53306),
    "kafka": ("MESH_KAFKA_PORT", 9092),
    "kafka-controller": ("MESH_KAFKA_CONTROLLER_PORT", 9093),
    "connect": ("MESH_CONNECT_PORT", 8083),
    "flink": ("MESH_FLINK_PORT", 8081),
    "flink-rpc": ("MESH_FLINK_RPC_PORT", 6123),
    "schema-registry": ("MESH_SCHEMA_REGISTRY_PORT", 8085),
    "schema-registry-management": ("MESH_SCHEMA_REGISTRY_MANAGEMENT_PORT", 8086),
    "elasticsearch": ("MESH_ELASTICSEARCH_PORT", 9200),
    "elasticsearch-transport": ("MESH_ELASTICSEARCH_TRANSPORT_PORT", 9300),
}
# The ports a stack was brought up with are kept, so that a later command without the same MESH_*_PORT
# variables (a test restarting one service, another shell) starts nothing on the default ports.
PORTS_FILE = STATE / "ports.json"


def _ports() -> dict[str, int]:
    saved = json.loads(PORTS_FILE.read_text()) if PORTS_FILE.exists() else {}
    return {name: int(os.environ.get(variable) or saved.get(name) or default)
            for name, (variable, default) in _DEFAULT_PORTS.items()}


PORTS = _ports()
DB_NAME, DB_USER = "mesh", "mesh"  # in PostgreSQL and MariaDB alike; the password: db_password()
PASSWORD_PATTERN = re.compile(r"[A-Za-z0-9_-]{20,}")


def log(message: str) -> None:
    print(f"[stack] {message}", flush=True)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command, raising StackError with its output when it fails."""
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        raise StackError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


# --------------------------------------------------------------------------- where the services' users keep data


def _service_home() -> Path:
    """Where PostgreSQL, MariaDB and Elasticsearch keep their data (see the module docstring).

    The choice is made once and kept in ``.stack/service-home``. A stack that is not run as root runs
    every service as its own user, and a stack whose PostgreSQL was already initialised under ``.stack/``
    (before service homes existed) keeps its data there: both use ``.stack/`` itself.
    """
    if SERVICE_HOME_POINTER.exists():
        return Path(SERVICE_HOME_POINTER.read_text().strip())
    legacy = STATE / "postgres"
    if os.geteuid() != 0 or (not legacy.is_symlink() and (legacy / "data" / "PG_VERSION").exists()):
        return STATE
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", STATE.parent.name)[:32] or "root"
    return SERVICE_ROOT / f"{slug}-{hashlib.sha256(str(STATE).encode()).hexdigest()[:12]}"


SERVICE_HOME = _service_home()


def prepare_service_home() -> None:
    """Create the service home (readable by every user, as are the folders above it) and the pointers to it.

    Raises:
        StackError: If the folder is there but belongs to another ``.stack``.
    """
    STATE.mkdir(parents=True, exist_ok=True)
    if SERVICE_HOME != STATE:
        marker = SERVICE_HOME / SERVICE_HOME_MARKER
        if marker.exists() and marker.read_text().strip() != str(STATE):
            raise StackError(f"{SERVICE_HOME} belongs to the stack in {marker.read_text().strip()}, not to {STATE}: "
                             "set MESH_SERVICE_ROOT to another folder")
        for folder in (SERVICE_ROOT, SERVICE_HOME):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o755)
        marker.write_text(f"{STATE}\n")
        for name in ("postgres", "mariadb", "elasticsearch"):
            link = STATE / name
            if link.exists() and not link.is_symlink():  # left by an older stack.py that failed to start here
                link.rename(STATE / f"{name}.before-service-home")
            if not link.is_symlink():
                link.symlink_to(SERVICE_HOME / name, target_is_directory=True)
    SERVICE_HOME_POINTER.write_text(f"{SERVICE_HOME}\n")


def check_reachable(services: list[Service]) -> None:
    """Before anything starts (after the installs): each service that runs as another user can enter its
    folders and run its Java.

    Raises:
        StackError: One line naming the service, its user, the path and what to do.
    """
    for service in services:
        if service.user is None:
            continue
        for path, need, what in service.needs():
            # From the top down, so that the message names the folder that shuts the user out.
            for step in [*reversed(path.parents), path]:
                if not step.exists():
                    break
                flag = need if step == path else "-x"
                if subprocess.run(["test", flag, str(step)], user=service.user, group=service.group or service.user,
                                  cwd="/", capture_output=True, check=False).returncode == 0:
                    continue
                raise StackError(
                    f"{service.name} runs as user {service.user}, who cannot {what if step == path else 'enter'} "
                    f"{step}: " + (
                        "run `make clean` and `make up` again, so that its data moves to "
                        f"{SERVICE_ROOT}, or clone the project into a folder other users can enter"
                        if what == "enter" else
                        "set JAVA_HOME to a JDK 21+ that every user can read (e.g. one under /usr/lib/jvm)"))


# --------------------------------------------------------------------------- the databases' password


def db_password() -> str:
    """The password of the databases' user ``mesh``: made once per stack, kept in DB_PASSWORD_FILE (0600).

    Raises:
        StackError: If the file holds something that is not such a password.
    """
    if not DB_PASSWORD_FILE.exists():
        SECRETS.mkdir(parents=True, exist_ok=True)
        SECRETS.chmod(0o700)
        try:
            fd = os.open(DB_PASSWORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # made meanwhile by another `up`
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(24) + "\n")
    DB_PASSWORD_FILE.chmod(0o600)
    password = DB_PASSWORD_FILE.read_text().strip()
    if not PASSWORD_PATTERN.fullmatch(password):
        raise StackError(f"{DB_PASSWORD_FILE}: not a password the stack made (20 or more of A-Z a-z 0-9 _ -): "
                         "delete the file and run `make up` to make a new one")
    return password


# --------------------------------------------------------------------------- installs


def find_java(min_major: int = 17) -> Path:
    """The java binary to use: $JAVA_HOME, then `java` on PATH, then any JDK under /usr/lib/jvm."""
    candidates: list[Path] = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]) / "bin" / "java")
    if shutil.which("java"):
        candidates.append(Path(shutil.which("java")).resolve())
    candidates += sorted(Path("/usr/lib/jvm").glob("*/bin/java"))
    for java in candidates:
        if java.exists() and _java_major(java) >= min_major:
            return java
    raise StackError(f"no Java {min_major}+ found (looked at $JAVA_HOME, PATH and /usr/lib/jvm)")


def _java_major(java: Path) -> int:
    out = subprocess.run([str(java), "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return 0
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 else major


def _maven_profile(profile: str, dest: Path, extra: list[str] | None = None) -> None:
    """Copy one profile of stack/pom.xml (a set of jars) into dest; skipped when already done."""
    props = {
        "kafka.version": VERSIONS["KAFKA_VERSION"],
        "kafka.scala.version": VERSIONS["KAFKA_SCALA_VERSION"],
        "debezium.version": VERSIONS["DEBEZIUM_VERSION"],
        "debezium.mariadb.version": VERSIONS["DEBEZIUM_MARIADB_VERSION"],
        "flink.kafka.connector.version": VERSIONS["FLINK_KAFKA_CONNECTOR_VERSION"],
        "log4j.version": VERSIONS["LOG4J_VERSION"],
        "slf4j.version": VERSIONS["SLF4J_VERSION"],
    }
    stamp = hashlib.sha256(json.dumps([profile, props, extra]).encode()).hexdigest()
    marker = dest / ".complete"
    if marker.exists() and marker.read_text() == stamp:
        return
    if not shutil.which("mvn"):
        _apt_install("maven")
    log(f"downloading {profile} jars from Maven Central into {dest}")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    cmd = ["mvn", "-q", "-B", "-f", str(STACK_SRC / "pom.xml"), "-P", profile,
           "dependency:copy-dependencies", f"-DoutputDirectory={dest}", "-DincludeScope=runtime"]
    cmd += [f"-D{k}={v}" for k, v in props.items()] + (extra or [])
    run(cmd)
    marker.write_text(stamp)


def install_jvm_parts() -> None:
    """Kafka + Connect classpath, the Debezium plugins, Flink's Kafka SQL connector, Apicurio Registry."""
    _maven_profile("kafka", JVM / "kafka")
    _maven_profile("debezium-postgres", JVM / "connect-plugins" / "debezium-connector-postgres",
                   ["-DexcludeGroupIds=org.apache.kafka,org.slf4j"])
    _maven_profile("debezium-mariadb", JVM / "connect-plugins" / "debezium-connector-mariadb",
                   ["-DexcludeGroupIds=org.apache.kafka,org.slf4j"])
    _maven_profile("flink-kafka", JVM / "flink-connectors")
    # Elasticsearch's integration-test distribution (a zip; no bundled JDK). Its version travels as
    # an extra -D, like Apicurio's.
    _maven_profile("elasticsearch", JVM / "elasticsearch",
                   [f"-Delasticsearch.version={VERSIONS['ELASTICSEARCH_VERSION']}"])
    # Its version travels as an extra -D, so that the stamps of the profiles above stay unchanged.
    _maven_profile("apicurio-registry", APICURIO_DIR,
                   [f"-Dapicurio.registry.version={VERSIONS['APICURIO_REGISTRY_VERSION']}"])


def _apt_install(*packages: str) -> None:
    if os.geteuid() != 0:
        raise StackError(f"missing Debian packages {packages}: run `sudo apt-get install {' '.join(packages)}`")
    log(f"installing Debian packages: {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=env)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], env=env)


def postgres_bin() -> Path:
    """The bin directory of the newest Debian PostgreSQL server, installed if missing."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not found:
        _apt_install("postgresql")
        return postgres_bin()
    return found[-1].parent


def install_flink() -> Path:
    """Flink from PyPI's apache-flink, in its own virtualenv (it conflicts with Airflow's pins)."""
    lock = ROOT / "requirements" / "flink.lock"
    stamp = hashlib.sha256(lock.read_bytes() + VERSIONS["FLINK_VERSION"].encode()).hexdigest()
    marker = FLINK_VENV / ".complete"
    if not (marker.exists() and marker.read_text() == stamp):
        log(f"installing apache-flink=={VERSIONS['FLINK_VERSION']} into {FLINK_VENV}")
        shutil.rmtree(FLINK_VENV, ignore_errors=True)
        run([sys.executable, "-m", "venv", str(FLINK_VENV)])
        py = str(FLINK_VENV / "bin" / "python")
        run([py, "-m", "pip", "install", "-q", "uv"])
        run([py, "-m", "uv", "pip", "install", "--python", py, "-r", str(lock),
             f"apache-flink=={VERSIONS['FLINK_VERSION']}"])
        marker.write_text(stamp)
    return flink_home()


def flink_home() -> Path:
    return next((FLINK_VENV / "lib").glob("python3*/site-packages/pyflink"))


# --------------------------------------------------------------------------- processes


@dataclass
class Service:
    """One process of the stack: how to prepare, start, health-check and stop it."""

    name: str
    address: str
    command: Callable[[], list[str]]
    healthy: Callable[[], bool]
    prepare: Callable[[], None] = lambda: None
    after_start: Callable[[], None] = lambda: None
    env: Callable[[], dict[str, str]] = dict
    install: Callable[[], object] = lambda: None  # what `up` installs before starting anything
    user: str | None = None
    group: str | None = None  # defaults to `user`
    cwd: Callable[[], Path] = lambda: STATE  # a folder `user` can enter
    # What `user` must reach: (path, `test` flag, verb for the error message).
    needs: Callable[[], list[tuple[Path, str, str]]] = list
    # Why a running process must be restarted to match this stack (e.g. an old password), or None.
    stale: Callable[[int], str | None] = lambda pid: None
    stop_signal: int = signal.SIGTERM
    start_timeout: float = 180.0
    depends_on: list[str] = field(default_factory=list)

    @property
    def pid_file(self) -> Path:
        return RUN / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return LOGS / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid `up` recorded, if that very process (same start time) is still alive."""
        try:
            pid, started = (int(x) for x in self.pid_file.read_text().split())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _start_time(pid) == started else None

    def start(self) -> int:
        self.prepare()
        LOGS.mkdir(parents=True, exist_ok=True)
        RUN.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env()}, cwd=self.cwd(), start_new_session=True,
                user=self.user, group=self.group or self.user,
            )
        self.pid_file.write_text(f"{proc.pid} {_start_time(proc.pid)}")
        return proc.pid

    def wait_healthy(self, pid: int) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if _start_time(pid) is None:
                tail = self.log_file.read_text(errors="replace")[-3000:]
                raise StackError(f"{self.name} exited during start-up; end of {self.log_file}:\n{tail}")
            if self.healthy():
                return
            time.sleep(1)
        raise StackError(f"{self.name} did not become healthy in {self.start_timeout:.0f}s; see {self.log_file}")

    def stop(self) -> bool:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.killpg(pid, self.stop_signal)
        deadline = time.monotonic() + 60
        while _start_time(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.5)
        if _start_time(pid) is not None:
            log(f"{self.name} ignored signal {self.stop_signal}; killing it")
            os.killpg(pid, signal.SIGKILL)
        # Children that outlived their leader (e.g. a Flink Python worker) go with the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True


def _start_time(pid: int) -> int | None:
    """Process start time in clock ticks (field 22 of /proc/PID/stat); None when not running."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((HOST, port)) == 0


def _http_json(url: str) -> object | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


# --------------------------------------------------------------------------- PostgreSQL

PG_DIR = SERVICE_HOME / "postgres"
PG_DATA = PG_DIR / "data"
PG_SOCKET = PG_DIR / "run"


def _pg_prepare() -> None:
    import pwd

    bin_dir = postgres_bin()
    owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    for path in (PG_DIR, PG_SOCKET):
        path.mkdir(parents=True, exist_ok=True)
        if owner:
            os.chown(path, owner.pw_uid, owner.pw_gid)
    if (PG_DATA / "PG_VERSION").exists():
        return
    log("initialising the PostgreSQL cluster")
    run([str(bin_dir / "initdb"), "-D", str(PG_DATA), "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8",
         "--auth-local=trust", "--auth-host=scram-sha-256"], user=_pg_user(), group=_pg_user(), cwd=PG_DIR)
    with open(PG_DATA / "postgresql.conf", "a") as conf:
        conf.write(
            "\n# airflow-mesh stack\n"
            f"listen_addresses = '{HOST}'\nport = {PORTS['postgres']}\n"
            f"unix_socket_directories = '{PG_SOCKET}'\n"
            "wal_level = logical\nmax_replication_slots = 20\nmax_wal_senders = 20\n"
            "shared_buffers = 256MB\nmax_connections = 100\nfsync = off\n"
        )
    with open(PG_DATA / "pg_hba.conf", "a") as hba:
        hba.write(f"host replication all {HOST}/32 scram-sha-256\n")


def _pg_user() -> str | None:
    return "postgres" if os.geteuid() == 0 else None


def _psql(sql: str, db: str = "postgres") -> str:
    """Run SQL as the superuser over the server's socket; the SQL goes through stdin, never the command line."""
    return run([str(postgres_bin() / "psql"), "-h", str(PG_SOCKET), "-p", str(PORTS["postgres"]),
                "-U", "postgres", "-d", db, "-tA", "-v", "ON_ERROR_STOP=1", "-f", "-"], input=sql).stdout.strip()


def _sql_string(value: str) -> str:
    """A standard SQL string literal (PostgreSQL and MariaDB alike, for values without backslashes)."""
    if "\\" in value:
        raise StackError("a backslash in a value for SQL")
    return "'" + value.replace("'", "''") + "'"


def _pg_after_start() -> None:
    if _psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{DB_USER}'") != "1":
        _psql(f"CREATE ROLE {DB_USER}")
    # Every time: a stack made with an older password is brought to this one. Replication: for Debezium.
    _psql(f"ALTER ROLE {DB_USER} LOGIN REPLICATION CREATEDB PASSWORD {_sql_string(db_password())}")
    # The backfill's high-water marks see every session's open transaction (pg_stat_activity).
    _psql(f"GRANT pg_read_all_stats TO {DB_USER}")
    if _psql(f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'") != "1":
        _psql(f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")
    # The demo tables belong to the `mesh` user, so that Debezium (connecting as it) can publish them.
    _psql(f"SET ROLE {DB_USER}; " + (STACK_SRC / "demo" / "postgres.sql").read_text(), db=DB_NAME)


def _pg_healthy() -> bool:
    isready = postgres_bin() / "pg_isready"
    return subprocess.run([str(isready), "-q", "-h", HOST, "-p", str(PORTS["postgres"])], check=False).returncode == 0


POSTGRES = Service(
    name="postgres",
    address=f"postgresql://{DB_USER}@{HOST}:{PORTS['postgres']}/{DB_NAME}",
    command=lambda: [str(postgres_bin() / "postgres"), "-D", str(PG_DATA)],
    prepare=_pg_prepare,
    healthy=_pg_healthy,
    after_start=_pg_after_start,
    install=postgres_bin,
    user=_pg_user(),
    cwd=lambda: PG_DIR,
    needs=lambda: [(PG_DIR, "-x", "enter")],
    stop_signal=signal.SIGINT,  # "fast" shutdown
    start_timeout=60,
)

# --------------------------------------------------------------------------- MariaDB

MARIADB_DIR = SERVICE_HOME / "mariadb"
MARIADB_SERVER_CNF = MARIADB_DIR / "mariadb.cnf"  # read by the server, as user mysql
MARIADB_CNF = STATE / "conf" / "mariadb.cnf"  # the same, for clients: `mariadb --defaults-file=.stack/conf/mariadb.cnf`
MARIADB_SOCKET = MARIADB_DIR / "run" / "mariadb.sock"


def mariadb_bin(name: str) -> str:
    """A MariaDB server program from Debian's packages, installed if missing."""
    found = shutil.which(name, path="/usr/sbin:/usr/bin")
    if not found:
        _apt_install("mariadb-server")
        found = shutil.which(name, path="/usr/sbin:/usr/bin")
    return found


def _mariadb_user() -> str | None:
    return "mysql" if os.geteuid() == 0 else None


def _mariadb_prepare() -> None:
    import pwd

    mariadb_bin("mariadbd")
    owner = pwd.getpwnam("mysql") if os.geteuid() == 0 else None
    for path in (MARIADB_DIR, MARIADB_DIR / "data", MARIADB_SOCKET.parent):
        path.mkdir(parents=True, exist_ok=True)
        if owner:
            os.chown(path, owner.pw_uid, owner.pw_gid)
    MARIADB_CNF.parent.mkdir(parents=True, exist_ok=True)
    cnf = "\n".join([
        "[mariadbd]",
        f"datadir={MARIADB_DIR / 'data'}",
        f"socket={MARIADB_SOCKET}",
        f"bind-address={HOST}",
        f"port={PORTS['mariadb']}",
        "skip-name-resolve",
        # What Debezium needs: a row-based binary log with full row images.
        "server-id=1",
        "log-bin=mariadb-bin",
        "binlog-format=ROW",
        "binlog-row-image=FULL",
        "expire-logs-days=3",
        "innodb-buffer-pool-size=128M",
        "[client]",
        f"socket={MARIADB_SOCKET}",
    ]) + "\n"
    for path in (MARIADB_SERVER_CNF, MARIADB_CNF):
        path.write_text(cnf)
        path.chmod(0o644)
    if (MARIADB_DIR / "data" / "mysql").exists():
        return
    log("initialising the MariaDB data directory")
    run([mariadb_bin("mariadb-install-db"), f"--defaults-file={MARIADB_SERVER_CNF}", "--skip-test-db",
         "--auth-root-authentication-method=socket", *([f"--user={_mariadb_user()}"] if _mariadb_user() else [])],
        cwd=MARIADB_DIR)


def _mariadb_sql(sql: str) -> str:
    """Run SQL as root over the server's socket; the SQL goes through stdin, never the command line."""
    return run([mariadb_bin("mariadb"), f"--defaults-file={MARIADB_CNF}", "-u", "root", "-N", "-B"], input=sql).stdout


def _mariadb_after_start() -> None:
    password = _sql_string(db_password())
    _mariadb_sql(
        f"CREATE DATABASE IF NOT EXISTS {DB_NAME};"
        f"CREATE USER IF NOT EXISTS '{DB_USER}'@'{HOST}' IDENTIFIED BY {password};"
        # Every time: a stack made with an older password is brought to this one.
        f"ALTER USER '{DB_USER}'@'{HOST}' IDENTIFIED BY {password};"
        f"GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'{HOST}';"
        # Debezium's snapshot and binlog reader privileges.
        f"GRANT SELECT, RELOAD, SHOW DATABASES, LOCK TABLES, REPLICATION SLAVE, BINLOG MONITOR "
        f"ON *.* TO '{DB_USER}'@'{HOST}';"
        # The backfill's high-water marks see other sessions' open transactions (INNODB_TRX).
        f"GRANT PROCESS ON *.* TO '{DB_USER}'@'{HOST}';"
        + (STACK_SRC / "demo" / "mariadb.sql").read_text()
    )


def _mariadb_healthy() -> bool:
    ping = [mariadb_bin("mariadb-admin"), f"--defaults-file={MARIADB_CNF}", "-u", "root", "ping"]
    return _port_open(PORTS["mariadb"]) and subprocess.run(ping, capture_output=True, check=False).returncode == 0


MARIADB = Service(
    name="mariadb",
    address=f"mysql://{DB_USER}@{HOST}:{PORTS['mariadb']}/{DB_NAME}",
    command=lambda: [mariadb_bin("mariadbd"), f"--defaults-file={MARIADB_SERVER_CNF}"],
    prepare=_mariadb_prepare,
    healthy=_mariadb_healthy,
    after_start=_mariadb_after_start,
    install=lambda: mariadb_bin("mariadbd"),
    user=_mariadb_user(),
    cwd=lambda: MARIADB_DIR,
    needs=lambda: [(MARIADB_DIR, "-x", "enter")],
    start_timeout=60,
)

# --------------------------------------------------------------------------- Kafka (KRaft)

KAFKA_DIR = STATE / "kafka"


def _java_cmd(main: str, heap: str, log4j: Path, *args: str) -> list[str]:
    return [str(find_java(17)), f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{JVM / 'kafka'}/*", main, *args]


def _write_log4j() -> Path:
    path = STATE / "conf" / "log4j2.properties"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "status = warn\nappender.out.type = Console\nappender.out.name = STDOUT\n"
        "appender.out.layout.type = PatternLayout\nappender.out.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = INFO\nrootLogger.appenderRef.out.ref = STDOUT\n"
        "logger.reflections.name = org.reflections\nlogger.reflections.level = ERROR\n"
    )
    return path


def _kafka_properties() -> Path:
    path = STATE / "conf" / "kafka.properties"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{HOST}:{PORTS['kafka-controller']}",
        f"listeners=PLAINTEXT://{HOST}:{PORTS['kafka']},CONTROLLER://{HOST}:{PORTS['kafka-controller']}",
        f"advertised.listeners=PLAINTEXT://{HOST}:{PORTS['kafka']}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={KAFKA_DIR / 'data'}",
        "num.partitions=1",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=true",
        "log.retention.hours=168",
    ]) + "\n")
    return path


def _kafka_prepare() -> None:
    install_jvm_parts()
    _write_log4j()
    props = _kafka_properties()
    if (KAFKA_DIR / "data" / "meta.properties").exists():
        return
    log("formatting Kafka's KRaft storage")
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    run(_java_cmd("kafka.tools.StorageTool", "256m", STATE / "conf" / "log4j2.properties",
                  "format", "-t", cluster_id, "-c", str(props)))


def _kafka_healthy() -> bool:
    if not _port_open(PORTS["kafka"]):
        return False
    try:
        from confluent_kafka.admin import AdminClient
    except ImportError:  # stack.py run outside the project's virtualenv: the port is all we can check
        return True
    try:
        metadata = AdminClient({"bootstrap.servers": f"{HOST}:{PORTS['kafka']}"}).list_topics(timeout=5)
    except Exception:  # noqa: BLE001 - any client error means "not ready yet"
        return False
    return bool(metadata.brokers)


KAFKA = Service(
    name="kafka",
    address=f"{HOST}:{PORTS['kafka']}",
    command=lambda: _java_cmd("kafka.Kafka", "768m", STATE / "conf" / "log4j2.properties",
                              str(STATE / "conf" / "kafka.properties")),
    prepare=_kafka_prepare,
    healthy=_kafka_healthy,
    install=install_jvm_parts,
)

# --------------------------------------------------------------------------- Schema registry (Apicurio)

APICURIO_DIR = JVM / "apicurio-registry"
APICURIO_DIST = APICURIO_DIR / "dist"
SCHEMA_REGISTRY_DIR = STATE / "schema-registry"
# The Confluent Schema Registry API of Apicurio Registry 3.x lives under this path.
SCHEMA_REGISTRY_API_PATH = "/apis/ccompat/v7"


def _schema_registry_prepare() -> None:
    """Unpack the fast-jar distribution once (through a temporary folder, so a half-done unpack never counts)."""
    install_jvm_parts()
    if not (APICURIO_DIST / "quarkus-run.jar").exists():
        archive = next(APICURIO_DIR.glob("apicurio-registry-app-*-all.tar.gz"))
        log(f"unpacking {archive.name}")
        partial = APICURIO_DIR / "dist.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        run(["tar", "xzf", str(archive), "-C", str(partial)])
        partial.rename(APICURIO_DIST)
    (SCHEMA_REGISTRY_DIR / "tmp").mkdir(parents=True, exist_ok=True)


def _schema_registry_command() -> list[str]:
    tmp = SCHEMA_REGISTRY_DIR / "tmp"
    settings = {
        "quarkus.http.host": HOST,
        "quarkus.http.port": PORTS["schema-registry"],
        # Health and metrics are served on Quarkus' separate management interface.
        "quarkus.management.host": HOST,
        "quarkus.management.port": PORTS["schema-registry-management"],
        # Embedded H2 in a file: registered schemas (and so the ids inside Kafka records) survive restarts.
        "apicurio.datasource.url": f"jdbc:h2:file:{SCHEMA_REGISTRY_DIR / 'h2' / 'registry'}",
        # Confluent's default level; Apicurio's own default is NONE.
        "apicurio.rules.global.compatibility": "BACKWARD",
        "apicurio.storage.snapshot.location": tmp,
        "apicurio.import.work-dir": tmp,
        "java.io.tmpdir": tmp,
    }
    return [str(find_java(21)), "-Xmx256m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            *(f"-D{key}={value}" for key, value in settings.items()), "-jar", str(APICURIO_DIST / "quarkus-run.jar")]


def _schema_registry_healthy() -> bool:
    ready = _http_json(f"http://{HOST}:{PORTS['schema-registry-management']}/health/ready")
    return isinstance(ready, dict) and ready.get("status") == "UP"


SCHEMA_REGISTRY = Service(
    name="schema-registry",
    address=f"http://{HOST}:{PORTS['schema-registry']}{SCHEMA_REGISTRY_API_PATH} (Apicurio Registry)",
    command=_schema_registry_command,
    prepare=_schema_registry_prepare,
    healthy=_schema_registry_healthy,
    install=install_jvm_parts,
    start_timeout=120,
)

# --------------------------------------------------------------------------- Kafka Connect (distributed)


def _connect_prepare() -> None:
    install_jvm_parts()
    _write_log4j()
    path = STATE / "conf" / "connect-distributed.properties"
    path.write_text("\n".join([
        f"bootstrap.servers={HOST}:{PORTS['kafka']}",
        "group.id=mesh-connect",
        "key.converter=org.apache.kafka.connect.json.JsonConverter",
        "value.converter=org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable=false",
        "value.converter.schemas.enable=false",
        "config.storage.topic=_mesh-connect-configs",
        "offset.storage.topic=_mesh-connect-offsets",
        "status.storage.topic=_mesh-connect-status",
        "config.storage.replication.factor=1",
        "offset.storage.replication.factor=1",
        "status.storage.replication.factor=1",
        "offset.flush.interval.ms=1000",
        f"listeners=http://{HOST}:{PORTS['connect']}",
        f"rest.advertised.host.name={HOST}",
        f"rest.advertised.port={PORTS['connect']}",
        f"plugin.path={JVM / 'connect-plugins'}",
        # Config providers: specs may send ${env:NAME} or ${dir:/path:file} instead of a secret.
        "config.providers=env,dir",
        "config.providers.env.class=org.apache.kafka.common.config.provider.EnvVarConfigProvider",
        "config.providers.dir.class=org.apache.kafka.common.config.provider.DirectoryConfigProvider",
        f"config.providers.dir.param.allowed.paths={STATE / 'secrets'}",
        "topic.creation.enable=true",
    ]) + "\n")
    SECRETS.mkdir(exist_ok=True)


def _connect_env() -> dict[str, str]:
    return {"MESH_DB_PASSWORD": db_password(), "MESH_KAFKA_BOOTSTRAP": f"{HOST}:{PORTS['kafka']}"}


def _connect_stale(pid: int) -> str | None:
    """A worker started with another MESH_DB_PASSWORD (an older stack's) resolves ${env:...} to it."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    if f"MESH_DB_PASSWORD={db_password()}".encode() in environ:
        return None
    return "its MESH_DB_PASSWORD is not the stack's database password"


def _connect_healthy() -> bool:
    # The root answers early; /connectors answers only once the worker has joined its group.
    return isinstance(_http_json(f"http://{HOST}:{PORTS['connect']}/connectors"), list)


CONNECT = Service(
    name="connect",
    address=f"http://{HOST}:{PORTS['connect']}",
    command=lambda: _java_cmd("org.apache.kafka.connect.cli.ConnectDistributed", "768m",
                              STATE / "conf" / "log4j2.properties",
                              str(STATE / "conf" / "connect-distributed.properties")),
    prepare=_connect_prepare,
    healthy=_connect_healthy,
    # What specs may reference with ${env:...}: the demo databases' password and the worker's own Kafka.
    env=_connect_env,
    stale=_connect_stale,
    install=install_jvm_parts,
    depends_on=["kafka"],
)

# --------------------------------------------------------------------------- Flink session cluster

FLINK_DIR = STATE / "flink"


def _flink_config() -> str:
    """The cluster's config.yaml: the distribution's, with this stack's addresses, memory and folders."""
    import yaml  # the project's virtualenv has PyYAML; stack.py is run from it

    home = flink_home()
    config = yaml.safe_load((home / "conf" / "config.yaml").read_text())
    python = str(FLINK_VENV / "bin" / "python")
    config.update({
        "jobmanager": {"bind-host": HOST, "rpc": {"address": HOST, "port": PORTS["flink-rpc"]},
                       "memory": {"process": {"size": "1024m"}},
                       "execution": {"failover-strategy": "region"}},
        "taskmanager": {"bind-host": HOST, "host": HOST, "numberOfTaskSlots": 4,
                        "memory": {"process": {"size": "1536m"}}},
        "rest": {"address": HOST, "bind-address": HOST, "port": PORTS["flink"]},
        "io": {"tmp": {"dirs": str(FLINK_DIR / "tmp")}},
        "web": {"tmpdir": str(FLINK_DIR / "web")},
        "blob": {"storage": {"directory": str(FLINK_DIR / "blobs")}},
        # Checkpoints outlive a cancelled job and a lost JobManager (this session cluster has no high
        # availability): the provider resumes a job the JobManager lost from its latest one.
        "execution": {"checkpointing": {"dir": f"file://{FLINK_DIR / 'checkpoints'}",
                                        "savepoint-dir": f"file://{FLINK_DIR / 'savepoints'}",
                                        "externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION"}},
        "python": {"executable": python, "client": {"executable": python}},
    })
    return yaml.safe_dump(config, sort_keys=False)


def _flink_prepare() -> None:
    home = install_flink()
    install_jvm_parts()
    lib = FLINK_DIR / "lib"
    shutil.rmtree(lib, ignore_errors=True)
    lib.mkdir(parents=True)
    for jar in [*(home / "lib").glob("*.jar"), *(JVM / "flink-connectors").glob("*.jar")]:
        (lib / jar.name).symlink_to(jar)
    conf_dir = FLINK_DIR / "conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    for name in ("log4j.properties", "log4j-console.properties", "log4j-cli.properties", "log4j-session.properties"):
        shutil.copy(home / "conf" / name, conf_dir / name)
    for sub in ("tmp", "web", "blobs", "checkpoints", "savepoints"):
        (FLINK_DIR / sub).mkdir(exist_ok=True)
    (conf_dir / "config.yaml").write_text(_flink_config())


def _flink_stale(pid: int) -> str | None:
    """A cluster started with another configuration (an older stack.py's) is restarted with this one's."""
    current = FLINK_DIR / "conf" / "config.yaml"
    if current.exists() and current.read_text() != _flink_config():
        return "its configuration changed"
    return None


def _flink_env() -> dict[str, str]:
    return {
        "JAVA_HOME": str(find_java(17).parent.parent),
        "FLINK_CONF_DIR": str(FLINK_DIR / "conf"),
        "FLINK_LIB_DIR": str(FLINK_DIR / "lib"),
        "FLINK_LOG_DIR": str(LOGS),
        "FLINK_PID_DIR": str(RUN),
    }


def _flink_overview() -> dict:
    overview = _http_json(f"http://{HOST}:{PORTS['flink']}/overview")
    return overview if isinstance(overview, dict) else {}


FLINK_JM = Service(
    name="flink-jobmanager",
    address=f"http://{HOST}:{PORTS['flink']}",
    command=lambda: [str(flink_home() / "bin" / "jobmanager.sh"), "start-foreground"],
    prepare=_flink_prepare,
    stale=_flink_stale,
    healthy=lambda: "taskmanagers" in _flink_overview(),
    env=_flink_env,
    install=lambda: (install_jvm_parts(), install_flink()),
)

FLINK_TM = Service(
    name="flink-taskmanager",
    address=f"{HOST} (registers with {HOST}:{PORTS['flink-rpc']})",
    command=lambda: [str(flink_home() / "bin" / "taskmanager.sh"), "start-foreground"],
    healthy=lambda: _flink_overview().get("taskmanagers", 0) >= 1,
    env=_flink_env,
    install=lambda: (install_jvm_parts(), install_flink()),
    depends_on=["flink-jobmanager"],
)

# --------------------------------------------------------------------------- Elasticsearch

ES_DIR = SERVICE_HOME / "elasticsearch"
ES_HOME = ES_DIR / f"elasticsearch-{VERSIONS['ELASTICSEARCH_VERSION']}"


def _es_owner() -> tuple[str, str] | None:
    """Elasticsearch refuses to run as root: under root it runs as nobody."""
    return ("nobody", "nogroup") if os.geteuid() == 0 else None


def _es_prepare() -> None:
    import grp
    import pwd
    import zipfile

    install_jvm_parts()
    if not (ES_HOME / "bin" / "elasticsearch").exists():
        log("unpacking Elasticsearch")
        with zipfile.ZipFile(next((JVM / "elasticsearch").glob("elasticsearch-*.zip"))) as archive:
            archive.extractall(ES_DIR)
        # Readable by Elasticsearch's user whatever the umask (zipfile keeps no modes); its scripts executable.
        for path in [ES_HOME, *ES_HOME.rglob("*")]:
            path.chmod(0o755 if path.is_dir() or path.parent == ES_HOME / "bin" else 0o644)
    conf = ES_DIR / "config"
    if not conf.exists():
        shutil.copytree(ES_HOME / "config", conf)
    (conf / "elasticsearch.yml").write_text("\n".join([
        "cluster.name: mesh",
        "discovery.type: single-node",
        f"network.host: {HOST}",
        f"http.port: {PORTS['elasticsearch']}",
        f"transport.port: {PORTS['elasticsearch-transport']}",
        "xpack.security.enabled: false",
        f"path.data: {ES_DIR / 'data'}",
        f"path.logs: {ES_DIR / 'logs'}",
    ]) + "\n")
    for sub in ("data", "logs", "tmp"):
        (ES_DIR / sub).mkdir(exist_ok=True)
    if owner := _es_owner():
        uid, gid = pwd.getpwnam(owner[0]).pw_uid, grp.getgrnam(owner[1]).gr_gid
        for sub in ("config", "data", "logs", "tmp"):
            for path in [ES_DIR / sub, *(ES_DIR / sub).rglob("*")]:
                os.chown(path, uid, gid)


def _es_healthy() -> bool:
    health = _http_json(f"http://{HOST}:{PORTS['elasticsearch']}/_cluster/health")
    return isinstance(health, dict) and health.get("status") in {"green", "yellow"}


ELASTICSEARCH = Service(
    name="elasticsearch",
    address=f"http://{HOST}:{PORTS['elasticsearch']}",
    command=lambda: [str(ES_HOME / "bin" / "elasticsearch")],
    prepare=_es_prepare,
    healthy=_es_healthy,
    env=lambda: {"ES_JAVA_HOME": str(find_java(21).parent.parent), "ES_PATH_CONF": str(ES_DIR / "config"),
                 "ES_JAVA_OPTS": "-Xms512m -Xmx512m", "ES_TMPDIR": str(ES_DIR / "tmp")},
    install=install_jvm_parts,
    user=(_es_owner() or (None, None))[0],
    group=(_es_owner() or (None, None))[1],
    cwd=lambda: ES_DIR,
    needs=lambda: [(ES_DIR, "-x", "enter"), (find_java(21), "-x", "run")],
)

SERVICES = [POSTGRES, MARIADB, KAFKA, SCHEMA_REGISTRY, CONNECT, FLINK_JM, FLINK_TM, ELASTICSEARCH]

# --------------------------------------------------------------------------- connections


def connections() -> dict[str, dict]:
    """Airflow connections (JSON form) that point the provider at this stack (Flink's once Flink is installed)."""
    password = db_password()
    conns = {
        "kafka_default": {"conn_type": "kafka", "extra": {"bootstrap.servers": f"{HOST}:{PORTS['kafka']}"}},
        "kafka_connect_default": {"conn_type": "kafka_connect", "host": HOST, "port": PORTS["connect"],
                                  "schema": "http"},
        "flink_default": {"conn_type": "flink", "host": HOST, "port": PORTS["flink"], "schema": "http",
                          "extra": {"python_jar": str(_flink_python_jar())}} if _flink_installed() else None,
        "postgres_mesh": {"conn_type": "postgres", "host": HOST, "port": PORTS["postgres"],
                          "login": DB_USER, "password": password, "schema": DB_NAME},
        "mariadb_mesh": {"conn_type": "mysql", "host": HOST, "port": PORTS["mariadb"],
                         "login": DB_USER, "password": password, "schema": DB_NAME},
        # Iceberg: the embedded default, a SQLite catalog and a local warehouse folder.
        "iceberg_default": {"conn_type": "iceberg", "extra": {"catalog": {
            "type": "sql", "uri": f"sqlite:///{STATE / 'iceberg' / 'catalog.db'}",
            "warehouse": f"file://{STATE / 'iceberg' / 'warehouse'}"}}},
        "elasticsearch_default": {"conn_type": "elasticsearch", "host": HOST, "port": PORTS["elasticsearch"],
                                  "schema": "http"},
        "schema_registry_default": {"conn_type": "schema_registry", "host": HOST, "port": PORTS["schema-registry"],
                                    "schema": "http", "extra": {"api_path": SCHEMA_REGISTRY_API_PATH}},
    }
    return {conn_id: conn for conn_id, conn in conns.items() if conn is not None}


def _flink_installed() -> bool:
    return (FLINK_VENV / ".complete").exists()


def _flink_python_jar() -> Path:
    return flink_home() / "opt" / f"flink-python-{VERSIONS['FLINK_VERSION']}.jar"


def write_connections() -> None:
    """Write CONNECTIONS_ENV (mode 0600: it holds the databases' password)."""
    (STATE / "iceberg" / "warehouse").mkdir(parents=True, exist_ok=True)
    password = db_password()
    lines = ["# Airflow connections for the local stack; `set -a; . .stack/connections.env` to use them."]
    for conn_id, conn in connections().items():
        lines.append(f"AIRFLOW_CONN_{conn_id.upper()}='{json.dumps(conn)}'")
    lines.append("# The databases as URLs, e.g. for `airflow-mesh backfill --source \"$MESH_PG_URL\"`.")
    lines.append(f"MESH_PG_URL='postgresql://{DB_USER}:{password}@{HOST}:{PORTS['postgres']}/{DB_NAME}'")
    lines.append(f"MESH_MARIADB_URL='mysql://{DB_USER}:{password}@{HOST}:{PORTS['mariadb']}/{DB_NAME}'")
    partial = CONNECTIONS_ENV.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write("\n".join(lines) + "\n")
    partial.replace(CONNECTIONS_ENV)


# --------------------------------------------------------------------------- commands


def selected(names: list[str] | None) -> list[Service]:
    """The services named (all when None) and those they depend on, in start order."""
    if not names:
        return list(SERVICES)
    by_name = {service.name: service for service in SERVICES}
    wanted: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo += by_name[name].depends_on
    return [service for service in SERVICES if service.name in wanted]


def up(started_file: Path | None = None, only: list[str] | None = None) -> None:
    """Start every service that is not running and wait until all are healthy.

    Args:
        started_file: Where to append the names of the services this call started, so that a
            caller (``make test``) can later stop exactly those.
        only: Start only these services (and those they depend on); all when None.

    Raises:
        StackError: If a service cannot be installed, reached by its user, started or made healthy.
    """
    services = selected(only)
    prepare_service_home()
    PORTS_FILE.write_text(json.dumps(PORTS, indent=1) + "\n")
    db_password()  # made (or checked) before anything starts
    # Installs first, so that services are not left waiting on downloads; the users a service runs as
    # (postgres, mysql) exist only once its Debian package is installed, so reachability is checked after.
    for service in services:
        service.install()
    check_reachable(services)
    t0 = time.monotonic()
    for service in services:
        pid = service.pid()
        if pid is not None and (reason := service.stale(pid)):
            log(f"{service.name:18} restarting: {reason}")
            service.stop()
            pid = service.start()  # it ran before this call: not one for `down --started-file` to stop
        elif pid is not None:
            log(f"{service.name:18} already running (pid {pid})")
        else:
            log(f"{service.name:18} starting")
            pid = service.start()
            if started_file:
                with open(started_file, "a") as out:
                    out.write(service.name + "\n")
        service.wait_healthy(pid)
        service.after_start()
    write_connections()
    log(f"stack up in {time.monotonic() - t0:.1f}s; connections in {CONNECTIONS_ENV}")
    status(services)


def down(started_file: Path | None = None) -> None:
    """Stop the services `up` started: all of them, or only those listed in ``started_file``."""
    names = {s.name for s in SERVICES}
    if started_file:
        names = set(started_file.read_text().split()) if started_file.exists() else set()
        started_file.unlink(missing_ok=True)
    for service in reversed(SERVICES):
        if service.name in names and service.stop():
            log(f"{service.name:18} stopped")


def clean() -> None:
    """Remove the service home of a stack whose services are all stopped (``make clean`` then removes ``.stack``).

    Raises:
        StackError: If a service still runs, or the service home is not marked as this stack's.
    """
    running = [service.name for service in SERVICES if service.pid() is not None]
    if running:
        raise StackError(f"{', '.join(running)} still running: stop the stack first (`make down`)")
    if SERVICE_HOME != STATE and SERVICE_HOME.exists():
        marker = SERVICE_HOME / SERVICE_HOME_MARKER
        if not marker.exists() or marker.read_text().strip() != str(STATE):
            raise StackError(f"{SERVICE_HOME} is named in {SERVICE_HOME_POINTER} but {marker} does not name "
                             f"{STATE}: check that folder and remove it by hand")
        shutil.rmtree(SERVICE_HOME)
        log(f"removed {SERVICE_HOME}")
    for name in ("postgres", "mariadb", "elasticsearch"):
        if (STATE / name).is_symlink():
            (STATE / name).unlink()
    SERVICE_HOME_POINTER.unlink(missing_ok=True)


def status(services: list[Service] | None = None) -> int:
    """Print one line per service; returns the number of services that are down."""
    down_count = 0
    for service in services or SERVICES:
        pid = service.pid()
        state = "up" if pid is not None and service.healthy() else ("starting" if pid else "down")
        down_count += state != "up"
        print(f"{service.name:18} {state:8} pid={pid or '-':<8} {service.address}")
    return down_count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "env", "clean"])
    parser.add_argument("--started-file", type=Path,
                        help="up: record the services this call starts; down: stop only those")
    parser.add_argument("--only", nargs="+", metavar="SERVICE", choices=[service.name for service in SERVICES],
                        help="up: start only these services and those they depend on")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(args.started_file, args.only)
        elif args.command == "down":
            down(args.started_file)
        elif args.command == "clean":
            clean()
        elif args.command == "env":
            write_connections()
            print(CONNECTIONS_ENV.read_text(), end="")
        else:
            return 1 if status() else 0
    except StackError as exc:
        print(f"[stack] error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
