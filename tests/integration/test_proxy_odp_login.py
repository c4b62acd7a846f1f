"""
The proxy's ODP login mode (C{login_mode: odp_proxy_scramble}) end to end
over loopback TCP: a real client (PyMySQL) logs in to the proxy, which
replays the client's own answer to its scramble to two fake observers
(L{tests.fake_observer}) with ODP's connect attributes, as ODP does.

The fake observers check C{__proxy_scramble} (the client's answer must match
I{proxy scramble} = C{__proxy_scramble} XOR the observer's scramble) and the
cluster name as upstream's C{obmp_connect.cpp} does, so a login they accept
proves the replay; what they recorded is compared with ODP's attribute table
(odp-reference.md section 7).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import attrs
import pymysql
import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task, threads

from obproxy_tx import __version__
from obproxy_tx.config import parse_config
from obproxy_tx.session.ids import decode_proxy_sessid
from obproxy_tx.session.manager import SessionManager
from obproxy_tx.session.odp_login import default_capability_flag
from obproxy_tx.wire import packets as p
from obproxy_tx.wire.constants import Capability
from tests.fake_observer import OB_CLUSTER_NO_MATCH, FakeObserver, FakeObserverProtocol

#: The global variables version the first observer reports at login.
GLOBAL_VARS_VERSION = 1717

#: ODP's attributes, in ODP's order (odp-reference.md section 7).
ODP_ATTRIBUTE_ORDER = [
    "__mysql_client_type",
    "__connection_id",
    "__proxy_connection_id",
    "__cluster_name",
    "__cluster_id",
    "__global_vars_version",
    "__proxy_capability_flag",
    "__proxy_scramble",
    "__client_ip",
    "__proxy_version",
    "__client_addr_port",
    "__client_session_id",
    "__client_connect_time",
]


class _VersionReportingProtocol(FakeObserverProtocol):
    """
    A fake observer protocol whose login OK reports
    C{ob_proxy_global_variables_version} in its session-track data, as an
    observer does for a proxy.
    """

    def _finish_login(self, database: str | None) -> None:
        connection = self.connection
        # The connection's class has __slots__: its send cannot be replaced on
        # the instance, so the login sees a stand-in that adds the version.
        self.connection = _WithVersion(connection)  # type: ignore[assignment]
        try:
            super()._finish_login(database)
        finally:
            self.connection = connection


class _WithVersion:
    """
    A server connection whose OK packets report C{ob_proxy_global_variables_version}.
    """

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def send(self, packet: Any) -> bytes:
        if isinstance(packet, p.OKPacket):
            packet = p.OKPacket.with_session_state(
                [
                    p.SessionStateItem.for_system_variable(
                        b"ob_proxy_global_variables_version",
                        str(GLOBAL_VARS_VERSION).encode(),
                    )
                ],
                status_flags=packet.status_flags,
            )
        return bytes(self._connection.send(packet))


@attrs.define
class Setup:
    """Two fake observers and a proxy in front of them."""

    observers: list[FakeObserver]
    ports: list[int]
    manager: SessionManager
    proxy_port: int
    listeners: list[Any]


def _start(cluster_name: str = "obcluster") -> Setup:
    observers = [FakeObserver(reactor, first_connection_id=0x80010001 + i * 100) for i in (0, 1)]
    observers[0].factory.capabilities |= Capability.CLIENT_SESSION_TRACK
    factory = observers[0].factory
    factory.buildProtocol = lambda addr: _VersionReportingProtocol(factory)  # type: ignore[method-assign]
    listeners = [
        reactor.listenTCP(0, observer.factory, interface="127.0.0.1") for observer in observers
    ]
    ports = [listener.getHost().port for listener in listeners]
    config = parse_config(
        f"""
clusters:
  - name: {cluster_name}
    type: oceanbase
    cluster_id: 1
    login_mode: odp_proxy_scramble
    servers: ["127.0.0.1:{ports[0]}", "127.0.0.1:{ports[1]}"]
