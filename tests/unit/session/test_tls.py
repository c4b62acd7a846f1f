"""
TLS in the proxy without sockets (issue 7, T7):

  - L{obproxy_tx.tls}: contexts from the test bed's PEM files (TLS 1.2 at
    least), the identity a backend must show, reload only on change (an item,
    or a file replaced at the same path), a half-done key/certificate change
    kept waiting, broken files refused with a clear message, the text of
    handshake failures (a real in-memory handshake against the wrong name);
  - the client session: the greeting offers C{CLIENT_SSL} only with
    C{enable_client_ssl}, an C{SSLRequest} starts TLS with the current
    context, C{require_ssl} refuses a plain login (and C{COM_CHANGE_USER})
    with 1045 while the same login over TLS passes;
  - the server session: with C{enable_server_ssl} it sends an C{SSLRequest}
    and starts TLS before its login, and refuses a server that does not
    offer TLS; the pool key differs.

The transports are iosim's, whose C{startTLS} records the context and only
pretends to negotiate; real handshakes are in tests/integration/test_tls_proxy.py.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any, cast

import attrs
import pytest
from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test import iosim
from zope.interface import directlyProvides

from fuzz.proxy import join_new_backends
from obproxy_tx.config import ConfigError, parse_config, set_item
from obproxy_tx.session.manager import SessionManager
from obproxy_tx.session.pool import login_key
from obproxy_tx.tls import (
    TLSContexts,
    TLSSetupError,
    check_files,
    describe_failure,
    server_identity,
)
from obproxy_tx.wire.connection import ClientConnection, Phase
from obproxy_tx.wire.constants import Capability, ServerStatus
from obproxy_tx.wire.packets import (
    ComChangeUser,
    ERRPacket,
    HandshakeResponse41,
    HandshakeV10,
    OKPacket,
    SSLRequest,
)
from obproxy_tx.wire.scramble import native_password_response, native_password_verifier
from tests.testbed.certs import TLSCerts, ensure_certs
from tests.unit.session.test_client_session import CLIENT_CAPS, PASSWORD, FakeBackend, Harness

VERIFIER = "*" + native_password_verifier(PASSWORD).hex().upper()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TLSCerts:
    """A CA, a server certificate (127.0.0.1, localhost) and a client certificate."""
    return ensure_certs(tmp_path_factory.mktemp("certs"))


def _config(certs: TLSCerts, extra: str = "", users: str = "") -> Any:
    return parse_config(
        f"""
