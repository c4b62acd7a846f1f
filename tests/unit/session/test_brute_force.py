"""
Tests for L{obproxy_tx.session.brute_force}: the pure failure table, and the
throttle on a clock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, task

from obproxy_tx.config import parse_config
from obproxy_tx.session.brute_force import (
    ER_HOST_IS_BLOCKED,
    FailureTable,
    LoginThrottle,
    ThrottleSettings,
)
from obproxy_tx.session.stats import ProxyStats

SETTINGS = ThrottleSettings(threshold=3, delay=1.0, max_delay=4.0, window=60.0, max_wait=10.0)


def _fail(table: FailureTable, address: str, times: int, now: float = 0.0) -> None:
    for _ in range(times):
        table.failed(address, now, SETTINGS)


def test_under_threshold_not_held() -> None:
    table = FailureTable()
    _fail(table, "10.0.0.1", 2)
    assert table.hold("10.0.0.1", 1.0, SETTINGS) == 0.0
    assert table.hold("10.0.0.1", 1.0, SETTINGS) == 0.0


def test_held_from_threshold_and_growing() -> None:
    table = FailureTable()
    _fail(table, "10.0.0.1", 3)
    assert table.step("10.0.0.1", 0.0, SETTINGS) == 1.0
    table.failed("10.0.0.1", 0.0, SETTINGS)
    assert table.step("10.0.0.1", 0.0, SETTINGS) == 2.0
    _fail(table, "10.0.0.1", 10)
    assert table.step("10.0.0.1", 0.0, SETTINGS) == 4.0  # max_delay


def test_other_addresses_unaffected() -> None:
    table = FailureTable()
    _fail(table, "10.0.0.1", 20)
    assert table.hold("10.0.0.2", 0.0, SETTINGS) == 0.0


def test_parallel_logins_take_turns() -> None:
    """
    Logins arriving together are spaced one step apart, so parallelism gives a
    guesser no more answers per second.
    """
    table = FailureTable()
    _fail(table, "a", 3)
    waits = [table.hold("a", 5.0, SETTINGS) for _ in range(4)]
    assert waits == [1.0, 2.0, 3.0, 4.0]
    # Later, after the queue has drained, a login waits one step again.
    assert table.hold("a", 100.0, SETTINGS) == 0.0  # forgotten: window passed
    _fail(table, "a", 3, now=200.0)
    assert table.hold("a", 200.0, SETTINGS) == 1.0
    assert table.hold("a", 250.0, SETTINGS) == 1.0


def test_refused_beyond_max_wait_without_a_turn() -> None:
    table = FailureTable()
    _fail(table, "a", 6)  # step 4 s
    assert table.hold("a", 0.0, SETTINGS) == 4.0
    assert table.hold("a", 0.0, SETTINGS) == 8.0
    assert table.hold("a", 0.0, SETTINGS) is None  # 12 s > max_wait 10 s
    assert table.hold("a", 0.0, SETTINGS) is None
    # The refusals took no turn: once the queue moved on, a login fits again.
    assert table.hold("a", 8.0, SETTINGS) == 4.0


def test_failures_forgotten_after_window() -> None:
    table = FailureTable()
    _fail(table, "a", 5, now=0.0)
    assert table.failures("a", 60.0, SETTINGS) == 5
    assert table.failures("a", 60.5, SETTINGS) == 0
    assert len(table) == 0
    # A new failure within the window extends it.
    _fail(table, "b", 3, now=0.0)
    table.failed("b", 50.0, SETTINGS)
    assert table.failures("b", 100.0, SETTINGS) == 4


def test_threshold_zero_is_off() -> None:
    off = ThrottleSettings(threshold=0, delay=1.0, max_delay=4.0, window=60.0, max_wait=10.0)
    table = FailureTable()
    for _ in range(100):
        table.failed("a", 0.0, off)
    assert len(table) == 0
    assert table.hold("a", 0.0, off) == 0.0


def test_table_bounded() -> None:
    table = FailureTable(max_addresses=3)
    for n in range(10):
        table.failed(f"10.0.0.{n}", 0.0, SETTINGS)
    assert len(table) == 3
    assert table.failures("10.0.0.9", 0.0, SETTINGS) == 1
    assert table.failures("10.0.0.0", 0.0, SETTINGS) == 0


def _throttle(clock: task.Clock, **items: Any) -> LoginThrottle:
    lines = "\n".join(f"{k}: {v}" for k, v in items.items())
    config = parse_config(
        f"""
{lines}
clusters:
  - name: c
    type: mysql
    servers: ['127.0.0.1:3306']
    users: []
"""
    )
    return LoginThrottle(clock, lambda: config, ProxyStats())


def test_throttle_waits_on_the_reactor() -> None:
    clock = task.Clock()
    throttle = _throttle(
        clock, login_failure_threshold=2, login_failure_delay="1s", client_login_timeout="3s"
    )
    # Not throttled: answered at once.
    first = defer.Deferred.fromCoroutine(throttle.before_login("a"))
    assert first.called and first.result is None
    throttle.failed("a")
    throttle.failed("a")
    held = [defer.Deferred.fromCoroutine(throttle.before_login("a")) for _ in range(3)]
    refused = defer.Deferred.fromCoroutine(throttle.before_login("a"))
    assert refused.called
    assert refused.result.error_code == ER_HOST_IS_BLOCKED
    assert "'a' is blocked" in refused.result.message
    other = defer.Deferred.fromCoroutine(throttle.before_login("b"))
    assert other.called and other.result is None
    assert [d.called for d in held] == [False, False, False]
    clock.advance(1.0)
    assert [d.called for d in held] == [True, False, False]
    clock.advance(2.0)
    assert [d.called for d in held] == [True, True, True]
    assert all(d.result is None for d in held)
    assert throttle._stats.logins_held == 3
    assert throttle._stats.logins_blocked == 1


def test_defaults() -> None:
    """
    On by default: five failures free, then one second per failure over, at most 10 s.
    """
    config = parse_config("clusters: [{name: c, type: mysql, servers: ['h:1'], users: []}]")
    settings = ThrottleSettings.from_config(config)
    assert settings == ThrottleSettings(
        threshold=5, delay=1.0, max_delay=10.0, window=60.0, max_wait=10.0
    )
    # Unchanged behaviour by default: the protocol's own maximum.
    assert config.max_client_packet_size == 1 << 30
