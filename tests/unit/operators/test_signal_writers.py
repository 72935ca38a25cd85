"""How the incremental-snapshot operators reach a MariaDB/MySQL signal table: PyMySQL's arguments from an
Airflow ``mysql`` connection, TLS included. The writes themselves run against the real MariaDB in
tests/integration/test_incremental_snapshot_mariadb.py (whose server offers no TLS: hence these checks)."""

from __future__ import annotations

import datetime
import json
import ssl

import pytest
from airflow.sdk import Connection
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from airflow_mesh.connectors.snapshots import MARIADB, POSTGRES, signal_target
from airflow_mesh.hooks.debezium import CONNECTORS
from airflow_mesh.hooks.mysql import mysql_connect_kwargs


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, str]:
    """A self-signed certificate (its own CA) and its key, as PEM files."""
    folder = tmp_path_factory.mktemp("pki")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "db.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    paths = {"cert": folder / "cert.pem", "key": folder / "key.pem"}
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return {role: str(path) for role, path in paths.items()}


def connection(extra: dict | str | None = None, **fields) -> Connection:
    fields = {"host": "db.test", "port": 3307, "login": "cdc", "password": "s3cret", "schema": "shop", **fields}
    return Connection(conn_id="maria", conn_type="mysql",
                      extra=extra if isinstance(extra, str) or extra is None else json.dumps(extra), **fields)


def tls(extra: dict | str) -> tuple[ssl.SSLContext | None, bool, dict]:
    kwargs, required = mysql_connect_kwargs("maria", connection(extra))
    return kwargs.get("ssl"), required, kwargs


def test_the_connection_fields_and_autocommit():
    kwargs, required = mysql_connect_kwargs("maria", connection())
    assert kwargs == {"host": "db.test", "port": 3307, "user": "cdc", "password": "s3cret", "database": "shop",
                      "autocommit": True}
    assert not required  # nothing asked: PyMySQL's default


def test_defaults_and_plain_extras():
    kwargs, _ = mysql_connect_kwargs("maria", connection(
        {"charset": "utf8mb4", "unix_socket": "/run/mysqld.sock", "connect_timeout": "5", "cursor": "sscursor"},
        port=None, schema=None, password=None))
    assert (kwargs["port"], kwargs["database"], kwargs["password"]) == (3306, None, "")
    assert (kwargs["charset"], kwargs["unix_socket"], kwargs["connect_timeout"]) == ("utf8mb4", "/run/mysqld.sock", 5)
    assert "cursor" not in kwargs  # the hook's cursor class means nothing to one INSERT


@pytest.mark.parametrize("extra", [{"ssl_mode": "DISABLED"}, {"ssl_disabled": "true"}, {"ssl_disabled": True}])
def test_tls_disabled(extra):
    context, required, kwargs = tls(extra)
    assert (context, required, kwargs["ssl_disabled"]) == (None, False, True)


def test_ssl_mode_required_encrypts_without_verifying():
    context, required, _ = tls({"ssl_mode": "REQUIRED"})
    assert required and (context.verify_mode, context.check_hostname) == (ssl.CERT_NONE, False)


def test_ssl_mode_preferred_is_the_drivers_default():
    context, required, kwargs = tls({"ssl_mode": "preferred"})
    assert (context, required, "ssl_disabled" in kwargs) == (None, False, False)


@pytest.mark.parametrize(("extra", "check_hostname"), [
    ({"ssl": {"ca": "{cert}"}}, True),                                          # mysqlclient's dict
    ('{"ssl": "{\\"ca\\": \\"{cert}\\"}"}', True),                               # the dict as a string (URI form)
    ({"ssl_ca": "{cert}"}, True),                                                # mysql-connector-python's spelling
    ({"ssl_ca": "{cert}", "ssl_verify_identity": "false"}, False),
    ({"ssl": {"ca": "{cert}", "check_hostname": False}}, False),
    ({"ssl_mode": "verify_ca", "ssl": {"ca": "{cert}"}}, False),
    ({"ssl_mode": "VERIFY_IDENTITY", "ssl_ca": "{cert}"}, True),
])
def test_a_ca_means_the_server_certificate_is_verified(pki, extra, check_hostname):
    text = (extra if isinstance(extra, str) else json.dumps(extra)).replace("{cert}", pki["cert"])
    context, required, _ = tls(text)
    assert required and context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname is check_hostname
    assert context.get_ca_certs()[0]["subject"] == ((("commonName", "db.test"),),)


def test_a_ca_can_be_used_without_verification(pki):
    context, required, _ = tls({"ssl_ca": pki["cert"], "ssl_verify_cert": False, "ssl_verify_identity": False})
    assert required and (context.verify_mode, context.check_hostname) == (ssl.CERT_NONE, False)


def test_a_client_certificate_is_loaded(pki):
    context, required, _ = tls({"ssl": {"ca": pki["cert"], "cert": pki["cert"], "key": pki["key"]}})
    assert required and context.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(("extra", "message"), [
    ({"ssl_mode": "ON"}, r"extra ssl_mode is 'ON'; one of DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY"),
    ({"ssl": {"ca": "/x", "sslmode": "require"}}, r"unknown key\(s\) sslmode in extra ssl"),
    ({"ssl": "not json"}, r"extra ssl is not a JSON object"),
    ({"ssl": ["ca"]}, r"extra ssl must be an object"),
    ({"ssl_mode": "REQUIRED", "ssl_key": "/k.pem"}, r"a client key \(ssl key\) needs its certificate"),
    ({"ssl_verify_cert": "maybe"}, r"extra ssl_verify_cert must be true or false"),
])
def test_malformed_tls_extras_are_refused(extra, message):
    with pytest.raises(ValueError, match=rf"connection maria: {message}"):
        tls(extra)


def test_a_mariadb_or_mysql_connector_gets_pymysql_and_a_mysql_connection():
    for connector_class in ("io.debezium.connector.mariadb.MariaDbConnector",
                            "io.debezium.connector.mysql.MySqlConnector"):
        target = signal_target("c", {"connector.class": connector_class, "signal.data.collection": "shop.signal"})
        assert target.dialect is MARIADB and CONNECTORS[target.dialect].__name__ == "_connect_mysql"
        assert target.dialect.conn_type == "mysql"
    assert CONNECTORS[POSTGRES].__name__ == "_connect_postgres" and POSTGRES.conn_type == "postgres"


def test_a_percent_sign_in_the_signal_table_survives_the_drivers_formatting():
    statement = MARIADB.insert_signal("shop.sig%nals")
    assert statement == "INSERT INTO `shop`.`sig%%nals` (id, type, data) VALUES (%s, %s, %s)"
    # PyMySQL (like psycopg) fills the placeholders with Python's % operator over the escaped values.
    assert statement % ("'a'", "'b'", "'c'") == "INSERT INTO `shop`.`sig%nals` (id, type, data) VALUES ('a', 'b', 'c')"
