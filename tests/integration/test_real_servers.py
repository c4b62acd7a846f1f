"""
Sanity tests of the test bed itself: real clients log in to the real servers directly.

These prove that the servers the fixtures hand out are usable (accounts, database, TLS,
certificates, packet size) before any test of obproxy_tx relies on them.  They use no obproxy_tx
code.  Clients: PyMySQL (in process), mysql-connector-python pure Python and C extension
(subprocesses, see L{tests.testbed.clients}), and the C{mariadb} command-line client.
"""

from __future__ import annotations

import ssl
from typing import Any, Dict

import pymysql  # type: ignore[import-untyped, unused-ignore]
import pytest

from tests import testbed
from tests.testbed import Server, TLSCerts
from tests.testbed.clients import ClientError, connector_query, mariadb_cli

pytestmark = pytest.mark.integration

CONNECTOR_IMPLEMENTATIONS = [
    pytest.param(True, id="pure"),
    pytest.param(False, id="cext"),
]


def _pymysql(
    server: Server,
    role: str = "native",
    ca: str | None = None,
    database: str | None = None,
    password: str | None = None,
) -> Any:
    """
    Connect with PyMySQL: with C{ca}, TLS with certificate and host-name checks; otherwise TLS is
    refused (PyMySQL would otherwise use TLS whenever the server offers it).
    """
    account = server.account(role)
    kwargs: Dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "user": account.user,
        "password": account.password if password is None else password,
        "database": database,
        "connect_timeout": 10,
        "read_timeout": 30,
    }
    if ca:
        context = ssl.create_default_context(cafile=ca)
        kwargs["ssl"] = context
    else:
        kwargs["ssl_disabled"] = True
    return pymysql.connect(**kwargs)


def _one(conn: Any, sql: str) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
    assert row is not None
    return row[0]


def _cipher(conn: Any) -> str | None:
    sock = conn._sock
    if isinstance(sock, ssl.SSLSocket):
        cipher = sock.cipher()
        return cipher[0] if cipher else None
    return None


# -- the fixtures themselves -------------------------------------------------------------------


def test_mariadb_fixture_describes_a_running_mariadb(mariadb: Server) -> None:
    """The mariadb fixture names a running MariaDB 10.11 whose state file matches it."""
    assert mariadb.version.startswith("10.11."), mariadb.version
    assert "MariaDB" in mariadb.version
    assert mariadb.host == "127.0.0.1"
    assert testbed.status("mariadb") == mariadb
    assert mariadb.tls is not None


def test_seekdb_fixtures_describe_running_seekdbs(seekdb: Server, seekdb_tls: Server) -> None:
    """The seekdb fixtures name two running seekdb servers on different ports, one with TLS."""
    for server in (seekdb, seekdb_tls):
        assert "OceanBase seekdb" in server.version, server.version
        assert server.handshake_version == "5.7.25"
        assert testbed.status(server.kind) == server
    assert seekdb.port != seekdb_tls.port
    assert seekdb.tls is None
    assert seekdb_tls.tls is not None


