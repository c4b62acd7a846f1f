"""
Who may do what with the proxy's admin commands, against real MariaDB through
the proxy, with real clients: PyMySQL for the matrix, the C{mariadb} CLI where
the SQLSTATE of an error matters (PyMySQL does not keep it).

One cluster of type C{mysql}; its users live in three tenants and map to
MariaDB accounts of the same name (a C{mysql} cluster logs in to the server
with the bare user name):

  - C{root@sys} (MariaDB C{'root'@'127.0.0.1'}: the test bed's own root only
    logs in through the unix socket), the cluster's root;
  - C{ops@sys}, another user of the C{sys} tenant;
  - C{alice@t1} and C{bob@t1}, two users of one tenant;
  - C{carol@t2}, alone in another tenant;
  - the local admin C{root@proxysys}, checked against C{obproxy_sys_password}.

The rules (ODP's, with the project's two tightenings, see
L{obproxy_tx.admin.access}): the C{sys} tenant sees every session of its
cluster, others only their own user's; killing yourself answers 1317 and
closes the connection; killing another user's session needs C{root@sys} or
C{root@proxysys} (1095 otherwise, 1094 for a session you may not even see);
the details of a session you may not see answer 1094; C{KILL PROXYSESSION}
from a non-admin and malformed proxy commands answer 5010 (21000); admin
statements of non-admins that are not the proxy's to answer go to the backend.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from typing import Any, Callable, Dict, Iterator, List, Sequence, Set, Tuple

import pymysql
import pytest
import pytest_twisted

from obproxy_tx.config import parse_config
from obproxy_tx.session.manager import SessionManager
from tests.proxy_fixtures import (
    Proxy,
    in_thread,
    mariadb_accounts,
    reactor,
    stop_proxy,
    stop_proxy_later,
    verifier,
)
from tests.testbed import Server

pytestmark = pytest.mark.integration

#: proxy login -> (MariaDB account, password). The tenant is the proxy's only.
USERS: Dict[str, Tuple[str, str]] = {
    "root@sys": ("root", "h5_root_pw"),
    "ops@sys": ("ops", "h5_ops_pw"),
    "alice@t1": ("alice", "h5_alice_pw"),
    "bob@t1": ("bob", "h5_bob_pw"),
    "carol@t2": ("carol", "h5_carol_pw"),
}
#: MariaDB host part of each account: root@localhost is the socket-only root.
HOSTS = {"root": "127.0.0.1"}
PROXYSYS = "root@proxysys"
PROXYSYS_PASSWORD = "h5_proxysys_pw"
DEAD_SERVER = "127.0.0.1:1"
"""A server address nothing listens on: a proxy in front of it has no backend."""

#: Errors as ODP answers them (code, SQLSTATE).
UNKNOWN_THREAD = 1094
NOT_OWNER = 1095
INTERRUPTED = 1317
BAD_INTERNAL_CMD = 5010
MARIADB_SYNTAX = 1064
ACCESS_DENIED = 1045


# --------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def accounts(mariadb: Server) -> Iterator[Server]:
    """
    The MariaDB accounts behind the proxy's users, created for this module
    and dropped after it. Nobody gets PROCESS or SUPER: whatever the proxy
    lets them do is the proxy's decision, not the server's.
    """
    names = {
        f"'{account}'@'{HOSTS.get(account, '%')}'": password for account, password in USERS.values()
    }
    with mariadb_accounts(mariadb, names):
        yield mariadb


def config_text(servers: Sequence[str], extra: str = "") -> str:
    """
    The proxy configuration: one C{mysql} cluster with every user of L{USERS}
    and C{root@proxysys}'s verifier.

    @param servers: the cluster's servers.
    @param extra: more top-level items (YAML).
    """
    users = "\n".join(
        f"      - {{name: {login.split('@')[0]}, tenant: {login.split('@')[1]}, "
        f"verifier: '{verifier(password)}'}}"
        for login, (_, password) in USERS.items()
    )
    return f"""