"""
    )
    manager = SessionManager(config, reactor)
    manager.startService()
    proxy = reactor.listenTCP(0, manager.listener_factory(), interface="127.0.0.1")
    listeners.append(proxy)
    return Setup(observers, ports, manager, proxy.getHost().port, listeners)


def _stop(setup: Setup) -> Any:
    setup.manager.stopService()
    return defer.gatherResults([listener.stopListening() for listener in setup.listeners])


@pytest.fixture
def setup() -> Iterator[Setup]:
    """Two fake observers of cluster C{obcluster} and an ODP-mode proxy."""
    started = _start()
    yield started
    pytest_twisted.blockon(_stop(started))


def in_thread(function: Callable[..., Any], *args: Any) -> Any:
    """Run blocking client code in a thread; the reactor keeps serving."""
    return threads.deferToThread(function, *args)


@defer.inlineCallbacks
def _no_session_left(manager: SessionManager, timeout: float = 5.0) -> Iterator[Any]:
    """
    Fail unless C{manager} holds no client session within C{timeout}: the proxy
    closes a refused client right after writing the ERR, so the client may read
    it a reactor turn before the proxy's side of the connection is gone.
    """
    deadline = time.monotonic() + timeout
    while manager.client_sessions and time.monotonic() < deadline:
        yield task.deferLater(reactor, 0.01, lambda: None)
    assert not manager.client_sessions


def _connect(port: int, password: str = "alice_pw", user: str = "alice") -> Any:
    return pymysql.connect(
        host="127.0.0.1", port=port, user=user, password=password, autocommit=True
    )


@pytest_twisted.inlineCallbacks
def test_one_client_login_serves_two_observers(setup: Setup) -> Iterator[Any]:
    """
    The right password logs in through the first observer; a forced route
    opens a second server session whose replayed login the second observer
    accepts too, with ODP's attributes on both.
    """

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {"started_us": int(time.time() * 1_000_000)}
        with _connect(setup.proxy_port) as connection, connection.cursor() as cursor:
            out["client_port"] = connection._sock.getsockname()[1]
            out["thread_id"] = connection.thread_id()
            cursor.execute("SELECT 1")
            out["first"] = cursor.fetchall()
            cursor.execute("SELECT USER()")
            out["user"] = cursor.fetchall()
            cursor.execute(f"SET @obproxy_route_addr = '127.0.0.1:{setup.ports[1]}'")
            cursor.execute("SELECT 1")
            out["second"] = cursor.fetchall()
            session = next(iter(setup.manager.client_sessions.values()))
            out["count"] = session.server_session_count
            out["proxy_sessid"] = session.proxy_sessid
        out["ended_us"] = int(time.time() * 1_000_000)
        return out

    out = yield in_thread(run)
    assert out["first"] == ((1,),) and out["second"] == ((1,),)
    assert out["user"] == (("alice@127.0.0.1",),)
    assert out["count"] == 2
    logins = [observer.logins[-1] for observer in setup.observers]
    assert [len(observer.logins) for observer in setup.observers] == [1, 1]
    for index, login in enumerate(logins):
        assert login.refused is None
        assert login.is_proxy
        assert login.username == "alice@sys"
        # The observer checked the client's answer against P = XOR(attr, own scramble).
        assert login.checked_scramble != login.own_scramble
        assert list(login.attrs) == ODP_ATTRIBUTE_ORDER
        attrs_seen = login.attrs
        assert attrs_seen["__mysql_client_type"] == "__ob_proxy"
        assert attrs_seen["__connection_id"] == str(login.connection_id)
        assert attrs_seen["__proxy_connection_id"] == str(out["proxy_sessid"])
        assert attrs_seen["__cluster_name"] == "obcluster"
        assert attrs_seen["__cluster_id"] == "1"
        assert attrs_seen["__proxy_capability_flag"] == str(int(default_capability_flag()))
        assert len(attrs_seen["__proxy_scramble"].encode("utf-8", "surrogateescape")) == 20
        assert attrs_seen["__client_ip"] == "127.0.0.1"
        assert attrs_seen["__proxy_version"] == __version__
        assert attrs_seen["__client_addr_port"] == str(out["client_port"])
        assert attrs_seen["__client_session_id"] == str(out["thread_id"])
        assert out["started_us"] - 1_000_000 <= int(attrs_seen["__client_connect_time"])
        assert int(attrs_seen["__client_connect_time"]) <= out["ended_us"]
        assert login.ob_capability_flag == int(default_capability_flag())
        assert index == 0 or login.own_scramble != logins[0].own_scramble
    # 0 on the client session's first login, the saved (reported) version later.
    assert logins[0].attrs["__global_vars_version"] == "0"
    assert logins[1].attrs["__global_vars_version"] == str(GLOBAL_VARS_VERSION)
    sessid = decode_proxy_sessid(out["proxy_sessid"])
    assert (str(sessid.ip), sessid.port) == ("127.0.0.1", setup.proxy_port)


@pytest_twisted.inlineCallbacks
def test_wrong_password_gets_1045(setup: Setup) -> Iterator[Any]:
    """
    A wrong password is refused by the observer (the proxy holds no
    verifier) and the client gets 1045; the proxy keeps no session.
    """

    def run() -> Any:
        with pytest.raises(pymysql.err.OperationalError) as caught:
            _connect(setup.proxy_port, password="wrong")
        return caught.value.args

    args = yield in_thread(run)
    assert args[0] == 1045
    assert "alice" in args[1]
    assert setup.observers[0].logins[-1].is_proxy
    yield _no_session_left(setup.manager)


@pytest_twisted.inlineCallbacks
def test_cluster_name_mismatch_is_a_clean_error() -> Iterator[Any]:
    """
    A proxy whose cluster name is not the observers' gets the observer's
    OB_CLUSTER_NO_MATCH, which the client receives as an ERR packet.
    """
    mismatched = _start(cluster_name="elsewhere")
    try:

        def run() -> Any:
            with pytest.raises(pymysql.err.MySQLError) as caught:
                _connect(mismatched.proxy_port)
            return caught.value.args

        args = yield in_thread(run)
        assert args[0] == OB_CLUSTER_NO_MATCH
        assert "cluster" in args[1]
        assert mismatched.observers[0].logins[-1].refused is not None
        yield _no_session_left(mismatched.manager)
    finally:
        yield _stop(mismatched)
