"""
TLS for the proxy, on both sides: the contexts it uses and when they change.

  - To clients (C{enable_client_ssl}): the proxy plays the MySQL server. Its
    greeting offers C{CLIENT_SSL}; a client's C{SSLRequest} is answered with
    C{startTLS} on the client connection using the server context built here
    from C{client_ssl_cert} (a PEM certificate, its chain after it) and
    C{client_ssl_key}, TLS 1.2 or newer.
  - To backends (C{enable_server_ssl}): every server session asks for TLS
    before it logs in. The server's certificate must chain to
    C{server_ssl_ca} (empty: the platform's trust store) and name the server:
    its host from the server address (a DNS name or an IP address), or
    C{server_ssl_identity} when set; C{service_identity} checks the name
    (through L{twisted.internet.ssl.optionsForClientTLS}). C{server_ssl_cert}
    and C{server_ssl_key} give the proxy's own client certificate.
  - Per user (a user entry's C{require_ssl}, or C{REQUIRE SSL} learned from
    the backend): such a user never logs in over plain text; the refusal is
    the server's own (1045, access denied), as MariaDB answers it.

Reload: L{TLSContexts.reload} rebuilds the contexts when a TLS item or one of
the files it names changed (a certificate rotated in place keeps its path),
and it is called by C{SessionManager.reconfigure}, i.e. by C{ALTER PROXYCONFIG}
and C{SIGHUP}. New sessions take the new contexts; open ones keep what they
started with (a TLS connection holds its own C{SSL.Connection}). Files that do
not load leave everything as it was and say why (C{ALTER} answers the error,
C{SIGHUP} logs it).

The decisions (what changed, which identity a server must show, the text of a
failure) are pure functions; the contexts are pyOpenSSL objects made by
Twisted's L{twisted.internet.ssl}.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable, Tuple

import attrs
from twisted.internet import ssl
from twisted.internet.error import VerifyError
from twisted.python.failure import Failure

from obproxy_tx.logs import Logger
from obproxy_tx.wire.errors import ErrorCode, RemoteProtocolError

__all__ = [
    "MINIMUM_TLS_VERSION",
    "TLSContexts",
    "TLSSettings",
    "TLSKeyMismatchError",
    "TLSSetupError",
    "ServerTLSError",
    "check_files",
    "describe_failure",
    "metadata_tls",
    "server_identity",
    "start_server_tls",
    "users_may_require_tls",
]

_log = Logger()

#: The oldest protocol version either side accepts.
MINIMUM_TLS_VERSION = ssl.TLSVersion.TLSv1_2

#: The items this module reads (a change of any of them rebuilds the contexts).
TLS_ITEMS = (
    "enable_client_ssl",
    "client_ssl_cert",
    "client_ssl_key",
    "enable_server_ssl",
    "server_ssl_ca",
    "server_ssl_cert",
    "server_ssl_key",
    "server_ssl_identity",
)
_FILE_ITEMS = (
    "client_ssl_cert",
    "client_ssl_key",
    "server_ssl_ca",
    "server_ssl_cert",
    "server_ssl_key",
)
_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.S
)

#: (path, mtime in ns, size, inode) of a file; C{None} for a path that cannot be read.
FileStamp = Tuple[str, int, int, int]


class TLSSetupError(ValueError):
    """
    TLS files that do not make a context (missing, not PEM, a key that does
    not match its certificate). A C{ValueError}, so C{reconfigure} callers
    (C{ALTER PROXYCONFIG}, C{SIGHUP}) report it and change nothing.

    @ivar item: the config item whose file is at fault.
    """

    def __init__(self, message: str) -> None:
        """
        @param message: C{"item: problem"}.
        """
        super().__init__(message)
        self.item = message.split(":", 1)[0].split("/", 1)[0]


class TLSKeyMismatchError(TLSSetupError):
    """
    A private key that does not belong to its certificate. At a reload this
    is the state between two C{ALTER PROXYCONFIG}s (a new key, then its
    certificate): the current contexts stay until both match.
    """


def _stamp(path: str) -> FileStamp | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (path, status.st_mtime_ns, status.st_size, status.st_ino)


@attrs.frozen
class TLSSettings:
    """
    What the contexts are made of: the TLS items' values and the state of
    the files they name, so a file replaced at the same path is a change.

    @ivar values: the values of L{TLS_ITEMS}, in that order.
    @ivar files: a stamp per file item that names a file (C{None}: unreadable).
    """

    values: Tuple[Any, ...]
    files: Tuple[FileStamp | None, ...]

    @classmethod
    def of(cls, config: Any) -> TLSSettings:
        """
        The settings of C{config} and of the files it names, as they are now.

        @param config: a L{ProxyConfig<obproxy_tx.config.ProxyConfig>}.
        """
        values = tuple(config.item_value(name) for name in TLS_ITEMS)
        paths = (config.item_value(name) for name in _FILE_ITEMS)
        return cls(values, tuple(_stamp(path) for path in paths if path))

    def value(self, name: str) -> Any:
        """
        The value item C{name} had.
        """
        return self.values[TLS_ITEMS.index(name)]


def server_identity(identity: str, host: str | None) -> str | None:
    """
    The name a backend's certificate must carry.

    @param identity: the C{server_ssl_identity} item (empty: not set).
    @param host: the host part of the server's address (C{None}: the server
        is an endpoint string without one, e.g. a unix socket).
    @return: C{identity} when set, else C{host} (a DNS name or an IP address
        literal, checked as such), else C{None}: nothing to check against.
    """
    if identity:
        return identity
    if host:
        # An IPv6 literal may come bracketed from "[::1]:3306".
        return host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return None


def describe_failure(
    reason: Failure | BaseException, address: str, identity: str | None
) -> str | None:
    """
    A clear message for a TLS handshake with a backend that failed.

    @param reason: why the connection ended (a C{service_identity}
        C{VerificationError}, an C{OpenSSL.SSL.Error}, a lost connection).
    @param address: the server's address.
    @param identity: the name its certificate had to carry.
    @return: e.g. C{"SSL connection error: the certificate of server
        127.0.0.1:3306 does not name 'db.example' (...)"}; C{None} when
        C{reason} is no TLS error (the connection was merely lost).
    """
    error: BaseException = (
        (reason.value or ConnectionError()) if isinstance(reason, Failure) else reason
    )
    kind = type(error).__name__
    if kind == "VerificationError":
        return (
            f"SSL connection error: the certificate of server {address} does not name "
            f"{identity!r} (the host of its address, or server_ssl_identity)"
        )
    text = _openssl_reasons(error)
    if "certificate verify failed" in text:
        return (
            f"SSL connection error: the certificate of server {address} was not signed by a "
            f"CA of server_ssl_ca ({text})"
        )
    if text or type(error).__module__.startswith("OpenSSL"):
        return f"SSL connection error with server {address}: {text or error or kind}"
    return None


def _openssl_reasons(error: BaseException) -> str:
    # OpenSSL.SSL.Error carries [(library, function, reason), ...].
    if type(error).__module__.startswith("OpenSSL") and error.args:
        first = error.args[0]
        if isinstance(first, list):
            reasons = [str(item[-1]) for item in first if isinstance(item, tuple) and item]
            return "; ".join(reason for reason in reasons if reason)
    return ""


def _read(path: str, item: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as e:
        raise TLSSetupError(f"{item}: cannot read {path!r}: {e.strerror}") from None


def _certificates(path: str, item: str) -> list[ssl.Certificate]:
    data = _read(path, item)
    blocks = _PEM_CERTIFICATE.findall(data)
    if not blocks:
        raise TLSSetupError(f"{item}: no PEM certificate in {path!r}")
    try:
        return [ssl.Certificate.loadPEM(block) for block in blocks]
    except Exception as e:
        raise TLSSetupError(f"{item}: {path!r} is not a valid certificate: {e}") from None


def _private_certificate(
    cert_path: str, key_path: str, cert_item: str, key_item: str
) -> tuple[ssl.PrivateCertificate, list[ssl.Certificate]]:
    chain = _certificates(cert_path, cert_item)
    key = _read(key_path, key_item)
    try:
        private = ssl.PrivateCertificate.loadPEM(chain[0].dumpPEM() + b"\n" + key)
    except VerifyError:
        raise TLSKeyMismatchError(
            f"{key_item}: {key_path!r} is not the key of {cert_item} {cert_path!r}"
        ) from None
    except Exception as e:
        raise TLSSetupError(f"{key_item}: {key_path!r} is not a valid private key: {e}") from None
    return private, chain[1:]


def _checked(options: Any, what: str) -> Any:
    # Make the context now (it is made lazily otherwise): a key that does not
    # belong to its certificate fails here, not at the first client.
    try:
        options.getContext()
    except Exception as e:
        reasons = _openssl_reasons(e)
        if "key values mismatch" in reasons or "check_private_key" in str(e):
            raise TLSKeyMismatchError(f"{what}: the key does not match the certificate") from None
        raise TLSSetupError(f"{what}: {reasons or e}") from None
    return options


def _client_side(settings: TLSSettings) -> ssl.CertificateOptions | None:
    if not settings.value("enable_client_ssl"):
        return None
    private, chain = _private_certificate(
        settings.value("client_ssl_cert"),
        settings.value("client_ssl_key"),
        "client_ssl_cert",
        "client_ssl_key",
    )
    options = ssl.CertificateOptions(
        privateKey=private.privateKey.original,
        certificate=private.original,
        extraCertChain=[certificate.original for certificate in chain],
        raiseMinimumTo=MINIMUM_TLS_VERSION,
    )
    return _checked(options, "client_ssl_cert/client_ssl_key")


@attrs.frozen
class _BackendMaterial:
    # What every backend's client context shares: the trust root and our own certificate.
    trust_root: Any
    certificate: ssl.PrivateCertificate | None


def _backend_material(settings: TLSSettings) -> _BackendMaterial | None:
    if not settings.value("enable_server_ssl"):
        return None
    ca = settings.value("server_ssl_ca")
    trust_root: Any
    if ca:
        trust_root = ssl.trustRootFromCertificates(_certificates(ca, "server_ssl_ca"))
    else:
        trust_root = ssl.platformTrust()
    certificate = None
    cert_path, key_path = settings.value("server_ssl_cert"), settings.value("server_ssl_key")
    if cert_path:
        certificate, _chain = _private_certificate(
            cert_path, key_path or cert_path, "server_ssl_cert", "server_ssl_key"
        )
    return _BackendMaterial(trust_root, certificate)


def _backend_options(material: _BackendMaterial, identity: str) -> Any:
    try:
        options = ssl.optionsForClientTLS(
            identity,
            trustRoot=material.trust_root,
            clientCertificate=material.certificate,
            extraCertificateOptions={"raiseMinimumTo": MINIMUM_TLS_VERSION},
        )
    except Exception as e:
        raise TLSSetupError(
            f"server_ssl_identity: cannot check servers as {identity!r}: {e}"
        ) from None
    return options


class TLSContexts:
    """
    The proxy's current TLS contexts (one per manager).

    @ivar settings: what they were made from.
    @ivar client_side: the server-role options a client's C{SSLRequest} is
        answered with, or C{None} when C{enable_client_ssl} is off.
    @ivar checks_users: whether a plain-text login must be checked for a user
        who requires TLS (L{users_may_require_tls}); C{False} spares every
        other proxy that look-up.
    @ivar generation: how often the contexts were rebuilt.
    """

    def __init__(self, config: Any) -> None:
        """
        @param config: the L{ProxyConfig<obproxy_tx.config.ProxyConfig>}.
        @raise TLSSetupError: the files do not make a context.
        """
        self.settings = TLSSettings.of(config)
        self.client_side: ssl.CertificateOptions | None = _client_side(self.settings)
        self._material = _backend_material(self.settings)
        self._backends: dict[str, Any] = {}
        self.generation = 0
        self.checks_users = users_may_require_tls(config.clusters)
        if self._material is not None:
            self._check_identity(self.settings.value("server_ssl_identity"))

    @property
    def server_enabled(self) -> bool:
        """
        Whether server sessions use TLS (C{enable_server_ssl}).
        """
        return self._material is not None

    def _check_identity(self, identity: str) -> None:
        # A name that cannot be checked (not IDNA) fails at load, not per session.
        if identity:
            self.for_identity(identity)

    def for_identity(self, identity: str) -> Any:
        """
        The client-role connection creator for servers whose certificate must
        name C{identity} (made once per name and generation).

        @raise TLSSetupError: C{enable_server_ssl} is off, or the name cannot
            be checked.
        """
        known = self._backends.get(identity)
        if known is not None:
            return known
        if self._material is None:
            raise TLSSetupError("enable_server_ssl is off")
        made = self._backends[identity] = _backend_options(self._material, identity)
        return made

    def for_server(self, host: str | None, address: str) -> tuple[Any, str]:
        """
        The connection creator for a server session to a server, and the name
        its certificate must carry.

        @param host: the host part of its address (C{None}: none).
        @param address: its address, for the error.
        @raise TLSSetupError: nothing to check its certificate against.
        """
        identity = server_identity(self.settings.value("server_ssl_identity"), host)
        if identity is None:
            raise TLSSetupError(
                f"server {address} has no host name to check its certificate against: "
                "set server_ssl_identity"
            )
        return self.for_identity(identity), identity

    def reload(self, config: Any) -> bool:
        """
        Rebuild the contexts when a TLS item or a file they were made from
        changed; new sessions get the new ones, open ones keep theirs.

        @param config: the configuration about to run.
        @return: whether anything was rebuilt.
        @raise TLSSetupError: the new files do not make a context; the
            current contexts stay.
        """
        # The users may change with the clusters, whether or not TLS did (set
        # below unless the reload fails, when the old configuration stays).
        checks_users = users_may_require_tls(config.clusters)
        settings = TLSSettings.of(config)
        if settings == self.settings:
            self.checks_users = checks_users
            return False
        try:
            fresh = TLSContexts(config)
        except TLSKeyMismatchError as e:
            # Half of a certificate change (ALTER sets one item at a time): keep
            # serving the current pair; the next reconfigure tries again.
            _log.warn("TLS files not reloaded yet: {error}", error=e)
            self.checks_users = checks_users
            return False
        self.checks_users = checks_users
        self.settings = fresh.settings
        self.client_side = fresh.client_side
        self._material = fresh._material
        self._backends = fresh._backends
        self.generation += 1
        # Names only (paths may say more than needed, contents never).
        _log.info(
            "TLS files reloaded: new sessions use them, open ones keep theirs (client side: "
            "{client}, server side: {server})",
            client="on" if self.client_side is not None else "off",
            server="on" if self.server_enabled else "off",
        )
        return True


def check_files(config: Any) -> None:
    """
    Check at start that the TLS files make contexts (a key that belongs to
    its certificate, PEM that parses), so a bad file stops the proxy with one
    line naming the item rather than a traceback.

    @param config: the L{ProxyConfig<obproxy_tx.config.ProxyConfig>}.
    @raise obproxy_tx.config.ConfigError: naming the item and its origin.
    """
    try:
        TLSContexts(config)
    except TLSSetupError as e:
        from obproxy_tx.config import ConfigError

        origin = config.origins.get(e.item, config.source)
        problem = str(e).split(": ", 1)[-1]
        raise ConfigError(problem, origin=origin, path=e.item) from None


#: Contexts for the proxy's own connections, by the settings they were made from.
_METADATA: dict[TLSSettings, TLSContexts] = {}


def metadata_tls(config: Any, server: Any) -> Any:
    """
    TLS options for the proxy's own logins to a server (the metadata account:
    learned users, replica and health checks), like its server sessions':
    with C{enable_server_ssl}, the same CA and name checks; else C{None}.

    The contexts are made once per settings (files as they are now), so a
    reload is followed here too.

    @param config: the L{ProxyConfig<obproxy_tx.config.ProxyConfig>}.
    @param server: the L{BackendServer<obproxy_tx.config.BackendServer>}.
    @raise TLSSetupError: the files do not make a context.
    """
    if not config.enable_server_ssl:
        return None
    settings = TLSSettings.of(config)
    contexts = _METADATA.get(settings)
    if contexts is None:
        if len(_METADATA) >= 4:
            _METADATA.clear()
        contexts = _METADATA[settings] = TLSContexts(config)
    return contexts.for_server(server.host, server.address)[0]


def users_may_require_tls(clusters: Iterable[Any]) -> bool:
    """
    Whether a user of C{clusters} may require TLS: one of their user entries
    has C{require_ssl}, or a cluster learns its users from its servers (whose
    accounts may say C{REQUIRE SSL}).

    @param clusters: L{ClusterConfig<obproxy_tx.config.ClusterConfig>}s.
    """
    return any(
        cluster.learn_users or any(user.require_ssl for user in cluster.users)
        for cluster in clusters
    )


def start_server_tls(protocol: Any, conn: Any, options: Any) -> None:
    """
    Answer a client's C{SSLRequest}: start TLS as the server on its
    connection, tell the conversation, and hand the TLS layer what came
    behind the request (a client sends its TLS hello without waiting).

    @param protocol: the client session (the transport's protocol).
    @param conn: its L{ServerConnection<obproxy_tx.wire.connection.ServerConnection>},
        in C{SSL_REQUESTED}.
    @param options: the server-role options (L{TLSContexts.client_side}).
    @raise RemoteProtocolError: TLS is off now (a reload since the greeting).
    """
    if options is None:
        raise RemoteProtocolError("SSL is not enabled on this proxy", ErrorCode.ER_HANDSHAKE_ERROR)
    transport = protocol.transport
    transport.startTLS(options)
    conn.tls_started()
    trailing, conn.trailing_data = conn.trailing_data, b""
    # startTLS put the TLS layer between the transport and us: it takes the bytes.
    wrapper = getattr(transport, "protocol", None)
    if trailing and wrapper is not None and wrapper is not protocol:
        wrapper.dataReceived(trailing)


class ServerTLSError(Exception):
    """
    TLS with a backend could not be set up: the server does not offer it, or
    its certificate is not trusted or does not name it. The server session
    never logged in; the message says which server and why.
    """
