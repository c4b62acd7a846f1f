"""
Tests for L{obproxy_tx.plugins.obproxy_kill}: the grammar of C{KILL
[CONNECTION|QUERY] id} and C{KILL PROXYSESSION id [ss_id]} (ODP's integers,
overflow, blanks and comments), every branch of what they do to sessions
whose C{kill_*} methods record their calls, and the privilege matrix through
L{obproxy_tx.admin.access.kill_check}.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List

import attr
import pytest
from twisted.internet import defer
from twisted.plugin import IPlugin
from zope.interface.verify import verifyObject

from obproxy_tx.admin.interfaces import (
    AdminContext,
    AdminError,
    AdminOK,
    IAdminCommand,
    Privilege,
)
from obproxy_tx.admin.registry import BAD_INTERNAL_CMD, CommandRegistry
from obproxy_tx.plugins.obproxy_kill import (
    Kill,
    KillMatch,
    KillProxySession,
    KillProxySessionMatch,
    kill,
    kill_proxysession,
)
from obproxy_tx.session.login import LoginName

# -- fakes with exactly the attributes the contract gives commands ---------------


@attr.s(auto_attribs=True, eq=False)
class FakeServerSession:
    """
    A server session: only its ids matter to the kill commands.
    """

    ss_id: int
    backend_id: int


@attr.s(auto_attribs=True, eq=False)
class FakeSession:
    """
    A client session whose C{kill_*} methods record their calls.

    @ivar query_result: what L{kill_query} returns (an idle session's
        already-fired Deferred by default).
    """

    cs_id: int
    login: LoginName | None
    server_sessions: List[FakeServerSession] = attr.Factory(list)
    calls: List[Any] = attr.Factory(list)
    query_result: Any = None

    def kill_connection(self) -> None:
        """Record the call."""
        self.calls.append("kill_connection")

    def kill_query(self) -> defer.Deferred[None]:
        """Record the call; fire with L{query_result}."""
        self.calls.append("kill_query")
        if self.query_result is None:
            return defer.succeed(None)
        result: defer.Deferred[None] = self.query_result
        return result

    def kill_server_session(self, ss_id: int) -> bool:
        """Record the call; whether C{ss_id} is one of ours."""
        self.calls.append(("kill_server_session", ss_id))
        return any(ss.ss_id == ss_id for ss in self.server_sessions)


@attr.s(auto_attribs=True, eq=False)
class FakeManager:
    """
    The part of the SessionManager that ids are resolved against.
    """

    client_sessions: Dict[int, FakeSession] = attr.Factory(dict)

    def find_client_session(self, cs_id: int) -> FakeSession | None:
        """The session with C{cs_id}."""
        return self.client_sessions.get(cs_id)

    def add(self, session: FakeSession) -> FakeSession:
        """Make C{session} live."""
        self.client_sessions[session.cs_id] = session
        return session


def login(name: str) -> LoginName:
    """
    @param name: C{user@tenant#cluster}, or C{user@proxysys}.
    """
    user, _, rest = name.partition("@")
    tenant, _, cluster = rest.partition("#")
    return LoginName(user=user, tenant=tenant, cluster=cluster)


ALICE = "alice@t1#c1"


def run(sql: str, caller: FakeSession, manager: FakeManager) -> Any:
    """
    Recognise C{sql} with a registry holding both kill commands and run it
    as the registry would, synchronously.

    @return: the answer (L{AdminOK} or L{AdminError}), or the still-unfired
        Deferred.
    """
    registry = CommandRegistry([kill, kill_proxysession])
    recognised = registry.recognise(sql.encode())
    assert recognised is not None and recognised.match is not None, sql
    context = AdminContext(session=caller, manager=manager, config=None)
    result = registry.run(context, recognised)
    answers: List[Any] = []

    def keep(answer: Any) -> Any:
        answers.append(answer)
        return answer

    result.addBoth(keep)
    return answers[0] if answers else result


def assert_error(answer: Any, code: int, message: str, sqlstate: str = "HY000") -> None:
    """C{answer} is exactly that error."""
    assert isinstance(answer, AdminError), answer
    assert (answer.code, answer.message, answer.sqlstate) == (code, message, sqlstate)


# -- the commands as plugins ------------------------------------------------------


def test_both_commands_are_plugins() -> None:
    """
    Both commands are discovered in L{obproxy_tx.plugins} and provide the
    interfaces, with the privileges, C{proxy_only} and C{denied} the brief
    gives them.
    """
    found = {c.name: c for c in CommandRegistry.from_plugins().commands}
    assert isinstance(found["KILL"], Kill)
    assert isinstance(found["KILL PROXYSESSION"], KillProxySession)
    for command in (found["KILL"], found["KILL PROXYSESSION"]):
        assert verifyObject(IAdminCommand, command)
        assert verifyObject(IPlugin, command)
    assert (kill.privilege, kill.proxy_only, kill.denied) == (Privilege.EVERYONE, False, None)
    assert (kill_proxysession.privilege, kill_proxysession.proxy_only) == (Privilege.ADMIN, True)
    assert kill_proxysession.denied == BAD_INTERNAL_CMD
    assert {1094, 1095, 1317} <= set(kill.errors)
    assert {1094, 1095, 1317, 5010} <= set(kill_proxysession.errors)


# -- grammar ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("KILL 5", KillMatch(query=False, number=5, shown="5")),
        ("kill 5", KillMatch(query=False, number=5, shown="5")),
        ("KILL CONNECTION 7", KillMatch(query=False, number=7, shown="7")),
        ("Kill\tConnection\n  7", KillMatch(query=False, number=7, shown="7")),
        ("KILL QUERY 9", KillMatch(query=True, number=9, shown="9")),
        ("kill\r\nquery   9  ", KillMatch(query=True, number=9, shown="9")),
        ("KILL/**/5", KillMatch(query=False, number=5, shown="5")),
        ("KILL /* a */ QUERY /* b */ 5 /* c */", KillMatch(query=True, number=5, shown="5")),
        ("KILL 5 -- why", KillMatch(query=False, number=5, shown="5")),
        ("KILL 5 --", KillMatch(query=False, number=5, shown="5")),
        ("KILL -- why\nQUERY # how\n 5 # end", KillMatch(query=True, number=5, shown="5")),
        ("KILL +5", KillMatch(query=False, number=5, shown="5")),
        ("KILL-5", KillMatch(query=False, number=None, shown="-5")),
        ("KILL QUERY -1", KillMatch(query=True, number=None, shown="-1")),
        ("KILL 3221766868", KillMatch(query=False, number=3221766868, shown="3221766868")),
        # 17 digits are what ODP's lexer reads; 18 overflow.
        (
            "KILL 99999999999999999",
            KillMatch(query=False, number=10**17 - 1, shown="99999999999999999"),
        ),
        ("KILL 00000000000000005", KillMatch(query=False, number=5, shown="5")),
        ("KILL 000000000000000005", KillMatch(query=False, number=None, shown="5")),
        (
            "KILL 123456789012345678",
            KillMatch(query=False, number=None, shown="123456789012345678"),
        ),
        (
            "KILL 18446744073709551616",
            KillMatch(query=False, number=None, shown="18446744073709551616"),
        ),
        ("KILL -0", KillMatch(query=False, number=0, shown="0")),
        ("KILL -000", KillMatch(query=False, number=0, shown="0")),
        pytest.param(
            "KILL " + "9" * 5000,
            KillMatch(query=False, number=None, shown="9" * 5000),
            id="5000 digits",
        ),
        ("KILL /* a */ /**/ /*** b **/5", KillMatch(query=False, number=5, shown="5")),
        # MariaDB's HARD/SOFT: still a connection id, so still ours.
        ("KILL HARD 5", KillMatch(query=False, number=5, shown="5")),
        ("kill soft query 5", KillMatch(query=True, number=5, shown="5")),
        ("KILL HARD CONNECTION 5", KillMatch(query=False, number=5, shown="5")),
    ],
)
def test_kill_accepts(sql: str, expected: KillMatch) -> None:
    """
    C{KILL [CONNECTION|QUERY] id} in any case, with any blanks or comments;
    ids that cannot name a thread still match (they are unknown threads).
    """
    assert kill.match(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "KILL",
        "KILL QUERY",
        "KILL CONNECTION",
        "KILL USER bob",
        "KILL CONNECTION USER bob",
        "KILL HARD",
        "KILL HARD USER bob",
        "KILL SOFTQUERY 5",
        "KILL QUERY ID 5",
        "KILL 5 6",
        "KILL 5.0",
        "KILL 1e3",
        "KILL 0x5",
        "KILL @id",
        "KILL (5)",
        "KILL CONNECTION5",
        "KILL QUERY5",
        "KILL /*!50000 5 */",
        "KILL /* 5",
        "KILL /* */ */ 5",
        "KILL /*M! 5 */",
        "KILL 5 --comment",
        "KILL -- 5",
        "KILL # 5",
        "KILL PROXYSESSION 5",
        "KILL ５",
    ],
)
def test_kill_rejects(sql: str) -> None:
    """
    Other KILL forms (MariaDB's, expressions, executable comments) are not
    ours: they are left for the backend.
    """
    assert kill.match(sql) is None


@pytest.mark.parametrize(
    "sql",
    [
        "KILL /*" + "*/" * 100_000 + "x",
        "KILL " + "/**/" * 100_000 + "x",
        "KILL " + "/* " * 100_000 + "5",
        "KILL " + " " * 400_000 + "x",
        "KILL 5" + " -- a\n" * 100_000 + "x",
        "KILL PROXYSESSION " + "/**/" * 100_000 + "x",
        "KILL PROXYSESSION 5 " + "1" * 400_000,
    ],
    ids=lambda sql: f"{sql[:24]}...({len(sql)})",
)
def test_grammar_is_linear(sql: str) -> None:
    """
    Long statements that fail the grammar fail fast (the grammar runs on
    the reactor thread): no way to split a run of comments in many ways.
    """
    start = time.perf_counter()
    assert kill.match(sql) is None
    assert kill_proxysession.match(sql) is None
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("KILL PROXYSESSION 5", KillProxySessionMatch(5)),
        ("kill proxysession 5", KillProxySessionMatch(5)),
        ("KILL \t PROXYSESSION\n5", KillProxySessionMatch(5)),
        ("KILL PROXYSESSION 2147549203", KillProxySessionMatch(2147549203)),
        ("KILL PROXYSESSION 5 7", KillProxySessionMatch(5, 7)),
        ("KILL PROXYSESSION +5 +7", KillProxySessionMatch(5, 7)),
        ("KILL PROXYSESSION 5/**/7 ", KillProxySessionMatch(5, 7)),
        ("KILL PROXYSESSION 5 -- c\n 7 # c", KillProxySessionMatch(5, 7)),
        (
            "KILL PROXYSESSION 99999999999999999 99999999999999999",
            KillProxySessionMatch(10**17 - 1, 10**17 - 1),
        ),
    ],
)
def test_kill_proxysession_accepts(sql: str, expected: KillProxySessionMatch) -> None:
    """
    C{KILL PROXYSESSION id [ss_id]}, case-insensitive, flexible blanks.
    """
    assert kill_proxysession.match(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "KILL PROXYSESSION",
        "KILL PROXYSESSION x",
        "KILL PROXYSESSION 5 x",
        "KILL PROXYSESSION 5 6 7",
        "KILL PROXYSESSION 5.5",
        # Overflow: more digits than ODP's lexer reads is its OBPROXY_T_ERR_INVALID_NUM.
        "KILL PROXYSESSION 123456789012345678",
        "KILL PROXYSESSION 5 123456789012345678",
        "KILL PROXYSESSION -5",
        "KILL PROXYSESSION 5 -1",
        "KILL /**/ PROXYSESSION 5",
        "KILL PROXYSESSIONS 5",
        "KILL PROXYSESSION5",
        "KILL PROXYSESSION 5 QUERY",
    ],
)
def test_kill_proxysession_rejects(sql: str) -> None:
    """
    A malformed C{KILL PROXYSESSION} fails the grammar (the session answers
    it with 5010).
    """
    assert kill_proxysession.match(sql) is None


@pytest.mark.parametrize(
    "sql, name",
    [
        (b"KILL 5", "KILL"),
        (b"  kill  query 5;", "KILL"),
        (b"KILL PROXYSESSION 5", "KILL PROXYSESSION"),
        (b"kill proxysession 5 6;", "KILL PROXYSESSION"),
    ],
)
def test_registry_picks_the_command(sql: bytes, name: str) -> None:
    """
    With both commands registered, each statement reaches its own command
    with a match.
    """
    recognised = CommandRegistry([kill, kill_proxysession]).recognise(sql)
    assert recognised is not None
    assert recognised.command.name == name
    assert recognised.match is not None


def test_registry_leaves_other_kill_forms() -> None:
    """
    A KILL form that is not ours is recognised without a match by the KILL
    command, which is not C{proxy_only}: the session forwards it.
    """
    recognised = CommandRegistry([kill, kill_proxysession]).recognise(b"KILL USER bob")
    assert recognised is not None
    assert recognised.match is None
    assert recognised.command.proxy_only is False


def test_registry_malformed_kill_proxysession_is_bad_internal_cmd() -> None:
    """
    A malformed C{KILL PROXYSESSION} is recognised, without a match, as
    C{KILL PROXYSESSION} (C{proxy_only}: 5010), not as a plain C{KILL} form
    to forward.
    """
    registry = CommandRegistry([kill, kill_proxysession])
    for sql in (b"KILL PROXYSESSION abc", b"KILL PROXYSESSION 123456789012345678"):
        recognised = registry.recognise(sql)
        assert recognised is not None
        assert recognised.match is None
        assert recognised.command is kill_proxysession


# -- what the commands do -------------------------------------------------------------


@pytest.fixture
def manager() -> FakeManager:
    """No sessions yet."""
    return FakeManager()


@pytest.fixture
def me(manager: FakeManager) -> FakeSession:
    """The caller: cs 11, alice of t1, one server session (backend id 3221766868)."""
    return manager.add(FakeSession(11, login(ALICE), [FakeServerSession(1, 3221766868)]))


@pytest.fixture
def other(manager: FakeManager) -> FakeSession:
    """
    Another session of the same user, with two server sessions (backend
    ids 21 and 2147549203).
    """
    return manager.add(
        FakeSession(12, login(ALICE), [FakeServerSession(2, 21), FakeServerSession(3, 2147549203)])
    )


@pytest.mark.parametrize("sql", ["KILL 99", "KILL QUERY 99", "KILL CONNECTION 3221766869"])
def test_unknown_id(sql: str, manager: FakeManager, me: FakeSession, other: FakeSession) -> None:
    """
    An id that names no session (neither cs_id nor backend id) is 1094 with
    the id as given.
    """
    number = sql.split()[-1]
    assert_error(run(sql, me, manager), 1094, f"Unknown thread id: {number}")
    assert me.calls == other.calls == []


@pytest.mark.parametrize(
    "sql, shown",
    [
        ("KILL -12", "-12"),
        ("KILL QUERY -1", "-1"),
        ("KILL 000000000000000012", "12"),
        ("KILL 18446744073709551616", "18446744073709551616"),
    ],
)
def test_id_that_is_no_thread_id(
    sql: str, shown: str, manager: FakeManager, me: FakeSession, other: FakeSession
) -> None:
    """
    A negative id, one past 2**64-1 or one longer than 17 digits names no
    thread, even when its value is a live cs_id (12 here).
    """
    assert_error(run(sql, me, manager), 1094, f"Unknown thread id: {shown}")
    assert me.calls == other.calls == []


@pytest.mark.parametrize(
    "sql",
    [
        "KILL 11",
        "kill connection 11",
        "KILL 3221766868",
        "KILL PROXYSESSION 11",
        "KILL PROXYSESSION 3221766868",
    ],
)
def test_self_kill(sql: str, manager: FakeManager, me: FakeSession) -> None:
    """
    Killing your own session (by cs_id or backend id) is 1317 (70100), and
    the connection closes after the packet (C{close_after}); the session is
    not killed under the answer.
    """
    answer = run(sql, me, manager)
    assert_error(answer, 1317, "Query execution was interrupted", "70100")
    assert answer.close_after is True
    assert me.calls == []


def test_self_kill_query(manager: FakeManager, me: FakeSession) -> None:
    """
    C{KILL QUERY} of your own session is OK: nothing but the KILL runs.
    """
    assert run("KILL QUERY 11", me, manager) == AdminOK()
    assert run("KILL QUERY 3221766868", me, manager) == AdminOK()
    assert me.calls == []


@pytest.mark.parametrize(
    "sql",
    [
        "KILL 12",
        "KILL CONNECTION 12",
        "KILL 21",
        "KILL 2147549203",
        "KILL PROXYSESSION 12",
        "KILL PROXYSESSION 2147549203",
    ],
)
def test_kill_connection(
    sql: str, manager: FakeManager, me: FakeSession, other: FakeSession
) -> None:
    """
    Killing another session (by cs_id, or by a backend id of any of its
    server sessions) closes it and answers OK.
    """
    answer = run(sql, me, manager)
    assert answer == AdminOK()
    assert answer.close_after is False
    assert other.calls == ["kill_connection"]
    assert me.calls == []


def test_kill_query_idle(manager: FakeManager, me: FakeSession, other: FakeSession) -> None:
    """
    An idle target's C{kill_query} fires at once: OK at once.
    """
    assert run("KILL QUERY 12", me, manager) == AdminOK()
    assert other.calls == ["kill_query"]


def test_kill_query_waits_for_the_backend(
    manager: FakeManager, me: FakeSession, other: FakeSession
) -> None:
    """
    A busy target's C{kill_query} is waited for: OK only once the backend
    took the kill; the connection is left alone.
    """
    other.query_result = defer.Deferred()
    pending = run("KILL QUERY 2147549203", me, manager)
    assert isinstance(pending, defer.Deferred)
    answers: List[Any] = []
    pending.addBoth(answers.append)
    assert answers == []
    other.query_result.callback(None)
    assert answers == [AdminOK()]
    assert other.calls == ["kill_query"]


def test_kill_query_refused(manager: FakeManager, me: FakeSession, other: FakeSession) -> None:
    """
    An L{AdminError} from C{kill_query} (e.g. the backend's own ERR) is the
    answer.
    """
    refusal = AdminError(1095, "You are not owner of thread 21")
    other.query_result = defer.fail(refusal)
    assert run("KILL QUERY 12", me, manager) is refusal


def test_kill_query_failed(manager: FakeManager, me: FakeSession, other: FakeSession) -> None:
    """
    Any other failure of C{kill_query} is answered with 1105, not left
    hanging or turned into a dropped connection.
    """
    other.query_result = defer.fail(ConnectionRefusedError("no route"))
    answer = run("KILL QUERY 12", me, manager)
    assert isinstance(answer, AdminError)
    assert answer.code == 1105
    assert "KILL QUERY 12" in answer.message
    assert answer.close_after is False


@pytest.mark.parametrize("ss_id", [2, 3])
def test_kill_server_session(
    ss_id: int, manager: FakeManager, me: FakeSession, other: FakeSession
) -> None:
    """
    C{KILL PROXYSESSION id ss_id} closes just that server session.
    """
    assert run(f"KILL PROXYSESSION 12 {ss_id}", me, manager) == AdminOK()
    assert other.calls == [("kill_server_session", ss_id)]


def test_kill_unknown_server_session(
    manager: FakeManager, me: FakeSession, other: FakeSession
) -> None:
    """
    An ss_id that is not one of the target's is 1094 with the ss_id.
    """
    assert_error(run("KILL PROXYSESSION 12 1", me, manager), 1094, "Unknown thread id: 1")
    assert other.calls == [("kill_server_session", 1)]
    assert_error(run("KILL PROXYSESSION 99 2", me, manager), 1094, "Unknown thread id: 99")


def test_kill_own_server_session(manager: FakeManager, me: FakeSession) -> None:
    """
    Closing one of your own server sessions is no self-kill: OK, and the
    connection stays.
    """
    assert run("KILL PROXYSESSION 11 1", me, manager) == AdminOK()
    assert me.calls == [("kill_server_session", 1)]


# -- the privilege matrix (access.kill_check) --------------------------------------------

ROOT_SYS = "root@sys#c1"
PROXYSYS = "root@proxysys#"

MATRIX = [
    # caller, target, answer (None = OK)
    (ROOT_SYS, ALICE, None),
    (ROOT_SYS, "bob@t2#c1", None),
    (ROOT_SYS, "carol@sys#c1", None),
    (PROXYSYS, ALICE, None),
    (PROXYSYS, "root@sys#c2", None),
    # Tighter than ODP: another sys tenant user sees but may not kill.
    ("carol@sys#c1", ALICE, 1095),
    ("carol@sys#c1", "carol@sys#c1", None),
    # ODP: a sys tenant caller, target in another cluster: not owner.
    ("carol@sys#c1", ALICE.replace("c1", "c2"), 1095),
    (ALICE, ALICE, None),
    (ALICE, "bob@t1#c1", 1095),
    (ALICE, "alice@t2#c1", 1094),
    (ALICE, "alice@t1#c2", 1094),
    (ALICE, ROOT_SYS, 1094),
    (ALICE, PROXYSYS, 1094),
    (ROOT_SYS, PROXYSYS, 1094),
    ("root@sys#c2", ALICE, 1095),
    ("root@sys#c2", "root@sys#c1", 1095),
]


@pytest.mark.parametrize("caller_name, target_name, code", MATRIX)
@pytest.mark.parametrize(
    "sql, call",
    [
        ("KILL 12", "kill_connection"),
        ("KILL QUERY 12", "kill_query"),
        ("KILL 77", "kill_connection"),
        ("KILL PROXYSESSION 12", "kill_connection"),
        ("KILL PROXYSESSION 12 5", ("kill_server_session", 5)),
    ],
)
def test_privileges(
    caller_name: str, target_name: str, code: int | None, sql: str, call: Any
) -> None:
    """
    Who may kill whom, for every form (by cs_id and by backend id): OK and
    the kill; 1095 (not the owner) or 1094 (a session the caller may not
    see) and no kill.
    """
    manager = FakeManager()
    caller = manager.add(FakeSession(11, login(caller_name)))
    target = manager.add(FakeSession(12, login(target_name), [FakeServerSession(5, 77)]))
    answer = run(sql, caller, manager)
    shown = sql.split()[-1] if "PROXYSESSION" not in sql else "12"
    if code is None:
        assert answer == AdminOK()
        assert target.calls == [call]
    else:
        assert_error(
            answer,
            code,
            {1094: "Unknown thread id: ", 1095: "You are not owner of thread "}[code] + shown,
        )
        assert target.calls == []
    assert caller.calls == []


def test_not_logged_in_target_is_unknown(manager: FakeManager, me: FakeSession) -> None:
    """
    A connection that has not logged in yet is nobody's to kill but the
    local admin's.
    """
    pending = manager.add(FakeSession(13, None))
    assert_error(run("KILL 13", me, manager), 1094, "Unknown thread id: 13")
    assert pending.calls == []
