"""
Tests for L{obproxy_tx.cluster.protocol}: the AMP commands over in-memory
connections (L{twisted.test.iosim}), values larger than one AMP value, the
outcome and caller encodings, and the proof of the shared secret that a peer
connection must complete before anything is served.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import pytest
from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.test import iosim

from obproxy_tx.admin.access import RemoteCaller, unknown_thread
from obproxy_tx.admin.interfaces import AdminError, AdminOK, AdminResultSet
from obproxy_tx.cluster.protocol import (
    PROTOCOL_VERSION,
    ApplyConfig,
    ChannelProtocol,
    ChannelRefusedError,
    ListRows,
    OnSession,
    Outcome,
    PeerGuard,
    PeerHello,
    PeerProve,
    caller_from_json,
    caller_to_json,
    proof,
)
from obproxy_tx.session.login import LoginName

SECRET = "correct horse battery staple"


class RecordingHandler:
    """
    Answers every request with what it was asked, and records it.
    """

    def __init__(self) -> None:
        self.calls: List[Tuple[Any, ...]] = []

    def list_rows(self, caller: Any, command: str, args: Any, scope: str) -> List[Any]:
        self.calls.append(("list_rows", caller, command, args, scope))
        return args["rows"]

    def on_session(
        self, caller: Any, command: str, number: int, mode: str, args: Any, scope: str
    ) -> Outcome:
        self.calls.append(("on_session", caller, command, number, mode, args, scope))
        return Outcome.from_answer(AdminOK(info=f"{command} {number}"))

    def apply_config(self, name: str, text: str) -> List[str]:
        self.calls.append(("apply_config", name, text))
        return [f"{name}={text}"]


def connect(server: ChannelProtocol, client: ChannelProtocol) -> iosim.IOPump:
    """
    Connect two protocols in memory.
    """
    _, _, pump = iosim.connectedServerAndClient(lambda: server, lambda: client)
    return pump


def result(deferred: defer.Deferred[Any], pump: iosim.IOPump) -> Any:
    """
    Pump until C{deferred} fired; its result (a L{Failure} if it failed).
    """
    results: List[Any] = []
    deferred.addBoth(results.append)
    pump.flush()
    assert results, "no answer"
    return results[0]


CALLER = caller_to_json(RemoteCaller(65537, LoginName("alice", "t1", "c1")))


def test_commands_reach_the_handler() -> None:
    """
    The three requests reach the handler with their arguments, and answer
    what it returns.
    """
    handler = RecordingHandler()
    client = ChannelProtocol()
    pump = connect(ChannelProtocol(handler), client)
    rows = [[1, "a", None], [2, "b", 3.5]]
    listed = client.callRemote(
        ListRows, caller=CALLER, command="SHOW X", args={"rows": rows}, scope="node"
    )
    assert result(listed, pump) == {"rows": rows}
    asked = client.callRemote(
        OnSession, caller=CALLER, command="KILL", number=2**64 - 1, mode="cs", args={}, scope="node"
    )
    outcome = Outcome.from_json(result(asked, pump)["outcome"])
    assert outcome.answer() == AdminOK(info=f"KILL {2**64 - 1}")
    applied = client.callRemote(ApplyConfig, name="client_login_timeout", text="20s")
    assert result(applied, pump) == {"problems": ["client_login_timeout=20s"]}
    assert [call[0] for call in handler.calls] == ["list_rows", "on_session", "apply_config"]
    assert handler.calls[1][1:] == (CALLER, "KILL", 2**64 - 1, "cs", {}, "node")


def test_values_larger_than_one_amp_value() -> None:
    """
    A listing of thousands of sessions is far over AMP's 64 KiB per value:
    it travels in pieces and arrives whole.
    """
    client = ChannelProtocol()
    pump = connect(ChannelProtocol(RecordingHandler()), client)
    rows = [[n, "native_user", f"127.0.0.1:{n}", "x" * 40, None] for n in range(10000)]
    listed = client.callRemote(
        ListRows, caller=CALLER, command="SHOW X", args={"rows": rows}, scope="node"
    )
    assert result(listed, pump)["rows"] == rows


def test_a_connection_without_handler_refuses_requests() -> None:
    """
    The dialling end of a peer connection serves nothing.
    """
    server = ChannelProtocol()
    client = ChannelProtocol()
    pump = connect(server, client)
    listed = client.callRemote(ListRows, caller=CALLER, command="X", args={}, scope="node")
    failure = result(listed, pump)
    assert isinstance(failure, Failure)
    assert failure.check(ChannelRefusedError)


def test_caller_round_trip() -> None:
    """
    A caller crosses the channel with its cs_id and login, and nothing else.
    """
    caller = RemoteCaller(7, LoginName("bob", "sys", "c2", cluster_id=5))
    assert caller_from_json(caller_to_json(caller)) == caller
    anonymous = RemoteCaller(8, None)
    assert caller_from_json(caller_to_json(anonymous)) == anonymous


def test_outcomes() -> None:
    """
    Every outcome survives JSON and becomes the command's answer: OK, an
    error, rows; not found is 1094 and self runs the command on the caller.
    """
    ok = AdminOK(affected_rows=2, info="done")
    assert Outcome.from_json(Outcome.from_answer(ok).to_json()).answer() == ok
    error = Outcome.from_json(
        Outcome.from_answer(AdminError(1095, "You are not owner of thread 5", "HY000")).to_json()
    ).answer()
    assert isinstance(error, AdminError)
    assert (error.code, error.message, error.sqlstate) == (
        1095,
        "You are not owner of thread 5",
        "HY000",
    )
    rows = Outcome.from_json(Outcome.from_answer(AdminResultSet(("a",), [(1,), (2,)])).to_json())
    assert rows.answer(("a",)) == AdminResultSet(("a",), [(1,), (2,)])
    with pytest.raises(AdminError) as raised:
        Outcome.not_found().resolve(lambda: "mine", 42)
    assert (raised.value.code, raised.value.message) == (
        unknown_thread(42).code,
        unknown_thread(42).message,
    )
    assert Outcome.self_().resolve(lambda: "mine", 42) == "mine"


# -- the proof of the secret ---------------------------------------------------------


def peer_listener(secret: str = SECRET) -> Tuple[ChannelProtocol, RecordingHandler, PeerGuard]:
    """
    The listening end of a peer connection, as C{proxy_peer_listen} builds it.
    """
    handler = RecordingHandler()
    guard = PeerGuard(secret, "node-b", 2, 2)
    return ChannelProtocol(handler, guard=guard), handler, guard


def hello(client: ChannelProtocol, pump: iosim.IOPump, nonce: bytes = b"n" * 16) -> Any:
    asked = client.callRemote(
        PeerHello, protocol=PROTOCOL_VERSION, nonce=nonce, node="node-a", proxy_id=1, id_version=2
    )
    return result(asked, pump)


def test_peer_that_proves_the_secret_is_served() -> None:
    """
    Hello, the server's proof checks out, the client's proof is accepted,
    and then requests are served.
    """
    server, handler, guard = peer_listener()
    client = ChannelProtocol()
    pump = connect(server, client)
    nonce = b"c" * 16
    answer = hello(client, pump, nonce)
    assert answer["proof"] == proof(SECRET, b"server", nonce, answer["nonce"])
    assert (answer["node"], answer["proxy_id"], answer["id_version"]) == ("node-b", 2, 2)
    proved = client.callRemote(PeerProve, proof=proof(SECRET, b"client", nonce, answer["nonce"]))
    assert result(proved, pump) == {}
    assert guard.authenticated
    listed = client.callRemote(
        ListRows, caller=CALLER, command="SHOW X", args={"rows": [[1]]}, scope="cluster"
    )
    assert result(listed, pump) == {"rows": [[1]]}


def test_peer_with_a_wrong_secret_is_refused_and_dropped() -> None:
    """
    A proof made with another secret is refused, the connection closes, and
    nothing reaches the handler.
    """
    server, handler, guard = peer_listener()
    client = ChannelProtocol()
    pump = connect(server, client)
    nonce = b"c" * 16
    answer = hello(client, pump, nonce)
    wrong = proof("another secret", b"client", nonce, answer["nonce"])
    refused = result(client.callRemote(PeerProve, proof=wrong), pump)
    assert isinstance(refused, Failure)
    assert not guard.authenticated
    assert client.lost.called and server.lost.called
    assert handler.calls == []


def test_the_servers_proof_cannot_be_replayed_as_the_clients() -> None:
    """
    The proofs are labelled by role: the server's own proof sent back is wrong.
    """
    server, _, guard = peer_listener()
    client = ChannelProtocol()
    pump = connect(server, client)
    answer = hello(client, pump)
    refused = result(client.callRemote(PeerProve, proof=answer["proof"]), pump)
    assert isinstance(refused, Failure)
    assert not guard.authenticated


@pytest.mark.parametrize(
    ("command", "arguments"),
    [
        (ListRows, {"caller": CALLER, "command": "SHOW PROXYSESSION", "args": {}, "scope": "node"}),
        (
            OnSession,
            {
                "caller": CALLER,
                "command": "KILL",
                "number": 5,
                "mode": "any",
                "args": {},
                "scope": "node",
            },
        ),
        (ApplyConfig, {"name": "proxy_id", "text": "7"}),
        (PeerProve, {"proof": b"x" * 32}),
    ],
)
def test_nothing_before_the_proof(command: Any, arguments: Dict[str, Any]) -> None:
    """
    A request (or a proof without hello) before the proof is refused, the
    connection closes, and the handler never sees it.
    """
    server, handler, _ = peer_listener()
    client = ChannelProtocol()
    pump = connect(server, client)
    refused = result(client.callRemote(command, **arguments), pump)
    assert isinstance(refused, Failure)
    assert client.lost.called
    assert handler.calls == []


def test_wrong_protocol_version_is_refused() -> None:
    """
    A peer speaking another version of the commands is refused at hello.
    """
    server, _, _ = peer_listener()
    client = ChannelProtocol()
    pump = connect(server, client)
    asked = client.callRemote(
        PeerHello,
        protocol=PROTOCOL_VERSION + 1,
        nonce=b"n" * 16,
        node="x",
        proxy_id=1,
        id_version=2,
    )
    assert isinstance(result(asked, pump), Failure)
    assert client.lost.called


def test_flood_before_the_proof_is_dropped() -> None:
    """
    More bytes than a hello and a proof take, from a peer that has not
    proved the secret, drop the connection.
    """
    server, handler, _ = peer_listener()
    client = ChannelProtocol()
    pump = connect(server, client)
    client.transport.write(b"\x00\x01a\x00\x00" * 5000)
    pump.flush()
    assert server.lost.called
    assert handler.calls == []


# -- the dialling side's checks (PeerMember) --------------------------------------------


def dialler(secret: str = SECRET, proxy_id: int = 1) -> Any:
    from obproxy_tx.cluster.router import PeerMember
    from obproxy_tx.config import parse_config

    config = parse_config(
        f"""
