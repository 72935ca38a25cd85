"""MySqlHook: a MariaDB or MySQL database through a ``mysql`` connection, with PyMySQL.

airflow-mesh declares the ``mysql`` connection type (its form in Airflow's UI, and this hook) only
while Airflow's MySQL provider is not installed: that provider needs mysqlclient, which PyPI has only
as source to compile against MySQL's client headers, and it caps PyMySQL below the version
airflow-mesh uses. With that provider installed, its MySqlHook serves the type and the same
connections work with airflow-mesh unchanged (the extras are read in both providers' spellings).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseHook

from airflow_mesh.hooks.forms import MYSQL

# MySQL's --ssl-mode values (mysqlclient's ``ssl_mode`` extra), weakest first.
MYSQL_SSL_MODES = ("DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
# Keys of the ``ssl`` extra (mysqlclient's dict, as MySqlHook passes it on; ``password`` decrypts the key).
MYSQL_SSL_DICT_KEYS = ("ca", "capath", "cert", "key", "cipher", "password", "check_hostname")
# Other extras passed on to PyMySQL as they are.
MYSQL_PLAIN_EXTRAS = ("charset", "unix_socket")


def _flag(conn_id: str, key: str, value: Any) -> bool:
    """A boolean extra, which arrives as a string when the connection is a URI."""
    if isinstance(value, bool | int):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"connection {conn_id}: extra {key} must be true or false, got {value!r}")


def _mysql_tls(conn_id: str, extra: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The TLS mode asked for by a ``mysql`` connection's extra, and PyMySQL's arguments for it.

    Both of MySqlHook's clients' spellings are read: mysqlclient's ``ssl`` dict (``ca``, ``capath``,
    ``cert``, ``key``, ``cipher``; also ``password`` of the key and ``check_hostname``) and its
    ``ssl_mode``; mysql-connector-python's ``ssl_ca``, ``ssl_cert``, ``ssl_key``, ``ssl_verify_cert``,
    ``ssl_verify_identity``, ``ssl_disabled`` (and PyMySQL's ``ssl_key_password``).

    ``ssl_mode`` (DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY) decides when given.
    Otherwise ``ssl_disabled`` turns TLS off, and any other TLS setting makes it required: with a CA
    (``ca``/``capath``/``ssl_ca``) the server's certificate and host name are verified
    (VERIFY_IDENTITY); ``ssl_verify_identity: false`` (or the dict's ``check_hostname: false``)
    verifies the certificate only, and ``ssl_verify_cert: false`` as well encrypts without verifying.
    Without a CA, verification uses the system's trusted CAs. With none of these settings the
    driver's default applies.

    Returns:
        ``(mode, kwargs)``: one of ``MYSQL_SSL_MODES`` or None (nothing asked: the driver's default),
        and the ``ssl`` (an ``ssl.SSLContext``) or ``ssl_disabled`` argument.
    """
    options = extra.get("ssl") or {}
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except ValueError as exc:
            raise ValueError(f"connection {conn_id}: extra ssl is not a JSON object: {exc}") from None
    if not isinstance(options, dict):
        raise ValueError(f"connection {conn_id}: extra ssl must be an object, got {type(options).__name__}")
    unknown = sorted(set(options) - set(MYSQL_SSL_DICT_KEYS))
    if unknown:
        raise ValueError(f"connection {conn_id}: unknown key(s) {', '.join(unknown)} in extra ssl; "
                         f"known: {', '.join(MYSQL_SSL_DICT_KEYS)}")
    files = {name: options.get(name) or extra.get(f"ssl_{name}")
             for name in ("ca", "capath", "cert", "key", "cipher")}
    files["password"] = options.get("password") or extra.get("ssl_key_password")
    has_ca = bool(files["ca"] or files["capath"])

    if extra.get("ssl_mode"):
        mode = str(extra["ssl_mode"]).strip().upper().replace("-", "_")
        if mode not in MYSQL_SSL_MODES:
            raise ValueError(f"connection {conn_id}: extra ssl_mode is {extra['ssl_mode']!r}; "
                             f"one of {', '.join(MYSQL_SSL_MODES)}")
    elif _flag(conn_id, "ssl_disabled", extra.get("ssl_disabled", False)):
        mode = "DISABLED"
    elif options or any(files.values()) or "ssl_verify_cert" in extra or "ssl_verify_identity" in extra:
        identity = _flag(conn_id, "ssl_verify_identity",
                         extra.get("ssl_verify_identity", options.get("check_hostname", has_ca)))
        verify = identity or _flag(conn_id, "ssl_verify_cert", extra.get("ssl_verify_cert", has_ca))
        mode = "VERIFY_IDENTITY" if identity else "VERIFY_CA" if verify else "REQUIRED"
    else:
        return None, {}

    if mode == "DISABLED":
        return mode, {"ssl_disabled": True}
    if mode == "PREFERRED":
        return mode, {}  # PyMySQL's default (recent releases try TLS, unverified, and fall back to plaintext)
    if files["key"] and not files["cert"]:
        raise ValueError(f"connection {conn_id}: a client key (ssl key) needs its certificate (ssl cert)")
    context = ssl.create_default_context(cafile=files["ca"], capath=files["capath"])
    context.check_hostname = mode == "VERIFY_IDENTITY"
    context.verify_mode = ssl.CERT_NONE if mode == "REQUIRED" else ssl.CERT_REQUIRED
    if files["cert"]:
        context.load_cert_chain(files["cert"], keyfile=files["key"], password=files["password"])
    if files["cipher"]:
        context.set_ciphers(files["cipher"])
    return mode, {"ssl": context}


