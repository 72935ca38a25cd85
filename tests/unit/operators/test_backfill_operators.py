"""The backfill operators' requests: what is not given takes BackfillRequest's defaults; plan_only is the
request's dry_run and no longer shadows BaseOperator.dry_run()."""

from __future__ import annotations

import pytest
from airflow.sdk import BaseOperator

from airflow_mesh.backfill import engine
from airflow_mesh.backfill.keys import KeyRange
from airflow_mesh.backfill.plan import BackfillRequest
from airflow_mesh.backfill.targets import IcebergTarget, PostgresTarget, StagingTarget
from airflow_mesh.operators.backfill import BackfillOperator, PlanBackfillOperator

WHERE = {"source_conn_id": "src", "table": "public.orders", "target_conn_id": "dst", "target_name": "mesh.orders"}


def test_settings_not_given_take_the_requests_defaults():
    request = BackfillOperator(task_id="t", **WHERE).request()
    assert request == BackfillRequest(table="public.orders")


@pytest.mark.parametrize("empty", [None, ""])
def test_empty_settings_as_a_form_renders_them_take_the_defaults(empty):
    operator = PlanBackfillOperator(task_id="t", mode=empty, range_size=empty, parallelism=empty, plan_only=empty,
                                    cursor_lag=empty, deep=empty, key=empty, where=empty, **WHERE)
    assert operator.request() == BackfillRequest(table="public.orders")


def test_settings_given_as_rendered_text_are_converted():
    operator = PlanBackfillOperator(task_id="t", mode="incremental", cursor_column="updated_at", range_size="1000",
                                    parallelism="3", plan_only="true", cursor_lag="1.5", deep="false", **WHERE)
    request = operator.request()
    assert (request.mode.value, request.range_size, request.parallelism, request.dry_run, request.cursor_lag,
            request.deep) == ("incremental", 1000, 3, True, 1.5, False)


@pytest.mark.parametrize("kwargs", [{"plan_only": True}, {"dry_run": True}])
def test_plan_only_is_the_requests_dry_run_and_dry_run_is_still_accepted(kwargs):
    operator = PlanBackfillOperator(task_id="t", **kwargs, **WHERE)
    assert operator.plan_only is True and operator.request().dry_run is True
    assert type(operator).dry_run is BaseOperator.dry_run  # Airflow's method, not shadowed
    assert "plan_only" in operator.template_fields and "dry_run" not in operator.template_fields


def test_plan_only_and_dry_run_together_are_refused():
    with pytest.raises(ValueError, match="plan_only and dry_run are the same setting"):
        PlanBackfillOperator(task_id="t", plan_only=True, dry_run=False, **WHERE)


def test_only_iceberg_stages():
    iceberg = IcebergTarget.__new__(IcebergTarget)
    iceberg.name, iceberg.staging_tag = "iceberg://t", "untagged"
    assert isinstance(iceberg, StagingTarget)
    assert not isinstance(PostgresTarget.__new__(PostgresTarget), StagingTarget)
    full, sync = BackfillRequest(table="t"), BackfillRequest(table="t", mode="sync")
    assert engine.stages(iceberg, full) and not engine.stages(iceberg, sync)


def test_a_moved_range_goes_through_xcom_and_back():
    moved = engine.MovedRange(KeyRange.from_dict({"lo": 1, "hi": 5001}), 5000, 2**63 + 5, "s3://x.parquet")
    data = moved.to_dict()
    assert data["checksum"] == str(2**63 + 5) and data["staged_file"] == "s3://x.parquet"
    assert engine.MovedRange.from_dict(data) == moved
