"""
TLS end to end (issue 7, "Security in transit") against a real MariaDB with
the test bed's certificates (L{tests.testbed.certs}) and real clients:

  - clients to the proxy (C{enable_client_ssl}): PyMySQL, mysql-connector
    (C extension and pure Python) and the C{mariadb} CLI verify the proxy's
    certificate and host name; C{using_ssl} is 1 in SHOW PROXYSESSION;
  - the proxy to MariaDB (C{enable_server_ssl}): the backend session is
    encrypted (its own C{Ssl_version}), and C{tls_user}, whose account says
    C{REQUIRE SSL}, logs in there;
  - per user: C{require_ssl} refuses a plain-text login with MariaDB's own
    1045 text, the same as MariaDB answers directly;
  - verification: a wrong CA or a wrong expected name is a clear error;
  - reload: ALTER PROXYCONFIG of a path, and SIGHUP's reload of files
    rotated in place, give new sessions the new certificate while an open
    session keeps working on its own;
  - seekdb behind a TLS proxy, in plain text, keeps working.
"""

from __future__ import annotations

import hashlib
import shutil
import signal
import ssl
import subprocess
from pathlib import Path
from typing import Any, Iterator, List

import pymysql
import pytest
import pytest_twisted

from obproxy_tx.config import load_config
from obproxy_tx.reload import ConfigSource, reload_config
from obproxy_tx.session.manager import SessionManager
from tests.integration.test_drain_reload import Proxy as TwistdProxy
from tests.integration.test_drain_reload import wait_until
from tests.integration.test_twistd import stop
from tests.proxy_fixtures import (
    Proxy,
    in_thread,
    in_thread_then_stop,
    reactor,
    stop_proxy_later,
    verifier,
)
from tests.testbed.certs import TLSCerts, ensure_certs
from tests.testbed.clients import ClientError, connector_query, mariadb_cli

pytestmark = pytest.mark.integration


def _write_config(
    path: Path, backend: Any, certs: TLSCerts, extra: str = "", cluster_type: str = "mysql"
) -> Path:
    """A YAML config for one backend: its native user, and tls_user (require_ssl) on MariaDB."""
    native = backend.accounts["native"]
    users = [
        f"      - {{name: {native.user}, tenant: sys, verifier: '{verifier(native.password)}'}}"
    ]
    tls = backend.accounts.get("tls")
    if tls is not None:
        users.append(
            f"      - {{name: {tls.user}, tenant: sys, verifier: '{verifier(tls.password)}', "
            "require_ssl: true}"
        )
    user_lines = "\n".join(users)
    path.write_text(
        f"""
listen_port: 2883
enable_prometheus: false
enable_client_ssl: true
client_ssl_cert: {certs.cert}
client_ssl_key: {certs.key}
{extra}
clusters:
  - name: cl_tls
    type: {cluster_type}
    servers: ["{backend.host}:{backend.port}"]
    users:
{user_lines}
"""
    )
    return path


def _start(config_path: Path, backend: Any) -> Proxy:
    manager = SessionManager(load_config(str(config_path)), reactor)
    manager.startService()
    listener = reactor.listenTCP(0, manager.listener_factory(), interface="127.0.0.1")
    native = backend.accounts["native"]
    return Proxy(manager, listener.getHost().port, listener, backend, native.user, native.password)


def _connect(proxy: Proxy, ca: str | None, user: str | None = None, **kwargs: Any) -> Any:
    """PyMySQL through the proxy; with C{ca}: TLS, certificate and host name verified."""
    account = proxy.backend.accounts["native"] if user is None else proxy.backend.accounts[user]
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": proxy.port,
        "user": account.user,
        "password": account.password,
        "database": proxy.backend.database,
        "autocommit": True,
    }
    if ca is not None:
        options.update(ssl_ca=ca, ssl_verify_cert=True, ssl_verify_identity=True)
    else:
        # PyMySQL 2 uses TLS whenever the server offers it, unless told not to.
        options.update(ssl_disabled=True)
    options.update(kwargs)
    return pymysql.connect(**options)


def _one(connection: Any, sql: str) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()