enable_client_ssl: true
client_ssl_cert: {certs.cert}
client_ssl_key: {certs.key}
{extra}
clusters:
  - name: c1
    type: mysql
    servers: ["127.0.0.1:3306"]
    users:
      - {{name: app, tenant: sys, verifier: "{VERIFIER}"}}
{users}
"""
    )


# -- obproxy_tx.tls ------------------------------------------------------------------------


def test_client_side_context_needs_tls_1_2(certs: TLSCerts) -> None:
    """The context clients get refuses SSLv3, TLS 1.0 and 1.1; off: no context at all."""
    contexts = TLSContexts(_config(certs))
    assert contexts.client_side is not None
    # The OpenSSL options the context is made with (pyOpenSSL cannot read them back).
    options = contexts.client_side._options
    for old in (SSL.OP_NO_SSLv3, SSL.OP_NO_TLSv1, SSL.OP_NO_TLSv1_1):
        assert options & old
    assert not options & SSL.OP_NO_TLSv1_2
    off = TLSContexts(set_item(_config(certs), "enable_client_ssl", "false", origin="test"))
    assert off.client_side is None
    assert not off.server_enabled


def test_server_identity_is_the_host_or_the_item() -> None:
    """The host of the address (IPv6 brackets dropped) unless server_ssl_identity names one."""
    assert server_identity("", "127.0.0.1") == "127.0.0.1"
    assert server_identity("", "db1.example.com") == "db1.example.com"
    assert server_identity("", "[::1]") == "::1"
    assert server_identity("db.example.com", "127.0.0.1") == "db.example.com"
    assert server_identity("", None) is None


def test_backend_contexts_per_identity(certs: TLSCerts) -> None:
    """One context per name; a server without a host needs server_ssl_identity."""
    config = _config(certs, f"enable_server_ssl: true\nserver_ssl_ca: {certs.ca}")
    contexts = TLSContexts(config)
    assert contexts.server_enabled
    first, name = contexts.for_server("127.0.0.1", "127.0.0.1:3306")
    assert name == "127.0.0.1"
    assert contexts.for_server("127.0.0.1", "127.0.0.1:3307")[0] is first
    assert contexts.for_server("localhost", "localhost:3306")[0] is not first
    with pytest.raises(TLSSetupError, match="set server_ssl_identity"):
        contexts.for_server(None, "unix:/tmp/db.sock")


def test_reload_only_when_something_changed(certs: TLSCerts, tmp_path: Path) -> None:
    """
    The same items and files: nothing rebuilt (open and new sessions share the
    context); a certificate replaced at the same path, or another path: rebuilt.
    """
    live_cert, live_key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(certs.cert, live_cert)
    shutil.copy(certs.key, live_key)
    config = _config(attrs.evolve(certs, cert=str(live_cert), key=str(live_key)))
    contexts = TLSContexts(config)
    before = contexts.client_side
    assert not contexts.reload(config)
    assert contexts.client_side is before
    other = ensure_certs(tmp_path / "other")
    shutil.copy(other.cert, live_cert)
    shutil.copy(other.key, live_key)
    assert contexts.reload(config)
    assert contexts.client_side is not before
    assert contexts.generation == 1
    served = contexts.client_side
    assert served is not None
    assert served.getContext() is not before.getContext()  # type: ignore[union-attr]


def test_half_a_certificate_change_waits(certs: TLSCerts, tmp_path: Path) -> None:
    """
    A new key with the old certificate (the first of two ALTERs): the current
    pair stays and nothing is raised; with the new certificate too: rebuilt.
    """
    other = ensure_certs(tmp_path / "other")
    config = _config(certs)
    contexts = TLSContexts(config)
    before = contexts.client_side
    half = set_item(config, "client_ssl_key", other.key, origin="test")
    assert not contexts.reload(half)
    assert contexts.client_side is before
    whole = set_item(half, "client_ssl_cert", other.cert, origin="test")
    assert contexts.reload(whole)
    assert contexts.client_side is not before


def test_broken_files_are_refused_and_change_nothing(certs: TLSCerts, tmp_path: Path) -> None:
    """Not a key, not a certificate: TLSSetupError naming the item; the old context stays."""
    config = _config(certs)
    contexts = TLSContexts(config)
    before = contexts.client_side
    not_a_key = set_item(config, "client_ssl_key", certs.ca, origin="test")
    with pytest.raises(TLSSetupError, match="client_ssl_key: .* is not a valid private key"):
        contexts.reload(not_a_key)
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    not_a_cert = set_item(config, "client_ssl_cert", str(junk), origin="test")
    with pytest.raises(TLSSetupError, match="client_ssl_cert: no PEM certificate"):
        contexts.reload(not_a_cert)
    assert contexts.client_side is before
    bad_ca = set_item(
        set_item(config, "enable_server_ssl", "true", origin="test"),
        "server_ssl_ca",
        str(junk),
        origin="test",
    )
    with pytest.raises(TLSSetupError, match="server_ssl_ca"):
        TLSContexts(bad_ca)


def test_config_checks_the_tls_items(certs: TLSCerts, tmp_path: Path) -> None:
    """Missing files and a key without its certificate are config errors; require_ssl is a bool."""
    config = _config(certs)
    with pytest.raises(ConfigError, match="no such file"):
        set_item(config, "server_ssl_cert", str(tmp_path / "none.pem"), origin="test")
    with pytest.raises(ConfigError, match="server_ssl_key is the key of server_ssl_cert"):
        set_item(config, "server_ssl_key", certs.key, origin="test")
    with pytest.raises(ConfigError, match="require_ssl: expected true or false"):
        _config(certs, users=f'      - {{name: b, verifier: "{VERIFIER}", require_ssl: 1}}')
    entry = _config(
        certs, users=f'      - {{name: b, verifier: "{VERIFIER}", require_ssl: true}}'
    ).default_cluster.find_user("b", "sys")
    assert entry is not None and entry.require_ssl


class _Handshake:
    """Stands in for Twisted's TLS protocol while verification runs: records the failure."""

    failure: Failure | None = None

    class factory:  # noqa: N801 - what Twisted's TLS protocol has (its ALPN look-up)
        wrappedFactory = None  # noqa: N815

    def failVerification(self, failure: Failure) -> None:  # noqa: N802
        self.failure = failure