obproxy_sys_password: '{verifier(PROXYSYS_PASSWORD)}'
{extra}
clusters:
  - name: cl_priv
    type: mysql
    servers: [{", ".join(repr(s) for s in servers)}]
    users:
{users}
"""


def start(text: str, backend: Any = None) -> Proxy:
    """
    Start a proxy with configuration C{text} on a free loopback port.
    """
    manager = SessionManager(parse_config(text), reactor)
    manager.startService()
    listener = reactor.listenTCP(0, manager.listener_factory(), interface="127.0.0.1")
    return Proxy(manager, listener.getHost().port, listener, backend, PROXYSYS, PROXYSYS_PASSWORD)


@pytest.fixture
def proxy(accounts: Server) -> Iterator[Proxy]:
    """A proxy in front of MariaDB with the users above."""
    started = start(config_text([f"{accounts.host}:{accounts.port}"]), accounts)
    yield started
    stop_proxy(started)


# --------------------------------------------------------------------------------------
# Clients (blocking: they run in worker threads)


def connect(proxy: Proxy, login: str, password: str | None = None) -> Any:
    """
    Log in through the proxy as C{login} (a key of L{USERS} or L{PROXYSYS}).
    """
    if password is None:
        password = PROXYSYS_PASSWORD if login == PROXYSYS else USERS[login][1]
    return pymysql.connect(
        host="127.0.0.1",
        port=proxy.port,
        user=login,
        password=password,
        autocommit=True,
        connect_timeout=10,
        read_timeout=30,
    )


def run(connection: Any, sql: str) -> Tuple[List[str], List[Tuple[Any, ...]]]:
    """
    Run C{sql}; return the column names and rows.
    """
    with connection.cursor() as cursor:
        cursor.execute(sql)
        names = [d[0] for d in cursor.description or ()]
        return names, list(cursor.fetchall())


def error(connection: Any, sql: str) -> Tuple[int, str] | None:
    """
    Run C{sql}; return the error (code, message) it failed with, or C{None}.
    """
    try:
        run(connection, sql)
    except pymysql.err.MySQLError as failure:
        return failure.args[0], failure.args[1]
    return None


def is_closed(connection: Any) -> bool:
    """
    Whether the server side of C{connection} has gone: the next statement
    fails with a lost or absent connection (2013, 2006, or PyMySQL's own
    "already closed"). The statement is C{SELECT 1} (to the backend), or
    C{PING PROXY} for the local admin, who has no backend.
    """
    user = connection.user.decode() if isinstance(connection.user, bytes) else connection.user
    try:
        run(connection, "PING PROXY" if user == PROXYSYS else "SELECT 1")
    except pymysql.err.OperationalError as failure:
        return failure.args[0] in (2006, 2013)
    except pymysql.err.InterfaceError:
        return True
    return False


def ids_shown(connection: Any, sql: str) -> Set[int]:
    """
    The session ids (column C{Id}) C{sql} lists.
    """
    names, rows = run(connection, sql)
    column = names.index("Id")
    return {int(row[column]) for row in rows}


def mariadb_cli(
    proxy: Proxy, login: str, statements: Sequence[str]
) -> subprocess.CompletedProcess[str]:
    """
    Run C{statements} with the C{mariadb} command-line client through the
    proxy, one per line on its standard input, continuing after errors
    (C{--force}; with C{-e} the CLI would skip the rest of the line after
    an error). stderr has C{ERROR code (sqlstate) at line n: message} lines.
    """
    password = PROXYSYS_PASSWORD if login == PROXYSYS else USERS[login][1]
    return subprocess.run(
        [
            "mariadb",
            "--no-defaults",
            "--force",
            "--batch",
            "-h127.0.0.1",
            f"-P{proxy.port}",
            f"-u{login}",
            f"-p{password}",
        ],
        input="".join(f"{statement};\n" for statement in statements),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class Sessions:
    """
    Connections through one proxy by name, closed together.
    """

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.connections: Dict[str, Any] = {}

    def open(self, name: str, login: str | None = None) -> Any:
        """
        Log in as C{login} (default: C{name}) and remember it under C{name};
        a statement is run so that a backend is reached (except for proxysys).
        """
        connection = connect(self.proxy, login or name)
        if (login or name) != PROXYSYS:
            run(connection, "SELECT 1")
        self.connections[name] = connection
        return connection

    def __getitem__(self, name: str) -> Any:
        return self.connections[name]

    def id(self, name: str) -> int:
        """The session id (cs_id) the proxy gave C{name} in its handshake."""
        return int(self.connections[name].thread_id())

    def close(self) -> None:
        """Close every connection still open."""
        for connection in self.connections.values():
            # One that was killed is already gone: nothing to close.
            with contextlib.suppress(Exception):
                connection.close()


def with_sessions(proxy: Proxy, names: Sequence[str], body: Callable[[Sessions], Any]) -> Any:
    """
    Open C{names} (logins, or C{alias=login}), run C{body} with them, close
    them (blocking: call it in a thread).
    """
    sessions = Sessions(proxy)
    try:
        for name in names:
            alias, _, login = name.partition("=")
            sessions.open(alias, login or alias)
        return body(sessions)
    finally:
        sessions.close()


EVERYONE = ["root@sys", "ops@sys", "alice@t1", "alice2=alice@t1", "bob@t1", "carol@t2", PROXYSYS]


# --------------------------------------------------------------------------------------
# Seeing sessions


@pytest_twisted.inlineCallbacks
def test_visibility(proxy: Proxy) -> Iterator[Any]:
    """
    SHOW PROXYSESSION and SHOW PROCESSLIST list every session of the cluster
    for users of the sys tenant (root and ops alike), but not the local
    admin's; root@proxysys sees all; alice sees her two sessions, bob and
    carol only their own.
    """

    def body(s: Sessions) -> Dict[str, Tuple[Set[int], Set[int]]]:
        return {
            name: (
                ids_shown(s[name], "SHOW PROXYSESSION"),
                ids_shown(s[name], "SHOW PROCESSLIST"),
            )
            for name in s.connections
        }

    sessions: Dict[str, int] = {}

    def ids(s: Sessions) -> Any:
        sessions.update({name: s.id(name) for name in s.connections})
        return body(s)

    seen = yield in_thread(with_sessions, proxy, EVERYONE, ids)
    every = set(sessions.values())
    cluster = every - {sessions[PROXYSYS]}
    expected = {
        PROXYSYS: every,
        "root@sys": cluster,
        "ops@sys": cluster,
        "alice@t1": {sessions["alice@t1"], sessions["alice2"]},
        "alice2": {sessions["alice@t1"], sessions["alice2"]},
        "bob@t1": {sessions["bob@t1"]},
        "carol@t2": {sessions["carol@t2"]},
    }
    for name, want in expected.items():
        assert seen[name] == (want, want), name


# --------------------------------------------------------------------------------------
# Killing sessions


@pytest_twisted.inlineCallbacks
def test_self_kill(proxy: Proxy) -> Iterator[Any]:
    """
    KILL of one's own session, KILL CONNECTION of it and COM_PROCESS_KILL of
    it all answer 1317 and then the connection is closed.
    """

    def body(s: Sessions) -> List[Tuple[Any, bool]]:
        results = []
        for name, how in (("a", "KILL {}"), ("b", "KILL CONNECTION {}"), ("c", None)):
            connection = s[name]
            if how is None:
                try:
                    connection.kill(s.id(name))  # COM_PROCESS_KILL
                    answer: Any = None
                except pymysql.err.MySQLError as failure:
                    answer = failure.args[0]
            else:
                answer = error(connection, how.format(s.id(name)))
                answer = answer and answer[0]
            results.append((answer, is_closed(connection)))
        return results

    results = yield in_thread(with_sessions, proxy, ["a=alice@t1", "b=bob@t1", "c=carol@t2"], body)
    assert results == [(INTERRUPTED, True)] * 3


@pytest.mark.parametrize(
    ("killer", "victim", "expected"),
    [
        pytest.param("alice@t1", "bob@t1", NOT_OWNER, id="alice-bob-same-tenant"),
        pytest.param("alice@t1", "carol@t2", UNKNOWN_THREAD, id="alice-carol-other-tenant"),
        pytest.param("ops@sys", "alice@t1", NOT_OWNER, id="ops-alice-needs-root"),
        pytest.param("ops@sys", "root@sys", NOT_OWNER, id="ops-root"),
        pytest.param("alice@t1", "alice2", None, id="alice-own-user"),
        pytest.param("root@sys", "alice@t1", None, id="root-alice"),
        pytest.param("root@sys", "ops@sys", None, id="root-ops"),
        pytest.param(PROXYSYS, "carol@t2", None, id="proxysys-carol"),
        pytest.param(PROXYSYS, "root@sys", None, id="proxysys-root"),
    ],
)
@pytest.mark.parametrize("statement", ["KILL {}", "KILL CONNECTION {}", "COM_PROCESS_KILL"])
@pytest_twisted.inlineCallbacks
def test_kill_matrix(
    proxy: Proxy, killer: str, victim: str, expected: int | None, statement: str
) -> Iterator[Any]:
    """
    Killing another session: refused with 1095 (visible, not yours) or 1094
    (invisible) and the victim keeps working; allowed for one's own user,
    root@sys and root@proxysys, and the victim's next statement fails. The
    killer's own session goes on either way.
    """
    names = list(dict.fromkeys([killer, "alice2=alice@t1" if victim == "alice2" else victim]))

    def body(s: Sessions) -> Tuple[Tuple[int, str] | None, bool, bool]:
        target = s.id(victim)
        if statement == "COM_PROCESS_KILL":
            try:
                s[killer].kill(target)
                answer = None
            except pymysql.err.MySQLError as failure:
                answer = (failure.args[0], failure.args[1])
        else:
            answer = error(s[killer], statement.format(target))
        return answer, is_closed(s[victim]), is_closed(s[killer])

    target: List[int] = []

    def remember(s: Sessions) -> Any:
        target.append(s.id(victim))
        return body(s)

    answer, victim_closed, killer_closed = yield in_thread(with_sessions, proxy, names, remember)
    if expected is None:
        assert answer is None
        assert victim_closed
    else:
        message = {
            NOT_OWNER: f"You are not owner of thread {target[0]}",
            UNKNOWN_THREAD: f"Unknown thread id: {target[0]}",
        }[expected]
        assert answer == (expected, message)
        assert not victim_closed
    assert not killer_closed


@pytest_twisted.inlineCallbacks
def test_kill_unknown_id(proxy: Proxy) -> Iterator[Any]:
    """
    An id no session has answers 1094, for a plain user and for root alike.
    """

    def body(s: Sessions) -> List[Any]:
        return [error(s[name], "KILL 987654") for name in ("alice@t1", "root@sys")]

    answers = yield in_thread(with_sessions, proxy, ["alice@t1", "root@sys"], body)
    assert answers == [(UNKNOWN_THREAD, "Unknown thread id: 987654")] * 2


@pytest_twisted.inlineCallbacks
def test_kill_query_of_other_users(proxy: Proxy) -> Iterator[Any]:
    """
    KILL QUERY follows the same rules: alice gets 1095 for bob, 1094 for
    carol; root@sys gets OK for an idle session and it stays open.
    """

    def body(s: Sessions) -> List[Any]:
        return [
            error(s["alice@t1"], f"KILL QUERY {s.id('bob@t1')}"),
            error(s["alice@t1"], f"KILL QUERY {s.id('carol@t2')}"),
            error(s["root@sys"], f"KILL QUERY {s.id('bob@t1')}"),
            is_closed(s["bob@t1"]),
        ]

    names = ["alice@t1", "bob@t1", "carol@t2", "root@sys"]
    answers = yield in_thread(with_sessions, proxy, names, body)
    assert [a and a[0] for a in answers[:3]] == [NOT_OWNER, UNKNOWN_THREAD, None]
    assert answers[3] is False


# --------------------------------------------------------------------------------------
# Details of a session


DETAILS = ["SHOW PROXYSESSION ATTRIBUTE {}", "SHOW PROXYSESSION VARIABLES {}"]
DETAILS += ["SHOW PROXYSESSION VARIABLES ALL {}", "SHOW PROXYSESSION STAT {}"]


@pytest.mark.parametrize("statement", DETAILS)
@pytest_twisted.inlineCallbacks
def test_details_need_visibility(proxy: Proxy, statement: str) -> Iterator[Any]:
    """
    ATTRIBUTE, VARIABLES and STAT of a session the caller may not see answer
    1094 (bob of the same tenant, carol of another, root of sys); of one it
    may see (alice's other session; any session for root@sys and ops@sys)
    they answer rows.
    """

    def body(s: Sessions) -> Dict[str, Any]:
        def rows(caller: str, target: str) -> Any:
            try:
                return len(run(s[caller], statement.format(s.id(target)))[1])
            except pymysql.err.MySQLError as failure:
                return failure.args[0], failure.args[1]

        return {
            "alice->bob": rows("alice@t1", "bob@t1"),
            "alice->carol": rows("alice@t1", "carol@t2"),
            "alice->root": rows("alice@t1", "root@sys"),
            "alice->alice2": rows("alice@t1", "alice2"),
            "root->carol": rows("root@sys", "carol@t2"),
            "ops->bob": rows("ops@sys", "bob@t1"),
            "proxysys->alice": rows(PROXYSYS, "alice@t1"),
        }

    names = ["alice@t1", "alice2=alice@t1", "bob@t1", "carol@t2", "root@sys", "ops@sys", PROXYSYS]
    ids: Dict[str, int] = {}

    def remember(s: Sessions) -> Any:
        ids.update({name: s.id(name) for name in s.connections})
        return body(s)

    answers = yield in_thread(with_sessions, proxy, names, remember)
    for pair in ("alice->bob", "alice->carol", "alice->root"):
        target = {"bob": "bob@t1", "carol": "carol@t2", "root": "root@sys"}[pair.split(">")[1]]
        assert answers[pair] == (UNKNOWN_THREAD, f"Unknown thread id: {ids[target]}"), pair
    for pair in ("alice->alice2", "root->carol", "ops->bob", "proxysys->alice"):
        assert isinstance(answers[pair], int) and answers[pair] > 0, (pair, answers[pair])


# --------------------------------------------------------------------------------------
# Commands only admins have, malformed commands


@pytest_twisted.inlineCallbacks
def test_kill_proxysession_needs_admin(proxy: Proxy) -> Iterator[Any]:
    """
    KILL PROXYSESSION from alice (even of her own other session) and from
    ops@sys answers 5010 and kills nothing; from root@sys it kills.
    """

    def body(s: Sessions) -> List[Any]:
        alice2 = s.id("alice2")
        return [
            error(s["alice@t1"], f"KILL PROXYSESSION {alice2}"),
            error(s["ops@sys"], f"KILL PROXYSESSION {alice2}"),
            is_closed(s["alice2"]),
            error(s["root@sys"], f"KILL PROXYSESSION {s.id('bob@t1')}"),
            is_closed(s["bob@t1"]),
        ]

    names = ["alice@t1", "alice2=alice@t1", "ops@sys", "root@sys", "bob@t1"]
    answers = yield in_thread(with_sessions, proxy, names, body)
    bad = (BAD_INTERNAL_CMD, "Unknown operator, bad internal cmd")
    assert answers == [bad, bad, False, None, True]


@pytest_twisted.inlineCallbacks
def test_sqlstates_with_the_mariadb_cli(proxy: Proxy) -> Iterator[Any]:
    """
    The mariadb CLI shows the SQLSTATEs: 1094 (HY000) for an unknown id,
    1095 (HY000) for bob's session, and MariaDB's own 1064 (42000) for SHOW
    PROXYCONFIG as alice; the session survives all of them.

    (5010 is not among them: this CLI prints any server error numbered 5010
    as C{ERROR 2027 (HY000): Received malformed packet}, MariaDB's own
    C{SIGNAL ... SET MYSQL_ERRNO = 5010} included; see
    L{test_bad_internal_cmd_sqlstate}.)
    """
    if shutil.which("mariadb") is None:
        pytest.skip("the mariadb command-line client is not installed")

    def body(s: Sessions) -> Tuple[int, subprocess.CompletedProcess[str]]:
        bob = s.id("bob@t1")
        return bob, mariadb_cli(
            proxy,
            "alice@t1",
            ["KILL 987654", f"KILL {bob}", f"KILL QUERY {bob}", "SHOW PROXYCONFIG", "SELECT 'ok'"],
        )

    bob, done = yield in_thread(with_sessions, proxy, ["bob@t1"], body)
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    assert errors[:3] == [
        "ERROR 1094 (HY000) at line 1: Unknown thread id: 987654",
        f"ERROR 1095 (HY000) at line 2: You are not owner of thread {bob}",
        f"ERROR 1095 (HY000) at line 3: You are not owner of thread {bob}",
    ], done.stderr
    assert errors[3].startswith("ERROR 1064 (42000) at line 4: You have an error"), errors
    assert len(errors) == 4, done.stderr
    assert done.stdout.split() == ["ok", "ok"], done.stdout


@pytest_twisted.inlineCallbacks
def test_bad_internal_cmd_sqlstate(proxy: Proxy) -> Iterator[Any]:
    """
    mysql-connector-python (pure Python; it keeps the SQLSTATE) sees 5010
    with SQLSTATE 21000 for KILL PROXYSESSION as alice and for a malformed
    SHOW PROXYSESSION, and its session goes on.
    """
    import mysql.connector

    def body() -> List[Any]:
        connection = mysql.connector.connect(
            host="127.0.0.1",
            port=proxy.port,
            user="alice@t1",
            password=USERS["alice@t1"][1],
            use_pure=True,
        )
        answers: List[Any] = []
        try:
            cursor = connection.cursor()
            for sql in ("KILL PROXYSESSION 1", "SHOW PROXYSESSION FOO", "SELECT 'ok'"):
                try:
                    cursor.execute(sql)
                    answers.append(cursor.fetchall())
                except mysql.connector.Error as failure:
                    answers.append((failure.errno, failure.sqlstate, failure.msg))
        finally:
            connection.close()
        return answers

    answers = yield in_thread(body)
    bad = (BAD_INTERNAL_CMD, "21000", "Unknown operator, bad internal cmd")
    assert answers == [bad, bad, [("ok",)]]


@pytest.mark.parametrize("login", ["alice@t1", "root@sys", PROXYSYS])
@pytest.mark.parametrize(
    "statement",
    ["SHOW PROXYSESSION FOO", "SHOW PROXYSESSION ATTRIBUTE x", "SHOW PROXYSESSION STAT 1 2"],
)
@pytest_twisted.inlineCallbacks
def test_malformed_show_proxysession(proxy: Proxy, login: str, statement: str) -> Iterator[Any]:
    """
    A malformed SHOW PROXYSESSION is the proxy's (everyone may run SHOW
    PROXYSESSION) and answers 5010 for every caller.
    """

    def body(s: Sessions) -> Any:
        return error(s[login], statement)

    answer = yield in_thread(with_sessions, proxy, [login], body)
    assert answer == (BAD_INTERNAL_CMD, "Unknown operator, bad internal cmd")


@pytest.mark.parametrize("login", ["alice@t1", "root@sys"])
@pytest.mark.parametrize("statement", ["KILL PROXYSESSION", "KILL PROXYSESSION x"])
@pytest_twisted.inlineCallbacks
def test_malformed_kill_proxysession(proxy: Proxy, login: str, statement: str) -> Iterator[Any]:
    """
    A malformed KILL PROXYSESSION is the proxy's too (ODP: a parse error of an
    internal command), for an admin and a non-admin alike: 5010, never
    MariaDB's answer to a KILL of a column named PROXYSESSION.
    """

    def body(s: Sessions) -> Any:
        return error(s[login], statement)

    answer = yield in_thread(with_sessions, proxy, [login], body)
    assert answer == (BAD_INTERNAL_CMD, "Unknown operator, bad internal cmd")


@pytest.mark.parametrize(
    "statement",
    [
        "SHOW PROXYCONFIG",
        "SHOW PROXYCONFIG LIKE 'client_max_connections'",
        "ALTER PROXYCONFIG SET client_max_connections = 7",
        "SHOW PROXYSTAT",
    ],
)
@pytest.mark.parametrize("login", ["alice@t1", "ops@sys"])
@pytest_twisted.inlineCallbacks
def test_admin_only_commands_are_forwarded(
    proxy: Proxy, login: str, statement: str
) -> Iterator[Any]:
    """
    For users who are not admins (alice, and ops of the sys tenant alike)
    PROXYCONFIG and PROXYSTAT statements are not the proxy's: they reach
    MariaDB, which answers its own syntax error, and the configuration is
    unchanged. root@sys gets the proxy's answer to the same statement.
    """
    before = proxy.manager.config.client_max_connections

    changed: List[int] = []

    def body(s: Sessions) -> Any:
        answer = error(s[login], statement)
        changed.append(proxy.manager.config.client_max_connections)
        # The same statement from root@sys is the proxy's (and an ALTER
        # takes effect), so the non-admin's answer above was not a refusal
        # of a statement the proxy does not know.
        return answer, error(s["root@sys"], statement)

    answer, as_root = yield in_thread(with_sessions, proxy, [login, "root@sys"], body)
    assert answer is not None
    assert answer[0] == MARIADB_SYNTAX, answer
    assert "MariaDB server version" in answer[1], answer
    assert changed == [before]
    assert as_root is None
    if statement.startswith("ALTER"):
        assert proxy.manager.config.client_max_connections == 7


# --------------------------------------------------------------------------------------
# The local admin


@pytest_twisted.inlineCallbacks
def test_proxysys_needs_no_backend(accounts: Server) -> Iterator[Any]:
    """
    root@proxysys logs in with its own password to a proxy whose only server
    is down, and SHOW PROXYSESSION / SHOW PROCESSLIST / PING PROXY answer
    (it is the only session); a statement that is not an admin command
    answers 5010; a wrong password is refused with 1045, and a sys user,
    who needs the backend, cannot log in at all.
    """
    proxy = start(config_text([DEAD_SERVER]))
    try:

        def body() -> Dict[str, Any]:
            connection = connect(proxy, PROXYSYS)
            try:
                own = int(connection.thread_id())
                answers: Dict[str, Any] = {
                    "own": own,
                    "sessions": ids_shown(connection, "SHOW PROXYSESSION"),
                    "processlist": ids_shown(connection, "SHOW PROCESSLIST"),
                    "ping": error(connection, "PING PROXY"),
                    "select": error(connection, "SELECT 1"),
                    "still": ids_shown(connection, "SHOW PROXYSESSION"),
                }
            finally:
                connection.close()
            try:
                connect(proxy, PROXYSYS, "wrong").close()
                answers["wrong"] = None
            except pymysql.err.MySQLError as failure:
                answers["wrong"] = failure.args[0]
            try:
                connect(proxy, "root@sys").close()
                answers["root"] = None
            except pymysql.err.MySQLError as failure:
                answers["root"] = failure.args[0]
            return answers

        answers = yield in_thread(body)
    finally:
        yield stop_proxy_later(proxy)
    own = answers["own"]
    assert answers["sessions"] == {own}
    assert answers["processlist"] == {own}
    assert answers["ping"] is None
    assert answers["select"] == (BAD_INTERNAL_CMD, "Unknown operator, bad internal cmd")
    assert answers["still"] == {own}
    assert answers["wrong"] == ACCESS_DENIED
    assert answers["root"] is not None


@pytest.mark.parametrize(
    ("networks", "allowed"),
    [
        pytest.param('["10.0.0.0/8", "192.168.0.0/16"]', False, id="loopback-excluded"),
        pytest.param('["127.0.0.1/32"]', True, id="loopback-listed"),
    ],
)
@pytest_twisted.inlineCallbacks
def test_proxysys_allowed_networks(accounts: Server, networks: str, allowed: bool) -> Iterator[Any]:
    """
    root@proxysys may log in only from proxysys_allowed_networks: with
    networks that exclude 127.0.0.1 the right password is refused with
    1045, and so is a wrong one; users of the cluster are not affected.
    """
    proxy = start(
        config_text([f"{accounts.host}:{accounts.port}"], f"proxysys_allowed_networks: {networks}"),
        accounts,
    )
    try:

        def body() -> Tuple[Any, Any]:
            try:
                connection = connect(proxy, PROXYSYS)
                result: Any = ids_shown(connection, "SHOW PROXYSESSION")
                connection.close()
            except pymysql.err.MySQLError as failure:
                result = failure.args[0]
            with connect(proxy, "alice@t1") as alice:
                plain = run(alice, "SELECT CURRENT_USER()")[1]
            return result, plain

        result, plain = yield in_thread(body)
    finally:
        yield stop_proxy_later(proxy)
    if allowed:
        assert isinstance(result, set) and len(result) == 1
    else:
        assert result == ACCESS_DENIED
    assert plain == [("alice@%",)]
