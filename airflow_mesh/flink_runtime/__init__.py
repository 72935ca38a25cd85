"""Programs that run *inside* a Flink cluster's Python, never in Airflow.

The provider talks to Flink over REST only and never imports PyFlink; the files in this package are
shipped to (or read by) the JobManager and executed by Flink's ``PythonDriver``.
"""