def _peer_fingerprint(connection: Any) -> str:
    """SHA-256 of the certificate the other end of a PyMySQL TLS connection showed."""
    sock = connection._sock
    assert isinstance(sock, ssl.SSLSocket)
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def _file_fingerprint(path: str) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(Path(path).read_text())).hexdigest()


def _error_of(call: Any) -> tuple[int, str]:
    try:
        connection = call()
    except pymysql.err.MySQLError as error:
        return int(error.args[0]), str(error.args[1]) if len(error.args) > 1 else ""
    connection.close()
    raise AssertionError("expected an error, the call succeeded")


@pytest_twisted.inlineCallbacks
def test_tls_on_both_sides_with_real_clients(
    mariadb: Any, tls_certs: TLSCerts, tmp_path: Path
) -> Iterator[Any]:
    """
    Clients verify the proxy's certificate; the proxy's session to MariaDB is
    TLS too; tls_user (REQUIRE SSL at MariaDB, require_ssl at the proxy) logs
    in over TLS only, refused in plain text with MariaDB's own 1045.
    """
    path = _write_config(
        tmp_path / "tls.yaml",
        mariadb,
        tls_certs,
        f"enable_server_ssl: true\nserver_ssl_ca: {tls_certs.ca}",
    )
    proxy = _start(path, mariadb)
    ca = tls_certs.ca

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with _connect(proxy, ca) as conn:
            out["client_cert"] = _peer_fingerprint(conn)
            out["backend_ssl"] = _one(conn, "SHOW SESSION STATUS LIKE 'Ssl_version'")
            # A large answer streams through both TLS layers (backpressure included).
            with conn.cursor() as cursor:
                cursor.execute("SELECT seq, REPEAT('y', 200) FROM seq_1_to_50000")
                rows = cursor.fetchall()
            out["large"] = (len(rows), rows[-1][0], len(rows[-1][1]))
            out["blob"] = len(_one(conn, "SELECT REPEAT('z', 8000000)")[0])
            with conn.cursor(pymysql.cursors.DictCursor) as cursor:
                cursor.execute("SHOW PROXYSESSION")
                out["sessions"] = cursor.fetchall()
        with _connect(proxy, None) as plain, plain.cursor(pymysql.cursors.DictCursor) as cursor:
            cursor.execute("SHOW PROXYSESSION")
            out["plain_sessions"] = cursor.fetchall()
        with _connect(proxy, ca, user="tls") as conn:
            out["tls_user"] = _one(conn, "SELECT CURRENT_USER()")
        out["tls_user_plain"] = _error_of(lambda: _connect(proxy, None, user="tls"))
        tls = mariadb.accounts["tls"]
        out["tls_user_direct"] = _error_of(
            lambda: pymysql.connect(
                host=mariadb.host,
                port=mariadb.port,
                user=tls.user,
                password=tls.password,
                ssl_disabled=True,
            )
        )
        native = mariadb.accounts["native"]
        for use_pure in (False, True):
            out[f"connector_{use_pure}"] = connector_query(
                "127.0.0.1",
                proxy.port,
                native.user,
                native.password,
                ["SELECT 40 + 2"],
                use_pure=use_pure,
                ssl_ca=ca,
            )
        out["cli"] = mariadb_cli(
            "127.0.0.1",
            proxy.port,
            tls.user,
            tls.password,
            "SELECT CURRENT_USER()",
            tls=True,
            ssl_ca=ca,
        )
        try:
            mariadb_cli("127.0.0.1", proxy.port, tls.user, tls.password, "SELECT 1", tls=False)
        except ClientError as error:
            out["cli_plain"] = error.output.strip()
        return out

    out = yield in_thread_then_stop(proxy, run)
    assert out["client_cert"] == _file_fingerprint(tls_certs.cert)
    # The backend's own view of the proxy's session: encrypted.
    assert out["backend_ssl"][1].startswith("TLSv1.")
    assert out["large"] == (50000, 50000, 200)
    assert out["blob"] == 8000000
    assert [row["using_ssl"] for row in out["sessions"]] == [1]
    assert [row["using_ssl"] for row in out["plain_sessions"]] == [0]
    assert out["tls_user"] == ("tls_user@%",)
    # The same refusal as MariaDB's own, word for word.
    assert out["tls_user_plain"] == out["tls_user_direct"]
    assert out["tls_user_plain"] == (
        1045,
        "Access denied for user 'tls_user'@'127.0.0.1' (using password: YES)",
    )
    for use_pure in (False, True):
        result = out[f"connector_{use_pure}"]
        assert result.rows == [[42]]
        if not use_pure:
            assert result.connection_class == "CMySQLConnection"
            assert result.cipher
    assert out["cli"] == [["tls_user@%"]]
    assert out["cli_plain"] == (
        "ERROR 1045 (28000): Access denied for user 'tls_user'@'127.0.0.1' (using password: YES)"
    )


