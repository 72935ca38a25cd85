"""Scheduled migrations against the real stack: incremental runs that lose nothing (the mark race, a
run interrupted and resumed, a full copy handing over to incremental runs), and syncs that repair
what the cursor cannot see (deletes, updates that leave updated_at alone, updated_at set into the
past). After each run the target is compared with the source by psycopg and pyiceberg / psycopg,
not by the engine's own checksums."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from decimal import Decimal

import psycopg
import pytest

from airflow_mesh.backfill import engine
from airflow_mesh.backfill.checkpoint import CheckpointStore
from airflow_mesh.backfill.endpoints import ConnectionFields, make_source, make_target
from airflow_mesh.backfill.errors import VerificationError
from airflow_mesh.backfill.plan import BackfillRequest

ROWS = 3_000


def conn_fields(conn_id: str) -> ConnectionFields:
    c = json.loads(os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"])
    return ConnectionFields(c["conn_type"], c.get("host"), c.get("port"), c.get("login"), c.get("password"),
                            c.get("schema"), c.get("extra") or {})


@pytest.fixture
def table(postgres_conninfo):
    """``bf_mig_<id>``: id, status, amount, updated_at (defaults to now()), ROWS rows."""
    name = f"bf_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, status text, amount numeric(12,2), "
                     "updated_at timestamptz NOT NULL DEFAULT now())")
        conn.execute(f"INSERT INTO {name} SELECT g, 'new', g / 4.0, now() - interval '1 day' "
                     f"FROM generate_series(1, {ROWS}) g")
    yield f"public.{name}"
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}, {name}_copy")


def source_rows(conninfo: str, table: str) -> dict[int, tuple]:
    with psycopg.connect(conninfo) as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute(f"SELECT id, status, amount FROM {table}")}


def target_rows(target_kind: str, target, conninfo: str, name: str) -> dict[int, tuple]:
    if target_kind == "iceberg":
        rows = target.catalog.load_table(name).scan(selected_fields=("id", "status", "amount")).to_arrow().to_pylist()
        return {r["id"]: (r["status"], r["amount"]) for r in rows}
    return source_rows(conninfo, name)


@pytest.fixture
def iceberg_catalog(tmp_path) -> ConnectionFields:
    catalog = {"type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/warehouse"}
    return ConnectionFields("iceberg", extra={"catalog": catalog})


def endpoints(kind: str, table: str, iceberg_catalog: ConnectionFields):
    name = f"mesh.{table.split('.')[1]}" if kind == "iceberg" else f"{table}_copy"
    fields = iceberg_catalog if kind == "iceberg" else conn_fields("postgres_mesh")
    return make_source(conn_fields("postgres_mesh")), make_target(fields, name), name


@pytest.mark.parametrize("kind", ["iceberg", "postgres"])
def test_what_incremental_cannot_see_a_sync_repairs(kind, table, iceberg_catalog, tmp_path, postgres_conninfo):
    source, target, name = endpoints(kind, table, iceberg_catalog)
    checkpoints = CheckpointStore(tmp_path / "cp.sqlite")
    incremental = BackfillRequest(table=table, mode="incremental", cursor_column="updated_at", range_size=700)
    first = engine.run(source, target, incremental, checkpoints)
    assert first.rows == ROWS and first.verified and first.cursor_max is not None
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"UPDATE {table} SET status = 'paid', updated_at = now() WHERE id % 10 = 0")  # moves the cursor
        conn.execute(f"UPDATE {table} SET status = 'silent' WHERE id % 10 = 1")  # leaves updated_at alone
        conn.execute(f"UPDATE {table} SET status = 'past', updated_at = now() - interval '30 days' WHERE id % 10 = 2")
        conn.execute(f"DELETE FROM {table} WHERE id % 10 = 3")
        conn.execute(f"INSERT INTO {table} (id, status, amount) SELECT g, 'late', 1 FROM generate_series({ROWS + 1}, "
                     f"{ROWS + 50}) g")
    second = engine.run(source, target, incremental, checkpoints)
    assert "NOT deletes" in second.sees
    held, wanted = target_rows(kind, target, postgres_conninfo, name), source_rows(postgres_conninfo, table)
    assert all(held[i][0] == "paid" for i in wanted if i % 10 == 0 and i <= ROWS)  # what it can see, it copies
    assert all(held[i] == wanted[i] for i in range(ROWS + 1, ROWS + 51))
    assert held != wanted  # ...and what it cannot see is still missing: the sync's job
    sync = engine.run(source, target, BackfillRequest(table=table, mode="sync", range_size=700), checkpoints)
    assert sync.verified and sync.ranges_differing >= 1
    assert (sync.updated, sync.deleted) == (2 * (ROWS // 10), ROWS // 10)
    assert target_rows(kind, target, postgres_conninfo, name) == source_rows(postgres_conninfo, table)
    again = engine.run(source, target, BackfillRequest(table=table, mode="sync", range_size=700), checkpoints)
    assert again.ranges_differing == 0 and again.inserted == again.updated == again.deleted == 0


def test_verify_only_reports_drift_row_by_row_and_writes_nothing(table, iceberg_catalog, tmp_path, postgres_conninfo):
    source, target, name = endpoints("iceberg", table, iceberg_catalog)
    request = BackfillRequest(table=table, range_size=1000)
    engine.run(source, target, request, CheckpointStore(tmp_path / "cp.sqlite"))
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {table} WHERE id IN (5, 6)")
        conn.execute(f"UPDATE {table} SET status = 'silent' WHERE id = 1500")
    snapshot = target.catalog.load_table(name).current_snapshot().snapshot_id
    with pytest.raises(VerificationError, match=r"2 range\(s\) differ") as failure:
        engine.verify(source, target, request)
    assert "0 rows missing from the target, 0 differ, 2 extra" in str(failure.value)
    assert "0 rows missing from the target, 1 differ, 0 extra" in str(failure.value)
    assert target.catalog.load_table(name).current_snapshot().snapshot_id == snapshot  # nothing written


def test_the_mark_race_loses_nothing(table, iceberg_catalog, tmp_path, postgres_conninfo):
    """Transaction 1 updates a row and stays open; transaction 2 updates another and commits; a run
    copies; transaction 1 commits; the next run must still copy transaction 1's row."""
    source, target, name = endpoints("iceberg", table, iceberg_catalog)
    checkpoints = CheckpointStore(tmp_path / "cp.sqlite")
    request = BackfillRequest(table=table, mode="incremental", cursor_column="updated_at", range_size=1000)
    engine.run(source, target, request, checkpoints)
    slow = psycopg.connect(postgres_conninfo)
    try:
        slow.execute(f"UPDATE {table} SET status = 'slow', updated_at = now() WHERE id = 7")  # t1, left open
        time.sleep(0.2)
        with psycopg.connect(postgres_conninfo, autocommit=True) as fast:
            fast.execute(f"UPDATE {table} SET status = 'fast', updated_at = now() WHERE id = 8")  # t2 > t1, committed
        run = engine.run(source, target, request, checkpoints)
        assert run.cursor_max is not None
        slow.commit()  # t1 commits only now, after the run took its mark
    finally:
        slow.close()
    engine.run(source, target, request, checkpoints)
    held = target_rows("iceberg", target, postgres_conninfo, name)
    assert held[8][0] == "fast" and held[7][0] == "slow"
    assert held == source_rows(postgres_conninfo, table)


