"""
Logging in to OceanBase 4.x observers the ODP way: replay the client's login
with ODP's connect attributes.

ODP sends the client its own scramble I{P}. The client answers it; ODP keeps
that answer and, for every observer it connects to (scramble I{S}), rewrites
the client's C{HandshakeResponse41}
(C{ObMysqlPacketRewriter::rewrite_handshake_response_packet},
C{ObProxySessionInfoHandler::rewrite_common_login_req}; odp-reference.md
section 7, backends.md section 3):

  - C{CLIENT_CONNECT_ATTRS} and C{CLIENT_SESSION_TRACK} are forced on
    (C{CLIENT_SSL} only when the proxy-to-server leg uses TLS);
  - the client's connect attributes are dropped, except those whose key
    starts with C{__ob_client} (C{__client_ip} is taken from them when present);
  - ODP's own attributes are appended, in this order: C{__mysql_client_type}
    (C{__ob_proxy}), C{__connection_id}, C{__proxy_connection_id},
    C{__cluster_name}, C{__cluster_id}, C{__global_vars_version},
    C{__proxy_capability_flag}, C{__proxy_scramble} (M{P XOR S}, only with a
    non-empty auth response), C{__client_ip}, C{__proxy_version},
    C{__client_addr_port}, C{__client_session_id}, C{__client_connect_time};
  - the auth response is the client's, unchanged: the observer XORs
    C{__proxy_scramble} with its own scramble, gets I{P} back and checks the
    answer against it (C{obmp_connect.cpp}, C{extract_real_scramble}).

So one client login authenticates to any number of observers without the
proxy knowing the password or a verifier. seekdb ignores these attributes
(it always checks against its own scramble), which is why the tests use the
fake observer of C{tests/fake_observer.py}.

L{rewrite_handshake_response} is the pure rewrite; L{ReplayLoginProtocol} /
L{connect_with_response} log in to a server with a login packet built from
its greeting (ODP's rewrite, or any other, e.g. a verifier-mode answer made
from a recovered C{SHA1(password)}), and give the usual
L{MySQLClientProtocol<obproxy_tx.protocol.client.MySQLClientProtocol>} API
afterwards.
"""

from __future__ import annotations

from enum import IntFlag
from typing import Any, Callable, Mapping

from twisted.internet import defer
from twisted.internet.endpoints import connectProtocol
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure

from obproxy_tx.protocol.client import MySQLClientProtocol
from obproxy_tx.protocol.interfaces import ServerError
from obproxy_tx.wire import packets as p
from obproxy_tx.wire.constants import MYSQL_NATIVE_PASSWORD, Capability
from obproxy_tx.wire.errors import ErrorCode

__all__ = [
    "ATTR_CLIENT_TYPE_PROXY",
    "ODP_FIXED_SCRAMBLE",
    "ObCapability",
    "ReplayLoginProtocol",
    "connect_with_response",
    "default_capability_flag",
    "proxy_scramble_attr",
    "rewrite_handshake_response",
]

#: The value of C{__mysql_client_type} that marks a proxy.
ATTR_CLIENT_TYPE_PROXY = "__ob_proxy"

#: The scramble ODP sends clients by default, and the one an observer checks
#: against when a proxy sends no C{__proxy_scramble}.
ODP_FIXED_SCRAMBLE = b"aaaaaaaabbbbbbbbbbbb"

#: Client connect attributes with this prefix pass through the rewrite.
PASS_THROUGH_PREFIX = "__ob_client"

#: Flags of the client's login that belong to the client-to-proxy leg only.
_LEG_FLAGS = (
    Capability.CLIENT_SSL
    | Capability.CLIENT_COMPRESS
    | Capability.CLIENT_ZSTD_COMPRESSION_ALGORITHM
)