@pytest_twisted.inlineCallbacks
def test_server_verification_failures_are_clear(
    mariadb: Any, tls_certs: TLSCerts, tmp_path: Path
) -> Iterator[Any]:
    """
    A CA that did not sign MariaDB's certificate, or an expected name the
    certificate does not carry: the client is told which and why, never
    served in plain text; the right settings (reloaded with ALTER
    PROXYCONFIG) serve again.
    """
    other = ensure_certs(tmp_path / "other-ca")
    path = _write_config(
        tmp_path / "tls.yaml",
        mariadb,
        tls_certs,
        f"enable_server_ssl: true\nserver_ssl_ca: {other.ca}",
    )
    proxy = _start(path, mariadb)

    def alter(sql: str) -> None:
        with (
            pymysql.connect(
                host="127.0.0.1", port=proxy.port, user="root@proxysys", password=""
            ) as admin,
            admin.cursor() as cursor,
        ):
            cursor.execute(sql)

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["wrong_ca"] = _error_of(lambda: _connect(proxy, tls_certs.ca))
        alter(f"ALTER PROXYCONFIG SET server_ssl_ca = '{tls_certs.ca}'")
        alter("ALTER PROXYCONFIG SET server_ssl_identity = 'db.example.com'")
        out["wrong_name"] = _error_of(lambda: _connect(proxy, tls_certs.ca))
        alter("ALTER PROXYCONFIG SET server_ssl_identity = 'localhost'")
        with _connect(proxy, tls_certs.ca) as conn:
            out["right"] = _one(conn, "SHOW SESSION STATUS LIKE 'Ssl_version'")
        return out

    out = yield in_thread_then_stop(proxy, run)
    address = f"{mariadb.host}:{mariadb.port}"
    code, message = out["wrong_ca"]
    assert code == 1105, message
    assert f"the certificate of server {address} was not signed by a CA of server_ssl_ca" in (
        message
    )
    assert "certificate verify failed" in message
    code, message = out["wrong_name"]
    assert code == 1105, message
    assert f"the certificate of server {address} does not name 'db.example.com'" in message
    assert out["right"][1].startswith("TLSv1.")