def test_writes_during_a_multi_range_run_are_never_lost(table, iceberg_catalog, tmp_path, postgres_conninfo):
    source, target, name = endpoints("iceberg", table, iceberg_catalog)
    checkpoints = CheckpointStore(tmp_path / "cp.sqlite")
    request = BackfillRequest(table=table, mode="incremental", cursor_column="updated_at", range_size=300,
                              parallelism=2)
    engine.run(source, target, request, checkpoints)
    stop = threading.Event()
    written = [0]

    def write() -> None:
        with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
            n = 0
            while not stop.is_set():
                n += 1
                conn.execute(f"UPDATE {table} SET status = %s, updated_at = now() WHERE id = %s",
                             (f"w{n}", 1 + (n * 37) % ROWS))
                conn.execute(f"INSERT INTO {table} (id, status, amount) VALUES (%s, 'ins', 2)", (ROWS + n,))
                written[0] = n
                time.sleep(0.01)  # about 100 updates and 100 inserts a second

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(3):  # runs of 10+ ranges each, while the writer keeps going
            engine.run(source, target, request, checkpoints)
    finally:
        stop.set()
        writer.join()
    assert written[0] > 50  # the writer did write during the runs
    engine.run(source, target, request, checkpoints)  # after the last write
    assert target_rows("iceberg", target, postgres_conninfo, name) == source_rows(postgres_conninfo, table)


