"""Processors by name: built-ins, entry points of other packages, module paths; the built-ins themselves."""

from __future__ import annotations

import sys
import textwrap
from importlib.metadata import EntryPoint

import pytest

from airflow_mesh.processors import (
    Deployment,
    KafkaCluster,
    Processor,
    ProcessorRegistry,
    RegistryError,
    UnknownProcessorError,
    compile_sql,
    default_registry,
    registry,
)
from airflow_mesh.processors.__main__ import list_processors

COLUMNS = {"id": "BIGINT", "status": "STRING", "amount": "DECIMAL(12, 2)"}
DEPLOYMENT = Deployment("job", KafkaCluster("broker:9092"))


@pytest.fixture
def team_package(tmp_path, monkeypatch):
    """An importable package of another team, ``refunds_mesh``, with one processor factory."""
    package = tmp_path / "refunds_mesh"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "processors.py").write_text(textwrap.dedent('''
        from airflow_mesh.processors import KafkaInput, KafkaOutput, Processor, Project

        def refunds(*, topic: str, output_topic: str) -> Processor:
            """Refund ids and amounts."""
            return Processor("refunds", [KafkaInput("r", topic, {"id": "BIGINT", "amount": "STRING"})],
                             KafkaOutput(output_topic), [Project(["id"])])

        NOT_A_FACTORY = 42
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "refunds_mesh.processors"
    for name in [m for m in sys.modules if m.startswith("refunds_mesh")]:
        del sys.modules[name]


def entry_point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name, value, registry.ENTRY_POINT_GROUP)


class TestDefaultRegistry:
    def test_lists_the_builtins_with_their_description_and_parameters(self):
        entries = {entry.name: entry for entry in default_registry()}
        assert {"projection", "filter", "rename", "union"} <= set(entries)
        assert entries["filter"].origin == "built-in"
        assert entries["filter"].description.startswith("Keep the records of a topic for which a SQL condition holds")
        assert entries["filter"].parameters == ("input_topic, columns, condition, output_topic, "
                                                "input_format='json', key=(), registry_url=None")

    def test_the_command_line_listing(self, capsys):
        list_processors()
        out = capsys.readouterr().out
        assert "filter  [built-in]\n    Keep the records" in out
        assert "union  [built-in]" in out

    def test_unknown_names_list_the_registered_ones(self):
        with pytest.raises(UnknownProcessorError,
                           match=r"no processor is registered as 'filtre' \(registered: .*filter"):
            default_registry().get("filtre")


class TestEntryPointsAndModulePaths:
    def test_entry_points_register_under_their_name_and_load_on_use(self, monkeypatch, team_package):
        monkeypatch.setattr(registry, "entry_points",
                            lambda group: [entry_point("payments.refunds", f"{team_package}:refunds")])
        reg = ProcessorRegistry()
        reg.register_entry_points()
        assert team_package not in sys.modules  # not imported by registering
        entry = reg.get("payments.refunds")
        assert entry.origin == "entry point of an unknown distribution"
        processor = entry.create({"topic": "refunds", "output_topic": "refunds.ids"})
        assert isinstance(processor, Processor) and processor.name == "refunds"
        assert entry.description == "Refund ids and amounts."

    def test_an_entry_point_cannot_take_a_builtin_name(self, monkeypatch):
        monkeypatch.setattr(registry, "entry_points", lambda group: [entry_point("filter", "x.y:z")])
        default_registry.cache_clear()
        try:
            assert default_registry().get("filter").origin == "built-in"
            [problem] = default_registry().problems
            assert problem.message.startswith("entry point 'filter = x.y:z' of an unknown distribution is refused: "
                                              "'filter' is a built-in's name")
        finally:
            default_registry.cache_clear()

    def test_a_module_path_needs_no_registration(self, team_package):
        processor = default_registry().resolve(f"{team_package}:refunds").create(
            {"topic": "refunds", "output_topic": "refunds.ids"})
        assert "'topic' = 'refunds'" in compile_sql(processor, DEPLOYMENT)

    @pytest.mark.parametrize(("reference", "reason"), [
        ("refunds_mesh.processors:nope", "cannot load 'refunds_mesh.processors:nope'"),
        ("no_such_package.x:y",
         "cannot load 'no_such_package.x:y': ModuleNotFoundError: No module named 'no_such_package'"),
        ("refunds_mesh.processors:NOT_A_FACTORY", "'refunds_mesh.processors:NOT_A_FACTORY' is not callable"),
        ("not a reference:x", "is not a 'package.module:attribute' reference"),
    ])
    def test_references_that_cannot_be_loaded(self, team_package, reference, reason):
        with pytest.raises(RegistryError, match=reason):
            default_registry().resolve(reference).create({})

    def test_a_broken_entry_point_shows_in_the_listing_without_hiding_the_others(self, monkeypatch, capsys):
        monkeypatch.setattr(registry, "entry_points", lambda group: [entry_point("broken", "gone_pkg:factory")])
        default_registry.cache_clear()
        try:
            list_processors()
        finally:
            default_registry.cache_clear()
        out = capsys.readouterr().out
        assert ("broken  [entry point of an unknown distribution]\n"
                "    cannot be loaded (see the problems below)\n") in out
        assert ("1 problem in the registry:\n  - processor 'broken' (entry point 'broken = gone_pkg:factory' of an "
                "unknown distribution) cannot be loaded: cannot load 'gone_pkg:factory': ModuleNotFoundError") in out
        assert "filter  [built-in]" in out


class TestRegistration:
    def test_names_must_be_simple_and_unique(self):
        reg = ProcessorRegistry()
        reg.register("a.b-c_1", lambda: None)
        with pytest.raises(RegistryError, match="registered twice: by registered and by tests"):
            reg.register("a.b-c_1", lambda: None, origin="tests")
        with pytest.raises(RegistryError, match="may hold only letters"):
            reg.register("a b", lambda: None)
        assert "a.b-c_1" in reg and [entry.name for entry in reg] == ["a.b-c_1"]

    def test_parameters_that_do_not_fit_are_refused_before_the_call(self):
        entry = default_registry().get("filter")
        with pytest.raises(RegistryError, match=r"processor 'filter' takes \(input_topic, .*\): missing a required "
                                                r"argument: 'condition'"):
            entry.create({"input_topic": "t", "columns": COLUMNS, "output_topic": "o"})
        with pytest.raises(RegistryError, match="unexpected keyword argument 'colour'"):
            entry.create({"input_topic": "t", "columns": COLUMNS, "output_topic": "o", "condition": "1=1",
                          "colour": "red"})

    def test_a_factory_must_return_a_processor(self):
        reg = ProcessorRegistry()
        reg.register("odd", lambda: "SELECT 1")
        with pytest.raises(RegistryError, match="returned str, not a Processor"):
            reg.get("odd").create()

    def test_a_factory_value_error_names_the_processor(self):
        with pytest.raises(RegistryError, match="processor 'filter': unknown format 'xml'"):
            default_registry().get("filter").create({"input_topic": "t", "columns": COLUMNS, "output_topic": "o",
                                                     "condition": "1=1", "input_format": "xml"})


class TestBuiltins:
    """Each built-in is a one-step processor over Kafka topics; its step's SQL is what test_steps checks."""

    def create(self, name: str, **params) -> str:
        return compile_sql(default_registry().get(name).create(params), DEPLOYMENT)

    def test_projection(self):
        script = self.create("projection", input_topic="in", columns=COLUMNS, keep=["id", "amount"], output_topic="o",
                             input_format="debezium-json", key=["id"])
        assert "SELECT `id`, `amount` FROM `source_1`" in script
        assert "'value.format' = 'debezium-json'" in script and "'connector' = 'upsert-kafka'" in script

    def test_projection_must_keep_the_key(self):
        with pytest.raises(Exception, match="output: unknown key column 'id' \\(columns: status\\)"):
            self.create("projection", input_topic="in", columns=COLUMNS, keep=["status"], output_topic="o",
                        input_format="debezium-json", key=["id"])

    def test_filter(self):
        script = self.create("filter", input_topic="in", columns=COLUMNS, condition="amount > 10", output_topic="o")
        assert "FROM `source_1` WHERE amount > 10" in script
        assert "'connector' = 'kafka',\n  'topic' = 'o'" in script  # no key: appended

    def test_rename_keys_the_output_by_the_new_names(self):
        script = self.create("rename", input_topic="in", columns=COLUMNS, renames={"id": "order_id"}, output_topic="o",
                             input_format="debezium-json", key=["id"])
        assert "SELECT `id` AS `order_id`, `status`, `amount` FROM `source_1`" in script
        assert "PRIMARY KEY (`order_id`) NOT ENFORCED" in script

    def test_union(self):
        script = self.create("union", input_topics=["a", "b", "c"], columns=COLUMNS, output_topic="o")
        assert script.count("UNION ALL") == 2
        assert "FROM `source_3`;" in script

    def test_union_of_one_topic_is_refused(self):
        with pytest.raises(Exception, match="step 1 \\(Union\\): names no input to add"):
            self.create("union", input_topics=["a"], columns=COLUMNS, output_topic="o")

    def test_a_debezium_input_without_an_output_key_is_refused(self):
        with pytest.raises(Exception, match="give the output a key to upsert by"):
            self.create("filter", input_topic="in", columns=COLUMNS, condition="amount > 10", output_topic="o",
                        input_format="debezium-json")

    @pytest.mark.parametrize(("input_format", "input_key"), [("debezium-json", ("id",)), ("json", ())])
    def test_the_key_is_the_output_key_and_a_changelog_input_key(self, input_format, input_key):
        processor = default_registry().get("projection").create(
            {"input_topic": "in", "columns": COLUMNS, "keep": ["id"], "output_topic": "o",
             "input_format": input_format, "key": ["id"]})
        assert processor.inputs[0].key == input_key
        assert processor.output.key == ("id",)
