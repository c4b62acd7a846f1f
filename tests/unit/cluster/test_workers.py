"""
Tests for the worker processes' machinery without processes: the service
tree C{twistd obproxy} builds for workers and peers (L{obproxy_tx.tap}), the
supervisor's start, restart and stop against a fake reactor
(L{obproxy_tx.cluster.supervisor}), the accept policy and the log relay
(L{obproxy_tx.cluster.worker}). Real processes are in
C{tests/integration/test_cluster.py}.
"""

from __future__ import annotations

import io
import json
import pickle
import socket
from typing import Any, Dict, List

import pytest
import twisted.test
from twisted.internet import defer, error, tcp
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.logger import Logger, LogLevel
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

from obproxy_tx import tap
from obproxy_tx.cluster.node import PeerListener
from obproxy_tx.cluster.router import InProcessView
from obproxy_tx.cluster.supervisor import WorkerSupervisor, _NeverServed, stop_grace
from obproxy_tx.cluster.worker import LINK_FD, LISTEN_FD, ParentLogObserver, _fair
from obproxy_tx.config import ConfigError, parse_config

BASE = """
listen_port: 0
local_bound_ip: 127.0.0.1
clusters:
  - name: c1
    type: mysql
    servers: ['127.0.0.1:3306']
"""


def config(extra: str = "") -> Any:
    return parse_config(extra + BASE)


# -- the service tree -----------------------------------------------------------------


def test_one_process_has_no_channel() -> None:
    """
    Without workers and peers nothing of the channel exists.
    """
    service = tap.build_proxy_service(config(), MemoryReactor())
    assert service.manager.cluster is None
    # (the Prometheus endpoint, on by default, is no part of the channel)
    names = [child.name for child in service if child.name != "prometheus"]
    assert names == ["session-manager", "sql-listener"]


def test_workers_make_a_parent() -> None:
    """
    work_thread_num > 1: the supervisor takes the manager's place, and the
    parent listens with a factory that serves nothing.
    """
    service = tap.build_proxy_service(config("work_thread_num: 3\n"), MemoryReactor())
    supervisor = service.manager
    assert isinstance(supervisor, WorkerSupervisor)
    assert supervisor.count == 3
    assert len(supervisor.router.workers) == 3
    assert isinstance(service.listener.factory, _NeverServed)
    assert service.listener.factory.buildProtocol(None) is None


def test_peers_in_one_process() -> None:
    """
    Peers without workers: the manager's cluster is an in-process view and
    the peer listener joins the tree.
    """
    peers = (
        "proxy_peers: ['127.0.0.1:2999', 'tcp:host=10.0.0.2:port=2999']\n"
        "proxy_peer_listen: tcp:0:interface=127.0.0.1\n"
        "proxy_cluster_secret: s3cret\n"
        "proxy_id: 4\n"
    )
    service = tap.build_proxy_service(config(peers), MemoryReactor())
    assert isinstance(service.manager.cluster, InProcessView)
    router = service.manager.cluster.router
    assert [peer.address for peer in router.peers] == [
        "127.0.0.1:2999",
        "tcp:host=10.0.0.2:port=2999",
    ]
    assert any(isinstance(child, PeerListener) for child in service)


def test_tls_listen_endpoint_cannot_be_shared() -> None:
    """
    A TLS listen endpoint would be bypassed by workers adopting the bare
    socket: refused, naming work_thread_num.
    """
    pem = FilePath(twisted.test.__file__).sibling("server.pem").path
    text = f"work_thread_num: 2\nlisten: 'ssl:0:privateKey={pem}'\n"
    with pytest.raises(ConfigError, match="work_thread_num") as raised:
        tap.build_proxy_service(config(text), MemoryReactor())
    assert "tcp or unix" in str(raised.value)


def test_peers_need_a_secret() -> None:
    """
    The channel can kill sessions: peers without a secret do not start.
    """
    with pytest.raises(ConfigError, match="proxy_cluster_secret"):
        config("proxy_peers: ['127.0.0.1:2999']\n")


def test_bad_peer_listen_is_a_usage_error() -> None:
    """
    An endpoint string Twisted cannot parse is reported by the options,
    naming the item.
    """
    options = tap.Options(MemoryReactor())
    with pytest.raises(usage.UsageError, match="proxy_peer_listen"):
        options.parseOptions(
            [
                "-r",
                "127.0.0.1:3306",
                "-o",
                "proxy_peer_listen=nonsense:1,proxy_cluster_secret=x",
            ]
        )


# -- the supervisor -------------------------------------------------------------------


class FakeProcessTransport:
    def __init__(self, reactor: FakeReactor, protocol: Any, pid: int) -> None:
        self.reactor = reactor
        self.protocol = protocol
        self.pid = pid
        self.written = b""
        self.stdin_closed = False
        self.signals: List[str] = []

    def write(self, data: bytes) -> None:
        self.written += data

    def closeStdin(self) -> None:  # noqa: N802
        self.stdin_closed = True

    def signalProcess(self, name: str) -> None:  # noqa: N802
        if self.pid == 0:
            raise error.ProcessExitedAlready()
        self.signals.append(name)

    def end(self, reason: Any) -> None:
        self.pid = 0
        self.protocol.processEnded(Failure(reason))