def mysql_connect_kwargs(conn_id: str, conn: Any) -> tuple[dict[str, Any], bool]:
    """PyMySQL's ``connect()`` arguments for an Airflow ``mysql`` connection, autocommit on.

    Host, port (default 3306), login, password and schema (the default database) come from the
    connection; from its extra, the TLS settings (see ``_mysql_tls``), ``charset``, ``unix_socket``
    and ``connect_timeout``.

    Returns:
        The arguments, and whether TLS is required (to be checked once connected).
    """
    extra = conn.extra_dejson
    kwargs: dict[str, Any] = {"host": conn.host or "localhost", "port": int(conn.port or 3306),
                              "user": conn.login, "password": conn.password or "", "database": conn.schema or None,
                              "autocommit": True}
    kwargs.update({key: extra[key] for key in MYSQL_PLAIN_EXTRAS if extra.get(key)})
    if extra.get("connect_timeout"):
        kwargs["connect_timeout"] = int(extra["connect_timeout"])
    mode, tls = _mysql_tls(conn_id, extra)
    kwargs.update(tls)
    return kwargs, mode in ("REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")


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
        kwargs, _ = mysql_connect_kwargs(self.mysql_conn_id, self.get_connection(self.mysql_conn_id))
        return kwargs

    def get_conn(self) -> Any:
        """A new PyMySQL connection (the caller closes it).

        Raises:
            pymysql.Error: the server refused the connection or could not be reached.
        """
        import pymysql

        return pymysql.connect(**self.connect_kwargs())

    def get_tls_checked_conn(self) -> Any:
        """A new PyMySQL connection (the caller closes it) that is encrypted whenever the extra asks for TLS.

        Older PyMySQL releases go on in plaintext when the server offers no TLS although TLS was
        asked for; this refuses that.

        Raises:
            pymysql.Error: the server refused the connection or could not be reached; also
                (``OperationalError`` 2026) when the connection asks for TLS and the session is not encrypted.
            ValueError: a TLS setting in the extra is malformed.
        """
        import pymysql

        kwargs, tls_required = mysql_connect_kwargs(self.mysql_conn_id, self.get_connection(self.mysql_conn_id))
        db = pymysql.connect(**kwargs)
        if tls_required:
            with db.cursor() as cursor:
                cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
                row = cursor.fetchone()
            if not row or not row[1]:
                db.close()
                raise pymysql.err.OperationalError(2026, f"connection {self.mysql_conn_id} asks for TLS, but the "
                                                         "session is not encrypted (the server offers no TLS)")
        return db

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
