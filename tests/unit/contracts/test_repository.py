"""Loading the contracts folder: the shipped contracts, and every problem reported with file, path and reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_mesh.contracts.repository import ContractError, ContractProblem, load_repository, subject_name

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "schemas"
CDC_TOPICS = ["mesh.mariadb.mesh.shipments", "mesh.pg.public.customers", "mesh.pg.public.orders"]

VALUE = {"type": "record", "name": "Envelope", "namespace": "t", "fields": [
    {"name": "op", "type": "string"},
    {"name": "after", "type": ["null", {"type": "record", "name": "Value", "fields": [
        {"name": "id", "type": "long"},
        {"name": "amount", "type": "string"},
    ]}], "default": None},
]}
KEY = {"type": "record", "name": "Key", "namespace": "t", "fields": [{"name": "id", "type": "long"}]}


def write(path: Path, content: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A valid contracts folder: topic `orders` with key and value, one consumer."""
    root = tmp_path / "schemas"
    write(root / "orders" / "key.avsc", KEY)
    write(root / "orders" / "value.avsc", VALUE)
    write(root / "consumers" / "ledger.yaml",
          "name: ledger\nowner: finance\nreads:\n  orders:\n    key: [id]\n    value: [op, after.amount]\n")
    return root


def problems(root: Path) -> list[ContractProblem]:
    with pytest.raises(ContractError) as error:
        load_repository(root)
    assert str(error.value) == "\n".join(map(str, error.value.problems))
    return error.value.problems


class TestShippedContracts:
    def test_the_cdc_topics_have_key_and_value_schemas(self):
        repository = load_repository(SHIPPED)
        assert repository.topics == CDC_TOPICS
        assert [c.subject for c in repository.contracts] == [subject_name(t, r) for t in CDC_TOPICS
                                                             for r in ("key", "value")]

    def test_values_are_debezium_envelopes_of_their_table(self):
        repository = load_repository(SHIPPED)
        for topic in CDC_TOPICS:
            contract = repository.contract(topic, "value")
            assert contract is not None
            envelope = contract.schema.root
            assert envelope["name"] == f"{topic}.Envelope"
            assert [f["name"] for f in envelope["fields"]] == ["before", "after", "source", "transaction", "op",
                                                               "ts_ms", "ts_us", "ts_ns"]
            assert envelope["fields"][1]["type"] == ["null", f"{topic}.Value"]

    def test_every_consumer_reads_something_that_exists(self):
        repository = load_repository(SHIPPED)
        assert repository.consumers == ["finance-ledger", "search-indexer", "shipment-tracker"]
        assert {read.topic for read in repository.reads} == set(CDC_TOPICS)
        assert [read.path.text for read in repository.reads_of("mesh.pg.public.orders", "key")] == ["id"]


class TestValidFolder:
    def test_contracts_and_reads(self, folder):
        repository = load_repository(folder)
        assert repository.topics == ["orders"]
        assert repository.contract("orders", "value").file == folder / "orders" / "value.avsc"
        assert repository.contract("other", "value") is None
        reads = repository.reads_of("orders", "value")
        assert [(r.consumer, r.owner, r.path.text) for r in reads] == [("ledger", "finance", "op"),
                                                                       ("ledger", "finance", "after.amount")]
        assert reads[0].file == folder / "consumers" / "ledger.yaml"

    def test_no_consumers_folder_is_fine(self, folder):
        for file in (folder / "consumers").iterdir():
            file.unlink()
        (folder / "consumers").rmdir()
        assert load_repository(folder).reads == ()

    def test_other_files_are_ignored(self, folder):
        write(folder / "README.md", "# contracts")
        write(folder / "orders" / "NOTES.md", "notes")
        write(folder / ".git" / "config", "x")
        assert load_repository(folder).topics == ["orders"]


