"""
The congestion table (L{obproxy_tx.ha.congestion}), driven by a plain clock value.
"""

from __future__ import annotations

import time
from typing import List

from obproxy_tx.config import ProxyConfig
from obproxy_tx.ha.congestion import (
    CongestionConfig,
    CongestionTable,
    format_time,
    means_unavailable,
)

C = "cl"
A, B, D = "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"


def table(**kwargs: object) -> CongestionTable:
    config = CongestionConfig(**kwargs)  # type: ignore[arg-type]
    return CongestionTable(lambda: config)


def order(t: CongestionTable, now: float, servers: List[str] = [A, B, D]) -> List[str]:  # noqa: B006
    return t.order(C, servers, now, lambda s: s)


def test_threshold_within_window_marks_dead() -> None:
    """
    Four failures do not congest a server; the fifth within the window does.
    """
    t = table(failure_threshold=5, fail_window=10.0)
    for i in range(4):
        assert not t.connect_failed(C, A, 100.0 + i)
    assert not t.avoided(C, A, 104.0)
    assert not t.has_congestion
    assert t.connect_failed(C, A, 104.5)
    entry = t.entry(C, A)
    assert entry.dead_congested and entry.last_dead_congested == 104.5
    assert entry.stat_conn_failures == 5
    assert t.avoided(C, A, 105.0)
    assert order(t, 105.0) == [B, D, A]


def test_failures_outside_window_do_not_add_up() -> None:
    """
    Failures older than the window are forgotten.
    """
    t = table(failure_threshold=3, fail_window=10.0)
    t.connect_failed(C, A, 0.0)
    t.connect_failed(C, A, 5.0)
    assert not t.connect_failed(C, A, 10.5)  # the one at 0 has left the window
    assert t.entry(C, A).failure_events(10.0, 10.5) == (2, 0)
    assert t.connect_failed(C, A, 11.0)


def test_trial_after_retry_interval_then_claimed() -> None:
    """
    A dead server is offered again after congestion_retry_interval; once one connection claims
    the trial, others avoid it for another interval.
    """
    t = table(failure_threshold=1, retry_interval=20.0)
    t.connect_failed(C, A, 0.0)
    assert t.avoided(C, A, 19.9)
    assert not t.avoided(C, A, 20.0)
    assert order(t, 20.0) == [A, B, D]
    t.claim(C, A, 20.0)
    assert t.avoided(C, A, 20.1)
    assert order(t, 20.1) == [B, D, A]
    # the trial failed: another whole interval
    t.connect_failed(C, A, 21.0)
    assert t.avoided(C, A, 40.9)
    assert not t.avoided(C, A, 41.0)


def test_recovery_respects_min_keep_interval() -> None:
    """
    A dead server that logs in again within min_keep_congestion_interval becomes alive
    congested (still avoided); a success after that interval frees it.
    """
    t = table(failure_threshold=1, retry_interval=1.0, min_keep_interval=20.0)
    t.connect_failed(C, A, 0.0)
    assert not t.succeeded(C, A, 5.0)
    entry = t.entry(C, A)
    assert not entry.dead_congested and entry.alive_congested
    assert entry.last_alive_congested == 5.0
    assert t.avoided(C, A, 5.5)
    assert not t.succeeded(C, A, 24.0)  # 19 s after the alive congestion began
    assert t.has_congestion
    assert t.succeeded(C, A, 25.0)
    assert not t.entry(C, A).congested
    assert not t.avoided(C, A, 25.0)
    assert not t.has_congestion


def test_success_after_keep_interval_frees_at_once() -> None:
    t = table(failure_threshold=1, min_keep_interval=20.0)
    t.connect_failed(C, A, 0.0)
    assert t.succeeded(C, A, 30.0)
    assert not t.entry(C, A).congested


def test_refusals_make_alive_congestion() -> None:
    """
    Refusals (1053, 1040, 8001, ...) count as alive failures, on their own threshold.
    """
    t = table(failure_threshold=2)
    assert means_unavailable(1053) and means_unavailable(1040) and means_unavailable(8001)
    assert not means_unavailable(1045)  # access denied: the server is fine
    assert not t.alive_failed(C, B, 1.0)
    assert t.alive_failed(C, B, 2.0)
    entry = t.entry(C, B)
    assert entry.alive_congested and not entry.dead_congested
    assert entry.stat_alive_failures == 2 and entry.alive_last_fail_time == 2.0
    assert t.avoided(C, B, 3.0)


def test_detect_threshold_and_recovery() -> None:
    """
    The active checker's failures in a row mark the server (no trial until a check passes);
    a passing check frees every kind of congestion.
    """
    t = table(detect_fail_threshold=3, failure_threshold=1, retry_interval=1.0)
    assert not t.detect_failed(C, A, 1.0)
    assert not t.detect_failed(C, A, 2.0)
    assert t.detect_failed(C, A, 3.0)
    entry = t.entry(C, A)
    assert entry.detect_congested and entry.server_state == "DETECT_DEAD"
    assert t.avoided(C, A, 1000.0)  # no trial: the checker decides
    t.connect_failed(C, A, 4.0)
    assert t.has_congestion
    assert t.detect_succeeded(C, A, 5.0)
    assert not t.has_congestion
    assert not t.entry(C, A).congested and t.entry(C, A).server_state == "DETECT_ALIVE"
    assert not t.avoided(C, A, 5.0)


def test_detect_failures_must_be_in_a_row() -> None:
    t = table(detect_fail_threshold=2)
    t.detect_failed(C, A, 1.0)
    t.detect_succeeded(C, A, 2.0)
    assert not t.detect_failed(C, A, 3.0)
    assert t.detect_failed(C, A, 4.0)


def test_all_congested_least_recently_failed_first() -> None:
    """
    When every server is avoided, order still lists them all, the one that failed longest ago
    first: a request is never refused without trying a server.
    """
    t = table(failure_threshold=1, retry_interval=100.0)
    t.connect_failed(C, B, 1.0)
    t.connect_failed(C, A, 2.0)
    t.connect_failed(C, D, 3.0)
    assert t.all_avoided(C, [A, B, D], 4.0)
    assert order(t, 4.0) == [B, A, D]


def test_disabled_avoids_nothing_but_counts() -> None:
    t = table(enabled=False, failure_threshold=1)
    assert t.connect_failed(C, A, 1.0)
    assert not t.avoided(C, A, 1.5)
    assert order(t, 1.5) == [A, B, D]
    assert t.entry(C, A).stat_conn_failures == 1


def test_zero_threshold_never_congests() -> None:
    t = table(failure_threshold=0)
    for i in range(10):
        assert not t.connect_failed(C, A, float(i))
    assert not t.avoided(C, A, 10.0)


def test_clusters_are_separate_and_listed() -> None:
    t = table(failure_threshold=1)
    t.known(C, [A, B])
    t.connect_failed("other", A, 1.0)
    assert not t.avoided(C, A, 1.0)
    assert t.avoided("other", A, 1.0)
    assert [(e.cluster, e.server) for e in t.entries()] == [(C, A), (C, B), ("other", A)]
    assert [e.server for e in t.entries(C)] == [A, B]


def test_from_proxy_config_and_format_time() -> None:
    config = CongestionConfig.from_proxy_config(ProxyConfig())
    assert config == CongestionConfig()  # ODP's defaults
    assert format_time(0) == "0"
    stamp = time.mktime((2026, 1, 2, 3, 4, 5, 0, 0, -1))
    assert format_time(stamp) == "2026-01-02 03:04:05"
