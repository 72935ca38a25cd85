"""Test set-up shared by unit and integration tests.

Airflow reads AIRFLOW_HOME when first imported, so it is pointed at a fresh temporary folder here,
before any test module imports Airflow. The local stack's connections (written by `make up` to
.stack/connections.env) are loaded as AIRFLOW_CONN_* variables, exactly as a deployment would set them.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS_ENV = ROOT / ".stack" / "connections.env"

os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow-mesh-tests-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))


def _load_connections_env() -> None:
    if not CONNECTIONS_ENV.exists():
        return
    for line in CONNECTIONS_ENV.read_text().splitlines():
        if line.startswith("AIRFLOW_CONN_"):
            key, _, value = line.partition("=")
            os.environ.setdefault(key, shlex.split(value)[0])


_load_connections_env()


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """An Airflow metadata database (SQLite) migrated in the session's temporary AIRFLOW_HOME."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    return Path(os.environ["AIRFLOW_HOME"])