class TestSchemaProblems:
    def test_not_a_folder(self, tmp_path):
        assert problems(tmp_path / "nope") == [ContractProblem(str(tmp_path / "nope"), "", "not a folder")]

    def test_malformed_json_says_where(self, folder):
        file = write(folder / "orders" / "value.avsc", '{"type": "record",\n "name": }')
        (problem,) = problems(folder)
        assert (problem.file, problem.path) == (str(file), "")
        assert "not valid JSON" in problem.reason and "line 2 column 10" in problem.reason

    def test_invalid_avro(self, folder):
        file = write(folder / "orders" / "value.avsc", {"type": "record", "name": "R", "fields": [
            {"name": "a", "type": "decimalz"}]})
        assert problems(folder) == [ContractProblem(str(file), "", "invalid Avro schema: unknown type 'decimalz'")]

    def test_avro_rule_fastavro_skips(self, folder):
        file = write(folder / "orders" / "key.avsc", {"type": "record", "name": "K", "fields": [
            {"name": "id", "type": "long"}, {"name": "id", "type": "int"}]})
        assert problems(folder) == [ContractProblem(str(file), "", "invalid Avro schema: record K repeats field id")]

    def test_misnamed_schema_file_and_empty_topic_folder(self, folder):
        write(folder / "orders" / "values.avsc", VALUE)
        (folder / "payments").mkdir()
        assert problems(folder) == [
            ContractProblem(str(folder / "orders" / "values.avsc"), "",
                            "unexpected schema file: a topic folder holds key.avsc and/or value.avsc"),
            ContractProblem(str(folder / "payments"), "", "neither key.avsc nor value.avsc in this topic folder"),
        ]

    def test_topic_folder_must_be_a_topic_name(self, folder):
        write(folder / "bad topic" / "value.avsc", VALUE)
        (problem,) = problems(folder)
        assert problem.file == str(folder / "bad topic") and "not a valid Kafka topic name" in problem.reason


class TestDeclarationProblems:
    def declare(self, folder: Path, text: str, name: str = "ledger.yaml") -> str:
        return str(write(folder / "consumers" / name, text))

    def test_unknown_field_names_consumer_file_path_and_fields(self, folder):
        file = self.declare(folder, "name: ledger\nowner: finance\nreads:\n  orders:\n"
                                    "    value: [op, after.amunt]\n")
        assert problems(folder) == [ContractProblem(
            file, "reads.orders.value[1]",
            f"field after.amunt does not exist in {folder / 'orders' / 'value.avsc'}: record t.Value has no field "
            "amunt (its fields: id, amount)")]

    def test_malformed_path(self, folder):
        file = self.declare(folder, "name: ledger\nowner: f\nreads:\n  orders:\n    value: [after..id]\n")
        (problem,) = problems(folder)
        assert (problem.file, problem.path) == (file, "reads.orders.value[0]")
        assert "invalid segment ''" in problem.reason

    def test_unknown_topic_and_missing_role(self, folder):
        (folder / "orders" / "key.avsc").unlink()
        file = self.declare(folder, "name: ledger\nowner: f\nreads:\n  orders:\n    key: [id]\n"
                                    "  payments:\n    value: [id]\n")
        assert problems(folder) == [
            ContractProblem(file, "reads.orders.key", "topic orders has no key schema (key.avsc)"),
            ContractProblem(file, "reads.payments", "no schema for topic payments (topics with a contract: orders)"),
        ]

    def test_topic_read_without_fields(self, folder):
        file = self.declare(folder, "name: ledger\nowner: f\nreads:\n  orders: {}\n")
        assert problems(folder) == [
            ContractProblem(file, "reads.orders", "reads no field: list the key and/or value fields read")]

    def test_model_errors_carry_their_location(self, folder):
        file = self.declare(folder, "name: -ledger\nreads:\n  orders:\n    value: [op]\n    values: [op]\n")
        assert {(p.file, p.path) for p in problems(folder)} == {
            (file, "name"), (file, "owner"), (file, "reads.orders.values")}

    def test_not_a_mapping_and_malformed_yaml(self, folder):
        listed = self.declare(folder, "- name: ledger\n", "list.yaml")
        broken = self.declare(folder, "name: [unclosed\n", "broken.yaml")
        found = problems(folder)
        assert ContractProblem(listed, "", "a consumer declaration must be a mapping, got list") in found
        (yaml_problem,) = [p for p in found if p.file == broken]
        assert yaml_problem.reason.startswith("malformed YAML at line 2, column 1")

    def test_duplicate_consumer_and_duplicate_path(self, folder):
        first = str(folder / "consumers" / "ledger.yaml")
        second = self.declare(folder, "name: ledger\nowner: f\nreads:\n  orders:\n    value: [op]\n", "z.yaml")
        third = self.declare(folder, "name: other\nowner: f\nreads:\n  orders:\n    value: [op, op]\n", "y.yaml")
        assert problems(folder) == [
            ContractProblem(third, "reads.orders.value[1]", "op is listed twice"),
            ContractProblem(second, "name", f"consumer 'ledger' is also declared in {first}"),
        ]

    def test_every_problem_of_every_file_at_once(self, folder):
        write(folder / "orders" / "key.avsc", "{")
        self.declare(folder, "name: ledger\nowner: f\nreads:\n  orders:\n    value: [after.nope, nope]\n")
        found = problems(folder)
        assert [p.path for p in found] == ["", "reads.orders.value[0]", "reads.orders.value[1]"]