class ObCapability(IntFlag):
    """
    OceanBase capability bits (C{__proxy_capability_flag} /
    C{ob_capability_flag}; C{ObCapabilityFlagShift} in obproxy's
    C{src/lib/ob_define.h}).
    """

    PARTITION_TABLE = 1 << 0
    CHANGE_USER = 1 << 1
    READ_WEAK = 1 << 2
    CHECKSUM = 1 << 3
    SAFE_WEAK_READ = 1 << 4
    PRIORITY_HIT = 1 << 5
    CHECKSUM_SWITCH = 1 << 6
    OCJ_ENABLE_EXTRA_OK_PACKET = 1 << 7
    OB_PROTOCOL_V2 = 1 << 8
    EXTRA_OK_PACKET_FOR_STATISTICS = 1 << 9
    ABUNDANT_FEEDBACK = 1 << 10
    PL_ROUTE = 1 << 11
    PROXY_REROUTE = 1 << 12
    PROXY_SESSION_SYNC = 1 << 13
    PROXY_FULL_LINK_TRACING = 1 << 14
    PROXY_NEW_EXTRA_INFO = 1 << 15
    PROXY_SESSION_VAR_SYNC = 1 << 16
    PROXY_READ_STALE_FEEDBACK = 1 << 17
    PROXY_FULL_LINK_TRACING_EXT = 1 << 18
    SERVER_DUP_SESS_INFO_SYNC = 1 << 19
    LOAD_DATA_LOCAL_FILE = 1 << 20
    ENABLE_CLIENT_SESSION_ID_V2 = 1 << 21
    OB_PROTOCOL_V2_COMPRESS = 1 << 22
    FEEDBACK_PROXY = 1 << 23


def default_capability_flag(*, client_session_id_v2: bool = True) -> ObCapability:
    """
    The OceanBase capabilities this proxy claims: it speaks plain MySQL to the
    observer (no OB 2.0 protocol, no checksum, no tracing), so only what needs
    nothing more from it.

    @param client_session_id_v2: C{client_session_id_version} is 2 (the
        observer may then adopt C{__client_session_id}).
    @return: the flags for C{__proxy_capability_flag}.
    """
    flags = ObCapability.CHANGE_USER | ObCapability.LOAD_DATA_LOCAL_FILE
    if client_session_id_v2:
        flags |= ObCapability.ENABLE_CLIENT_SESSION_ID_V2
    return flags


def proxy_scramble_attr(proxy_scramble: bytes, server_scramble: bytes) -> bytes:
    """
    The C{__proxy_scramble} attribute: M{P XOR S}, 20 bytes
    (C{ObHandshakeResponseParam::write_proxy_scramble}).

    @param proxy_scramble: I{P}, the scramble the proxy sent the client.
    @param server_scramble: I{S}, the observer's scramble (a trailing NUL or
        anything after 20 bytes is ignored).
    @return: the 20-byte XOR.
    @raise ValueError: a scramble shorter than 20 bytes.
    """
    proxy = proxy_scramble[:20]
    server = server_scramble[:20]
    if len(proxy) != 20 or len(server) != 20:
        raise ValueError("__proxy_scramble needs two 20-byte scrambles")
    return bytes(a ^ b for a, b in zip(proxy, server))


def _attr_text(raw: bytes) -> str:
    # Attribute values are str in HandshakeResponse41; surrogateescape
    # round-trips any bytes exactly through the codec.
    return raw.decode("utf-8", "surrogateescape")


