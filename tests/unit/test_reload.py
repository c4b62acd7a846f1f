"""
Configuration reload (L{obproxy_tx.reload}): the pure choice of what applies
now and what waits for a restart, reading the file, saved items and command
line again, applying to a real session manager without touching its
sessions, the C{SIGHUP} handlers of the service and of a worker, and the
parent forwarding the reload to its workers.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
from pathlib import Path
from typing import Any, Iterator, List

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher

from obproxy_tx import config_store, logs, tap
from obproxy_tx.cluster import worker
from obproxy_tx.cluster.supervisor import WorkerSupervisor
from obproxy_tx.config import parse_config
from obproxy_tx.reload import ConfigSource, reload_config, reloadable
from obproxy_tx.session.manager import SessionManager

CONF = """\
listen: "tcp:0:interface=127.0.0.1"
client_max_connections: {max_conn}
proxy_id: {proxy_id}
clusters:
  - name: c1
    type: mysql
    servers: ["127.0.0.1:{server_port}"]
"""


def write(path: Path, max_conn: int = 100, proxy_id: int = 1, server_port: int = 3306) -> None:
    path.write_text(CONF.format(max_conn=max_conn, proxy_id=proxy_id, server_port=server_port))


@pytest.fixture
def logged() -> Iterator[List[dict[str, Any]]]:
    events: List[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def texts(events: List[dict[str, Any]], level: LogLevel) -> List[str]:
    from twisted.logger import formatEvent

    return [
        formatEvent(event)
        for event in events
        if event.get("log_level") is level and event.get("log_namespace") == "obproxy_tx.reload"
    ]


# -- the pure part --------------------------------------------------------------------------


def test_reloadable_applies_runtime_items_and_clusters_and_holds_the_rest() -> None:
    running = parse_config(CONF.format(max_conn=100, proxy_id=1, server_port=3306))
    read = parse_config(CONF.format(max_conn=5, proxy_id=2, server_port=3307))
    config, held = reloadable(running, read)
    assert config.client_max_connections == 5
    assert config.proxy_id == 1
    # The clusters change while running (obproxy_tx.session.retire applies them).
    assert config.clusters == read.clusters
    assert [s.address for s in config.default_cluster.servers] == ["127.0.0.1:3307"]
    assert held == ("proxy_id",)


def test_reloadable_without_changes_holds_nothing() -> None:
    running = parse_config(CONF.format(max_conn=100, proxy_id=1, server_port=3306))
    config, held = reloadable(running, running)
    assert held == ()
    assert config == running


# -- reading again ------------------------------------------------------------------------


def test_source_reads_file_saved_items_and_command_line(tmp_path: Path) -> None:
    path = tmp_path / "conf.yaml"
    write(path, max_conn=100)
    relative = os.path.relpath(path)
    source = ConfigSource.of(relative, options=["default_inactivity_timeout=7s"])
    assert source.path == str(path)
    config_store.save_item(str(path) + ".altered.yaml", "client_max_connections", "42")
    config = source.load()
    assert config.client_max_connections == 42
    assert config.default_inactivity_timeout == 7
    # Command line over saved over file, as at start.
    source = ConfigSource.of(str(path), options=["client_max_connections=9"])
    assert source.load().client_max_connections == 9
    # Picklable: workers get it in their spec.
    assert pickle.loads(pickle.dumps(source)) == source


def test_source_without_a_file_is_the_defaults_and_the_command_line() -> None:
    source = ConfigSource.of(None, rootservice_list="127.0.0.1:2881")
    config = source.load()
    assert config.default_cluster.name == "obcluster"
    assert [server.address for server in config.default_cluster.servers] == ["127.0.0.1:2881"]


# -- applying to a session manager -------------------------------------------------------


def manager_for(path: Path) -> SessionManager:
    return SessionManager(ConfigSource.of(str(path)).load(), MemoryReactorClock())


def test_reload_applies_to_the_manager_and_keeps_sessions(
    tmp_path: Path, logged: List[dict[str, Any]]
) -> None:
    path = tmp_path / "conf.yaml"
    write(path, max_conn=100)
    manager = manager_for(path)
    session = object()
    manager.client_sessions[1] = session  # type: ignore[assignment]
    write(path, max_conn=7, proxy_id=3)
    outcome = reload_config(manager, ConfigSource.of(str(path)))
    assert outcome.error is None
    assert outcome.changed == ("client_max_connections",)
    assert outcome.held == ("proxy_id",)
    assert manager.config.client_max_connections == 7
    assert manager.config.proxy_id == 1
    assert manager.client_sessions == {1: session}
    assert any("client_max_connections" in text for text in texts(logged, LogLevel.info))
    assert any("proxy_id" in text for text in texts(logged, LogLevel.warn))


def test_a_bad_file_changes_nothing(tmp_path: Path, logged: List[dict[str, Any]]) -> None:
    path = tmp_path / "conf.yaml"
    write(path, max_conn=100)
    manager = manager_for(path)
    before = manager.config
    path.write_text(path.read_text().replace("client_max_connections: 100", "client_max_conn: x"))
    outcome = reload_config(manager, ConfigSource.of(str(path)))
    assert outcome.error is not None and "client_max_conn" in outcome.error
    assert manager.config is before
    errors = texts(logged, LogLevel.error)
    assert len(errors) == 1 and "nothing changed" in errors[0] and str(path) in errors[0]
    # An unreadable file too.
    path.unlink()
    assert reload_config(manager, ConfigSource.of(str(path))).error is not None
    assert manager.config is before


# -- the service's SIGHUP -----------------------------------------------------------------


class _Reactor(MemoryReactorClock):
    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N802
        self.callLater(0, f, *args, **kwargs)


def test_the_service_reloads_on_sighup(tmp_path: Path) -> None:
    path = tmp_path / "conf.yaml"
    write(path, max_conn=100)
    reactor = _Reactor()
    options = tap.Options(reactor)
    options.parseOptions(["-c", str(path)])
    service = tap.makeService(options)
    original = signal.getsignal(signal.SIGHUP)
    service.startService()
    try:
        assert signal.getsignal(signal.SIGHUP) == service._sighup
        write(path, max_conn=11)
        signal.pthread_kill(threading.get_ident(), signal.SIGHUP)
        reactor.advance(0)
        assert service.manager.config.client_max_connections == 11
        assert service.config.client_max_connections == 11
    finally:
        service.stopService()
    assert signal.getsignal(signal.SIGHUP) == original


def test_an_embedded_service_leaves_sighup_alone(tmp_path: Path) -> None:
    path = tmp_path / "conf.yaml"
    write(path)
    service = tap.build_proxy_service(ConfigSource.of(str(path)).load(), _Reactor())
    original = signal.getsignal(signal.SIGHUP)
    service.startService()
    try:
        assert signal.getsignal(signal.SIGHUP) == original
        assert service.reload() is None
    finally:
        service.stopService()


# -- workers ------------------------------------------------------------------------------


def test_the_parent_forwards_a_reload_to_every_worker(tmp_path: Path) -> None:
    from tests.unit.cluster.test_workers import FakeParent, FakePort, FakeReactor

    path = tmp_path / "conf.yaml"
    path.write_text("work_thread_num: 2\n" + CONF.format(max_conn=100, proxy_id=1, server_port=1))
    source = ConfigSource.of(str(path))
    reactor = FakeReactor()
    supervisor = WorkerSupervisor(source.load(), reactor, config_source=source)
    supervisor.parent = FakeParent(FakePort(supervisor.listener_factory()))  # type: ignore[assignment]
    supervisor.startService()
    specs = [pickle.loads(spawned["transport"].written) for spawned in reactor.spawned]
    assert [spec["config_source"] for spec in specs] == [source, source]
    # SIGHUP is not blocked in the parent once the workers are spawned.
    assert signal.SIGHUP not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    path.write_text(
        path.read_text().replace("client_max_connections: 100", "client_max_connections: 3")
        + "syslog_level: ERROR\n"
    )
    level = logs.current_level()
    try:
        outcome = reload_config(supervisor, source)
        # The parent's own log level follows.
        assert logs.current_level() is LogLevel.error
    finally:
        logs.set_level(level)
    assert outcome.error is None
    assert supervisor.config.client_max_connections == 3
    assert [spawned["transport"].signals for spawned in reactor.spawned] == [["HUP"], ["HUP"]]
    # A worker started later gets the new configuration.
    reactor.spawned[0]["transport"].end(Exception("gone"))
    reactor.advance(1)
    assert pickle.loads(reactor.spawned[-1]["transport"].written)["config"] == supervisor.config
    supervisor.stopService()


def test_a_worker_reloads_its_manager_on_sighup(tmp_path: Path) -> None:
    path = tmp_path / "conf.yaml"
    write(path, max_conn=100)
    manager = manager_for(path)
    reactor = _Reactor()
    original = signal.getsignal(signal.SIGHUP)
    # Born blocked, as the parent spawns it.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        write(path, max_conn=4)
        # Held while blocked. To this thread: a signal to the process could go to
        # another thread of the test run, which does not block it.
        signal.pthread_kill(threading.get_ident(), signal.SIGHUP)
        worker._handle_sighup(reactor, manager, ConfigSource.of(str(path)))
        reactor.advance(0)
        assert manager.config.client_max_connections == 4
        assert signal.SIGHUP not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        signal.signal(signal.SIGHUP, original)
