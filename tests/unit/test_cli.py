"""The ``airflow-mesh`` command dispatches to each capability's own command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from airflow_mesh.cli import main


def test_usage_and_unknown_command(capsys):
    assert main([]) == 0
    assert "backfill" in capsys.readouterr().out
    assert main(["migrate-everything"]) == 2
    assert "unknown command 'migrate-everything'" in capsys.readouterr().err


def test_backfill_subcommand_parses_its_own_arguments(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["backfill", "--table", "public.orders"])  # no --source/--target: argparse refuses
    assert exit_.value.code == 2
    assert "--source" in capsys.readouterr().err


def test_processors_subcommand_lists_the_builtins(capsys):
    assert main(["processors"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("projection", "filter", "rename", "union"))


def test_installed_console_script():
    script = Path(sys.executable).with_name("airflow-mesh")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("usage: airflow-mesh")