@pytest_twisted.inlineCallbacks
def test_certificates_reload_without_restart(
    mariadb: Any, tls_certs: TLSCerts, tmp_path: Path
) -> Iterator[Any]:
    """
    ALTER PROXYCONFIG SET client_ssl_cert/key to new files: new clients get the
    new certificate; a client connected before keeps its session and goes on.
    Then the files are replaced in place (same paths) and a SIGHUP-style
    reload (L{reload_config}, what C{SIGHUP} runs) makes new clients see the
    newest one. A file that does not load changes nothing.
    """
    rotated = tmp_path / "rotated"
    second = ensure_certs(tmp_path / "second")
    live = tmp_path / "live"
    live.mkdir()
    live_cert, live_key = live / "cert.pem", live / "key.pem"
    shutil.copy(tls_certs.cert, live_cert)
    shutil.copy(tls_certs.key, live_key)
    path = _write_config(tmp_path / "tls.yaml", mariadb, attrs_evolve(tls_certs, live))
    proxy = _start(path, mariadb)

    def alter(sql: str) -> Any:
        with (
            pymysql.connect(
                host="127.0.0.1", port=proxy.port, user="root@proxysys", password=""
            ) as admin,
            admin.cursor() as cursor,
        ):
            cursor.execute(sql)
            return cursor.fetchall()

    def run_alter() -> dict[str, Any]:
        out: dict[str, Any] = {}
        old = _connect(proxy, tls_certs.ca)
        out["old_before"] = _peer_fingerprint(old)
        alter(f"ALTER PROXYCONFIG SET client_ssl_key = '{second.key}'")
        alter(f"ALTER PROXYCONFIG SET client_ssl_cert = '{second.cert}'")
        with _connect(proxy, second.ca) as new:
            out["new"] = _peer_fingerprint(new)
            out["new_query"] = _one(new, "SELECT 1")
        out["old_query"] = _one(old, "SELECT 2")
        out["bad_key"] = _error_of_any(
            lambda: alter(f"ALTER PROXYCONFIG SET client_ssl_key = '{second.ca}'")
        )
        with _connect(proxy, second.ca) as still:
            out["after_bad"] = _peer_fingerprint(still)
        alter(f"ALTER PROXYCONFIG SET client_ssl_cert = '{live_cert}'")
        alter(f"ALTER PROXYCONFIG SET client_ssl_key = '{live_key}'")
        old.close()
        return out

    def run_sighup() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with _connect(proxy, tls_certs.ca) as conn:
            out["before"] = _peer_fingerprint(conn)
        third = ensure_certs(rotated)
        # Rotated in place: same paths, new contents.
        shutil.copy(third.cert, live_cert)
        shutil.copy(third.key, live_key)
        out["third"] = third
        return out

    try:
        out = yield in_thread(run_alter)
        # The ALTERs above put the original paths back; the config file names them too.
        hup = yield in_thread(run_sighup)
        outcome = reload_config(proxy.manager, ConfigSource.of(str(path)))
        third = hup["third"]

        def after() -> str:
            with _connect(proxy, third.ca) as conn:
                return _peer_fingerprint(conn)

        hup["after"] = yield in_thread(after)
    finally:
        yield stop_proxy_later(proxy)
    assert out["old_before"] == _file_fingerprint(tls_certs.cert)
    assert out["new"] == _file_fingerprint(second.cert)
    assert out["new_query"] == (1,)
    # The session opened before the change goes on, on its own TLS session.
    assert out["old_query"] == (2,)
    code, message = out["bad_key"]
    assert code == 1105, message
    assert "client_ssl" in message
    assert out["after_bad"] == _file_fingerprint(second.cert)
    assert outcome.error is None
    assert hup["before"] == _file_fingerprint(tls_certs.cert)
    assert hup["after"] == _file_fingerprint(third.cert)


def attrs_evolve(certs: TLSCerts, directory: Path) -> TLSCerts:
    """C{certs} with the server certificate and key at C{directory}'s cert.pem/key.pem."""
    import attrs

    return attrs.evolve(certs, cert=str(directory / "cert.pem"), key=str(directory / "key.pem"))


def _error_of_any(call: Any) -> tuple[int, str]:
    try:
        call()
    except pymysql.err.MySQLError as error:
        return int(error.args[0]), str(error.args[1]) if len(error.args) > 1 else ""
    raise AssertionError("expected an error, the call succeeded")


@pytest_twisted.inlineCallbacks
def test_seekdb_in_plain_text_behind_a_tls_proxy(
    seekdb: Any, tls_certs: TLSCerts, tmp_path: Path
) -> Iterator[Any]:
    """
    Clients reach the proxy over TLS (or not), the proxy reaches seekdb in
    plain text (enable_server_ssl off): both are served.
    """
    path = _write_config(tmp_path / "tls.yaml", seekdb, tls_certs, cluster_type="oceanbase")
    proxy = _start(path, seekdb)

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with _connect(proxy, tls_certs.ca) as conn:
            out["tls"] = _one(conn, "SELECT 40 + 2")
            out["cert"] = _peer_fingerprint(conn)
        with _connect(proxy, None) as conn:
            out["plain"] = _one(conn, "SELECT 40 + 3")
        return out

    out = yield in_thread_then_stop(proxy, run)
    assert out["tls"] == (42,)
    assert out["plain"] == (43,)
    assert out["cert"] == _file_fingerprint(tls_certs.cert)


