"""Connector specs and connector health: pure logic, no Airflow imports, no network."""
