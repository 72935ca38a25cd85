"""Debezium's default watermarking, insert_insert, leaves two rows per chunk in the signal table
(``<chunk>-open`` and ``<chunk>-close``; insert_delete deletes the open row instead): after the
snapshot the sensor removes them, on both databases. Each test deploys a connector of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration import test_incremental_snapshot as pg
from tests.integration import test_incremental_snapshot_mariadb as maria

INSERT_INSERT = {"incremental.snapshot.watermarking.strategy": "insert_insert"}


@pytest.fixture
def pg_cdc(postgres_conninfo, bootstrap_servers, tmp_path) -> Iterator[pg.SnapshotConnector]:
    with pg.snapshot_connector(postgres_conninfo, bootstrap_servers, tmp_path, {"rows": 1000},
                               config=INSERT_INSERT) as connector:
        yield connector


@pytest.fixture
def maria_cdc(mariadb, bootstrap_servers, tmp_path) -> Iterator[maria.SnapshotConnector]:
    with maria.snapshot_connector(mariadb, bootstrap_servers, tmp_path, {"rows": 1000},
                                  config=INSERT_INSERT) as connector:
        yield connector


mariadb = maria.mariadb


def test_postgres_insert_insert_watermarks_are_removed(pg_cdc, postgres_conninfo):
    request = pg.request_snapshot(pg_cdc, "rows")
    sensor = pg.snapshot_sensor(pg_cdc, request, deferrable=False)
    assert sensor.execute({})["tables"][pg_cdc.qualified("rows")] == {"status": "SUCCEEDED", "rows_scanned": 1000}
    assert pg.leftovers(postgres_conninfo, pg_cdc, request["signal_id"]) == []


def test_mariadb_insert_insert_watermarks_are_removed(maria_cdc, mariadb):
    request = maria.request_snapshot(maria_cdc, "rows")
    sensor = maria.snapshot_sensor(maria_cdc, request, deferrable=True)
    result = pg.wait_in_triggerer(sensor, maria_cdc)
    assert result["tables"][maria_cdc.qualified("rows")] == {"status": "SUCCEEDED", "rows_scanned": 1000}
    assert maria.leftovers(mariadb, maria_cdc, request["signal_id"]) == []