def test_a_full_copy_hands_its_mark_to_incremental_runs(table, iceberg_catalog, tmp_path, postgres_conninfo):
    source, target, name = endpoints("iceberg", table, iceberg_catalog)
    checkpoints = CheckpointStore(tmp_path / "cp.sqlite")
    full = engine.run(source, target, BackfillRequest(table=table, range_size=1000), checkpoints)
    assert full.cursor_max is not None
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"UPDATE {table} SET status = 'after', updated_at = now() WHERE id <= 10")
    incremental = engine.run(source, target, BackfillRequest(table=table, mode="incremental",
                                                             cursor_column="updated_at", range_size=50), checkpoints)
    assert incremental.rows == 10 and incremental.cursor_after == full.cursor_max  # not the whole table again
    assert target_rows("iceberg", target, postgres_conninfo, name) == source_rows(postgres_conninfo, table)
    # A second full run is a new run: it copies everything again (it does not reuse the first one's ranges).
    again = engine.run(source, target, BackfillRequest(table=table, range_size=1000), checkpoints)
    assert again.ranges_skipped == 0 and again.rows == ROWS and again.verified


def test_changing_the_range_size_keeps_the_mark(table, iceberg_catalog, tmp_path, postgres_conninfo):
    source, target, _name = endpoints("iceberg", table, iceberg_catalog)
    checkpoints = CheckpointStore(tmp_path / "cp.sqlite")
    request = BackfillRequest(table=table, mode="incremental", cursor_column="updated_at", range_size=1000)
    first = engine.run(source, target, request, checkpoints)
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"UPDATE {table} SET status = 'x', updated_at = now() WHERE id = 42")
    second = engine.run(source, target, request.model_copy(update={"range_size": 10}), checkpoints)
    assert second.cursor_after == first.cursor_max and second.rows == 1


def test_a_failed_run_resumes_and_its_mark_advances(table, iceberg_catalog, tmp_path, postgres_conninfo):
    source, target, _name = endpoints("postgres", table, iceberg_catalog)
    checkpoints = CheckpointStore(tmp_path / "cp.sqlite")
    request = BackfillRequest(table=table, mode="incremental", cursor_column="updated_at", range_size=500)
    engine.run(source, target, request, checkpoints)
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"UPDATE {table} SET status = 'changed', updated_at = now() WHERE id % 2 = 0")
        # One range fails to write: a trigger on the copy refuses row 2000.
        conn.execute(f"CREATE FUNCTION {table.split('.')[1]}_refuse() RETURNS trigger LANGUAGE plpgsql AS "
                     "$$ BEGIN IF NEW.id = 2000 THEN RAISE EXCEPTION 'no_id_2000'; END IF; RETURN NEW; END $$")
        conn.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON {table}_copy FOR EACH ROW "
                     f"EXECUTE FUNCTION {table.split('.')[1]}_refuse()")
    with pytest.raises(Exception, match="no_id_2000"):
        engine.run(source, target, request.model_copy(update={"parallelism": 1}), checkpoints)
    open_run = checkpoints.open_run(engine.job_id(source.name, target.name, request))
    assert open_run is not None and open_run.attempts == 1
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"DROP TRIGGER refuse ON {table}_copy")  # the repair
        conn.execute(f"DROP FUNCTION {table.split('.')[1]}_refuse()")
        conn.execute(f"UPDATE {table} SET status = 'later', updated_at = now() WHERE id = 3")  # a change meanwhile
    resumed = engine.run(source, target, request, checkpoints)
    assert resumed.ranges_skipped >= 1 and resumed.verified
    assert checkpoints.open_run(engine.job_id(source.name, target.name, request)) is None
    later = engine.run(source, target, request, checkpoints)  # the mark moved: only what changed since
    assert later.cursor_after == resumed.cursor_max
    assert target_rows("postgres", target, postgres_conninfo, f"{table}_copy") == source_rows(postgres_conninfo, table)


