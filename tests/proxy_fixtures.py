"""
Starting the proxy in this process in front of real servers, for integration tests.

The proxy runs on the test reactor (pytest-twisted); blocking clients run in worker threads
(L{in_thread}) or subprocesses so that the reactor keeps serving the proxy while they wait.

  - L{start_proxy}: a proxy for one test bed server (L{tests.testbed.Server}) with its
    C{native} and C{admin} accounts configured;
  - L{start_proxy_for}: the general form, for any server list, accounts and extra configuration,
    optionally also listening on a unix socket;
  - L{stop_proxy}: stop listening and close every session.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any, Callable, Dict, Iterator, List, Mapping, Sequence, Tuple

import attrs
import pymysql
import pytest_twisted
from twisted.internet import defer, threads
from twisted.internet import reactor as _reactor

from obproxy_tx.config import parse_config
from obproxy_tx.session.manager import SessionManager

#: The global reactor, untyped (its interfaces lack listenUNIX).
reactor: Any = _reactor

#: The test bed servers proxy tests run against.
BACKENDS = ["seekdb", "mariadb"]


def verifier(password: str) -> str:
    """
    The C{*HEX} verifier MySQL stores for C{password} (C{""} for no password).
    """
    if not password:
        return ""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


@attrs.define
class Proxy:
    """
    A proxy listening on a free port in front of one server.

    @ivar manager: the proxy's session manager.
    @ivar port: the TCP port it listens on (C{127.0.0.1}).
    @ivar listener: the TCP listening port.
    @ivar backend: the test bed server behind it (or C{None}).
    @ivar user: the user name clients log in with.
    @ivar password: that user's password.
    @ivar unix_socket: the unix socket it also listens on, if any.
    @ivar unix_listener: the unix listening port, if any.
    """

    manager: SessionManager
    port: int
    listener: Any
    backend: Any
    user: str
    password: str
    unix_socket: str | None = None
    unix_listener: Any = None

    def connect(self, **kwargs: Any) -> pymysql.connections.Connection:
        """
        A PyMySQL connection through the proxy (blocking: call it in a thread).
        """
        options: Dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.backend.database,
            "autocommit": True,
        }
        options.update(kwargs)
        return pymysql.connect(**options)

    def direct(self, **kwargs: Any) -> pymysql.connections.Connection:
        """
        A PyMySQL connection straight to the backend (admin account).
        """
        admin = self.backend.accounts["admin"]
        options: Dict[str, Any] = {
            "host": self.backend.host,
            "port": self.backend.port,
            "user": admin.user,
            "password": admin.password,
            "autocommit": True,
        }
        options.update(kwargs)
        return pymysql.connect(**options)

    def backend_id(self, cursor: Any) -> int:
        """
        The backend connection id of the server session that runs the only client's statements
        (C{CONNECTION_ID()} through the proxy is the client's own id): runs C{SELECT 1} on
        C{cursor}, then reads the id of the server session it left bound (blocking: in a thread).
        """
        cursor.execute("SELECT 1")
        cursor.fetchall()
        bound = self.only_client_session().bound
        assert bound is not None
        return int(bound.backend_id)

    def only_client_session(self) -> Any:
        """
        The one client session the proxy has.
        """
        sessions = list(self.manager.client_sessions.values())
        assert len(sessions) == 1, sessions
        return sessions[0]


def start_proxy_for(
    servers: Sequence[str],
    cluster_type: str,
    accounts: Sequence[Tuple[str, str]],
    *,
    name: str = "cl_test",
    extra: str = "",
    cluster_extra: str = "",
    unix_socket: str | None = None,
    backend: Any = None,
) -> Proxy:
    """
    Start a proxy with one cluster and listen on a free loopback port (and C{unix_socket}).

    @param servers: the cluster's C{host:port} servers.
    @param cluster_type: C{"mysql"} or C{"oceanbase"}.
    @param accounts: C{(user, password)} pairs configured as the cluster's users; the first is
        the one L{Proxy.connect} logs in with.
    @param name: the cluster's name.
    @param extra: top-level configuration lines (YAML).
    @param cluster_extra: more keys of the cluster (YAML, indented by four spaces).
    @param unix_socket: a path to listen on as well (clients connecting to C{localhost}).
    @param backend: the server behind it, for L{Proxy.connect} and L{Proxy.direct}.
    """
    users = "\n".join(
        f"      - {{name: {user}, tenant: sys, verifier: '{verifier(password)}'}}"
        for user, password in accounts
    )
    text = f"""
listen_port: 2883
{extra}
clusters:
  - name: {name}
    type: {cluster_type}
    servers: [{", ".join(repr(s) for s in servers)}]
{cluster_extra}
    users:
{users}
"""
    manager = SessionManager(parse_config(text), reactor)
    manager.startService()
    factory: Any = manager.listener_factory()
    listener = reactor.listenTCP(0, factory, interface="127.0.0.1")
    unix_listener = reactor.listenUNIX(unix_socket, factory) if unix_socket else None
    user, password = accounts[0]
    return Proxy(
        manager,
        listener.getHost().port,
        listener,
        backend,
        user,
        password,
        unix_socket,
        unix_listener,
    )


def start_proxy(backend: Any, extra: str = "", servers: List[str] | None = None) -> Proxy:
    """
    Start a proxy for the test bed server C{backend} with its C{native} and C{admin} accounts.
    """
    native = backend.accounts["native"]
    admin = backend.accounts["admin"]
    kind = "oceanbase" if backend.kind.startswith("seekdb") else "mysql"
    return start_proxy_for(
        servers or [f"{backend.host}:{backend.port}"],
        kind,
        [(native.user, native.password), (admin.user, admin.password)],
        name=f"cl_{backend.kind}",
        extra=extra,
        backend=backend,
    )


def stop_proxy(proxy: Proxy) -> None:
    """
    Stop listening and close every session (call it from the reactor thread).
    """
    pytest_twisted.blockon(proxy.listener.stopListening())
    if proxy.unix_listener is not None:
        pytest_twisted.blockon(proxy.unix_listener.stopListening())
    proxy.manager.stopService()


def stop_proxy_later(proxy: Proxy) -> Any:
    """
    Stop listening and close every session, from inside an C{inlineCallbacks} test.

    @return: a Deferred that fires once both listeners are closed.
    """
    listeners = [proxy.listener] + ([proxy.unix_listener] if proxy.unix_listener else [])
    done = defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in listeners])
    done.addCallback(lambda _: proxy.manager.stopService())
    return done


def in_thread(function: Callable[..., Any], *args: Any) -> Any:
    """
    Run blocking client code in a thread; the reactor keeps serving the proxy.
    """
    return threads.deferToThread(function, *args)


def in_thread_then_stop(proxy: Proxy, function: Callable[..., Any], *args: Any) -> Any:
    """
    Run blocking client code in a thread (L{in_thread}), then stop the proxy
    (L{stop_proxy_later}) whatever the code did.

    @return: a Deferred that fires with the code's result, or fails with its
        error, once the proxy is stopped.
    """

    def stop(result: Any) -> Any:
        stopped = stop_proxy_later(proxy)
        stopped.addCallback(lambda _: result)
        return stopped

    return in_thread(function, *args).addBoth(stop)


@contextlib.contextmanager
def mariadb_accounts(
    mariadb: Any, accounts: Mapping[str, str], grant: str = "SELECT ON {database}.*"
) -> Iterator[None]:
    """
    Accounts on the MariaDB test bed for the time of the C{with} block,
    made with its C{admin} account (the test bed's own C{root} logs in only
    through the unix socket) and dropped afterwards.

    @param mariadb: the C{mariadb} fixture's server.
    @param accounts: C{"'user'@'host'"} -> password (mysql_native_password).
    @param grant: what each account is granted (C{{database}} is the test
        bed's database).
    """
    admin = mariadb.account("admin")
    direct = pymysql.connect(
        host=mariadb.host,
        port=mariadb.port,
        user=admin.user,
        password=admin.password,
        autocommit=True,
    )
    try:
        with direct.cursor() as cursor:
            for name, password in accounts.items():
                quoted = name.replace("%", "%%")  # the statement goes through %-formatting
                cursor.execute(
                    f"CREATE OR REPLACE USER {quoted} IDENTIFIED VIA mysql_native_password "
                    "USING PASSWORD(%s)",
                    (password,),
                )
                cursor.execute(
                    f"GRANT {grant.format(database=mariadb.database)} TO {name}"
                    + (" WITH GRANT OPTION" if grant.startswith("ALL") else "")
                )
        yield
    finally:
        with direct.cursor() as cursor:
            for name in accounts:
                cursor.execute(f"DROP USER IF EXISTS {name}")
        direct.close()