def _handshake(client: SSL.Connection, server: SSL.Connection) -> None:
    """Run a TLS handshake between two memory-BIO connections until it ends or fails."""
    client.set_connect_state()
    server.set_accept_state()
    for _ in range(20):
        for one, other in ((client, server), (server, client)):
            with contextlib.suppress(SSL.WantReadError):
                one.do_handshake()
            try:
                data = one.bio_read(65536)
            except SSL.WantReadError:
                data = b""
            if data:
                other.bio_write(data)


def test_wrong_name_and_wrong_ca_are_told_apart(certs: TLSCerts, tmp_path: Path) -> None:
    """
    A real handshake in memory: the certificate names 127.0.0.1 and
    localhost, not db.example.com (service_identity's verdict); a CA that did
    not sign it fails OpenSSL's verification. Each message says which.
    """
    server_side = TLSContexts(_config(certs)).client_side
    assert server_side is not None

    def attempt(ca: str, identity: str) -> str | None:
        config = _config(
            certs,
            f"enable_server_ssl: true\nserver_ssl_ca: {ca}\nserver_ssl_identity: {identity}",
        )
        creator, name = TLSContexts(config).for_server("127.0.0.1", "127.0.0.1:3306")
        recorder = _Handshake()
        client = creator.clientConnectionForTLS(recorder)
        server = SSL.Connection(server_side.getContext(), None)
        try:
            _handshake(client, server)
        except SSL.Error as error:
            # A name check that failed is what Twisted's TLS layer reports (its
            # failVerification reason), before OpenSSL's own verification error.
            reason = recorder.failure if recorder.failure is not None else error
            return describe_failure(reason, "127.0.0.1:3306", name)
        return None

    assert attempt(certs.ca, "localhost") is None
    assert attempt(certs.ca, "127.0.0.1") is None
    wrong_name = attempt(certs.ca, "db.example.com")
    assert wrong_name is not None
    assert "the certificate of server 127.0.0.1:3306 does not name 'db.example.com'" in wrong_name
    other = ensure_certs(tmp_path / "other")
    wrong_ca = attempt(other.ca, "localhost")
    assert wrong_ca is not None
    assert "was not signed by a CA of server_ssl_ca (certificate verify failed)" in wrong_ca
    # A connection that was merely lost is no TLS failure.
    assert describe_failure(Failure(ConnectionError("gone")), "a:1", "a") is None


# -- the client session ----------------------------------------------------------------------


class TLSHarness(Harness):
    """The client session harness with a configuration of our own."""

    def __init__(self, config: Any) -> None:
        # Harness's fields, with a manager on the given configuration.
        self.reactor = MemoryReactorClock()
        self.manager = SessionManager(config, self.reactor)
        self.backends: list[FakeBackend] = []
        self.dying_backends = 0
        self.pumps: list[iosim.IOPump] = []
        self.client = ClientConnection(CLIENT_CAPS)
        self.events: list[Any] = []
        built = self.manager.listener_factory().buildProtocol(
            IPv4Address("TCP", "127.0.0.1", 40000)
        )
        self.session = cast(Any, built)
        self.transport = iosim.FakeTransport(
            self.session, isServer=True, peerAddress=IPv4Address("TCP", "127.0.0.1", 40000)
        )
        self.session.makeConnection(self.transport)

    def greeting(self) -> HandshakeV10:
        self.flush()
        greeting = self.events.pop(0)
        assert isinstance(greeting, HandshakeV10)
        return greeting

    def start_tls(self) -> None:
        """Send an SSLRequest; then finish the (pretended) handshake on the transport."""
        request = SSLRequest(CLIENT_CAPS | Capability.CLIENT_SSL, 1 << 24, 45)
        self.session.dataReceived(self.client.send(request))
        assert isinstance(self.transport.tls, iosim.TLSNegotiation)
        self.client.tls_started()
        buffered, self.transport.tlsbuf = self.transport.tlsbuf, None
        self.transport.tls = None
        directlyProvides(self.transport, ISSLTransport)
        self.transport.stream.extend(buffered or [])

    def log_in(self, user: str, scramble: bytes, capabilities: Capability = CLIENT_CAPS) -> Any:
        self.send(
            HandshakeResponse41(
                capabilities,
                1 << 24,
                45,
                user,
                native_password_response(PASSWORD, scramble),
                auth_plugin_name="mysql_native_password",
            )
        )
        return self.events.pop(0)


