"""Sensors; each deferrable one has its trigger in airflow_mesh.triggers."""