def rewrite_handshake_response(
    client_response: p.HandshakeResponse41,
    *,
    proxy_scramble: bytes,
    server_greeting: p.HandshakeV10,
    proxy_session_id: int,
    client_session_id: int,
    client_ip: str,
    client_port: int,
    client_connect_time_us: int,
    proxy_version: str,
    cluster_name: str | None = None,
    cluster_id: int | None = None,
    server_session_id: int | None = None,
    global_vars_version: int = 0,
    capability_flag: int = 0,
    auth_response: bytes | None = None,
    username: str | None = None,
    database: str | None | bool = True,
    use_ssl: bool = False,
    compress: bool = False,
) -> p.HandshakeResponse41:
    """
    Rewrite a client's login for one observer as ODP does (see the module
    docstring).

    @param client_response: the client's login to the proxy.
    @param proxy_scramble: the scramble the proxy sent the client (I{P}).
    @param server_greeting: the observer's greeting (its scramble I{S} and
        connection id).
    @param proxy_session_id: the proxy_sessid (C{__proxy_connection_id}).
    @param client_session_id: the cs_id (C{__client_session_id}).
    @param client_ip: the client's address (C{__client_ip}), unless the
        client sent one in its own C{__client_ip} attribute.
    @param client_port: the client's port (C{__client_addr_port}).
    @param client_connect_time_us: when the client connected, in µs since the
        epoch (C{__client_connect_time}).
    @param proxy_version: the proxy's version (C{__proxy_version}).
    @param cluster_name: C{__cluster_name}; C{None} leaves it out (ODP does for
        cluster aliases or with C{enable_cluster_checkout} off).
    @param cluster_id: C{__cluster_id}; C{None} leaves it out.
    @param server_session_id: C{__connection_id}; default the observer's own
        connection id from its greeting (ODP's C{proxy_service_mode=client}).
    @param global_vars_version: C{__global_vars_version}: 0 on the first
        login of a client session, the saved version on later ones.
    @param capability_flag: C{__proxy_capability_flag} (L{ObCapability} bits).
    @param auth_response: the client's answer to I{P} when it did not come in
        C{client_response} (after an auth switch to C{mysql_native_password}).
    @param username: the user name to log in with (default the client's).
    @param database: C{True} keeps the client's database; C{None} or
        C{False} removes it (ODP's "saved login"); a string replaces it.
    @param use_ssl: the proxy-to-server leg uses TLS (sets C{CLIENT_SSL}).
    @param compress: the proxy-to-server leg uses compression (keeps the
        client's compression flags; otherwise they are cleared).
    @return: the login to send to the observer.
    """
    answer = client_response.auth_response if auth_response is None else auth_response
    client_attrs: Mapping[str, str] = client_response.connect_attrs or {}
    attrs: dict[str, str] = {
        key: value for key, value in client_attrs.items() if key.startswith(PASS_THROUGH_PREFIX)
    }
    connection_id = (
        server_greeting.connection_id if server_session_id is None else server_session_id
    )
    attrs["__mysql_client_type"] = ATTR_CLIENT_TYPE_PROXY
    attrs["__connection_id"] = str(connection_id)
    attrs["__proxy_connection_id"] = str(proxy_session_id)
    if cluster_name is not None:
        attrs["__cluster_name"] = cluster_name
    if cluster_id is not None:
        attrs["__cluster_id"] = str(cluster_id)
    attrs["__global_vars_version"] = str(global_vars_version)
    attrs["__proxy_capability_flag"] = str(int(capability_flag))
    if proxy_scramble and answer:
        attrs["__proxy_scramble"] = _attr_text(
            proxy_scramble_attr(proxy_scramble, server_greeting.auth_plugin_data)
        )
    attrs["__client_ip"] = client_attrs.get("__client_ip", client_ip)
    attrs["__proxy_version"] = proxy_version
    attrs["__client_addr_port"] = str(client_port)
    attrs["__client_session_id"] = str(client_session_id)
    attrs["__client_connect_time"] = str(client_connect_time_us)

    if database is True:
        new_database = client_response.database
    elif database is None or database is False:
        new_database = None
    else:
        new_database = str(database)
    capabilities = client_response.capabilities
    if not compress:
        capabilities &= ~_LEG_FLAGS
    else:
        capabilities &= ~Capability.CLIENT_SSL
    capabilities |= (
        Capability.CLIENT_CONNECT_ATTRS
        | Capability.CLIENT_SESSION_TRACK
        | Capability.CLIENT_PLUGIN_AUTH
        | Capability.CLIENT_SECURE_CONNECTION
        | Capability.CLIENT_PROTOCOL_41
    )
    if use_ssl:
        capabilities |= Capability.CLIENT_SSL
    if new_database:
        capabilities |= Capability.CLIENT_CONNECT_WITH_DB
    else:
        capabilities &= ~Capability.CLIENT_CONNECT_WITH_DB
        new_database = None
    if len(answer) > 250:
        capabilities |= Capability.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    return p.HandshakeResponse41(
        capabilities=capabilities,
        max_packet_size=client_response.max_packet_size,
        character_set=client_response.character_set,
        username=client_response.username if username is None else username,
        auth_response=answer,
        database=new_database,
        auth_plugin_name=MYSQL_NATIVE_PASSWORD,
        connect_attrs=attrs,
        zstd_compression_level=client_response.zstd_compression_level if compress else None,
    )


