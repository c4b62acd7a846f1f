"""
Tests for L{obproxy_tx.session.odp_login}: ODP's rewritten login, and logging
in with it to the fake observer of L{tests.fake_observer} in memory.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient

from obproxy_tx.protocol.interfaces import ServerError
from obproxy_tx.session.odp_login import (
    ODP_FIXED_SCRAMBLE,
    ObCapability,
    ReplayLoginProtocol,
    default_capability_flag,
    proxy_scramble_attr,
    rewrite_handshake_response,
)
from obproxy_tx.wire import packets as p
from obproxy_tx.wire import scramble
from obproxy_tx.wire.constants import MYSQL_NATIVE_PASSWORD, Capability, ServerStatus
from obproxy_tx.wire.errors import ErrorCode
from tests.fake_observer import OB_CLUSTER_NO_MATCH, FakeObserver

PROXY_SCRAMBLE = b"P" * 8 + b"0123456789ab"
SERVER_SCRAMBLE = b"s" * 8 + b"ABCDEFGHIJKL"

CLIENT_CAPS = (
    Capability.CLIENT_LONG_PASSWORD
    | Capability.CLIENT_PROTOCOL_41
    | Capability.CLIENT_SECURE_CONNECTION
    | Capability.CLIENT_PLUGIN_AUTH
    | Capability.CLIENT_CONNECT_ATTRS
    | Capability.CLIENT_CONNECT_WITH_DB
    | Capability.CLIENT_MULTI_RESULTS
    | Capability.CLIENT_DEPRECATE_EOF
    | Capability.CLIENT_SSL
    | Capability.CLIENT_COMPRESS
)


def client_login(
    password: bytes = b"alice_pw",
    scramble_sent: bytes = PROXY_SCRAMBLE,
    *,
    user: str = "alice@sys#obcluster",
    attrs: dict[str, str] | None = None,
    database: str | None = "test",
) -> p.HandshakeResponse41:
    """The login a client sends the proxy after the proxy's greeting."""
    return p.HandshakeResponse41(
        capabilities=CLIENT_CAPS,
        max_packet_size=1 << 24,
        character_set=45,
        username=user,
        auth_response=scramble.native_password_response(password, scramble_sent),
        database=database,
        auth_plugin_name=MYSQL_NATIVE_PASSWORD,
        connect_attrs={"_client_name": "libmysql", "__ob_client_name": "obclient", "x": "y"}
        if attrs is None
        else attrs,
    )


def greeting(connection_id: int = 0x80010005) -> p.HandshakeV10:
    """An observer greeting."""
    return p.HandshakeV10(
        server_version="5.7.25",
        connection_id=connection_id,
        auth_plugin_data=SERVER_SCRAMBLE,
        capabilities=Capability(0x009FF7FF),
        character_set=46,
        status_flags=ServerStatus.SERVER_STATUS_AUTOCOMMIT,
    )


COMMON: dict[str, Any] = {
    "proxy_scramble": PROXY_SCRAMBLE,
    "proxy_session_id": 12402504630519660553,
    "client_session_id": 524297,
    "client_ip": "10.1.2.3",
    "client_port": 54321,
    "client_connect_time_us": 1_700_000_000_123_456,
    "proxy_version": "obproxy_tx-0.1",
    "cluster_name": "obcluster",
    "cluster_id": 1,
    "capability_flag": int(default_capability_flag()),
}


def rewrite(response: p.HandshakeResponse41 | None = None, **kwargs: Any) -> p.HandshakeResponse41:
    """Rewrite a client login for the standard greeting."""
    options = dict(COMMON, **kwargs)
    return rewrite_handshake_response(
        response or client_login(), server_greeting=greeting(), **options
    )


# -- the rewrite ------------------------------------------------------------------