proxy_id: {proxy_id}
proxy_peers: ['127.0.0.1:2999']
proxy_cluster_secret: '{secret}'
clusters:
  - name: c1
    type: mysql
    servers: ['127.0.0.1:3306']
"""
    )
    from twisted.internet.task import Clock

    return PeerMember("127.0.0.1:2999", config, "node-a", Clock())


def prove(member: Any, server: ChannelProtocol) -> Any:
    client = ChannelProtocol()
    pump = connect(server, client)
    return result(defer.Deferred.fromCoroutine(member._prove(client)), pump)


def test_dialler_learns_the_peers_proxy_id() -> None:
    """
    Both proofs check out: the peer's proxy_id is what routes its cs_ids.
    """
    server, _, guard = peer_listener()
    assert prove(dialler(), server) == 2
    assert guard.authenticated


@pytest.mark.parametrize(
    ("member", "guard", "problem"),
    [
        (dialler("another secret"), PeerGuard(SECRET, "node-b", 2, 2), "proof is wrong"),
        (dialler(proxy_id=2), PeerGuard(SECRET, "node-b", 2, 2), "this node's proxy_id 2"),
        (dialler(), PeerGuard(SECRET, "node-b", 2, 1), "client_session_id_version 1"),
        (dialler(), PeerGuard(SECRET, "node-a", 2, 2), "this node"),
    ],
)
def test_dialler_refuses_peers_it_cannot_use(member: Any, guard: PeerGuard, problem: str) -> None:
    """
    A peer that does not know the secret, shares this node's proxy_id or id
    layout, or is this node itself is not used; nothing is proved to it.
    """
    from obproxy_tx.cluster.router import PeerError

    failure = prove(member, ChannelProtocol(RecordingHandler(), guard=guard))
    assert isinstance(failure, Failure)
    assert failure.check(PeerError)
    assert problem in str(failure.value)
    assert not guard.authenticated
    assert member.is_self == (guard.node == "node-a")
