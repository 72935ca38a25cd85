"""A processor declaration compiled to the Flink SQL script the runner executes; invalid ones fail first."""

from __future__ import annotations

import pytest

from airflow_mesh.flink_runtime.sql_job import parse_set, split_statements
from airflow_mesh.processors import (
    Aggregate,
    Avro,
    Column,
    DebeziumAvro,
    DebeziumJson,
    DeclarationError,
    Deployment,
    Derive,
    Filter,
    Json,
    KafkaCluster,
    KafkaInput,
    KafkaOutput,
    Processor,
    Project,
    Union,
    compile_sql,
    format_named,
    output_as_input,
    plan,
)

ORDER_COLUMNS = {"id": "BIGINT", "customer_id": "BIGINT", "status": "STRING", "amount": "DECIMAL(12, 2)"}
DEPLOYMENT = Deployment("paid-orders", KafkaCluster("broker:9092", {"security.protocol": "SASL_SSL"}))


def orders(**overrides) -> KafkaInput:
    return KafkaInput(**{"name": "orders", "topic": "mesh.pg.public.orders", "columns": ORDER_COLUMNS,
                         "format": DebeziumJson(), **overrides})


def paid_orders(**overrides) -> Processor:
    return Processor(**{"name": "paid_orders", "inputs": [orders()],
                        "steps": [Filter("status = 'paid'"), Project(["id", "status", "amount"])],
                        "output": KafkaOutput("orders.paid", key=["id"]), **overrides})


def problems_of(processor: Processor) -> list[str]:
    with pytest.raises(DeclarationError) as excinfo:
        plan(processor)
    assert str(excinfo.value).startswith(f"processor {processor.name!r} is invalid:\n- ")
    return excinfo.value.problems


def test_the_whole_script():
    assert compile_sql(paid_orders(description="paid orders,\nby id"), DEPLOYMENT) == """\
-- processor paid_orders: paid orders, by id
SET 'execution.checkpointing.interval' = '10 s';

SET 'execution.checkpointing.externalized-checkpoint-retention' = 'RETAIN_ON_CANCELLATION';

CREATE TABLE `orders` (
  `id` BIGINT,
  `customer_id` BIGINT,
  `status` STRING,
  `amount` DECIMAL(12, 2)
) WITH (
  'connector' = 'kafka',
  'topic' = 'mesh.pg.public.orders',
  'properties.bootstrap.servers' = 'broker:9092',
  'properties.security.protocol' = 'SASL_SSL',
  'properties.group.id' = 'paid-orders',
  'scan.startup.mode' = 'earliest-offset',
  'value.format' = 'debezium-json'
);

CREATE TEMPORARY VIEW `mesh_step_1` AS
SELECT `id`, `customer_id`, `status`, `amount` FROM `orders` WHERE status = 'paid';

CREATE TEMPORARY VIEW `mesh_step_2` AS
SELECT `id`, `status`, `amount` FROM `mesh_step_1`;

CREATE TABLE `mesh_output` (
  `id` BIGINT,
  `status` STRING,
  `amount` DECIMAL(12, 2),
  PRIMARY KEY (`id`) NOT ENFORCED
) WITH (
  'connector' = 'upsert-kafka',
  'topic' = 'orders.paid',
  'properties.bootstrap.servers' = 'broker:9092',
  'properties.security.protocol' = 'SASL_SSL',
  'key.format' = 'json',
  'key.json.encode.decimal-as-plain-number' = 'true',
  'sink.buffer-flush.interval' = '1 s',
  'sink.buffer-flush.max-rows' = '1000',
  'value.format' = 'json',
  'value.json.encode.decimal-as-plain-number' = 'true'
);

INSERT INTO `mesh_output`
SELECT `id`, `status`, `amount` FROM `mesh_step_2`;
"""


