"""
Stop signals under C{twistd}: the first C{SIGTERM}/C{SIGINT} drains
(Twisted's own handler stops the reactor, the service drains); a second one
while draining closes every session at once, in the service, in the parent
of workers (forwarded as a second C{SIGTERM}) and in a worker.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from twisted.internet import error
from twisted.internet.testing import MemoryReactorClock

from obproxy_tx import tap
from obproxy_tx.cluster import worker
from obproxy_tx.reload import ConfigSource
from tests.unit.cluster.test_workers import started

CONF = """\
listen: "tcp:0:interface=127.0.0.1"
clusters:
  - name: c1
    type: mysql
    servers: ["127.0.0.1:3306"]
"""


class _Reactor(MemoryReactorClock):
    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N802
        self.callLater(0, f, *args, **kwargs)


@pytest.fixture
def saved_handlers() -> Iterator[None]:
    saved = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


class _Drain:
    def __init__(self) -> None:
        self.hurried = 0

    def hurry(self) -> None:
        self.hurried += 1


def test_a_second_stop_signal_hurries_the_drain(tmp_path: Path, saved_handlers: None) -> None:
    path = tmp_path / "conf.yaml"
    path.write_text(CONF)
    reactor = _Reactor()
    options = tap.Options(reactor)
    options.parseOptions(["-c", str(path)])
    service = tap.makeService(options)
    before = signal.getsignal(signal.SIGTERM)
    service.startService()
    # While running, the stop signals are Twisted's (the reactor installs them).
    assert signal.getsignal(signal.SIGTERM) == before
    service.stopService()
    drain = service.manager.drain
    assert drain is not None
    hurried = _Drain()
    service.manager.drain = hurried
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
    reactor.advance(0)
    assert hurried.hurried == 1
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)
    reactor.advance(0)
    assert hurried.hurried == 2


def test_an_embedded_service_leaves_stop_signals_alone(
    tmp_path: Path, saved_handlers: None
) -> None:
    path = tmp_path / "conf.yaml"
    path.write_text(CONF)
    service = tap.build_proxy_service(ConfigSource.of(str(path)).load(), _Reactor())
    before = signal.getsignal(signal.SIGTERM)
    service.startService()
    service.stopService()
    assert signal.getsignal(signal.SIGTERM) == before


def test_the_parent_forwards_a_second_stop_to_its_workers() -> None:
    supervisor, reactor, _ = started(2)
    supervisor.hurry()
    # Not stopping: nothing is sent.
    assert [spawned["transport"].signals for spawned in reactor.spawned] == [[], []]
    supervisor.stopService()
    supervisor.hurry()
    assert [spawned["transport"].signals for spawned in reactor.spawned] == [
        ["TERM", "TERM"],
        ["TERM", "TERM"],
    ]
    for spawned in reactor.spawned:
        spawned["transport"].end(error.ProcessDone(None))


def test_a_draining_worker_hurries_on_a_second_signal(saved_handlers: None) -> None:
    class Manager:
        drain = _Drain()

    reactor = _Reactor()
    worker._hurry_on_second_stop(reactor, Manager)
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
    reactor.advance(0)
    assert Manager.drain.hurried == 1
