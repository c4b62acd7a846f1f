"""
L{obproxy_tx.auth.backend_users} against the real MariaDB and seekdb of the
test bed: an account created on the backend is found at once with the
verifier the backend stores, accounts the proxy cannot check are reported,
and a wrong metadata password is a clear error.
"""

from __future__ import annotations

import os
from typing import Any

import attrs
import pytest
import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import TCP4ClientEndpoint

from obproxy_tx.auth.backend_users import (
    BackendUserDirectory,
    BackendUsersError,
    UnsupportedUserError,
)
from obproxy_tx.config import ClusterConfig, ClusterType, ProxyConfig, parse_server
from obproxy_tx.protocol.client import connect
from obproxy_tx.wire.scramble import check_native_password, native_password_response
from obproxy_tx.wire.scramble import native_password_verifier as verifier_of

pytestmark = pytest.mark.integration

reactor: Any = _reactor


def _config(server: Any, user: str, password: str, cluster_type: ClusterType) -> Any:
    cluster = ClusterConfig(
        name=f"{server.kind}_cluster",
        type=cluster_type,
        servers=(parse_server(f"{server.host}:{server.port}"),),
        learn_users=True,
    )
    config = attrs.evolve(
        ProxyConfig(), clusters=(cluster,), metadata_user=user, metadata_password=password
    )
    return config, cluster


async def _admin(server: Any) -> Any:
    account = server.accounts["admin"]
    endpoint = TCP4ClientEndpoint(reactor, server.host, server.port)
    return await connect(reactor, endpoint, account.user, account.password, timeout=30)


def _unique(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}"


@pytest_twisted.ensureDeferred
async def test_mariadb_new_user_is_found_at_once(mariadb: Any) -> None:
    """
    On MariaDB (mysql.global_priv) a user created after the first load is
    found by the next lookup with the verifier that checks its password.
    """
    admin_account = mariadb.accounts["admin"]
    config, cluster = _config(
        mariadb, admin_account.user, admin_account.password, ClusterType.MYSQL
    )
    directory = BackendUserDirectory(config, cluster, reactor)
    known = await directory.lookup(mariadb.accounts["native"].user, "127.0.0.1")
    assert known is not None and known.supported
    name = _unique("h8_new")
    admin = await _admin(mariadb)
    try:
        await admin.query(f"DROP USER IF EXISTS '{name}'@'%'")
        await admin.query(
            f"CREATE USER '{name}'@'%' IDENTIFIED VIA mysql_native_password "
            "USING PASSWORD('fresh_pw')"
        )
        found = await directory.lookup(name, "127.0.0.1")
        assert found is not None
        assert found.verifier == verifier_of(b"fresh_pw")
        scramble = b"0123456789abcdefghij"
        answer = native_password_response(b"fresh_pw", scramble)
        assert check_native_password(scramble, answer, found.verifier) is not None
        assert await directory.lookup(_unique("h8_nobody"), "127.0.0.1") is None
    finally:
        await admin.query(f"DROP USER IF EXISTS '{name}'@'%'")
        await admin.quit()


@pytest_twisted.ensureDeferred
async def test_mariadb_unix_socket_user_is_unsupported(mariadb: Any) -> None:
    """
    An account that authenticates through unix_socket is reported as
    unsupported, with the plugin named.
    """
    admin_account = mariadb.accounts["admin"]
    config, cluster = _config(
        mariadb, admin_account.user, admin_account.password, ClusterType.MYSQL
    )
    directory = BackendUserDirectory(config, cluster, reactor)
    name = _unique("h8_sock")
    admin = await _admin(mariadb)
    try:
        await admin.query(f"DROP USER IF EXISTS '{name}'@'%'")
        await admin.query(f"CREATE USER '{name}'@'%' IDENTIFIED VIA unix_socket")
        with pytest.raises(UnsupportedUserError, match="unix_socket"):
            await directory.lookup(name, "127.0.0.1")
    finally:
        await admin.query(f"DROP USER IF EXISTS '{name}'@'%'")
        await admin.quit()


@pytest_twisted.ensureDeferred
async def test_mariadb_wrong_metadata_password(mariadb: Any) -> None:
    """
    A wrong metadata password fails lookups with an error naming the
    cluster, the account and the server's 1045.
    """
    config, cluster = _config(mariadb, mariadb.accounts["admin"].user, "wrong", ClusterType.MYSQL)
    directory = BackendUserDirectory(config, cluster, reactor)
    with pytest.raises(BackendUsersError) as error:
        await directory.lookup("anyone", "127.0.0.1")
    message = str(error.value)
    assert "mariadb_cluster" in message
    assert repr(mariadb.accounts["admin"].user) in message
    assert "1045" in message


@pytest_twisted.ensureDeferred
async def test_seekdb_new_user_is_found_at_once(seekdb: Any) -> None:
    """
    On seekdb (mysql.user.password) a user created after the first load is
    found with its verifier.
    """
    admin_account = seekdb.accounts["admin"]
    config, cluster = _config(
        seekdb, admin_account.user, admin_account.password, ClusterType.OCEANBASE
    )
    directory = BackendUserDirectory(config, cluster, reactor)
    known = await directory.lookup(seekdb.accounts["native"].user, "127.0.0.1")
    assert known is not None
    assert known.verifier == verifier_of(seekdb.accounts["native"].password.encode())
    name = _unique("h8_ob")
    admin = await _admin(seekdb)
    try:
        await admin.query(f"DROP USER IF EXISTS {name}")
        await admin.query(f"CREATE USER {name} IDENTIFIED BY 'ob_pw'")
        found = await directory.lookup(name, "127.0.0.1")
        assert found is not None
        assert found.verifier == verifier_of(b"ob_pw")
    finally:
        await admin.query(f"DROP USER IF EXISTS {name}")
        await admin.quit()


@pytest_twisted.ensureDeferred
async def test_seekdb_wrong_metadata_password(seekdb: Any) -> None:
    """
    A wrong metadata password on seekdb is a clear error too.
    """
    config, cluster = _config(
        seekdb, seekdb.accounts["native"].user, "wrong", ClusterType.OCEANBASE
    )
    directory = BackendUserDirectory(config, cluster, reactor)
    with pytest.raises(BackendUsersError, match="1045"):
        await directory.lookup("anyone", "127.0.0.1")