def test_the_runner_reads_the_script_back_statement_by_statement():
    statements = split_statements(compile_sql(paid_orders(settings={"table.exec.state.ttl": "1 d"}), DEPLOYMENT))
    assert [parse_set(s) for s in statements[:3]] == [("execution.checkpointing.interval", "10 s"),
                                                      ("execution.checkpointing.externalized-checkpoint-retention",
                                                       "RETAIN_ON_CANCELLATION"),
                                                      ("table.exec.state.ttl", "1 d")]
    assert [s.split()[0] for s in statements[3:]] == ["CREATE", "CREATE", "CREATE", "CREATE", "INSERT"]


def test_settings_override_the_defaults():
    script = compile_sql(paid_orders(settings={"execution.checkpointing.interval": "1 min"}), DEPLOYMENT)
    assert "SET 'execution.checkpointing.interval' = '1 min';" in script
    assert "'10 s'" not in script


def test_without_steps_the_input_goes_to_the_output_as_it_is():
    script = compile_sql(paid_orders(steps=[]), DEPLOYMENT)
    assert "CREATE TEMPORARY VIEW" not in script
    assert "INSERT INTO `mesh_output`\nSELECT `id`, `customer_id`, `status`, `amount` FROM `orders`;" in script


def test_steps_start_from_the_named_input():
    refunds = orders(name="refunds", topic="mesh.pg.public.refunds")
    processor = paid_orders(inputs=[orders(), refunds], start="refunds", steps=[Union(["orders"])])
    assert plan(processor).views[0][1].endswith("FROM `refunds`\nUNION ALL\nSELECT `id`, `customer_id`, `status`, "
                                                "`amount` FROM `orders`")


class TestInvalidDeclarations:
    def test_unknown_column_names_the_step(self):
        processor = paid_orders(steps=[Filter("status = 'paid'"), Project(["id", "amout"])])
        assert problems_of(processor) == [
            "step 2 (Project): unknown column 'amout' (columns: id, customer_id, status, amount)"]

    def test_missing_input(self):
        assert problems_of(paid_orders(steps=[Union(["refunds"])])) == [
            "step 1 (Union): no input named 'refunds' (inputs: orders)"]
        assert problems_of(paid_orders(start="refunds")) == ["start: no input named 'refunds' (inputs: orders)"]
        assert problems_of(paid_orders(inputs=[])) == ["declares no input"]

    def test_every_input_problem_is_reported_at_once(self):
        bad = orders(name="mesh_orders", topic="no spaces", columns={"id": "NUMBER"}, startup="now")
        assert problems_of(paid_orders(inputs=[bad, orders(), orders()])) == [
            "input 'mesh_orders': the name must be a SQL identifier not starting with 'mesh_'",
            "input 'mesh_orders': topic 'no spaces' is not a valid Kafka topic name",
            ("input 'mesh_orders': column 'id': unknown data type 'NUMBER' (e.g. BIGINT, STRING, DECIMAL(12, 2), "
             "TIMESTAMP(3))"),
            "input 'mesh_orders': startup 'now' is not one of earliest-offset, latest-offset, group-offsets",
            "input 'orders': declared twice",
        ]

    def test_a_step_failure_stops_the_walk(self):
        processor = paid_orders(steps=[Project(["nope"]), Filter("also_nope = 1")])
        assert problems_of(processor) == [("step 1 (Project): unknown column 'nope' (columns: id, customer_id, "
                                           "status, amount)")]

    def test_an_appending_output_refuses_updates_and_deletes(self):
        assert problems_of(paid_orders(output=KafkaOutput("orders.paid"))) == [
            ("output: the result carries updates and deletes (from a changelog input, an aggregate or an enrichment) "
             "but the output only appends: give the output a key to upsert by")]

    def test_the_output_key_must_be_a_result_column(self):
        assert problems_of(paid_orders(output=KafkaOutput("orders.paid", key=["customer_id"]))) == [
            "output: unknown key column 'customer_id' (columns: id, status, amount)"]

    def test_keys_that_kafka_tables_cannot_have(self):
        append_only = KafkaInput("events", "events", {"id": "BIGINT"}, key=["id"])
        upsert_without_key = KafkaInput("events", "events", {"id": "BIGINT"}, upsert=True)
        assert problems_of(paid_orders(inputs=[append_only], steps=[])) == [
            ("input 'events': a key on an append-only json input guarantees nothing; read the topic with upsert=True "
             "if its records are upserts by key")]
        assert problems_of(paid_orders(inputs=[upsert_without_key], steps=[])) == [
            "input 'events': an upsert input needs a key"]
        debezium_output = KafkaOutput("out", key=["id"], format=DebeziumJson())
        assert problems_of(paid_orders(output=debezium_output)) == [
            "output: a keyed output writes plain records, not debezium-json"]

    def test_a_deployment_without_kafka_is_refused(self):
        with pytest.raises(ValueError, match="names no Kafka cluster"):
            compile_sql(paid_orders(), Deployment("job"))


