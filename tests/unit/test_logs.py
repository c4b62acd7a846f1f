"""
The log level (C{syslog_level}, L{obproxy_tx.logs}) and the SQL port's listen
backlog (L{obproxy_tx.tap.with_backlog}).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from twisted.application.service import Service
from twisted.internet.testing import MemoryReactor
from twisted.logger import LogLevel, LogPublisher

from obproxy_tx import logs, tap
from obproxy_tx.config import ConfigError, ProxyConfig, apply_overrides, parse_config
from obproxy_tx.session.manager import SessionManager

CONFIG = """
clusters:
  - name: c
    type: mysql
    servers: ["127.0.0.1:3306"]
"""


@pytest.fixture(autouse=True)
def _restore_level() -> Iterator[None]:
    before = logs.current_level()
    yield
    logs.set_level(before)


def _collect() -> tuple[logs.Logger, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    publisher = LogPublisher(events.append)  # type: ignore[arg-type]
    return logs.Logger(namespace="test", observer=publisher), events


def _config(**items: str) -> ProxyConfig:
    options = [f"{name}={value}" for name, value in items.items()]
    return apply_overrides(parse_config(CONFIG), options=options)


def test_default_is_odp_wdiag_which_writes_info() -> None:
    """
    ODP's default C{WDIAG} is below C{INFO} in its order, so info events are
    written and debug ones are not.
    """
    config = _config()
    assert config.syslog_level == "WDIAG"
    logs.apply_config(config)
    log, events = _collect()
    log.debug("routine {n}", n=1)
    log.info("state {n}", n=2)
    log.warn("odd {n}", n=3)
    assert [event["n"] for event in events] == [2, 3]
    assert not logs.enabled(LogLevel.debug)
    assert logs.enabled(LogLevel.info)


@pytest.mark.parametrize(
    ("name", "written"),
    [
        ("DEBUG", ["debug", "info", "warn", "error", "critical"]),
        ("TRACE", ["debug", "info", "warn", "error", "critical"]),
        ("EDIAG", ["info", "warn", "error", "critical"]),
        ("INFO", ["info", "warn", "error", "critical"]),
        ("WARN", ["warn", "error", "critical"]),
        ("ERROR", ["error", "critical"]),
    ],
)
def test_each_odp_level(name: str, written: list[str]) -> None:
    """
    Every ODP level lets through its twisted.logger level and those above.
    """
    logs.apply_config(_config(syslog_level=name))
    log, events = _collect()
    for level in (LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error):
        log.emit(level, "at {lvl}", lvl=level.name)
    log.critical("at {lvl}", lvl="critical")
    assert [event["lvl"] for event in events] == written


def test_failure_is_filtered_too() -> None:
    """
    C{Logger.failure} goes through the same gate (critical by default: written).
    """
    logs.set_level(LogLevel.error)
    log, events = _collect()
    try:
        raise ValueError("boom")
    except ValueError:
        log.failure("it failed")
        log.failure("quietly", level=LogLevel.warn)
    assert [event["log_format"] for event in events] == ["it failed"]


def test_bad_level_is_a_config_error() -> None:
    """
    A level ODP does not have is refused with the item's name.
    """
    with pytest.raises(ConfigError, match="syslog_level"):
        _config(syslog_level="VERBOSE")


def test_manager_applies_level_at_start_and_on_change() -> None:
    """
    The session manager (the one in each worker process too) applies the
    level, and again when ALTER PROXYCONFIG changes it.
    """
    manager = SessionManager(_config(syslog_level="DEBUG"), reactor=MemoryReactor())
    assert logs.current_level() is LogLevel.debug
    manager.reconfigure(_config(syslog_level="WARN"))
    assert logs.current_level() is LogLevel.warn
    assert not logs.enabled(LogLevel.info)


def test_build_proxy_service_applies_level() -> None:
    """
    The tap applies the level before anything starts.
    """
    tap.build_proxy_service(
        _config(syslog_level="ERROR"), MemoryReactor(), manager_factory=_NoManager
    )
    assert logs.current_level() is LogLevel.error


class _NoManager(Service):
    def __init__(self, config: Any, reactor: Any = None) -> None:
        pass

    def listener_factory(self) -> Any:
        return None


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("tcp:2883:interface=0.0.0.0", "tcp:2883:interface=0.0.0.0:backlog=4096"),
        ("tcp6:2883", "tcp6:2883:backlog=4096"),
        ("unix:/tmp/obproxy.sock", "unix:/tmp/obproxy.sock:backlog=4096"),
        ("tcp:2883:backlog=10", "tcp:2883:backlog=10"),
        ("ssl:2883:privateKey=k.pem", "ssl:2883:privateKey=k.pem"),
    ],
)
def test_with_backlog(description: str, expected: str) -> None:
    """
    A tcp, tcp6 or unix endpoint without a backlog gets L{tap.LISTEN_BACKLOG};
    one that sets its own keeps it; other kinds are left alone.
    """
    assert tap.with_backlog(description) == expected


def test_listen_backlog_reaches_listen() -> None:
    """
    The SQL port listens with the large backlog (Twisted's default is 50),
    or with the one the C{listen} string names.
    """
    reactor = MemoryReactor()
    tap.listen_endpoint(_config(listen_port="3307"), reactor).listen(None)  # type: ignore[arg-type]
    tap.listen_endpoint(_config(listen="tcp:3308:backlog=7"), reactor).listen(None)  # type: ignore[arg-type]
    assert [(port, backlog) for port, _f, backlog, _i in reactor.tcpServers] == [
        (3307, tap.LISTEN_BACKLOG),
        (3308, 7),
    ]
