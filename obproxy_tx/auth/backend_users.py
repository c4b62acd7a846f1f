"""
User verifiers learned from a MySQL, MariaDB or OceanBase (seekdb) backend.

The proxy checks clients against C{SHA1(SHA1(password))} verifiers
(L{obproxy_tx.wire.scramble.check_native_password}). Besides the ones in the
configuration, a cluster with C{learn_users} reads them from the backend
itself through a metadata account, so an account created on the backend can
log in through the proxy at once (backends.md, "Logging in through a proxy
without holding passwords"):

  - MariaDB 10.4+: C{mysql.global_priv}, a JSON column per account
    (C{plugin}, C{authentication_string} = C{*HEX}, alternatives in
    C{auth_or}, C{account_locked}, C{is_role});
  - older MariaDB and MySQL: C{mysql.user} (C{Password} or
    C{authentication_string});
  - seekdb / OceanBase: C{mysql.user.password} (plugin C{ob_native_password}).

L{load_users} reads them over a logged-in
L{MySQLClientProtocol<obproxy_tx.protocol.client.MySQLClientProtocol>};
L{BackendUserDirectory} keeps them per cluster and refreshes on an unknown
user, at most once per C{refresh_interval} (concurrent lookups share one
refresh). Accounts that do not use C{mysql_native_password} (C{ed25519},
C{unix_socket}, C{caching_sha2_password}, ...) or are locked are kept with the
reason, and L{BackendUserDirectory.lookup} raises L{UnsupportedUserError} for
them instead of failing the login without a word.

Host matching follows MySQL: C{%} and C{_} wildcards (case-insensitive),
C{ip/netmask}, and the most specific host first (literal hosts, then patterns
by how late their first wildcard comes, C{%} last; a named user before the
anonymous C{''} user). Host names are not resolved (as with
C{skip-name-resolve}); C{localhost} matches the loopback addresses.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any, Callable, Iterable, Sequence

import attrs
from twisted.internet import defer
from twisted.internet.endpoints import clientFromString
from twisted.logger import Logger
from twisted.python.failure import Failure

from obproxy_tx.protocol.interfaces import ServerError
from obproxy_tx.wire.scramble import verifier_from_hex

__all__ = [
    "NATIVE_PLUGINS",
    "BackendUserDirectory",
    "BackendUsersError",
    "UnsupportedUserError",
    "UserVerifier",
    "directory_for",
    "host_matches",
    "load_users",
    "parse_global_priv",
    "parse_user_row",
]

#: Plugins whose stored secret is the C{mysql_native_password} verifier.
NATIVE_PLUGINS = frozenset({"mysql_native_password", "ob_native_password", ""})

_HEX_VERIFIER = re.compile(r"\*?[0-9A-Fa-f]{40}\Z")
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
# MySQL error numbers: the table does not exist / SELECT denied on it.
_ER_NO_SUCH_TABLE = 1146
_ER_TABLEACCESS_DENIED_ERROR = 1142


class BackendUsersError(Exception):
    """
    The users of a backend could not be read (metadata login refused, no
    server reachable, tables not readable). The message says which cluster,
    which account and what went wrong.
    """


class UnsupportedUserError(Exception):
    """
    The account exists on the backend but the proxy cannot check it: its
    plugin is not C{mysql_native_password}, it is locked, or its stored
    secret is not a verifier.

    @ivar user: the matching account.
    """

    def __init__(self, user: UserVerifier) -> None:
        super().__init__(
            f"account '{user.user}'@'{user.host}' cannot log in through the proxy: "
            f"{user.unsupported_reason}"
        )
        self.user = user


@attrs.frozen
class UserVerifier:
    """
    One backend account and what the proxy needs to check its password.

    @ivar user: the account's user name (C{""} for the anonymous user).
    @ivar host: its host pattern (C{%}, C{10.0.%}, C{localhost}, ...).
    @ivar plugin: its authentication plugin.
    @ivar verifier: the stored C{SHA1(SHA1(password))} (C{b""} for an empty
        password), or C{None} when the proxy cannot use this account.
    @ivar unsupported_reason: why it cannot, else C{None}.
    @ivar require_tls: the account requires TLS (C{REQUIRE SSL/X509/...}).
    """

    user: str
    host: str
    plugin: str
    verifier: bytes | None = attrs.field(repr=False)
    unsupported_reason: str | None = None
    require_tls: bool = False

    @property
    def supported(self) -> bool:
        """
        Whether the proxy can check this account's password.
        """
        return self.verifier is not None


# --------------------------------------------------------------------------
# Reading the tables
# --------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "surrogateescape")
    return str(value)


def _native(user: str, host: str, plugin: str, secret: str, require_tls: bool) -> UserVerifier:
    secret = secret.strip()
    if not secret:
        return UserVerifier(user, host, plugin, b"", None, require_tls)
    if _HEX_VERIFIER.match(secret):
        return UserVerifier(user, host, plugin, verifier_from_hex(secret), None, require_tls)
    return UserVerifier(
        user, host, plugin, None, "its stored password is not a native verifier", require_tls
    )


def parse_global_priv(user: str, host: str, priv: str | bytes) -> UserVerifier | None:
    """
    Read one row of MariaDB's C{mysql.global_priv}.

    The first authentication alternative (C{auth_or}; an empty one stands
    for the top-level C{plugin}/C{authentication_string}) that is a native
    password with a usable verifier wins.

    @param user: the C{User} column.
    @param host: the C{Host} column.
    @param priv: the C{Priv} JSON.
    @return: the account, or C{None} for roles.
    """
    try:
        data = json.loads(_text(priv) or "{}")
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    if data.get("is_role"):
        return None
    require_tls = bool(data.get("ssl_type"))
    top = {
        "plugin": data.get("plugin", "mysql_native_password"),
        "authentication_string": data.get("authentication_string", ""),
    }
    alternatives = data.get("auth_or")
    if not isinstance(alternatives, list) or not alternatives:
        alternatives = [{}]
    candidates = [entry if entry else top for entry in alternatives if isinstance(entry, dict)]
    plugins = []
    result: UserVerifier | None = None
    for candidate in candidates:
        plugin = _text(candidate.get("plugin", "mysql_native_password"))
        plugins.append(plugin or "mysql_native_password")
        if plugin in NATIVE_PLUGINS:
            found = _native(
                user, host, plugin, _text(candidate.get("authentication_string")), require_tls
            )
            if found.supported:
                result = found
                break
            result = result or found
    if result is None:
        result = UserVerifier(
            user,
            host,
            plugins[0] if plugins else "",
            None,
            f"it authenticates with {' or '.join(plugins)}, not mysql_native_password",
            require_tls,
        )
    elif not result.supported and len(plugins) > 1:
        result = attrs.evolve(
            result,
            unsupported_reason=f"it authenticates with {' or '.join(plugins)}, "
            "and has no usable mysql_native_password verifier",
        )
    if data.get("account_locked") and result.supported:
        result = attrs.evolve(result, verifier=None, unsupported_reason="the account is locked")
    return result


def parse_user_row(row: dict[str, Any]) -> UserVerifier | None:
    """
    Read one row of C{mysql.user} (MySQL, MariaDB before 10.4, seekdb),
    given as a mapping with lower-cased column names.

    @param row: the row.
    @return: the account, or C{None} for roles.
    """
    if _text(row.get("is_role")).upper() == "Y":
        return None
    user = _text(row.get("user"))
    host = _text(row.get("host"))
    plugin = _text(row.get("plugin")) if "plugin" in row else ""
    require_tls = bool(_text(row.get("ssl_type")).strip())
    if plugin not in NATIVE_PLUGINS:
        return UserVerifier(
            user,
            host,
            plugin,
            None,
            f"it authenticates with {plugin}, not mysql_native_password",
            require_tls,
        )
    secret = ""
    for column in ("authentication_string", "password"):
        value = _text(row.get(column)).strip()
        if value:
            secret = value
            break
    found = _native(user, host, plugin or "mysql_native_password", secret, require_tls)
    if _text(row.get("account_locked")).upper() == "Y" and found.supported:
        found = attrs.evolve(found, verifier=None, unsupported_reason="the account is locked")
    return found


def _rows_as_dicts(result: Any) -> list[dict[str, Any]]:
    names = [name.lower() for name in result.column_names]
    return [dict(zip(names, row)) for row in result.rows]


async def _load_users(connection: Any) -> list[UserVerifier]:
    users: list[UserVerifier] = []
    try:
        result = await connection.query("SELECT User, Host, Priv FROM mysql.global_priv")
    except ServerError as error:
        if error.code not in (_ER_NO_SUCH_TABLE, _ER_TABLEACCESS_DENIED_ERROR):
            raise
    else:
        for row in _rows_as_dicts(result):
            found = parse_global_priv(_text(row.get("user")), _text(row.get("host")), row["priv"])
            if found is not None:
                users.append(found)
        return users
    result = await connection.query("SELECT * FROM mysql.user")
    for row in _rows_as_dicts(result):
        found = parse_user_row(row)
        if found is not None:
            users.append(found)
    return users


def load_users(connection: Any) -> defer.Deferred[list[UserVerifier]]:
    """
    Read every account of a backend: C{mysql.global_priv} when it exists
    (MariaDB 10.4+), else C{mysql.user}.

    @param connection: a logged-in
        L{MySQLClientProtocol<obproxy_tx.protocol.client.MySQLClientProtocol>}
        (anything with its C{query} method) whose user may read these tables.
    @return: a Deferred of the accounts (roles left out), in table order;
        fails with L{ServerError} when the tables cannot be read.
    """
    return defer.ensureDeferred(_load_users(connection))


# --------------------------------------------------------------------------
# Host matching
# --------------------------------------------------------------------------


def _like(pattern: str, text: str) -> bool:
    regex = "".join(
        ".*" if char == "%" else "." if char == "_" else re.escape(char) for char in pattern
    )
    return re.fullmatch(regex, text, re.IGNORECASE | re.DOTALL) is not None


def host_matches(pattern: str, host: str) -> bool:
    """
    Whether a client address matches an account's host pattern, as MySQL
    decides it.

    @param pattern: the account's host (C{%}, C{10.0.0.%}, C{192.168.0.0/255.255.255.0},
        C{localhost}, an address, a name).
    @param host: the client's address (or name).
    @return: whether it matches.
    """
    if pattern in ("%", ""):
        return True
    if "/" in pattern:
        network, _, mask = pattern.partition("/")
        try:
            address = int(ipaddress.IPv4Address(host))
            net = int(ipaddress.IPv4Address(network))
            netmask = int(ipaddress.IPv4Address(mask))
        except ValueError:
            return False
        return address & netmask == net
    if pattern.lower() == "localhost":
        return host.lower() in _LOOPBACK
    if "%" in pattern or "_" in pattern:
        return _like(pattern, host)
    return pattern.lower() == host.lower()


def _specificity(user: UserVerifier) -> tuple[int, int, int]:
    host = user.host
    wildcard = min((i for i, c in enumerate(host) if c in "%_"), default=-1)
    exact = 1 if wildcard < 0 and "/" not in host else 0
    prefix = len(host) if wildcard < 0 else wildcard
    # sorted ascending: negate so the most specific comes first
    return (-exact, -prefix, 0 if user.user else 1)


def _best_match(accounts: Iterable[UserVerifier], user: str, host: str) -> UserVerifier | None:
    candidates = [
        account
        for account in accounts
        if account.user in (user, "") and host_matches(account.host, host)
    ]
    if not candidates:
        return None
    return sorted(candidates, key=_specificity)[0]


# --------------------------------------------------------------------------
# The directory
# --------------------------------------------------------------------------

#: Opens a logged-in metadata connection.
Connector = Callable[[], "defer.Deferred[Any]"]


class BackendUserDirectory:
    """
    The accounts of one cluster, read from its servers through the metadata
    account, cached, and refreshed when a login names an unknown user.

    @ivar cluster_name: the cluster's name (for messages).
    @ivar accounts: the accounts read by the last refresh, in table order.
    @ivar loaded: whether a refresh has succeeded.
    @ivar refresh_interval: the least time between two refreshes, in seconds.
    @ivar refresh_count: how many refreshes ran (successful or not).
    """

    _log = Logger()

    def __init__(
        self,
        config: Any,
        cluster: Any,
        reactor: Any = None,
        *,
        connect: Connector | None = None,
        refresh_interval: float = 1.0,
    ) -> None:
        """
        @param config: the L{ProxyConfig<obproxy_tx.config.ProxyConfig>}
            (C{metadata_user}, C{metadata_password},
            C{short_async_task_timeout}); may be C{None} with C{connect}.
        @param cluster: the L{ClusterConfig<obproxy_tx.config.ClusterConfig>}
            (its C{name} and C{servers}, tried in order).
        @param reactor: the reactor (default the global one).
        @param connect: opens a logged-in metadata connection (default:
            L{obproxy_tx.protocol.client.connect} to the cluster's servers
            as C{metadata_user}).
        @param refresh_interval: the least time between two refreshes.
        """
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.reactor: Any = reactor
        self.config = config
        self._cluster = cluster
        self.cluster_name: str = getattr(cluster, "name", str(cluster))
        self._connect = connect or self._connect_metadata
        self.refresh_interval = refresh_interval
        self.accounts: tuple[UserVerifier, ...] = ()
        self.loaded = False
        self.refresh_count = 0
        self._last_refresh: float | None = None
        self._refreshing: defer.Deferred[None] | None = None
        self._waiters: list[defer.Deferred[None]] = []
        self._scheduled: Any = None

    # -- connecting -------------------------------------------------------------

    async def _connect_metadata_async(self) -> Any:
        from obproxy_tx.protocol.client import connect
        from obproxy_tx.tls import metadata_tls

        user = getattr(self.config, "metadata_user", "") or ""
        password = getattr(self.config, "metadata_password", "") or ""
        timeout = getattr(self.config, "short_async_task_timeout", 5.0) or 5.0
        servers: Sequence[Any] = getattr(self._cluster, "servers", ()) or ()
        if not user:
            raise BackendUsersError(
                f"cluster {self.cluster_name!r}: no metadata_user configured to read "
                "users from the backend"
            )
        if not servers:
            raise BackendUsersError(f"cluster {self.cluster_name!r} has no servers")
        problems = []
        for server in servers:
            endpoint = clientFromString(self.reactor, server.endpoint)
            try:
                # enable_server_ssl: the metadata login over TLS too.
                tls = metadata_tls(self.config, server)
                return await connect(
                    self.reactor, endpoint, user, password, timeout=timeout, tls=tls
                )
            except ServerError as error:
                raise BackendUsersError(
                    f"cluster {self.cluster_name!r}: metadata login as {user!r} to "
                    f"{server.address} refused: {error.code} {error.message}"
                ) from error
            except Exception as error:
                problems.append(f"{server.address}: {error}")
        raise BackendUsersError(
            f"cluster {self.cluster_name!r}: no server reachable to read users "
            f"({'; '.join(problems)})"
        )

    def _connect_metadata(self) -> defer.Deferred[Any]:
        return defer.ensureDeferred(self._connect_metadata_async())

    # -- refreshing -----------------------------------------------------------------

    async def _refresh_once(self) -> None:
        self.refresh_count += 1
        self._last_refresh = self.reactor.seconds()
        try:
            connection = await self._connect()
        except BackendUsersError:
            raise
        except ServerError as error:
            raise BackendUsersError(
                f"cluster {self.cluster_name!r}: metadata login refused: "
                f"{error.code} {error.message}"
            ) from error
        try:
            try:
                accounts = await load_users(connection)
            except ServerError as error:
                raise BackendUsersError(
                    f"cluster {self.cluster_name!r}: the metadata account cannot read the "
                    f"user tables: {error.code} {error.message}"
                ) from error
        finally:
            try:
                connection.quit()
            except Exception:
                self._log.failure("closing the metadata connection")
        self.accounts = tuple(accounts)
        self.loaded = True
        unsupported = [a for a in accounts if not a.supported]
        self._log.info(
            "cluster {cluster}: {count} backend accounts ({unsupported} not usable)",
            cluster=self.cluster_name,
            count=len(accounts),
            unsupported=len(unsupported),
        )

    def refresh(self) -> defer.Deferred[None]:
        """
        Read the accounts again now (or join the refresh already running).

        @return: a Deferred firing when done; fails with L{BackendUsersError}.
        """
        waiter: defer.Deferred[None] = defer.Deferred()
        self._waiters.append(waiter)
        if self._refreshing is None:
            if self._scheduled is not None and self._scheduled.active():
                self._scheduled.cancel()
            self._scheduled = None
            self._start_refresh()
        return waiter

    def _start_refresh(self) -> None:
        # Waiters are registered before this, since the refresh may finish
        # synchronously.
        running = defer.ensureDeferred(self._refresh_once())
        if running.called:
            running.addBoth(self._refreshed)
            return
        self._refreshing = running
        running.addBoth(self._refreshed)

    def _refreshed(self, result: Any) -> None:
        self._refreshing = None
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(None)
        if isinstance(result, Failure) and not waiters:
            self._log.failure("refreshing users of {cluster}", result, cluster=self.cluster_name)

    def _refresh_soon(self) -> defer.Deferred[None]:
        """
        Refresh as soon as the rate limit allows; callers share it.
        """
        if self._refreshing is not None or self._last_refresh is None:
            return self.refresh()
        wait = self._last_refresh + self.refresh_interval - self.reactor.seconds()
        if wait <= 0:
            return self.refresh()
        waiter: defer.Deferred[None] = defer.Deferred()
        self._waiters.append(waiter)
        if self._scheduled is None or not self._scheduled.active():
            self._scheduled = self.reactor.callLater(wait, self._scheduled_refresh)
        return waiter

    def _scheduled_refresh(self) -> None:
        self._scheduled = None
        if self._refreshing is None:
            self._start_refresh()

    # -- lookups ----------------------------------------------------------------------

    def find(self, user: str, host: str = "%") -> UserVerifier | None:
        """
        The cached account a login of C{user} from C{host} would use, without
        refreshing.

        @param user: the user name.
        @param host: the client's address; C{%} for any.
        @return: the account, or C{None}.
        """
        if host == "%":
            named = [account for account in self.accounts if account.user == user]
            if named:
                # the least specific host (the 'user'@'%' account), first in table order
                return max(named, key=_specificity)
        return _best_match(self.accounts, user, host)

    async def _lookup(self, user: str, host: str) -> UserVerifier | None:
        found = self.find(user, host)
        if found is None or not self.loaded:
            await self._refresh_soon()
            found = self.find(user, host)
        if found is not None and not found.supported:
            raise UnsupportedUserError(found)
        return found

    def lookup(self, user: str, host: str = "%") -> defer.Deferred[UserVerifier | None]:
        """
        Find the account a login of C{user} from C{host} uses, refreshing
        the cache first when the user is unknown (at most once per
        C{refresh_interval}; concurrent lookups share the refresh).

        @param user: the user name.
        @param host: the client's address (C{%}: any account of that user,
            the least specific host first, i.e. the C{'user'@'%'} account).
        @return: a Deferred of the account (its C{verifier} is what
            L{check_native_password<obproxy_tx.wire.scramble.check_native_password>}
            needs), or C{None} when the backend has no such user; fails with
            L{UnsupportedUserError} for an account the proxy cannot check and
            L{BackendUsersError} when the users cannot be read.
        """
        return defer.ensureDeferred(self._lookup(user, host))


def directory_for(config: Any, cluster: Any, reactor: Any = None) -> BackendUserDirectory | None:
    """
    The user directory of a cluster that learns its users, else C{None}.

    @param config: the L{ProxyConfig<obproxy_tx.config.ProxyConfig>}.
    @param cluster: the L{ClusterConfig<obproxy_tx.config.ClusterConfig>}.
    @param reactor: the reactor.
    @return: a new L{BackendUserDirectory}, or C{None}.
    """
    if not getattr(cluster, "learn_users", False):
        return None
    return BackendUserDirectory(config, cluster, reactor)
