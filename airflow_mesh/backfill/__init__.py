"""Backfills: copy a table from one datastore into another, in key ranges, resumable and verified.

Nothing here imports Airflow, so the same engine runs from the CLI (``python -m airflow_mesh.backfill``)
and from the operators in ``airflow_mesh.operators.backfill``.
"""