def test_parallel_upserts_into_iceberg_do_not_conflict(table, iceberg_catalog, tmp_path, postgres_conninfo):
    source, target, name = endpoints("iceberg", table, iceberg_catalog)
    checkpoints = CheckpointStore(tmp_path / "cp.sqlite")
    request = BackfillRequest(table=table, mode="incremental", cursor_column="updated_at", range_size=250,
                              parallelism=4)
    engine.run(source, target, request, checkpoints)
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"UPDATE {table} SET status = 'again', updated_at = now()")
    summary = engine.run(source, target, request, checkpoints)  # 12 ranges upserted by 4 threads
    assert summary.rows == ROWS and summary.verified
    assert all(v[0] == "again" for v in target_rows("iceberg", target, postgres_conninfo, name).values())
    assert Decimal("0.25") in {v[1] for v in target_rows("iceberg", target, postgres_conninfo, name).values()}


@pytest.mark.parametrize("kind", ["iceberg", "postgres"])
def test_a_sync_after_a_verified_run_reads_only_what_changed_and_deep_catches_target_drift(
        kind, table, iceberg_catalog, tmp_path, postgres_conninfo):
    source, target, name = endpoints(kind, table, iceberg_catalog)
    checkpoints = CheckpointStore(tmp_path / "cp.sqlite")
    engine.run(source, target, BackfillRequest(table=table, range_size=1000), checkpoints)  # sets the baseline
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"UPDATE {table} SET status = 'silent' WHERE id % 100 = 1")  # 30, cursor untouched
        conn.execute(f"UPDATE {table} SET status = 'past', updated_at = now() - interval '9 days' WHERE id % 100 = 2")
        conn.execute(f"DELETE FROM {table} WHERE id % 100 = 3")  # 30
        conn.execute(f"INSERT INTO {table} (id, status, amount) SELECT g, 'late', 1 FROM generate_series({ROWS + 1}, "
                     f"{ROWS + 20}) g")
    sync = BackfillRequest(table=table, mode="sync", range_size=1000)
    fast = engine.run(source, target, sync, checkpoints)
    assert fast.compared.startswith("the rows changed since")
    assert (fast.inserted, fast.updated, fast.deleted) == (20, 60, 30)
    assert target_rows(kind, target, postgres_conninfo, name) == source_rows(postgres_conninfo, table)
    # Someone writes into the target behind the migration's back: only a deep sync compares both sides.
    if kind == "postgres":
        with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
            conn.execute(f"UPDATE {name} SET status = 'tampered' WHERE id = 10")
        assert engine.run(source, target, sync, checkpoints).updated == 0  # nothing changed at the source
        deep = engine.run(source, target, sync.model_copy(update={"deep": True}), checkpoints)
        assert deep.compared.startswith("every range") and deep.updated == 1
        assert target_rows(kind, target, postgres_conninfo, name) == source_rows(postgres_conninfo, table)


def test_syncs_under_concurrent_writes_converge(table, iceberg_catalog, tmp_path, postgres_conninfo):
    source, target, name = endpoints("postgres", table, iceberg_catalog)
    checkpoints = CheckpointStore(tmp_path / "cp.sqlite")
    sync = BackfillRequest(table=table, mode="sync", range_size=500, parallelism=2)
    engine.run(source, target, sync, checkpoints)
    stop = threading.Event()

    def write() -> None:
        with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
            n = 0
            while not stop.is_set():
                n += 1
                conn.execute(f"UPDATE {table} SET status = %s WHERE id = %s", (f"w{n}", 1 + (n * 37) % ROWS))
                conn.execute(f"DELETE FROM {table} WHERE id = %s", (1 + (n * 53) % ROWS,))
                time.sleep(0.005)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for deep in (False, True, False):
            engine.run(source, target, sync.model_copy(update={"deep": deep}), checkpoints)
    finally:
        stop.set()
        writer.join()
    engine.run(source, target, sync, checkpoints)
    assert target_rows("postgres", target, postgres_conninfo, name) == source_rows(postgres_conninfo, table)
