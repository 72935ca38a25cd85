"""One team cannot break another: clashes and broken packages are reported and skipped, never raised for all.

Each test installs fake distributions (a ``*.dist-info`` directory with an ``entry_points.txt``, and the
package beside it) in a temporary directory on ``sys.path``, so ``importlib.metadata`` finds them as it
finds installed ones.
"""

from __future__ import annotations

import logging
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from airflow_mesh.processors import RegistryError, UnknownProcessorError, default_registry
from airflow_mesh.processors.__main__ import main as processors_command

FACTORY = textwrap.dedent('''
    from airflow_mesh.processors import KafkaInput, KafkaOutput, Processor, Project

    def refunds(*, topic: str = "refunds", output_topic: str = "refunds.ids") -> Processor:
        """Refund ids."""
        return Processor("refunds", [KafkaInput("r", topic, {"id": "BIGINT"})], KafkaOutput(output_topic),
                         [Project(["id"])])
''')

Install = Callable[..., None]


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """Install a fake distribution: ``install("payments-mesh", {"payments.refunds": "payments_mesh:refunds"},
    {"payments_mesh": source})``; ``default_registry()`` is rebuilt afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    modules: list[str] = []

    def install_(dist: str, entry_points: dict[str, str], packages: dict[str, str] | None = None,
                 version: str = "1.0") -> None:
        info = tmp_path / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(
            "[airflow_mesh.processors]\n" + "".join(f"{name} = {value}\n" for name, value in entry_points.items()))
        for module, source in (packages or {}).items():
            (tmp_path / f"{module}.py").write_text(source)
            modules.append(module)
        default_registry.cache_clear()

    default_registry.cache_clear()
    yield install_
    default_registry.cache_clear()
    for module in modules:
        sys.modules.pop(module, None)


def problems() -> list[str]:
    return [str(problem) for problem in default_registry().problems]


class TestClashes:
    def test_a_builtin_keeps_its_name_and_the_clash_is_reported(self, install: Install):
        install("filter-team", {"filter": "filter_team:refunds", "filter-team.refunds": "filter_team:refunds"},
                {"filter_team": FACTORY})
        assert default_registry().get("filter").origin == "built-in"
        [problem] = problems()
        assert "filter_team" not in sys.modules  # refused without importing it
        assert "entry point 'filter = filter_team:refunds' of filter-team 1.0" in problem
        assert "'filter' is a built-in's name" in problem
        assert "'filter-team.filter'" in problem  # what to do: a namespaced name
        assert default_registry().get("filter-team.refunds").create().name == "refunds"  # its other names work

    def test_a_name_two_distributions_register_is_refused_for_both(self, install: Install):
        install("payments-mesh", {"refunds": "payments_mesh:refunds", "payments.ok": "payments_mesh:refunds"},
                {"payments_mesh": FACTORY})
        install("billing-mesh", {"refunds": "billing_mesh:refunds"}, {"billing_mesh": FACTORY}, version="2.3")
        [problem] = problems()
        assert "processor 'refunds' is registered by 2 distributions" in problem
        assert "billing-mesh 2.3 ('billing_mesh:refunds')" in problem
        assert "payments-mesh 1.0 ('payments_mesh:refunds')" in problem
        with pytest.raises(RegistryError, match=r"'refunds' is registered by 2 distributions.*billing-mesh 2\.3"):
            default_registry().get("refunds")
        assert "refunds" not in default_registry()
        assert default_registry().get("payments.ok").create().name == "refunds"
        assert default_registry().get("filter").origin == "built-in"

    def test_namespaced_names_do_not_clash(self, install: Install):
        install("payments-mesh", {"payments.refunds": "payments_mesh:refunds"}, {"payments_mesh": FACTORY})
        install("billing-mesh", {"billing.refunds": "billing_mesh:refunds"}, {"billing_mesh": FACTORY})
        assert problems() == []
        assert {"payments.refunds", "billing.refunds"} <= {entry.name for entry in default_registry()}

    def test_a_malformed_name_is_reported_and_skipped(self, install: Install):
        install("odd-mesh", {"odd name": "odd_mesh:refunds"}, {"odd_mesh": FACTORY})
        [problem] = problems()
        assert "entry point 'odd name = odd_mesh:refunds' of odd-mesh 1.0" in problem
        assert "may hold only letters" in problem


class TestBrokenPackages:
    @pytest.mark.parametrize(("source", "cause"), [
        ("raise RuntimeError('no config for region eu-3')\n", "RuntimeError: no config for region eu-3"),
        ("def refunds(:\n    pass\n", "SyntaxError: invalid syntax"),
        ("import no_such_dependency_xyz\n", "ModuleNotFoundError: No module named 'no_such_dependency_xyz'"),
        ("refunds = 42\n", "is not callable"),
        ("\n", "has no attribute 'refunds'"),
    ])
    def test_a_lookup_names_the_distribution_the_entry_point_and_the_cause(self, install: Install, source: str,
                                                                         cause: str):
        install("broken-mesh", {"broken.refunds": "broken_mesh:refunds"}, {"broken_mesh": source})
        with pytest.raises(RegistryError) as raised:
            default_registry().get("broken.refunds").create()
        message = str(raised.value)
        assert "processor 'broken.refunds'" in message
        assert "entry point 'broken.refunds = broken_mesh:refunds' of broken-mesh 1.0" in message
        assert cause in message
        assert default_registry().get("filter").origin == "built-in"  # the others still work

    def test_a_syntax_error_names_the_file_and_line(self, install: Install):
        install("broken-mesh", {"broken.refunds": "broken_mesh:refunds"}, {"broken_mesh": "x = 1\ndef f(:\n"})
        with pytest.raises(RegistryError, match=r"broken_mesh\.py, line 2"):
            default_registry().get("broken.refunds").factory  # noqa: B018

    def test_the_listing_shows_every_processor_then_the_problems(self, install: Install,
                                                                capsys: pytest.CaptureFixture[str]):
        install("broken-mesh", {"broken.a": "broken_a:refunds", "broken.b": "broken_b:refunds", "filter": "x:y"},
                {"broken_a": "raise RuntimeError('boom')\n", "broken_b": "def (\n"})
        install("good-mesh", {"good.refunds": "good_mesh:refunds"}, {"good_mesh": FACTORY})
        assert processors_command([]) == 0
        out = capsys.readouterr().out
        assert "filter  [built-in]\n    Keep the records" in out
        assert "good.refunds  [entry point of good-mesh 1.0]\n    Refund ids." in out
        assert "broken.a  [entry point of broken-mesh 1.0]\n    cannot be loaded (see the problems below)\n" in out
        problems_section = out.split("3 problems in the registry:\n", 1)[1]
        assert "RuntimeError: boom" in problems_section
        assert "SyntaxError" in problems_section
        assert "'filter' is a built-in's name" in problems_section

    def test_a_problem_is_recorded_and_logged_once(self, install: Install, caplog: pytest.LogCaptureFixture):
        install("broken-mesh", {"broken.a": "broken_a:refunds"}, {"broken_a": "raise RuntimeError('boom')\n"})
        with caplog.at_level(logging.WARNING, logger="airflow_mesh.processors.registry"):
            for _ in range(3):
                with pytest.raises(RegistryError):
                    default_registry().get("broken.a").create()
            list(default_registry().load_all())
        assert len(problems()) == 1
        assert [record.getMessage().count("RuntimeError: boom") for record in caplog.records] == [1]

    def test_unknown_names_are_still_unknown(self, install: Install):
        install("good-mesh", {"good.refunds": "good_mesh:refunds"}, {"good_mesh": FACTORY})
        with pytest.raises(UnknownProcessorError, match=r"registered: .*good\.refunds"):
            default_registry().get("good.refundz")
