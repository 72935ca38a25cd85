"""Contract validation throughput against fastavro's raw decoding of the same records.

Goal: ValidateTopicRecordsOperator's validation path decodes and validates at least 0.8x as many
records per second as fastavro's ``schemaless_reader`` merely decodes them.

The records are change events of ``mesh.pg.public.orders`` (the shipped contract's Debezium envelope,
keys and values) in Confluent's wire format, their schema registered in the stack's real schema
registry. Both paths run in this process on the same in-memory records, best of several rounds:

* operator path: ``RecordValidator.check`` (wire header, schema id lookup, contract check of the writer
  schema once per id, decoding, left-over bytes check) and ``ValidationReport.add``, per record, exactly
  as the operator runs them on each consumed message;
* baseline: ``schemaless_reader`` of key and value, after slicing off the 5-byte header.

Reading from Kafka is left out of both: it costs the same whatever is done with the bytes. The
JSON path (Debezium's JSON, checked field by field) is measured too, for information.

Run with the stack up: ``.venv/bin/python benchmarks/contracts_validate.py [--records N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shlex
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOPIC = "mesh.pg.public.orders"


def _load_stack_connections() -> None:
    """Use the local stack's connections unless the environment defines them already."""
    env = ROOT / ".stack" / "connections.env"
    if env.exists():
        for line in env.read_text().splitlines():
            if line.startswith("AIRFLOW_CONN_"):
                key, _, value = line.partition("=")
                os.environ.setdefault(key, shlex.split(value)[0])


def _event(order_id: int, rng: random.Random) -> dict[str, Any]:
    row = {"id": order_id, "customer_id": rng.randint(1, 10**6), "status": rng.choice(["new", "paid", "shipped"]),
           "amount": f"{rng.randint(1, 10**6) / 100:.2f}", "created_at": "2026-11-26T16:35:19.255357Z",
           "updated_at": "2026-11-26T16:35:19.255357Z", "note": rng.choice([None, "gift wrap"])}
    source = {"version": "3.6.1.Final", "connector": "postgresql", "name": "mesh.pg", "ts_ms": 1795710919255,
              "snapshot": "false", "db": "mesh", "sequence": f'["{order_id}","{order_id}"]', "ts_us": 1795710919255892,
              "ts_ns": 1795710919255892000, "schema": "public", "table": "orders", "txId": order_id,
              "lsn": 44285632 + order_id, "xmin": None, "origin": None, "origin_lsn": None}
    return {"before": dict(row, status="new"), "after": row, "source": source, "transaction": None, "op": "u",
            "ts_ms": 1795710919323, "ts_us": 1795710919323088, "ts_ns": 1795710919323088332}


def _wire(schema_id: int, parsed: Any, datum: Any) -> bytes:
    from fastavro import schemaless_writer

    out = io.BytesIO()
    out.write(b"\x00" + schema_id.to_bytes(4, "big"))
    schemaless_writer(out, parsed, datum)
    return out.getvalue()


def _best_rates(runs: dict[str, Callable[[], None]], records: int, rounds: int) -> dict[str, float]:
    """Records per second of each run's best round; rounds interleave the runs, so that load from other
    processes weighs on all of them alike."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: records / seconds for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    _load_stack_connections()

    from fastavro import parse_schema, schemaless_reader

    from airflow_mesh.contracts.repository import load_repository
    from airflow_mesh.contracts.validation import RecordFormat, RecordValidator, ValidationReport
    from airflow_mesh.hooks.schema_registry import SchemaRegistryHook, SubjectNotFoundError

    repository = load_repository(ROOT / "schemas")
    key_contract, value_contract = repository.contract(TOPIC, "key"), repository.contract(TOPIC, "value")
    if key_contract is None or value_contract is None:
        raise SystemExit(f"schemas/ has no key and value contract for {TOPIC}")
    registry = SchemaRegistryHook()
    subjects = [f"bench-{uuid.uuid4().hex[:8]}-{role}" for role in ("key", "value")]
    try:
        key_id = registry.register_schema(subjects[0], key_contract.text)
        value_id = registry.register_schema(subjects[1], value_contract.text)
        key_schema = parse_schema(json.loads(key_contract.text))
        value_schema = parse_schema(json.loads(value_contract.text))
        rng = random.Random(5)
        events = [_event(i, rng) for i in range(args.records)]
        records = [(_wire(key_id, key_schema, {"id": e["after"]["id"]}), _wire(value_id, value_schema, e))
                   for e in events]
        json_records = [(json.dumps({"id": e["after"]["id"]}).encode(), json.dumps(e).encode()) for e in events]

        def lookup(schema_id: int) -> str | None:
            return registry.get_schema_by_id(schema_id).schema

        def operator_path(batch: list[tuple[bytes, bytes]], record_format: RecordFormat) -> Callable[[], None]:
            def run() -> None:
                validator = RecordValidator(key_contract, value_contract, record_format, lookup)
                report = ValidationReport(TOPIC)
                for offset, (key, value) in enumerate(batch):
                    report.add(0, offset, value, validator.check(key, value))
                assert report.valid == len(batch), report.summary()
            return run

        def baseline() -> None:
            for key, value in records:
                schemaless_reader(io.BytesIO(key[5:]), key_schema, None)
                schemaless_reader(io.BytesIO(value[5:]), value_schema, None)

        rates = _best_rates({"raw": baseline, "validated": operator_path(records, RecordFormat.AUTO),
                             "json": operator_path(json_records, RecordFormat.AUTO)}, args.records, args.rounds)
    finally:
        for subject in subjects:
            for permanent in (False, True):
                with contextlib.suppress(SubjectNotFoundError):
                    registry.delete_subject(subject, permanent=permanent)

    size = sum(len(k) + len(v) for k, v in records) / args.records
    print(f"records: {args.records} change events of {TOPIC} (key + value, {size:.0f} bytes each in the wire "
          f"format), best of {args.rounds} rounds")
    print(f"fastavro schemaless_reader (decode only):          {rates['raw']:10,.0f} records/s")
    print(f"ValidateTopicRecordsOperator path (wire format):   {rates['validated']:10,.0f} records/s")
    print(f"ValidateTopicRecordsOperator path (Debezium JSON): {rates['json']:10,.0f} records/s (no baseline)")
    print(f"ratio validated/raw: {rates['validated'] / rates['raw']:.2f} (goal >= 0.8)")


if __name__ == "__main__":
    main()
