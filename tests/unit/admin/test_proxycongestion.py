"""
Tests for L{obproxy_tx.plugins.obproxy_congestion}: C{SHOW PROXYCONGESTION [cluster | ALL
[cluster]]} (grammar, ODP's columns in ODP's order, only congested servers without ALL, the
merge of several workers' rows).
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import task

from obproxy_tx.admin.interfaces import AdminContext, AdminResultSet, Privilege
from obproxy_tx.admin.registry import CommandRegistry
from obproxy_tx.config import parse_config
from obproxy_tx.ha.health import Health
from obproxy_tx.plugins.obproxy_congestion import (
    CongestionQuery,
    ShowProxyCongestion,
    _merge,
)

SHOW = ShowProxyCongestion()
A, B = "127.0.0.1:3301", "127.0.0.1:3302"

ODP_COLUMNS = [
    "cluster_name",
    "zone_name",
    "region_name",
    "zone_state",
    "server_ip",
    "cr_version",
    "server_state",
    "alive_congested",
    "last_alive_congested",
    "dead_congested",
    "last_dead_congested",
    "stat_alive_failures",
    "stat_conn_failures",
    "conn_last_fail_time",
    "conn_failure_events",
    "alive_last_fail_time",
    "alive_failure_events",
    "ref_count",
    "detect_congested",
    "last_detect_congested",
]


class StandInManager:
    """What SHOW PROXYCONGESTION reads of a session manager."""

    cluster = None

    def __init__(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.config = parse_config(
            f"""
listen_port: 0
congestion_failure_threshold: 1
clusters:
  - name: one
    type: mysql
    servers: ["{A}", "{B}"]
    users: [{{name: u, verifier: ''}}]
  - name: two
    type: mysql
    servers: ["{A}"]
    users: [{{name: u, verifier: ''}}]
"""
        )
        self.health = Health(self.clock, lambda: self.config)
        self.health.known(self.config.clusters)


def run(manager: Any, sql: str) -> AdminResultSet:
    match = SHOW.match(sql)
    assert match is not None, sql
    result = SHOW.execute(AdminContext(None, manager, None), match)
    assert isinstance(result, AdminResultSet)
    return result


def test_declarations_and_columns() -> None:
    assert (SHOW.privilege, SHOW.proxy_only) == (Privilege.ADMIN, True)
    assert list(SHOW.columns) == ODP_COLUMNS
    names = {command.name for command in CommandRegistry.from_plugins().commands}
    assert "SHOW PROXYCONGESTION" in names


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("SHOW PROXYCONGESTION", CongestionQuery(False, None)),
        ("show  proxycongestion one", CongestionQuery(False, "one")),
        ("SHOW PROXYCONGESTION ALL", CongestionQuery(True, None)),
        ("SHOW PROXYCONGESTION all 'two'", CongestionQuery(True, "two")),
        ("SHOW PROXYCONGESTION `my-cluster`", CongestionQuery(False, "my-cluster")),
    ],
)
def test_grammar(sql: str, expected: CongestionQuery) -> None:
    assert SHOW.match(sql) == expected


@pytest.mark.parametrize("sql", ["SHOW PROXYCONGESTIONS", "SHOW PROXYCONGESTION a b"])
def test_not_this_grammar(sql: str) -> None:
    assert SHOW.match(sql) is None


def test_rows() -> None:
    """
    Without ALL only the congested server is listed; with ALL every configured server of
    every cluster, or of the cluster named.
    """
    manager = StandInManager()
    assert run(manager, "SHOW PROXYCONGESTION").rows == []
    manager.health.connect_failed("one", B, "refused")
    rows = run(manager, "SHOW PROXYCONGESTION").rows
    assert len(rows) == 1
    row = dict(zip(ODP_COLUMNS, rows[0]))
    assert row["cluster_name"] == "one" and row["server_ip"] == B
    assert row["dead_congested"] == 1 and row["alive_congested"] == 0
    assert row["stat_conn_failures"] == 1 and row["conn_failure_events"] == 1
    assert row["last_dead_congested"].startswith("2023-11-1")  # 1.7e9 s, local time
    assert row["last_alive_congested"] == "0" and row["server_state"] == "ACTIVE"
    assert row["zone_state"] == "ACTIVE" and row["cr_version"] == 0
    everything = run(manager, "SHOW PROXYCONGESTION ALL").rows
    assert [(r[0], r[4]) for r in everything] == [("one", A), ("one", B), ("two", A)]
    assert [(r[0], r[4]) for r in run(manager, "SHOW PROXYCONGESTION ALL two").rows] == [("two", A)]
    assert run(manager, "SHOW PROXYCONGESTION two").rows == []
    assert run(manager, "SHOW PROXYCONGESTION nosuch").rows == []


def test_workers_merge() -> None:
    """
    Two workers' rows for one server become one: congested if either says so, counts summed,
    the latest times.
    """
    first = ["one", A, "ACTIVE", 0, 0, 1, 50.0, 0, 5, 50.0, 5, 0, 0, 0, 0]
    second = ["one", A, "DETECT_ALIVE", 0, 0, 0, 0, 2, 1, 60.0, 1, 61.0, 2, 0, 0]
    (merged,) = _merge([first, second])
    assert merged["dead_congested"] == 1
    assert merged["stat_conn_failures"] == 6 and merged["stat_alive_failures"] == 2
    assert merged["conn_last_fail_time"] == 60.0 and merged["alive_last_fail_time"] == 61.0
    assert merged["server_state"] == "DETECT_ALIVE"


def test_through_the_worker_channel() -> None:
    """
    Each worker's rows travel as JSON (LocalSessions.list_rows, what the channel calls) and
    the node's answer merges them: B congested by one worker, counts of both summed.
    """
    import json

    from twisted.internet.testing import MemoryReactorClock

    from obproxy_tx.cluster.local import LocalSessions
    from obproxy_tx.session.manager import SessionManager

    config = StandInManager().config
    workers = [SessionManager(config, reactor=MemoryReactorClock()) for _ in range(2)]
    workers[0].health.connect_failed("one", B, "refused")
    workers[1].health.connect_failed("one", A, "refused")
    workers[1].health.connect_failed("one", A, "refused")
    caller = {"cs_id": 1, "login": None}
    match = CongestionQuery(True, "one")
    rows: list = []
    for worker in workers:
        answer: list = []
        LocalSessions(worker).list_rows(
            caller, "SHOW PROXYCONGESTION", SHOW.match_args(match), "worker"
        ).addCallback(answer.append)
        rows.extend(json.loads(json.dumps(answer[0])))
    merged = {r[4]: dict(zip(ODP_COLUMNS, r)) for r in SHOW._answer(rows, match).rows}
    assert merged[B]["dead_congested"] == 1 and merged[B]["stat_conn_failures"] == 1
    assert merged[A]["dead_congested"] == 1 and merged[A]["stat_conn_failures"] == 2