class FakeReactor(Clock):
    """
    A clock that spawns fake processes and adopts connections in memory.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spawned: List[Dict[str, Any]] = []
        self.adopted: List[Protocol] = []

    def spawnProcess(  # noqa: N802
        self,
        protocol: Any,
        executable: str,
        args: Any,
        env: Any,
        childFDs: Any,  # noqa: N803
    ) -> Any:
        transport = FakeProcessTransport(self, protocol, 1000 + len(self.spawned))
        protocol.makeConnection(transport)
        self.spawned.append(
            {"protocol": protocol, "args": args, "fds": childFDs, "transport": transport}
        )
        return transport

    def adoptStreamConnection(self, fd: int, family: int, factory: Factory) -> None:  # noqa: N802
        protocol = factory.buildProtocol(None)
        assert protocol is not None
        protocol.makeConnection(StringTransport())
        self.adopted.append(protocol)


class FakePort:
    def __init__(self, factory: Any) -> None:
        self.factory = factory
        self.reading = True
        self.addressFamily = socket.AF_INET

    def stopReading(self) -> None:  # noqa: N802
        self.reading = False

    def fileno(self) -> int:
        return 17


class FakeParent:
    """What the supervisor asks of its parent service."""

    def __init__(self, port: FakePort) -> None:
        self.port = port

    def when_listening(self) -> defer.Deferred[Any]:
        return defer.succeed(self.port)


def started(count: int = 2) -> tuple[WorkerSupervisor, FakeReactor, FakePort]:
    reactor = FakeReactor()
    supervisor = WorkerSupervisor(config(f"work_thread_num: {count}\n"), reactor)
    port = FakePort(supervisor.listener_factory())
    supervisor.parent = FakeParent(port)  # type: ignore[assignment]
    supervisor.startService()
    return supervisor, reactor, port


def test_workers_start_with_the_shared_socket() -> None:
    """
    Once the parent listens it stops reading, and each worker gets the
    socket as fd 3, a link as fd 4, and its spec on stdin.
    """
    supervisor, reactor, port = started(2)
    assert not port.reading
    assert len(reactor.spawned) == 2
    for number, spawned in enumerate(reactor.spawned):
        fds = spawned["fds"]
        assert fds[LISTEN_FD] == 17
        assert isinstance(fds[LINK_FD], int)
        assert (fds[0], fds[1], fds[2]) == ("w", "r", "r")
        spec = pickle.loads(spawned["transport"].written)
        assert spec["worker"] == number
        assert spec["config"].work_thread_num == 2
        assert spawned["transport"].stdin_closed
    assert len(reactor.adopted) == 2


def test_a_dead_worker_is_restarted_with_growing_delays() -> None:
    """
    A worker that dies is started again after a delay; dying at once again
    doubles the delay.
    """
    supervisor, reactor, _ = started(2)
    reactor.spawned[1]["transport"].end(error.ProcessTerminated(signal=9))
    assert 1 not in supervisor.processes
    reactor.advance(1.0)
    assert len(reactor.spawned) == 3
    assert pickle.loads(reactor.spawned[2]["transport"].written)["worker"] == 1
    reactor.spawned[2]["transport"].end(error.ProcessTerminated(exitCode=1))
    reactor.advance(1.0)
    assert len(reactor.spawned) == 3
    reactor.advance(1.0)
    assert len(reactor.spawned) == 4


def test_stop_terms_then_kills() -> None:
    """
    Stopping sends SIGTERM, then SIGKILL to a worker still running after the
    grace period (its drain's graceful_shutdown_timeout and a margin); a
    pending restart is cancelled.
    """
    supervisor, reactor, _ = started(2)
    first, second = (spawned["transport"] for spawned in reactor.spawned)
    stopping = supervisor.stopService()
    assert first.signals == ["TERM"] and second.signals == ["TERM"]
    first.end(error.ProcessDone(None))
    grace = stop_grace(supervisor.config)
    assert grace > supervisor.config.graceful_shutdown_timeout == 30
    reactor.advance(grace - 0.5)
    assert second.signals == ["TERM"]
    reactor.advance(0.5)
    assert second.signals == ["TERM", "KILL"]
    done: List[Any] = []
    stopping.addBoth(done.append)
    assert not done
    second.end(error.ProcessTerminated(signal=9))
    assert done
    assert len(reactor.spawned) == 2


def test_worker_log_lines_go_to_the_parents_log() -> None:
    """
    A worker's JSON log line becomes an event of the parent's log with the
    worker's number in its system; other output is logged as a warning.
    """
    supervisor, reactor, _ = started(2)
    events: List[Dict[str, Any]] = []
    supervisor._log = Logger(observer=events.append)
    process = reactor.spawned[1]["protocol"]
    stream = io.StringIO()
    observer = ParentLogObserver(stream)
    Logger(namespace="obproxy_tx.x", observer=observer).error("boom {n}", n=3)
    line = stream.getvalue().encode()
    process.childDataReceived(1, line[:10])
    process.childDataReceived(1, line[10:])
    assert len(events) == 1
    assert events[0]["text"] == "boom 3"
    assert events[0]["log_level"] is LogLevel.error
    assert events[0]["log_system"] == "worker 1: obproxy_tx.x#error"
    record = json.loads(line)
    assert record == {"level": "error", "namespace": "obproxy_tx.x", "text": "boom 3"}


def test_fair_port_accepts_one_at_a_time() -> None:
    """
    Twisted's port accepts up to a hundred connections per wake-up and grows
    that; a worker's port takes one, so a burst spreads over the workers.
    """
    port = _fair(tcp.Port)(0, Factory())
    port.numberAccepts = 100
    assert port.numberAccepts == 1
    assert issubclass(type(port), tcp.Port)
