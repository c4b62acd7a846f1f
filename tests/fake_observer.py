"""
A fake OceanBase 4.x observer built on obproxy_tx's own server framework, for
testing ODP-style logins (L{obproxy_tx.session.odp_login}).

Real observers are not available here and seekdb ignores ODP's connect
attributes (backends.md section 3), so this server does what upstream
observer's C{src/observer/mysql/obmp_connect.cpp} does with them:

  - C{__mysql_client_type=__ob_proxy} marks a proxy connection (session
    tracking forced on);
  - C{__cluster_name} / C{__cluster_id} are compared with its own; a mismatch
    refuses the login with C{OB_CLUSTER_NO_MATCH} (4666);
  - C{extract_real_scramble}: for a proxy connection the password is checked
    against C{__proxy_scramble XOR own scramble} when the attribute has 20
    bytes, else against the fixed C{aaaaaaaabbbbbbbbbbbb};
  - C{__proxy_capability_flag} is ANDed with its own OB capabilities
    (C{ob_capability_flag});
  - C{__client_ip} becomes the session's client address (C{USER()}).

User names are C{user[@tenant][#cluster]} with tenant C{sys} only (another
tenant is refused as seekdb refuses it: 1045). Every login it saw is recorded
(L{FakeObserver.logins}) with its attributes. Queries get minimal answers:
C{SELECT 1}, C{SELECT CONNECTION_ID()}, C{SELECT USER()},
C{SELECT @@ob_capability_flag}; anything else gets an OK.
"""

from __future__ import annotations

import itertools
import re
from typing import Any, Mapping

import attrs
from twisted.cred.portal import Portal
from zope.interface import implementer

from obproxy_tx.auth import InMemoryMySQLChecker, MySQLRealm
from obproxy_tx.protocol.interfaces import OK, ConnectionInfo, IMySQLSession, ResultSet, ServerError
from obproxy_tx.protocol.server import MySQLServerFactory, MySQLServerProtocol
from obproxy_tx.wire import packets as p

__all__ = ["FAKE_OB_CAPABILITIES", "FakeObserver", "ObservedLogin", "OB_CLUSTER_NO_MATCH"]

#: The OceanBase error number of a cluster name/id mismatch (C{OB_CLUSTER_NO_MATCH}).
OB_CLUSTER_NO_MATCH = 4666

#: The scramble an observer checks against when a proxy sends no usable
#: C{__proxy_scramble}.
FIXED_SCRAMBLE = b"aaaaaaaabbbbbbbbbbbb"

#: The OB capabilities the fake observer has: bits 0..23 except OB 2.0 (8).
FAKE_OB_CAPABILITIES = ((1 << 24) - 1) & ~(1 << 8)


@attrs.frozen
class ObservedLogin:
    """
    One login the fake observer saw.

    @ivar username: the user name as sent.
    @ivar attrs: the connect attributes as sent (C{{}} when none).
    @ivar is_proxy: C{__mysql_client_type} was C{__ob_proxy}.
    @ivar checked_scramble: the scramble the password was checked against.
    @ivar own_scramble: the scramble of the observer's greeting.
    @ivar connection_id: the connection id of the greeting.
    @ivar capabilities: the MySQL capability flags of the login.
    @ivar ob_capability_flag: C{__proxy_capability_flag} AND the observer's.
    @ivar client_ip: the client address the session uses.
    @ivar database: the database of the login.
    @ivar refused: why the login was refused before the password check, or C{None}.
    """

    username: str
    attrs: Mapping[str, str]
    is_proxy: bool
    checked_scramble: bytes
    own_scramble: bytes
    connection_id: int
    capabilities: int
    ob_capability_flag: int
    client_ip: str
    database: str | None
    refused: str | None = None


@implementer(IMySQLSession)
class _FakeSession:
    """The minimal session behind a fake observer login."""

    def __init__(self, info: ConnectionInfo, login: ObservedLogin | None) -> None:
        self.info = info
        self.login = login

    def query(self, sql: str) -> Any:
        text = re.sub(r"\s+", " ", sql.strip().rstrip(";")).lower()
        if text == "select 1":
            return ResultSet.from_rows(["1"], [(1,)])
        if text == "select connection_id()":
            return ResultSet.from_rows(["connection_id()"], [(self.info.connection_id,)])
        if text == "select user()":
            host = self.login.client_ip if self.login is not None else self.info.peer
            return ResultSet.from_rows(["user()"], [(f"{self.info.user}@{host}",)])
        if text == "select @@ob_capability_flag":
            flag = self.login.ob_capability_flag if self.login is not None else 0
            return ResultSet.from_rows(["@@ob_capability_flag"], [(flag,)])
        return OK()

    def init_db(self, schema: str) -> None:
        self.info.database = schema

    def reset(self) -> None:
        return None

    def close(self) -> None:
        return None


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right))


