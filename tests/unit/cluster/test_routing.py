"""
Tests for L{obproxy_tx.cluster.router} and L{obproxy_tx.cluster.local}: a
node of two workers in memory, each a session manager with its own sessions,
joined to a hub router by AMP over L{twisted.test.iosim} connections, as the
parent joins its worker processes. The admin commands run on one worker and
must reach sessions on the other with the privileges and answers they have in
one process; ids are routed by their worker bits.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import attr
import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.test import iosim

from obproxy_tx.admin.interfaces import AdminContext, AdminError, AdminOK, AdminResultSet
from obproxy_tx.admin.registry import CommandRegistry
from obproxy_tx.cluster.local import LocalSessions
from obproxy_tx.cluster.protocol import (
    MODE_BACKEND,
    MODE_CS,
    SCOPE_CLUSTER,
    SCOPE_NODE,
    SCOPE_WORKER,
    ChannelProtocol,
    Outcome,
)
from obproxy_tx.cluster.router import (
    InProcessView,
    LinkMember,
    LocalMember,
    NodeRequests,
    Router,
    WorkerView,
)
from obproxy_tx.config import parse_config
from obproxy_tx.session.ids import ClientSessionIdAllocator
from obproxy_tx.session.login import LoginName
from obproxy_tx.session.stats import ProxyStats
from tests.unit.admin.test_proxysession import Manager, bind, server_session

CONFIG = """
work_thread_num: 2
proxy_id: 3
clusters:
  - name: c1
    type: mysql
    servers: ['127.0.0.1:3306']
