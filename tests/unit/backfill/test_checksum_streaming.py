"""The checksum's fast paths: streamed batches, string views and polars' decimal text equal the plain form."""

from __future__ import annotations

import datetime as dt
import decimal
import random

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from airflow_mesh.backfill.checksum import batches_checksum, table_checksum


def rows(n: int, seed: int = 7) -> pa.Table:
    rnd = random.Random(seed)

    def text() -> str | None:
        return None if rnd.random() < 0.2 else "".join(rnd.choice("aé€😀 z09") for _ in range(rnd.randint(0, 30)))

    return pa.table({
        "id": pa.array(range(n), pa.int64()),
        "note": pa.array([text() for _ in range(n)], pa.string()),
        "amount": pa.array([None if rnd.random() < 0.1 else decimal.Decimal(rnd.randint(-10**9, 10**9)) / 100
                            for _ in range(n)], pa.decimal128(12, 2)),
        "at": pa.array([dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
                        + dt.timedelta(microseconds=rnd.randint(0, 10**12)) for _ in range(n)],
                       pa.timestamp("us", tz="UTC")),
    })


def test_batches_checksum_equals_the_whole_tables():
    table = rows(2_000)
    assert batches_checksum(table.to_batches(max_chunksize=97)) == table_checksum(table)
    assert batches_checksum([]) == (0, 0)


def test_how_text_is_stored_does_not_change_the_checksum():
    table = rows(500)
    for storage in (pa.large_string(), pa.string_view()):
        assert table_checksum(table.set_column(1, "note", pc.cast(table["note"], storage))) == table_checksum(table)


@pytest.mark.parametrize("scale", range(7))
def test_polars_writes_decimals_as_arrow_does(scale):
    """The checksum lets polars format decimals of scale 0 to 6 (3x faster): the text must be Arrow's."""
    rnd = random.Random(scale)
    with decimal.localcontext() as exact:
        exact.prec = 60
        unit = decimal.Decimal(1).scaleb(-scale)
        values = [decimal.Decimal(0), unit, -unit, (decimal.Decimal(10) ** 38 - 1).scaleb(-scale), None]
        values += [decimal.Decimal(rnd.randint(-10**37, 10**37)).scaleb(-scale) for _ in range(2_000)]
        values += [decimal.Decimal(rnd.randint(-999, 999)).scaleb(-scale) for _ in range(2_000)]
    array = pa.array(values, pa.decimal128(38, scale))
    assert pl.from_arrow(array).cast(pl.String).to_list() == pc.cast(array, pa.string()).to_pylist()
