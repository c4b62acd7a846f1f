"""
ODP-style logins (L{obproxy_tx.session.odp_login}) over real loopback TCP
against the fake observer of L{tests.fake_observer}: the client's answer to
the proxy's scramble, replayed with C{__proxy_scramble}, logs in; a wrong
password or a wrong cluster name does not.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest
import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint

from obproxy_tx.protocol.interfaces import ServerError
from obproxy_tx.session.odp_login import (
    connect_with_response,
    default_capability_flag,
    rewrite_handshake_response,
)
from obproxy_tx.wire import packets as p
from obproxy_tx.wire import scramble
from obproxy_tx.wire.constants import MYSQL_NATIVE_PASSWORD, Capability
from obproxy_tx.wire.errors import ErrorCode
from tests.fake_observer import OB_CLUSTER_NO_MATCH, FakeObserver

reactor: Any = _reactor


async def _listen(observer: FakeObserver) -> Any:
    endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    return await endpoint.listen(observer.factory)


def _builder(password: bytes, cluster_name: str) -> Any:
    proxy_scramble = scramble.generate_scramble()
    client = p.HandshakeResponse41(
        capabilities=Capability.CLIENT_PROTOCOL_41
        | Capability.CLIENT_SECURE_CONNECTION
        | Capability.CLIENT_PLUGIN_AUTH
        | Capability.CLIENT_CONNECT_ATTRS
        | Capability.CLIENT_DEPRECATE_EOF,
        max_packet_size=1 << 24,
        character_set=45,
        username=f"alice@sys#{cluster_name}",
        auth_response=scramble.native_password_response(password, proxy_scramble),
        auth_plugin_name=MYSQL_NATIVE_PASSWORD,
        connect_attrs={"_client_name": "pytest"},
    )

    def build(greeting: p.HandshakeV10) -> p.HandshakeResponse41:
        return rewrite_handshake_response(
            client,
            proxy_scramble=proxy_scramble,
            server_greeting=greeting,
            proxy_session_id=1,
            client_session_id=2,
            client_ip="127.0.0.1",
            client_port=40000,
            client_connect_time_us=0,
            proxy_version="test",
            cluster_name=cluster_name,
            capability_flag=int(default_capability_flag()),
            username="alice@sys",
        )

    return build


@pytest_twisted.async_yield_fixture
async def observer() -> AsyncIterator[tuple[FakeObserver, int]]:
    """A fake observer listening on a loopback port."""
    fake = FakeObserver(reactor)
    port = await _listen(fake)
    try:
        yield fake, port.getHost().port
    finally:
        await port.stopListening()


async def _login(port: int, password: bytes, cluster_name: str = "obcluster") -> Any:
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    return await connect_with_response(
        reactor, endpoint, _builder(password, cluster_name), timeout=10
    )


@pytest_twisted.ensureDeferred
async def test_right_password_logs_in(observer: tuple[FakeObserver, int]) -> None:
    """
    The replayed answer logs in and the session answers queries.
    """
    fake, port = observer
    connection = await _login(port, b"alice_pw")
    try:
        result = await connection.query("SELECT 1")
        assert result.rows == [(1,)]
        result = await connection.query("SELECT CONNECTION_ID()")
        assert result.rows == [(connection.connection_id,)]
        assert fake.logins[-1].is_proxy
        assert fake.logins[-1].attrs["__mysql_client_type"] == "__ob_proxy"
    finally:
        await connection.quit()


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_refused(observer: tuple[FakeObserver, int]) -> None:
    """
    A wrong password gives 1045.
    """
    _fake, port = observer
    with pytest.raises(ServerError) as error:
        await _login(port, b"not the password")
    assert error.value.code == ErrorCode.ER_ACCESS_DENIED_ERROR


@pytest_twisted.ensureDeferred
async def test_wrong_cluster_name_is_refused(observer: tuple[FakeObserver, int]) -> None:
    """
    A cluster name that is not the observer's is refused before the password check.
    """
    _fake, port = observer
    with pytest.raises(ServerError) as error:
        await _login(port, b"alice_pw", cluster_name="elsewhere")
    assert error.value.code == OB_CLUSTER_NO_MATCH
