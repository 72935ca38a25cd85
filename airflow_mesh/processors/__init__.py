"""The processor SDK: declare a stream processor in Python, get the Flink SQL job that runs it.

Pure logic: nothing here imports Airflow or PyFlink, or touches the network. A processor reads
inputs (Kafka topics in JSON, Avro, or Debezium change events), runs steps (project, filter, rename,
derive a column, union, enrich by a lookup, aggregate) and writes an output (a Kafka topic; the
output is pluggable)::

    from airflow_mesh.processors import DebeziumJson, Filter, KafkaInput, KafkaOutput, Processor, Project

    paid_orders = Processor(
        "paid_orders",
        inputs=[KafkaInput("orders", "mesh.pg.public.orders", {"id": "BIGINT", "status": "STRING"},
                           format=DebeziumJson(), key=["id"])],
        steps=[Filter("status = 'paid'"), Project(["id", "status"])],
        output=KafkaOutput("orders.paid", key=["id"]),
    )

``SubmitFlinkJobOperator`` compiles and submits a processor; the registry lets DAGs refer to
processors by name (``python -m airflow_mesh.processors`` lists them).
"""

from airflow_mesh.processors.compile import Plan, compile_sql, output_as_input, plan
from airflow_mesh.processors.formats import Avro, DebeziumAvro, DebeziumJson, Format, Json, format_named
from airflow_mesh.processors.kafka import KafkaInput, KafkaOutput
from airflow_mesh.processors.model import (
    Column,
    DeclarationError,
    Deployment,
    Input,
    Invalid,
    KafkaCluster,
    Output,
    Processor,
    Relation,
    Step,
    View,
)
from airflow_mesh.processors.registry import (
    ProcessorRegistry,
    RegisteredProcessor,
    RegistryError,
    RegistryProblem,
    UnknownProcessorError,
    create_processor,
    default_registry,
)
from airflow_mesh.processors.steps import Aggregate, Derive, Enrich, Filter, Project, Rename, Union

__all__ = [
    "Aggregate", "Avro", "Column", "DebeziumAvro", "DebeziumJson", "DeclarationError", "Deployment", "Derive",
    "Enrich", "Filter", "Format", "Input", "Invalid", "Json", "KafkaCluster", "KafkaInput", "KafkaOutput", "Output",
    "Plan", "Processor", "ProcessorRegistry", "Project", "RegisteredProcessor", "RegistryError", "RegistryProblem",
    "Relation", "Rename", "Step", "Union", "UnknownProcessorError", "View", "compile_sql", "create_processor",
    "default_registry", "format_named", "output_as_input", "plan",
]