def test_attributes_in_odp_order() -> None:
    """
    The client's __ob_client* attributes pass first, then ODP's attributes in
    ODP's order with ODP's values; other client attributes are dropped.
    """
    attrs = rewrite().connect_attrs
    assert attrs is not None
    assert list(attrs) == [
        "__ob_client_name",
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
    assert attrs["__ob_client_name"] == "obclient"
    assert attrs["__mysql_client_type"] == "__ob_proxy"
    assert attrs["__connection_id"] == str(0x80010005)
    assert attrs["__proxy_connection_id"] == "12402504630519660553"
    assert attrs["__cluster_name"] == "obcluster"
    assert attrs["__cluster_id"] == "1"
    assert attrs["__global_vars_version"] == "0"
    assert attrs["__proxy_capability_flag"] == str(int(default_capability_flag()))
    assert attrs["__client_ip"] == "10.1.2.3"
    assert attrs["__proxy_version"] == "obproxy_tx-0.1"
    assert attrs["__client_addr_port"] == "54321"
    assert attrs["__client_session_id"] == "524297"
    assert attrs["__client_connect_time"] == "1700000000123456"


def test_proxy_scramble_is_xor_of_both_scrambles() -> None:
    """
    __proxy_scramble is P XOR S, 20 bytes, and survives encoding and decoding.
    """
    expected = bytes(a ^ b for a, b in zip(PROXY_SCRAMBLE, SERVER_SCRAMBLE))
    assert proxy_scramble_attr(PROXY_SCRAMBLE, SERVER_SCRAMBLE + b"\x00") == expected
    packet = rewrite()
    decoded = p.HandshakeResponse41.decode(packet.encode())
    assert decoded.connect_attrs is not None
    raw = decoded.connect_attrs["__proxy_scramble"].encode("utf-8", "surrogateescape")
    assert raw == expected
    assert bytes(a ^ b for a, b in zip(raw, SERVER_SCRAMBLE)) == PROXY_SCRAMBLE


def test_proxy_scramble_round_trips_high_bytes() -> None:
    """
    Scrambles with 8-bit bytes still give an exact 20-byte attribute on the wire.
    """
    server = bytes(range(200, 220))
    packet = rewrite_handshake_response(
        client_login(),
        server_greeting=p.HandshakeV10(
            "5.7.25", 1, server, Capability(0x009FF7FF), 46, ServerStatus(2)
        ),
        **COMMON,
    )
    decoded = p.HandshakeResponse41.decode(packet.encode())
    assert decoded.connect_attrs is not None
    raw = decoded.connect_attrs["__proxy_scramble"].encode("utf-8", "surrogateescape")
    assert raw == proxy_scramble_attr(PROXY_SCRAMBLE, server)


def test_proxy_scramble_needs_20_bytes() -> None:
    """
    A short scramble cannot make __proxy_scramble.
    """
    with pytest.raises(ValueError):
        proxy_scramble_attr(b"short", SERVER_SCRAMBLE)


def test_no_proxy_scramble_for_an_empty_password() -> None:
    """
    An empty auth response (empty password) sends no __proxy_scramble, as ODP.
    """
    attrs = rewrite(client_login(b"")).connect_attrs
    assert attrs is not None and "__proxy_scramble" not in attrs
    attrs = rewrite(proxy_scramble=b"").connect_attrs
    assert attrs is not None and "__proxy_scramble" not in attrs


def test_auth_response_is_replayed_unchanged() -> None:
    """
    The client's answer to P goes to the observer as it is (or the one given
    after an auth switch), with mysql_native_password.
    """
    login = client_login()
    assert rewrite(login).auth_response == login.auth_response
    assert rewrite(login, auth_response=b"x" * 20).auth_response == b"x" * 20
    assert rewrite(login).auth_plugin_name == MYSQL_NATIVE_PASSWORD


def test_capabilities() -> None:
    """
    CONNECT_ATTRS and SESSION_TRACK are forced; the client's SSL and
    compression (its own leg) are dropped unless the server leg uses them.
    """
    caps = rewrite().capabilities
    assert caps & Capability.CLIENT_CONNECT_ATTRS
    assert caps & Capability.CLIENT_SESSION_TRACK
    assert caps & Capability.CLIENT_MULTI_RESULTS
    assert caps & Capability.CLIENT_DEPRECATE_EOF
    assert not caps & Capability.CLIENT_SSL
    assert not caps & Capability.CLIENT_COMPRESS
    assert rewrite(use_ssl=True).capabilities & Capability.CLIENT_SSL
    assert rewrite(compress=True).capabilities & Capability.CLIENT_COMPRESS


def test_optional_attributes_and_overrides() -> None:
    """
    No cluster name/id leaves them out; the client's own __client_ip wins;
    the session id, username, database and global vars version can be set.
    """
    login = client_login(attrs={"__client_ip": "192.168.0.9", "__ob_client_version": "2"})
    packet = rewrite(
        login,
        cluster_name=None,
        cluster_id=None,
        server_session_id=77,
        username="alice@sys",
        database=None,
        global_vars_version=5,
    )
    attrs = packet.connect_attrs
    assert attrs is not None
    assert "__cluster_name" not in attrs and "__cluster_id" not in attrs
    assert attrs["__client_ip"] == "192.168.0.9"
    assert attrs["__ob_client_version"] == "2"
    assert attrs["__connection_id"] == "77"
    assert attrs["__global_vars_version"] == "5"
    assert packet.username == "alice@sys"
    assert packet.database is None
    assert not packet.capabilities & Capability.CLIENT_CONNECT_WITH_DB
    assert rewrite(database="other").database == "other"
    assert rewrite().database == "test"


def test_rewritten_login_encodes_and_decodes() -> None:
    """
    The rewritten login is a valid HandshakeResponse41.
    """
    packet = rewrite()
    assert p.HandshakeResponse41.decode(packet.encode()) == packet


def test_capability_flag_bits() -> None:
    """
    The default OB capabilities claim no OB 2.0 protocol and no checksum.
    """
    flag = default_capability_flag()
    assert not flag & ObCapability.OB_PROTOCOL_V2
    assert not flag & ObCapability.CHECKSUM
    assert flag & ObCapability.ENABLE_CLIENT_SESSION_ID_V2
    assert not default_capability_flag(client_session_id_v2=False) & (
        ObCapability.ENABLE_CLIENT_SESSION_ID_V2
    )
    assert ObCapability.FEEDBACK_PROXY == 1 << 23


# -- logging in to the fake observer in memory ------------------------------------------


def outcome(deferred: Deferred[Any]) -> Any:
    """What a fired Deferred holds (a Failure if it failed)."""
    results: list[Any] = []
    deferred.addBoth(results.append)
    assert results, "the Deferred has not fired"
    return results[0]


def error_of(deferred: Deferred[Any]) -> ServerError:
    """The ServerError a fired Deferred failed with."""
    failure = outcome(deferred)
    assert isinstance(failure, Failure) and isinstance(failure.value, ServerError)
    return failure.value


def login_to_fake(
    observer: FakeObserver,
    password: bytes = b"alice_pw",
    *,
    proxy_scramble: bytes = PROXY_SCRAMBLE,
    clock: Clock | None = None,
    **kwargs: Any,
) -> tuple[ReplayLoginProtocol, Any]:
    """A proxy logs in to the fake observer with a client's login."""
    clock = clock or Clock()
    options = dict(COMMON, proxy_scramble=proxy_scramble, username="alice@sys")
    options.update(kwargs)
    build = functools.partial(
        rewrite_handshake_response, client_login(password, proxy_scramble), **options
    )

    def builder(server_greeting: p.HandshakeV10) -> p.HandshakeResponse41:
        return build(server_greeting=server_greeting)

    protocol = ReplayLoginProtocol(clock, builder)
    _client, _server, pump = connectedServerAndClient(
        lambda: observer.factory.buildProtocol(None), lambda: protocol, clock=clock
    )
    pump.flush()
    return protocol, pump


def test_login_with_right_password() -> None:
    """
    The observer recovers P from __proxy_scramble and accepts the replayed answer.
    """
    observer = FakeObserver(Clock())
    protocol, pump = login_to_fake(observer)
    assert outcome(protocol.ready) is protocol
    (seen,) = observer.logins
    assert seen.is_proxy
    assert seen.checked_scramble == PROXY_SCRAMBLE
    assert seen.attrs["__cluster_name"] == "obcluster"
    assert seen.client_ip == "10.1.2.3"
    result = protocol.query("SELECT USER()")
    pump.flush()
    assert outcome(result).rows == [("alice@10.1.2.3",)]
    result = protocol.query("SELECT @@ob_capability_flag")
    pump.flush()
    assert outcome(result).rows == [(int(default_capability_flag()),)]
    assert protocol.connection_id == seen.connection_id


def test_login_with_wrong_password() -> None:
    """
    A wrong password is refused with 1045, like a direct login.
    """
    observer = FakeObserver(Clock())
    protocol, _pump = login_to_fake(observer, b"wrong")
    assert error_of(protocol.ready).code == ErrorCode.ER_ACCESS_DENIED_ERROR


def test_login_with_wrong_cluster_name() -> None:
    """
    A __cluster_name that is not the observer's is refused (OB_CLUSTER_NO_MATCH).
    """
    observer = FakeObserver(Clock(), cluster_name="other")
    protocol, _pump = login_to_fake(observer)
    assert error_of(protocol.ready).code == OB_CLUSTER_NO_MATCH
    assert observer.logins[0].refused is not None


def test_login_with_wrong_cluster_id() -> None:
    """
    A __cluster_id that is not the observer's is refused too.
    """
    observer = FakeObserver(Clock(), cluster_id=7)
    protocol, _pump = login_to_fake(observer)
    assert error_of(protocol.ready).code == OB_CLUSTER_NO_MATCH


def test_without_proxy_scramble_the_fixed_scramble_is_checked() -> None:
    """
    With no __proxy_scramble the observer checks against aaaaaaaabbbbbbbbbbbb:
    a client that answered ODP's fixed scramble gets in.
    """
    observer = FakeObserver(Clock())
    build_options = dict(COMMON, proxy_scramble=b"", username="alice@sys")
    login = client_login(b"alice_pw", ODP_FIXED_SCRAMBLE)

    def builder(server_greeting: p.HandshakeV10) -> p.HandshakeResponse41:
        return rewrite_handshake_response(login, server_greeting=server_greeting, **build_options)

    clock = Clock()
    protocol = ReplayLoginProtocol(clock, builder)
    _c, _s, pump = connectedServerAndClient(
        lambda: observer.factory.buildProtocol(None), lambda: protocol, clock=clock
    )
    pump.flush()
    assert outcome(protocol.ready) is protocol
    assert observer.logins[0].checked_scramble == ODP_FIXED_SCRAMBLE


def test_empty_password_user() -> None:
    """
    A user without a password logs in with an empty answer and no __proxy_scramble.
    """
    observer = FakeObserver(Clock())
    protocol, _pump = login_to_fake(observer, b"", username="root@sys")
    assert outcome(protocol.ready) is protocol
    assert "__proxy_scramble" not in observer.logins[0].attrs


def test_one_client_login_serves_many_observers() -> None:
    """
    The same client answer logs in to several observers with their own scrambles.
    """
    observer = FakeObserver(Clock())
    first, _ = login_to_fake(observer)
    second, _ = login_to_fake(observer)
    assert outcome(first.ready) is first
    assert outcome(second.ready) is second
    scrambles = {login.own_scramble for login in observer.logins}
    assert len(scrambles) == 2


def test_builder_error_fails_the_login() -> None:
    """
    A builder that raises ServerError fails the login with that error.
    """
    observer = FakeObserver(Clock())

    def builder(server_greeting: p.HandshakeV10) -> p.HandshakeResponse41:
        raise ServerError(ErrorCode.ER_ACCESS_DENIED_ERROR, "no")

    clock = Clock()
    protocol = ReplayLoginProtocol(clock, builder)
    _c, _s, pump = connectedServerAndClient(
        lambda: observer.factory.buildProtocol(None), lambda: protocol, clock=clock
    )
    pump.flush()
    assert error_of(protocol.ready).message == "no"


def test_direct_login_to_fake_observer_uses_its_own_scramble() -> None:
    """
    Without __mysql_client_type=__ob_proxy the observer checks its own scramble.
    """
    from obproxy_tx.protocol.client import MySQLClientProtocol

    observer = FakeObserver(Clock())
    clock = Clock()
    protocol = MySQLClientProtocol(clock, "alice", "alice_pw")
    _c, _s, pump = connectedServerAndClient(
        lambda: observer.factory.buildProtocol(None), lambda: protocol, clock=clock
    )
    pump.flush()
    assert outcome(protocol.ready) is protocol
    assert not observer.logins[0].is_proxy
    assert observer.logins[0].checked_scramble == observer.logins[0].own_scramble