# --------------------------------------------------------------------------
# Logging in with a prepared login packet
# --------------------------------------------------------------------------

#: Builds the login from the server's greeting.
ResponseBuilder = Callable[[p.HandshakeV10], p.HandshakeResponse41]


class ReplayLoginProtocol(MySQLClientProtocol):
    """
    A L{MySQLClientProtocol} that logs in with a C{HandshakeResponse41} built
    from the server's greeting instead of from a password: ODP's replayed
    login (L{rewrite_handshake_response}), or an answer computed from a
    recovered C{SHA1(password)}.

    Without a password it cannot answer an auth switch: a server that asks
    for another plugin or scramble fails the login with
    C{CR_AUTH_PLUGIN_CANNOT_LOAD}. TLS to the server is not supported here.

    @ivar greeting: the server's greeting, once received.
    @ivar login: the login packet that was sent.
    """

    def __init__(self, reactor: Any, build_response: ResponseBuilder, **kwargs: Any) -> None:
        """
        @param reactor: the reactor.
        @param build_response: called with the server's greeting; returns
            the login to send.
        @param kwargs: more L{MySQLClientProtocol} arguments (C{local_infile},
            C{max_packet_size}, ...).
        """
        super().__init__(reactor, "", b"", None, **kwargs)
        self._build_response = build_response
        self.greeting: p.HandshakeV10 | None = None
        self.login: p.HandshakeResponse41 | None = None

    def _greeting(self, greeting: p.HandshakeV10) -> None:
        self.greeting = greeting
        self.server_version = greeting.server_version
        self.connection_id = greeting.connection_id
        self.server_capabilities = greeting.capabilities
        self._scramble = greeting.auth_plugin_data[:20]
        try:
            response = self._build_response(greeting)
        except ServerError as error:
            self._auth_failed(error)
            return
        self.login = response
        self.user = response.username
        self.database = response.database
        self._auth_plugin = response.auth_plugin_name or MYSQL_NATIVE_PASSWORD
        self._auth_state = "login"
        self._write(self.connection.send(response))

    def _auth_switch(self, request: p.AuthSwitchRequest) -> None:
        self._auth_failed(
            ServerError(
                ErrorCode.CR_AUTH_PLUGIN_CANNOT_LOAD,
                f"the server asked to switch to {request.plugin_name!r}, which a replayed "
                "login cannot answer",
            )
        )


def connect_with_response(
    reactor: Any,
    endpoint: IStreamClientEndpoint,
    build_response: ResponseBuilder,
    *,
    timeout: float | None = 30.0,
    **kwargs: Any,
) -> defer.Deferred[ReplayLoginProtocol]:
    """
    Connect and log in with a login packet built from the server's greeting.

    @param reactor: the reactor (for the timeout).
    @param endpoint: where to connect.
    @param build_response: C{greeting -> HandshakeResponse41}, e.g. a
        C{functools.partial} of L{rewrite_handshake_response}.
    @param timeout: seconds to connect and log in, or C{None}.
    @param kwargs: more L{ReplayLoginProtocol} arguments.
    @return: a Deferred of the logged-in protocol; fails with
        L{ServerError} (e.g. 1045) or a connection error.
    """
    protocol = ReplayLoginProtocol(reactor, build_response, **kwargs)
    connecting = connectProtocol(endpoint, protocol)
    deferred: defer.Deferred[ReplayLoginProtocol] = connecting.addCallback(lambda _: protocol.ready)
    if timeout is not None:

        def cancelled(failure: Failure) -> Failure:
            if protocol.transport is not None:
                protocol.transport.abortConnection()
            return failure

        deferred.addTimeout(timeout, reactor)
        deferred.addErrback(cancelled)
    return deferred