class TestChaining:
    def test_a_keyed_output_is_read_back_as_an_upsert_input(self):
        columns = (Column("id", "BIGINT"), Column("status", "STRING"), Column("amount", "DECIMAL(12, 2)"))
        assert output_as_input(paid_orders(), "paid") == KafkaInput("paid", "orders.paid", columns, key=("id",),
                                                                    upsert=True)

    def test_a_chained_processor_compiles_against_the_upstream_output(self):
        counts = Processor("counts", [output_as_input(paid_orders(), "paid")],
                           KafkaOutput("orders.paid.by_status", key=["status"]),
                           [Aggregate(["status"], [Derive("orders", "COUNT(*)", "BIGINT")])])
        script = compile_sql(counts, DEPLOYMENT)
        assert "'connector' = 'upsert-kafka',\n  'topic' = 'orders.paid'" in script
        assert "PRIMARY KEY (`id`) NOT ENFORCED" in script
        assert "'scan.startup.mode'" not in script  # an upsert log is always read from its start

    def test_an_invalid_upstream_cannot_be_chained(self):
        with pytest.raises(DeclarationError, match="unknown column 'nope'"):
            output_as_input(paid_orders(steps=[Project(["nope"])]), "paid")


class TestFormats:
    @pytest.mark.parametrize(("fmt", "options"), [
        (Json(), {"value.format": "json", "value.json.encode.decimal-as-plain-number": "true"}),
        (Avro(), {"value.format": "avro"}),
        (Avro("http://registry:8081"), {"value.format": "avro-confluent",
                                        "value.avro-confluent.url": "http://registry:8081"}),
        (DebeziumJson(), {"value.format": "debezium-json"}),
        (DebeziumAvro("http://registry:8081"), {"value.format": "debezium-avro-confluent",
                                                "value.debezium-avro-confluent.url": "http://registry:8081"}),
    ])
    def test_options(self, fmt, options):
        assert fmt.options("value.") == options

    def test_names(self):
        assert format_named("debezium-avro", "http://r:8081") == DebeziumAvro("http://r:8081")
        assert format_named("avro") == Avro()
        with pytest.raises(ValueError, match="needs a schema registry URL"):
            format_named("debezium-avro")
        with pytest.raises(ValueError, match="unknown format 'xml'"):
            format_named("xml")

    def test_only_debezium_formats_are_changelogs(self):
        assert [f.changelog for f in (Json(), Avro(), DebeziumJson(), DebeziumAvro("u"))] == [False, False, True, True]

    def test_an_upsert_input_reads_keys_and_values_and_no_startup_mode(self):
        table = KafkaInput("t", "t", {"id": "BIGINT", "v": "STRING"}, key=["id"], upsert=True).create_table(DEPLOYMENT)
        assert "'connector' = 'upsert-kafka'" in table and "'key.format' = 'json'" in table
        assert "scan.startup.mode" not in table


def test_an_unbuffered_keyed_output_writes_every_change():
    table = KafkaOutput("t", key=["id"], flush_interval=None).create_table("out", [Column("id", "BIGINT")], DEPLOYMENT)
    assert "sink.buffer-flush" not in table