def test_tls_certs_fixture_gives_v3_certificates_for_loopback(tls_certs: TLSCerts) -> None:
    """The server certificate is X.509 v3, signed by the CA, valid for 127.0.0.1 and localhost."""
    from cryptography import x509

    with open(tls_certs.cert, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    with open(tls_certs.ca, "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    assert cert.version == x509.Version.v3
    assert cert.issuer == ca.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]


# -- PyMySQL -----------------------------------------------------------------------------------


def test_pymysql_logs_in_to_mariadb_with_native_password(mariadb: Server) -> None:
    """PyMySQL logs in to MariaDB with mysql_native_password over plain TCP."""
    conn = _pymysql(mariadb, database=mariadb.database)
    try:
        assert _one(conn, "SELECT CURRENT_USER()") == "native_user@%"
        assert _one(conn, "SELECT DATABASE()") == "test"
        assert _cipher(conn) is None
        assert _one(conn, "SELECT @@max_allowed_packet") >= 64 << 20
    finally:
        conn.close()


def test_pymysql_logs_in_to_mariadb_over_verified_tls(mariadb: Server, tls_certs: TLSCerts) -> None:
    """PyMySQL logs in to MariaDB as the TLS-only user, verifying the certificate and host name."""
    conn = _pymysql(mariadb, role="tls", ca=tls_certs.ca)
    try:
        assert _one(conn, "SELECT CURRENT_USER()") == "tls_user@%"
        assert _cipher(conn)
        with conn.cursor() as cur:
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            (_, cipher) = cur.fetchone()
        assert cipher == _cipher(conn)
    finally:
        conn.close()


def test_mariadb_refuses_tls_user_without_tls(mariadb: Server) -> None:
    """MariaDB refuses the REQUIRE SSL account on a plain connection with 1045."""
    with pytest.raises(pymysql.err.OperationalError) as info:
        _pymysql(mariadb, role="tls")
    assert info.value.args[0] == 1045


def test_mariadb_refuses_wrong_password(mariadb: Server) -> None:
    """MariaDB refuses a wrong password with 1045."""
    with pytest.raises(pymysql.err.OperationalError) as info:
        _pymysql(mariadb, password="wrong")
    assert info.value.args[0] == 1045


def test_pymysql_logs_in_to_mariadb_without_password(mariadb: Server) -> None:
    """The password-less MariaDB account logs in with an empty password."""
    conn = _pymysql(mariadb, role="nopw", database=mariadb.database)
    try:
        assert _one(conn, "SELECT CURRENT_USER()") == "nopw_user@%"
    finally:
        conn.close()


def test_pymysql_logs_in_to_seekdb(seekdb: Server) -> None:
    """PyMySQL logs in to seekdb as alice and as password-less root, over plain TCP."""
    conn = _pymysql(seekdb, database=seekdb.database)
    try:
        assert _one(conn, "SELECT CURRENT_USER()") == "alice@%"
        assert _one(conn, "SELECT DATABASE()") == "test"
        assert _one(conn, "SELECT @@max_allowed_packet") >= 64 << 20
    finally:
        conn.close()
    root = _pymysql(seekdb, role="admin")
    try:
        assert _one(root, "SELECT CURRENT_USER()") == "root@%"
    finally:
        root.close()


def test_seekdb_refuses_wrong_password(seekdb: Server) -> None:
    """seekdb refuses a wrong password with 1045."""
    with pytest.raises(pymysql.err.OperationalError) as info:
        _pymysql(seekdb, password="wrong")
    assert info.value.args[0] == 1045


def test_pymysql_logs_in_to_seekdb_over_verified_tls(
    seekdb_tls: Server, tls_certs: TLSCerts
) -> None:
    """PyMySQL logs in to the TLS seekdb, verifying the certificate and host name."""
    conn = _pymysql(seekdb_tls, ca=tls_certs.ca, database=seekdb_tls.database)
    try:
        assert _one(conn, "SELECT CURRENT_USER()") == "alice@%"
        assert _cipher(conn)
    finally:
        conn.close()


# -- mysql-connector-python --------------------------------------------------------------------


@pytest.mark.parametrize("use_pure", CONNECTOR_IMPLEMENTATIONS)
def test_connector_logs_in_to_mariadb(mariadb: Server, use_pure: bool) -> None:
    """mysql-connector-python (pure and C) logs in to MariaDB over plain TCP."""
    result = connector_query(
        mariadb.host,
        mariadb.port,
        mariadb.user,
        mariadb.password,
        ["SELECT CURRENT_USER(), 1 + 1, NULL"],
        use_pure=use_pure,
        database=mariadb.database,
        ssl_disabled=True,
    )
    assert result.rows == [["native_user@%", 2, None]]
    assert result.cipher is None
    expected = "MySQLConnection" if use_pure else "CMySQLConnection"
    assert result.connection_class == expected


@pytest.mark.parametrize("use_pure", CONNECTOR_IMPLEMENTATIONS)
def test_connector_logs_in_to_mariadb_over_verified_tls(
    mariadb: Server, tls_certs: TLSCerts, use_pure: bool
) -> None:
    """mysql-connector-python (pure and C) logs in as the TLS-only user, verifying the server."""
    tls = mariadb.account("tls")
    result = connector_query(
        "localhost",  # verified against the certificate's DNS name
        mariadb.port,
        tls.user,
        tls.password,
        ["SELECT CURRENT_USER()"],
        use_pure=use_pure,
        ssl_ca=tls_certs.ca,
    )
    assert result.rows == [["tls_user@%"]]
    assert result.cipher


def test_connector_pure_logs_in_to_seekdb(seekdb: Server) -> None:
    """Pure-Python mysql-connector-python logs in to seekdb."""
    result = connector_query(
        seekdb.host,
        seekdb.port,
        seekdb.user,
        seekdb.password,
        ["SELECT CURRENT_USER(), 1 + 1"],
        use_pure=True,
        database=seekdb.database,
    )
    assert result.rows == [["alice@%", 2]]


def test_connector_pure_logs_in_to_seekdb_over_verified_tls(
    seekdb_tls: Server, tls_certs: TLSCerts
) -> None:
    """Pure-Python mysql-connector-python logs in to the TLS seekdb, verifying the server."""
    result = connector_query(
        seekdb_tls.host,
        seekdb_tls.port,
        seekdb_tls.user,
        seekdb_tls.password,
        ["SELECT CURRENT_USER()"],
        use_pure=True,
        ssl_ca=tls_certs.ca,
    )
    assert result.rows == [["alice@%"]]
    assert result.cipher


def test_connector_cext_logs_in_to_seekdb(seekdb: Server) -> None:
    """The mysql-connector-python C extension (8.4, libmysqlclient) logs in to seekdb."""
    result = connector_query(
        seekdb.host,
        seekdb.port,
        seekdb.user,
        seekdb.password,
        ["SELECT CURRENT_USER(), 1 + 1"],
        use_pure=False,
        database=seekdb.database,
    )
    assert result.rows == [["alice@%", 2]]
    assert result.connection_class == "CMySQLConnection"


# -- the mariadb command-line client -----------------------------------------------------------


def test_cli_logs_in_to_mariadb(mariadb: Server) -> None:
    """The mariadb CLI logs in to MariaDB over plain TCP."""
    rows = mariadb_cli(
        mariadb.host,
        mariadb.port,
        mariadb.user,
        mariadb.password,
        "SELECT CURRENT_USER(); SHOW SESSION STATUS LIKE 'Ssl_cipher'",
        tls=False,
    )
    assert rows == [["native_user@%"], ["Ssl_cipher", ""]]


def test_cli_logs_in_to_mariadb_over_verified_tls(mariadb: Server, tls_certs: TLSCerts) -> None:
    """The mariadb CLI logs in as the TLS-only user, verifying the server certificate."""
    tls = mariadb.account("tls")
    rows = mariadb_cli(
        mariadb.host,
        mariadb.port,
        tls.user,
        tls.password,
        "SELECT CURRENT_USER(); SHOW SESSION STATUS LIKE 'Ssl_cipher'",
        tls=True,
        ssl_ca=tls_certs.ca,
    )
    assert rows[0] == ["tls_user@%"]
    assert rows[1][0] == "Ssl_cipher" and rows[1][1]


def test_cli_reports_access_denied(mariadb: Server) -> None:
    """The mariadb CLI exits non-zero with error 1045 for a wrong password."""
    with pytest.raises(ClientError) as info:
        mariadb_cli(mariadb.host, mariadb.port, mariadb.user, "wrong", "SELECT 1", tls=False)
    assert info.value.error_code == 1045


def test_cli_logs_in_to_seekdb(seekdb: Server) -> None:
    """The mariadb CLI logs in to seekdb over plain TCP and selects the test database."""
    rows = mariadb_cli(
        seekdb.host,
        seekdb.port,
        seekdb.user,
        seekdb.password,
        "SELECT CURRENT_USER(), DATABASE()",
        database=seekdb.database,
        tls=False,
    )
    assert rows == [["alice@%", "test"]]


def test_cli_logs_in_to_seekdb_over_verified_tls(seekdb_tls: Server, tls_certs: TLSCerts) -> None:
    """The mariadb CLI logs in to the TLS seekdb, verifying the server certificate."""
    rows = mariadb_cli(
        seekdb_tls.host,
        seekdb_tls.port,
        seekdb_tls.user,
        seekdb_tls.password,
        "SELECT CURRENT_USER()",
        tls=True,
        ssl_ca=tls_certs.ca,
    )
    assert rows == [["alice@%"]]