TLS_USER = f'      - {{name: secure, tenant: sys, verifier: "{VERIFIER}", require_ssl: true}}'


def test_greeting_offers_tls_only_when_enabled(certs: TLSCerts) -> None:
    """CLIENT_SSL in the greeting with enable_client_ssl, not without."""
    on = TLSHarness(_config(certs))
    assert on.greeting().capabilities & Capability.CLIENT_SSL
    off = TLSHarness(set_item(_config(certs), "enable_client_ssl", "false", origin="test"))
    assert not off.greeting().capabilities & Capability.CLIENT_SSL


def test_ssl_request_starts_tls_with_the_current_context(certs: TLSCerts) -> None:
    """
    The SSLRequest is answered with startTLS on the client connection, with
    the manager's context; the login that follows is served and the session
    shows using_ssl.
    """
    harness = TLSHarness(_config(certs, users=TLS_USER))
    greeting = harness.greeting()
    harness.start_tls()
    assert harness.session.conn.phase is Phase.TLS_ESTABLISHED
    # iosim kept the context startTLS was given.
    assert harness.session.using_ssl
    answer = harness.log_in(
        "secure", greeting.auth_plugin_data, CLIENT_CAPS | Capability.CLIENT_SSL
    )
    assert isinstance(answer, OKPacket), answer
    assert harness.backends[-1].logins[0].username == "secure"


def test_ssl_request_uses_the_context_of_the_moment(certs: TLSCerts) -> None:
    """startTLS gets the manager's client_side object as it is when the request comes."""
    harness = TLSHarness(_config(certs))
    harness.greeting()
    expected = harness.manager.tls.client_side
    seen: list[Any] = []
    original = harness.transport.startTLS

    def start_tls(context: Any, normal: bool = True) -> None:
        seen.append(context)
        original(context, normal)

    harness.transport.startTLS = start_tls  # type: ignore[method-assign]
    harness.start_tls()
    assert seen == [expected]


def test_require_ssl_refuses_plain_logins_with_1045(certs: TLSCerts) -> None:
    """A require_ssl user in plain text: MariaDB's 1045, no backend login; other users pass."""
    harness = TLSHarness(_config(certs, users=TLS_USER))
    greeting = harness.greeting()
    answer = harness.log_in("secure", greeting.auth_plugin_data)
    assert isinstance(answer, ERRPacket)
    assert (answer.error_code, answer.sqlstate) == (1045, "28000")
    assert answer.message == "Access denied for user 'secure'@'127.0.0.1' (using password: YES)"
    assert all(not backend.logins for backend in harness.backends)
    assert harness.manager.stats.client_login_failures == 1
    other = TLSHarness(_config(certs, users=TLS_USER))
    assert isinstance(other.log_in("app", other.greeting().auth_plugin_data), OKPacket)


def test_change_user_to_a_require_ssl_user_in_plain_text(certs: TLSCerts) -> None:
    """COM_CHANGE_USER to a require_ssl user over plain text: 1045, the session goes on."""
    harness = TLSHarness(_config(certs, users=TLS_USER))
    assert isinstance(harness.log_in("app", harness.greeting().auth_plugin_data), OKPacket)
    harness.send(
        ComChangeUser(
            "secure",
            native_password_response(PASSWORD, harness.session._scramble),
            None,
            45,
            "mysql_native_password",
        )
    )
    answer = harness.events.pop(0)
    assert isinstance(answer, ERRPacket)
    assert answer.error_code == 1045
    assert harness.session.login.user == "app"
    assert not harness.session._closed


# -- the server session ----------------------------------------------------------------------