class FakeObserverProtocol(MySQLServerProtocol):
    """
    The server protocol with the observer's treatment of proxy logins,
    applied before the framework's password check.
    """

    def _handshake_response(self, response: p.HandshakeResponse41) -> None:
        observer: FakeObserver = self.factory.observer
        attrs_seen = dict(response.connect_attrs or {})
        is_proxy = attrs_seen.get("__mysql_client_type") == "__ob_proxy"
        own = self._scramble
        checked = own
        refused: str | None = None
        ob_flag = 0
        client_ip = self.info.peer
        if is_proxy:
            cluster_name = attrs_seen.get("__cluster_name")
            cluster_id = attrs_seen.get("__cluster_id")
            if cluster_name is not None and cluster_name != observer.cluster_name:
                refused = f"cluster name {cluster_name!r} does not match"
            elif cluster_id is not None and cluster_id != str(observer.cluster_id):
                refused = f"cluster id {cluster_id!r} does not match"
            raw = attrs_seen.get("__proxy_scramble", "").encode("utf-8", "surrogateescape")
            checked = _xor(raw, own) if len(raw) == 20 else FIXED_SCRAMBLE
            try:
                proxy_flag = int(attrs_seen.get("__proxy_capability_flag", "0"))
            except ValueError:
                proxy_flag = 0
            ob_flag = proxy_flag & observer.ob_capabilities
            client_ip = attrs_seen.get("__client_ip", client_ip)
        user, _, tenant = response.username.partition("@")
        tenant = tenant.partition("#")[0] or "sys"
        user = user.partition("#")[0]
        login = ObservedLogin(
            username=response.username,
            attrs=attrs_seen,
            is_proxy=is_proxy,
            checked_scramble=checked,
            own_scramble=own,
            connection_id=self.info.connection_id,
            capabilities=int(response.capabilities),
            ob_capability_flag=ob_flag,
            client_ip=client_ip,
            database=response.database,
            refused=refused,
        )
        observer.logins.append(login)
        self.observed_login = login
        if refused is not None:
            self._refuse(ServerError(OB_CLUSTER_NO_MATCH, f"cluster not match: {refused}", "HY000"))
            return
        self._scramble = checked
        if tenant != "sys":
            self.info.user = user
            self._access_denied(bool(response.auth_response))
            return
        super()._handshake_response(attrs.evolve(response, username=user))


class FakeObserverFactory(MySQLServerFactory):
    """
    A L{MySQLServerFactory} building L{FakeObserverProtocol}s.

    @ivar observer: the L{FakeObserver} it serves.
    """

    def __init__(self, observer: FakeObserver, portal: Portal, reactor: Any) -> None:
        self.observer = observer
        super().__init__(
            portal,
            reactor,
            server_version="5.7.25",
            connection_ids=observer.next_connection_id,
            character_set=46,
        )

    def buildProtocol(self, addr: Any) -> FakeObserverProtocol:  # noqa: N802
        """
        @param addr: the peer's address.
        @return: a new protocol.
        """
        return FakeObserverProtocol(self)


class FakeObserver:
    """
    A fake observer: its users, cluster identity and what it saw.

    @ivar cluster_name: its cluster name (C{__cluster_name} must match).
    @ivar cluster_id: its cluster id (C{__cluster_id} must match).
    @ivar ob_capabilities: its OB capability bits.
    @ivar logins: every login it saw, in order.
    @ivar sessions: the sessions of accepted logins.
    @ivar factory: the protocol factory to listen with.
    """

    def __init__(
        self,
        reactor: Any,
        users: Mapping[str, str] | None = None,
        *,
        cluster_name: str = "obcluster",
        cluster_id: int = 1,
        ob_capabilities: int = FAKE_OB_CAPABILITIES,
        first_connection_id: int = 0x80010001,
    ) -> None:
        """
        @param reactor: the reactor for the server's timers.
        @param users: user name to password (tenant C{sys}); default
            C{root} without password and C{alice}/C{alice_pw}.
        @param cluster_name: the cluster name.
        @param cluster_id: the cluster id.
        @param ob_capabilities: the OB capability bits it supports.
        @param first_connection_id: the first connection id (observer ids
            have bit 31 set).
        """
        self.cluster_name = cluster_name
        self.cluster_id = cluster_id
        self.ob_capabilities = ob_capabilities
        self.logins: list[ObservedLogin] = []
        self.sessions: list[_FakeSession] = []
        self._ids = itertools.count(first_connection_id)
        checker = InMemoryMySQLChecker()
        for name, password in (users or {"root": "", "alice": "alice_pw"}).items():
            checker.add_user(name, password)
        realm = MySQLRealm(self._session)
        self.factory = FakeObserverFactory(self, Portal(realm, [checker]), reactor)

    def next_connection_id(self) -> int:
        """
        @return: the next greeting connection id.
        """
        return next(self._ids)

    def _session(self, avatar_id: str, info: ConnectionInfo) -> _FakeSession:
        login = None
        for candidate in reversed(self.logins):
            if candidate.connection_id == info.connection_id:
                login = candidate
                break
        session = _FakeSession(info, login)
        self.sessions.append(session)
        return session