"""


@attr.s(auto_attribs=True, eq=False)
class FakeServerSession:
    """Only its ids matter to the kill commands."""

    ss_id: int
    backend_id: int


@attr.s(auto_attribs=True, eq=False)
class Victim:
    """
    A client session whose C{kill_*} methods record their calls.
    """

    cs_id: int
    login: LoginName | None
    server_sessions: List[FakeServerSession] = attr.Factory(list)
    calls: List[Any] = attr.Factory(list)
    query_answer: Any = None

    def kill_connection(self) -> None:
        self.calls.append("kill_connection")

    def kill_query(self) -> Any:
        self.calls.append("kill_query")
        if isinstance(self.query_answer, Exception):
            return defer.fail(self.query_answer)
        return defer.succeed(None)

    def kill_server_session(self, ss_id: int) -> bool:
        self.calls.append(("kill_server_session", ss_id))
        return any(ss.ss_id == ss_id for ss in self.server_sessions)


class Worker(Manager):
    """
    One worker's session manager: real commands, ids from its worker bits.
    """

    def __init__(self, worker: int, config: Any) -> None:
        super().__init__()
        self.worker = worker
        self.config = config
        self.registry = CommandRegistry.from_plugins()
        self.stats = ProxyStats()
        self.started_at = 0.0
        self.cluster: Any = None
        self.ids = ClientSessionIdAllocator(config.client_session_id_layout(), worker)

    def reconfigure(self, config: Any) -> None:
        self.config = config

    def next_id(self) -> int:
        return self.ids.allocate(self.client_sessions)

    def victim(self, name: str, backend_id: int = 0) -> Victim:
        user, _, rest = name.partition("@")
        tenant, _, cluster = rest.partition("#")
        session = Victim(self.next_id(), LoginName(user, tenant, cluster))
        if backend_id:
            session.server_sessions.append(FakeServerSession(1, backend_id))
        self.client_sessions[session.cs_id] = session  # type: ignore[assignment]
        return session

    def real(self, name: str) -> Any:
        user, _, rest = name.partition("@")
        tenant, _, cluster = rest.partition("#")
        return self.client(self.next_id(), user=user, tenant=tenant, cluster=cluster)


class Node:
    """
    Two workers and the hub (the parent) joined in memory.
    """

    def __init__(self) -> None:
        self.config = parse_config(CONFIG)
        self.clock = Clock()
        self.workers = [Worker(k, self.config) for k in range(2)]
        self.pumps: List[iosim.IOPump] = []
        hub_links: List[ChannelProtocol] = []
        members = [
            LinkMember(
                f"worker {k}",
                lambda k=k: defer.succeed(hub_links[k]),  # type: ignore[misc]
                SCOPE_WORKER,
                self.clock,
                60,
            )
            for k in range(2)
        ]
        self.applied: List[Any] = []
        self.router = Router(
            self.config, members, on_config=lambda *item: self.applied.append(item)
        )
        for k, worker in enumerate(self.workers):
            hub = ChannelProtocol(NodeRequests(self.router, k))
            link = ChannelProtocol(LocalSessions(worker))
            _, _, pump = iosim.connectedServerAndClient(lambda hub=hub: hub, lambda link=link: link)
            hub_links.append(hub)
            self.pumps.append(pump)
            worker.cluster = WorkerView(link, self.clock, 60)

    def wait(self, result: Any) -> Any:
        """
        Pump every connection until C{result} (perhaps a Deferred) is known.
        """
        if not isinstance(result, defer.Deferred):
            return result
        answers: List[Any] = []
        result.addBoth(answers.append)
        for _ in range(100):
            if answers:
                break
            for pump in self.pumps:
                pump.pump()
        assert answers, "no answer"
        if isinstance(answers[0], Failure):
            answers[0].raiseException()
        return answers[0]

    def run(self, worker: int, caller: Any, sql: str) -> Any:
        """
        Run C{sql} as C{caller} on C{worker}, as the registry would.
        """
        manager = self.workers[worker]
        recognised = manager.registry.recognise(sql.encode())
        assert recognised is not None and recognised.match is not None, sql
        context = AdminContext(caller, manager, manager.config, manager.registry)
        return self.wait(manager.registry.run(context, recognised))


@pytest.fixture
def node() -> Node:
    return Node()


def worker_of(cs_id: int, node: Node) -> int:
    return node.config.client_session_id_layout().decode(cs_id).worker


def test_ids_carry_the_worker(node: Node) -> None:
    """
    Each worker's cs_ids decode to it, so an id names its owner.
    """
    for k, worker in enumerate(node.workers):
        session = worker.victim("u@sys#c1")
        assert worker_of(session.cs_id, node) == k


def test_kill_on_another_worker(node: Node) -> None:
    """
    KILL of a session held by the other worker kills it there.
    """
    admin = node.workers[0].real("root@proxysys#c1")
    victim = node.workers[1].victim("alice@t1#c1")
    answer = node.run(0, admin, f"KILL {victim.cs_id}")
    assert answer == AdminOK()
    assert victim.calls == ["kill_connection"]


def test_kill_goes_only_to_the_owner(node: Node) -> None:
    """
    A cs_id is asked of the worker its bits name: the other worker is not
    disturbed, even when it has a session with that number as backend id.
    """
    admin = node.workers[0].real("root@proxysys#c1")
    victim = node.workers[1].victim("alice@t1#c1")
    decoy = node.workers[0].victim("bob@t1#c1", backend_id=victim.cs_id)
    assert node.run(0, admin, f"KILL {victim.cs_id}") == AdminOK()
    assert victim.calls == ["kill_connection"]
    assert decoy.calls == []


def test_kill_by_backend_id_on_another_worker(node: Node) -> None:
    """
    A backend connection id is looked for on every worker.
    """
    admin = node.workers[0].real("root@proxysys#c1")
    victim = node.workers[1].victim("alice@t1#c1", backend_id=17)
    assert node.run(0, admin, "KILL 17") == AdminOK()
    assert victim.calls == ["kill_connection"]


@pytest.mark.parametrize(
    ("caller", "code"),
    [
        ("alice@t1#c1", None),
        ("carol@t1#c1", 1095),
        ("dave@t2#c1", 1094),
        ("admin@sys#c1", 1095),
        ("root@sys#c2", 1095),
        ("root@sys#c1", None),
    ],
)
def test_kill_privileges_across_workers(node: Node, caller: str, code: int | None) -> None:
    """
    The privilege matrix holds across workers: the same user, root@sys of the
    cluster and the local admin may kill; others get ODP's 1095 or 1094.
    """
    me = node.workers[0].real(caller)
    victim = node.workers[1].victim("alice@t1#c1")
    answer = node.run(0, me, f"KILL {victim.cs_id}")
    if code is None:
        assert answer == AdminOK()
        assert victim.calls == ["kill_connection"]
    else:
        assert isinstance(answer, AdminError)
        assert answer.code == code
        assert str(victim.cs_id) in answer.message
        assert victim.calls == []


def test_unknown_id_is_1094(node: Node) -> None:
    """
    An id no worker holds is 1094, whichever worker it names.
    """
    admin = node.workers[0].real("root@proxysys#c1")
    for number in (node.workers[1].next_id() + 5, 999, 2**40):
        answer = node.run(0, admin, f"KILL {number}")
        assert isinstance(answer, AdminError)
        assert (answer.code, answer.message) == (1094, f"Unknown thread id: {number}")


def test_kill_query_on_another_worker(node: Node) -> None:
    """
    KILL QUERY runs on the owner, and its refusal comes back as it is.
    """
    admin = node.workers[0].real("root@proxysys#c1")
    victim = node.workers[1].victim("alice@t1#c1")
    assert node.run(0, admin, f"KILL QUERY {victim.cs_id}") == AdminOK()
    assert victim.calls == ["kill_query"]
    victim.query_answer = AdminError(1095, "You are not owner of thread 9")
    answer = node.run(0, admin, f"KILL QUERY {victim.cs_id}")
    assert isinstance(answer, AdminError)
    assert (answer.code, answer.message) == (1095, "You are not owner of thread 9")


def test_kill_proxysession_server_session_on_another_worker(node: Node) -> None:
    """
    KILL PROXYSESSION id ss_id reaches the owner; an ss_id it lacks is 1094.
    """
    admin = node.workers[0].real("root@proxysys#c1")
    victim = node.workers[1].victim("alice@t1#c1", backend_id=33)
    assert node.run(0, admin, f"KILL PROXYSESSION {victim.cs_id} 1") == AdminOK()
    answer = node.run(0, admin, f"KILL PROXYSESSION {victim.cs_id} 7")
    assert isinstance(answer, AdminError)
    assert (answer.code, answer.message) == (1094, "Unknown thread id: 7")
    assert victim.calls == [("kill_server_session", 1), ("kill_server_session", 7)]


def test_own_backend_id_found_elsewhere_is_self(node: Node) -> None:
    """
    When the router finds the caller's own session (by its backend id), the
    caller's worker answers as for killing oneself: 1317, then close.
    """
    worker = node.workers[0]
    me = worker.real("alice@t1#c1")
    bind(me, server_session(1, 4242))
    answer = node.run(0, me, "KILL 4242")
    assert isinstance(answer, AdminError)
    assert (answer.code, answer.close_after) == (1317, True)
    assert node.run(0, me, "KILL QUERY 4242") == AdminOK()


def rows(answer: Any) -> List[Sequence[Any]]:
    assert isinstance(answer, AdminResultSet), answer
    return list(answer.rows)


def test_show_proxysession_lists_every_worker(node: Node) -> None:
    """
    SHOW PROXYSESSION on one worker lists both workers' sessions, by Id, as
    the caller may see them.
    """
    mine = [node.workers[0].real("alice@t1#c1"), node.workers[1].real("alice@t1#c1")]
    node.workers[1].real("bob@t1#c1")
    admin = node.workers[1].real("root@proxysys#c1")
    listed = rows(node.run(0, mine[0], "SHOW PROXYSESSION"))
    assert [row[1] for row in listed] == sorted(s.cs_id for s in mine)
    everyone = rows(node.run(0, admin, "SHOW PROXYSESSION"))
    assert len(everyone) == 4
    assert [row[1] for row in everyone] == sorted(row[1] for row in everyone)


def test_show_processlist_lists_every_worker(node: Node) -> None:
    """
    Both PROCESSLIST forms list both workers; the caller's own row is its own
    (the FULL form shows the statement being run).
    """
    me = node.workers[1].real("root@sys#c1")
    other = node.workers[0].real("alice@t1#c1")
    listed = rows(node.run(1, me, "SHOW PROCESSLIST"))
    assert sorted(row[0] for row in listed) == sorted([me.cs_id, other.cs_id])
    full = rows(node.run(1, me, "SHOW FULL PROCESSLIST"))
    by_id = {row[0]: row for row in full}
    assert by_id[me.cs_id][4] == "Query"
    assert by_id[me.cs_id][7] == "SHOW FULL PROCESSLIST"
    assert by_id[other.cs_id][4] == "Sleep"


def test_attribute_of_a_session_on_another_worker(node: Node) -> None:
    """
    ATTRIBUTE, STAT and VARIABLES of a session on the other worker come from
    that worker; one the caller may not see is 1094 as in one process.
    """
    admin = node.workers[0].real("root@proxysys#c1")
    target = node.workers[1].real("alice@t1#c1")
    bind(target, server_session(5, 77))
    attributes = dict(
        (row[0], row[1])
        for row in rows(node.run(0, admin, f"SHOW PROXYSESSION ATTRIBUTE {target.cs_id}"))
    )
    assert attributes["cs_id"] == target.cs_id
    assert attributes["user"] == "alice"
    assert attributes["server_sessid"] == 77
    by_backend = rows(node.run(0, admin, "SHOW PROXYSESSION ATTRIBUTE 77 LIKE 'cs_id'"))
    assert by_backend == [("cs_id", target.cs_id, "cs common")]
    stats = rows(node.run(0, admin, f"SHOW PROXYSESSION STAT {target.cs_id} LIKE 'client%'"))
    assert [row[0] for row in stats][:1] == ["client_requests"]
    assert rows(node.run(0, admin, f"SHOW PROXYSESSION VARIABLES {target.cs_id}")) == []
    stranger = node.workers[0].real("dave@t2#c1")
    hidden = node.run(0, stranger, f"SHOW PROXYSESSION ATTRIBUTE {target.cs_id}")
    assert isinstance(hidden, AdminError)
    assert (hidden.code, hidden.message) == (1094, f"Unknown thread id: {target.cs_id}")


def test_proxystat_sums_the_workers(node: Node) -> None:
    """
    SHOW PROXYSTAT is the node's: counters and counts summed over workers.
    """
    admin = node.workers[0].real("root@proxysys#c1")
    node.workers[1].real("alice@t1#c1")
    node.workers[0].stats.client_connections = 3
    node.workers[1].stats.client_connections = 4
    listed = dict((row[0], row[1]) for row in rows(node.run(0, admin, "SHOW PROXYSTAT")))
    assert listed["client_connections"] == 7
    assert listed["current_client_connections"] == 2


def test_alter_reaches_the_other_worker(node: Node) -> None:
    """
    ALTER PROXYCONFIG applies on the worker that ran it, then on the other
    and in the parent's copy; peers are not asked.
    """
    admin = node.workers[0].real("root@proxysys#c1")
    answer = node.run(0, admin, "ALTER PROXYCONFIG SET client_login_timeout = '20s'")
    assert isinstance(answer, AdminOK)
    assert "not applied" not in answer.info
    assert [w.config.client_login_timeout for w in node.workers] == [20.0, 20.0]
    assert node.applied == [("client_login_timeout", "20s")]


def test_alter_names_a_worker_that_failed(node: Node) -> None:
    """
    A worker that cannot apply the change is named in the OK packet's info
    (the worker that ran the ALTER saved and applied it).
    """

    def refuse(config: Any) -> None:
        raise ValueError("client_login_timeout can only change at restart")

    node.workers[1].reconfigure = refuse  # type: ignore[method-assign]
    admin = node.workers[0].real("root@proxysys#c1")
    answer = node.run(0, admin, "ALTER PROXYCONFIG SET client_login_timeout = '20s'")
    assert isinstance(answer, AdminOK)
    assert "not applied on: worker 1: client_login_timeout can only change" in answer.info
    assert node.workers[0].config.client_login_timeout == 20.0


# -- the router alone, with recording members -----------------------------------------


class FakeMember:
    """
    A member holding sessions by cs_id and backend id; records what it is asked.
    """

    def __init__(self, name: str, cs_ids: Sequence[int] = (), backend_ids: Sequence[int] = ()):
        self.name = name
        self.cs_ids = set(cs_ids)
        self.backend_ids = set(backend_ids)
        self.asked: List[Any] = []
        self.proxy_id: int | None = None
        self.is_self = False
        self.down = False

    def on_session(self, caller: Any, command: str, number: int, mode: str, args: Any) -> Any:
        self.asked.append((number, mode))
        if self.down:
            return defer.fail(ConnectionError("down"))
        found = (mode == MODE_CS and number in self.cs_ids) or (
            mode == MODE_BACKEND and number in self.backend_ids
        )
        return defer.succeed(
            Outcome.from_answer(AdminOK(info=self.name)) if found else Outcome.not_found()
        )

    def list_rows(self, caller: Any, command: str, args: Any) -> Any:
        if self.down:
            return defer.fail(ConnectionError("down"))
        return defer.succeed([[self.name]])

    def connect(self) -> Any:
        return defer.succeed(None)


def ask(router: Router, number: int, scope: str = SCOPE_CLUSTER) -> Outcome:
    answers: List[Any] = []
    router.on_session({}, "KILL", number, "any", {}, scope).addBoth(answers.append)
    assert answers
    return answers[0]


def test_router_order_cs_id_then_backend_ids() -> None:
    """
    A cs_id goes to its worker with MODE_CS only; then every worker and peer
    is asked for a backend id, in order; scope node leaves peers out.
    """
    config = parse_config(CONFIG)
    layout = config.client_session_id_layout()
    w0, w1 = FakeMember("worker 0"), FakeMember("worker 1", cs_ids=[layout.compose(1, 5)])
    peer = FakeMember("peer p", backend_ids=[layout.compose(1, 6)])
    router = Router(config, [w0, w1], [peer])  # type: ignore[list-item]
    assert ask(router, layout.compose(1, 5)).message == "worker 1"
    assert w0.asked == [] and w1.asked == [(layout.compose(1, 5), MODE_CS)]
    number = layout.compose(1, 6)
    assert ask(router, number).message == "peer p"
    assert w0.asked == [(number, MODE_BACKEND)]
    assert w1.asked[-2:] == [(number, MODE_CS), (number, MODE_BACKEND)]
    assert ask(router, number, SCOPE_NODE).kind == "not_found"


def test_router_sends_other_nodes_ids_to_that_node() -> None:
    """
    A cs_id with another proxy_id goes to the peer with that proxy_id.
    """
    config = parse_config(CONFIG)
    theirs = attr.evolve(config.client_session_id_layout(), proxy_id=9, worker_count=4)
    number = theirs.compose(3, 1)
    other = FakeMember("peer other")
    other.proxy_id = 5
    owner = FakeMember("peer owner", cs_ids=[number])
    owner.proxy_id = 9
    worker = FakeMember("worker 0")
    router = Router(config, [worker], [other, owner])  # type: ignore[list-item]
    assert ask(router, number).message == "peer owner"
    assert owner.asked == [(number, MODE_CS)]
    assert other.asked == [] and worker.asked == []


def test_router_reports_unreachable_peers() -> None:
    """
    A dead worker's sessions died with it; an unreachable peer may hold the
    session, so an id found nowhere names it (1105) instead of 1094.
    """
    config = parse_config(CONFIG)
    dead = FakeMember("worker 1")
    dead.down = True
    router = Router(config, [FakeMember("worker 0"), dead])  # type: ignore[list-item]
    assert ask(router, 12345).kind == "not_found"
    peer = FakeMember("peer p")
    peer.down = True
    router = Router(config, [FakeMember("worker 0")], [peer])  # type: ignore[list-item]
    outcome = ask(router, 12345)
    assert (outcome.kind, outcome.code) == ("error", 1105)
    assert "peer p" in outcome.message


def test_listing_skips_members_that_do_not_answer() -> None:
    """
    SHOW PROXYSESSION still lists the sessions of members that answer.
    """
    config = parse_config(CONFIG)
    dead = FakeMember("worker 1")
    dead.down = True
    router = Router(config, [FakeMember("worker 0"), dead], [FakeMember("peer p")])  # type: ignore[list-item]
    answers: List[Any] = []
    router.list_rows({}, "SHOW PROXYSESSION", {}, SCOPE_CLUSTER).addBoth(answers.append)
    assert answers == [[["worker 0"], ["peer p"]]]


def test_in_process_view_with_peers() -> None:
    """
    A one-process node with peers: its own sessions are served in process.
    """
    worker = Worker(0, parse_config(CONFIG.replace("work_thread_num: 2", "work_thread_num: 1")))
    router = Router(worker.config, [LocalMember(LocalSessions(worker))])
    worker.cluster = InProcessView(router)
    admin = worker.real("root@proxysys#c1")
    victim = worker.victim("alice@t1#c1", backend_id=55)
    context = AdminContext(admin, worker, worker.config, worker.registry)
    recognised = worker.registry.recognise(b"KILL 55")
    assert recognised is not None
    answers: List[Any] = []
    worker.registry.run(context, recognised).addBoth(answers.append)
    assert answers == [AdminOK()]
    assert victim.calls == ["kill_connection"]
    applied: List[Any] = []
    router.apply_config("client_login_timeout", "20s", exclude=0).addBoth(applied.append)
    assert applied == [[]]


def test_peer_requests_are_node_scoped_and_cannot_alter() -> None:
    """
    A peer's requests see the node only, and ALTER from a peer is refused.
    """
    seen: Dict[str, Any] = {}

    class Spy(Router):
        def list_rows(self, caller: Any, command: str, args: Any, scope: str) -> Any:
            seen["scope"] = scope
            return defer.succeed([])

    requests = NodeRequests(Spy(parse_config(CONFIG), []), None)
    requests.list_rows({}, "SHOW PROXYSESSION", {}, SCOPE_CLUSTER)
    assert seen["scope"] == SCOPE_NODE
    with pytest.raises(Exception, match="cannot change"):
        requests.apply_config("proxy_id", "1")