class TLSBackend(FakeBackend):
    """A fake backend that offers TLS and takes an SSLRequest."""

    offer_tls = True
    ssl_requests: list[SSLRequest]

    def connectionMade(self) -> None:  # noqa: N802
        self.ssl_requests = []
        if self.offer_tls:
            self.conn.capabilities |= Capability.CLIENT_SSL
        FakeBackend.next_id += 1
        self.transport.write(
            self.conn.send(
                HandshakeV10(
                    "5.7.25-fake",
                    FakeBackend.next_id,
                    b"B" * 20,
                    self.conn.capabilities,
                    45,
                    ServerStatus.SERVER_STATUS_AUTOCOMMIT,
                )
            )
        )

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        for event in self.conn.receive_data(data):
            if isinstance(event, SSLRequest):
                # (The pretended TLS layer passes bytes through as they are.)
                self.ssl_requests.append(event)
                self.conn.tls_started()
                rest, self.conn.trailing_data = self.conn.trailing_data, b""
                if rest:
                    self.dataReceived(rest)
                return
            self.commands.append(event)
            if isinstance(event, HandshakeResponse41):
                self.logins.append(event)
            self.transport.write(self.conn.send(OKPacket()))


def _server_tls_harness(certs: TLSCerts, offer: bool) -> tuple[TLSHarness, list[TLSBackend]]:
    harness = TLSHarness(_config(certs, f"enable_server_ssl: true\nserver_ssl_ca: {certs.ca}"))
    made: list[TLSBackend] = []

    def accept_backends() -> None:
        def make(host: str) -> TLSBackend:
            backend = TLSBackend()
            backend.offer_tls = offer
            return backend

        for backend, _, pump in join_new_backends(harness.reactor, len(harness.backends), make):
            made.append(backend)
            harness.backends.append(backend)
            harness.pumps.append(pump)

    harness.accept_backends = accept_backends  # type: ignore[method-assign]
    return harness, made


def test_server_session_starts_tls_before_its_login(certs: TLSCerts) -> None:
    """
    enable_server_ssl: SSLRequest with CLIENT_SSL, startTLS with the context
    for the server's host, then the login (CLIENT_SSL in it too).
    """
    harness, backends = _server_tls_harness(certs, offer=True)
    started: list[Any] = []
    original = iosim.FakeTransport.startTLS

    def start_tls(transport: Any, context: Any, normal: bool = True) -> None:
        started.append(context)
        # The pretended negotiation needs both ends to agree: done at once here.
        transport.tls = None

    iosim.FakeTransport.startTLS = start_tls  # type: ignore[method-assign]
    try:
        answer = harness.log_in("app", harness.greeting().auth_plugin_data)
    finally:
        iosim.FakeTransport.startTLS = original  # type: ignore[method-assign]
    assert isinstance(answer, OKPacket), answer
    backend = backends[-1]
    assert backend.ssl_requests and backend.ssl_requests[0].capabilities & Capability.CLIENT_SSL
    assert backend.logins[0].capabilities & Capability.CLIENT_SSL
    expected, _name = harness.manager.tls.for_server("127.0.0.1", "127.0.0.1:3306")
    assert started == [expected]
    ss = harness.session.bound
    assert ss.tls is expected and ss.tls_identity == "127.0.0.1"
    # Pooled sessions with TLS never meet plain ones: CLIENT_SSL is in the key.
    key = login_key("c1", ss.login)
    assert key is not None and key[2] & int(Capability.CLIENT_SSL)


def test_server_without_tls_is_refused_never_plain(certs: TLSCerts) -> None:
    """A server that does not offer TLS gets no login; the client hears why."""
    harness, backends = _server_tls_harness(certs, offer=False)
    answer = harness.log_in("app", harness.greeting().auth_plugin_data)
    assert isinstance(answer, ERRPacket)
    assert "does not offer TLS (enable_server_ssl is on)" in answer.message
    assert all(not backend.logins for backend in backends)


def test_bad_files_stop_the_start_with_one_line(certs: TLSCerts) -> None:
    """At start (twistd's option check): a key of another certificate is a ConfigError."""
    config = set_item(_config(certs), "client_ssl_key", certs.client_key, origin="-o")
    with pytest.raises(ConfigError, match="is not the key of client_ssl_cert") as caught:
        check_files(config)
    assert caught.value.path == "client_ssl_key"
    check_files(_config(certs))
