"""MySqlHook: a MariaDB or MySQL database through a ``mysql`` connection, with PyMySQL.

airflow-mesh declares the ``mysql`` connection type (its form in Airflow's UI, and this hook) only
while Airflow's MySQL provider is not installed: that provider needs mysqlclient, which PyPI has only
as source to compile against MySQL's client headers, and it caps PyMySQL below the version
airflow-mesh uses. With that provider installed, its MySqlHook serves the type and the same
connections work with airflow-mesh unchanged (the extras are read in both providers' spellings).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from airflow_mesh.hooks.forms import MYSQL


class MySqlHook(BaseHook):
    """Connect to the MariaDB/MySQL database of a ``mysql`` connection.

    Host, port (default 3306), login, password and schema (the database) locate it; the extra
    carries TLS settings (``ssl_mode``, ``ssl_ca``, or the ``ssl`` object of Airflow's MySQL
    provider), ``charset``, ``unix_socket`` and ``connect_timeout``.

    Args:
        mysql_conn_id: The Airflow connection to use.
    """

    conn_name_attr = "mysql_conn_id"
    default_conn_name = "mysql_default"
    conn_type = "mysql"
    hook_name = MYSQL.hook_name

    def __init__(self, mysql_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.mysql_conn_id = mysql_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form's labels and placeholders (the same as in provider info)."""
        return MYSQL.ui_field_behaviour()

    def connect_kwargs(self) -> dict[str, Any]:
        """PyMySQL's ``connect()`` arguments for the connection, autocommit on.

        Raises:
            ValueError: a TLS setting in the extra is malformed (the message names the connection and key).
        """
        from airflow_mesh.operators.debezium import mysql_connect_kwargs  # the one reader of mysql connections

        kwargs, _ = mysql_connect_kwargs(self.mysql_conn_id, self.get_connection(self.mysql_conn_id))
        return kwargs

    def get_conn(self) -> Any:
        """A new PyMySQL connection (the caller closes it).

        Raises:
            pymysql.Error: the server refused the connection or could not be reached.
        """
        import pymysql

        return pymysql.connect(**self.connect_kwargs())

    def test_connection(self) -> tuple[bool, str]:
        """Connect and report the server's version (the UI's Test button)."""
        import pymysql

        try:
            db = self.get_conn()
        except (pymysql.Error, ValueError, OSError) as exc:
            return False, str(exc)
        try:
            return True, f"Connected to {db.get_server_info()}"
        finally:
            db.close()