def test_sighup_rotates_certificates_in_every_worker(
    processes: List[subprocess.Popen[str]], mariadb: Any, tls_certs: TLSCerts, tmp_path: Path
) -> None:
    """
    C{twistd obproxy} with two workers and TLS on both sides: the files are
    replaced in place and the parent gets SIGHUP; every worker reloads them,
    so every new client (whichever worker accepts it) sees the new
    certificate, while a client connected before goes on.
    """
    live = tmp_path / "live"
    live.mkdir()
    live_cert, live_key = live / "cert.pem", live / "key.pem"
    shutil.copy(tls_certs.cert, live_cert)
    shutil.copy(tls_certs.key, live_key)
    extra = (
        f"enable_client_ssl: true\nclient_ssl_cert: {live_cert}\nclient_ssl_key: {live_key}\n"
        f"enable_server_ssl: true\nserver_ssl_ca: {tls_certs.ca}\nenable_prometheus: false"
    )
    proxy = TwistdProxy(processes, mariadb, tmp_path, extra=extra, workers=2)

    def fingerprints(ca: str, count: int) -> set[str]:
        seen = set()
        for _ in range(count):
            with proxy.connect(ssl_ca=ca, ssl_verify_cert=True, ssl_verify_identity=True) as conn:
                seen.add(_peer_fingerprint(conn))
                assert _one(conn, "SHOW SESSION STATUS LIKE 'Ssl_version'")[1].startswith("TLSv1.")
        return seen

    old = proxy.connect(ssl_ca=tls_certs.ca, ssl_verify_cert=True, ssl_verify_identity=True)
    try:
        assert fingerprints(tls_certs.ca, 6) == {_file_fingerprint(tls_certs.cert)}
        third = ensure_certs(tmp_path / "third")
        shutil.copy(third.cert, live_cert)
        shutil.copy(third.key, live_key)
        proxy.process.send_signal(signal.SIGHUP)

        def rotated() -> bool:
            try:
                return fingerprints(third.ca, 1) == {_file_fingerprint(third.cert)}
            except pymysql.err.MySQLError:
                return False  # a worker that has not reloaded yet fails the new CA's check

        wait_until(rotated, "a client verified with the new CA")
        # Both workers (six clients land on both) show the new certificate.
        assert fingerprints(third.ca, 6) == {_file_fingerprint(third.cert)}
        assert _one(old, "SELECT 7") == (7,)
        assert _peer_fingerprint(old) == _file_fingerprint(tls_certs.cert)
    finally:
        old.close()
    output = stop(proxy.process, code=-signal.SIGTERM)
    assert "SIGHUP: configuration reloaded" in output
    assert output.count("TLS files reloaded") == 2, output  # once in each worker


@pytest_twisted.inlineCallbacks
def test_learned_users_over_tls(mariadb: Any, tls_certs: TLSCerts, tmp_path: Path) -> Iterator[Any]:
    """
    A cluster that learns its users, whose metadata account is tls_user
    (REQUIRE SSL): the proxy's metadata login is TLS too, so users are
    learned; tls_user itself, learned with its REQUIRE SSL, is refused in
    plain text with MariaDB's 1045 and served over TLS; native_user is served
    either way.
    """
    tls = mariadb.accounts["tls"]
    path = tmp_path / "learn.yaml"
    path.write_text(
        f"""
listen_port: 2883
enable_prometheus: false
enable_client_ssl: true
client_ssl_cert: {tls_certs.cert}
client_ssl_key: {tls_certs.key}
enable_server_ssl: true
server_ssl_ca: {tls_certs.ca}
metadata_user: {tls.user}
metadata_password: {tls.password}
clusters:
  - name: cl_learn
    type: mysql
    servers: ["{mariadb.host}:{mariadb.port}"]
    learn_users: true
"""
    )
    proxy = _start(path, mariadb)

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with _connect(proxy, None) as conn:
            out["native_plain"] = _one(conn, "SELECT CURRENT_USER()")
        out["tls_plain"] = _error_of(lambda: _connect(proxy, None, user="tls"))
        with _connect(proxy, tls_certs.ca, user="tls") as conn:
            out["tls_tls"] = _one(conn, "SELECT CURRENT_USER()")
        return out

    out = yield in_thread_then_stop(proxy, run)
    assert out["native_plain"] == ("native_user@%",)
    assert out["tls_plain"] == (
        1045,
        "Access denied for user 'tls_user'@'127.0.0.1' (using password: YES)",
    )
    assert out["tls_tls"] == ("tls_user@%",)
