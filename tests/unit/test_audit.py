"""
Tests for L{obproxy_tx.audit} (slow-query and audit logs, statement
redaction) and the session fields and JSON lines of L{obproxy_tx.logs}.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogPublisher, formatEvent

from obproxy_tx import logs
from obproxy_tx.audit import RequestLog, redact_statement
from obproxy_tx.config import apply_overrides, parse_config
from obproxy_tx.session.login import LoginName
from obproxy_tx.wire.packets import ComPing, ComQuery, ComStmtExecute

CONFIG = """
clusters:
  - name: c
    type: mysql
    servers: ["127.0.0.1:3306"]
"""


def _config(**items: Any) -> Any:
    return apply_overrides(
        parse_config(CONFIG), options=[f"{name}={value}" for name, value in items.items()]
    )


class _Statements:
    def __init__(self, known: dict[int, Any]) -> None:
        self.known = known

    def get(self, statement_id: int) -> Any:
        return self.known.get(statement_id)


class _Session:
    """What the logs read of a client session."""

    def __init__(self) -> None:
        self.cs_id = 42
        self.login = LoginName(user="app", tenant="sys", cluster="c")
        self.peer = "10.0.0.7"
        self.peer_port = 50312
        self.last_command_at = 0.0
        self.state = type("State", (), {"database": "shop"})()
        self.statements = _Statements({})
        self.active = None
        self.bound = None


class _ServerSession:
    def __init__(self) -> None:
        self.ss_id = 9
        self.server = type("Server", (), {"address": "127.0.0.1:3306"})()
        self.statements: dict[int, int] = {}


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    ("statement", "secret"),
    [
        ("CREATE USER 'u'@'%' IDENTIFIED BY 'Secret1'", "Secret1"),
        ('ALTER USER u IDENTIFIED WITH mysql_native_password BY "Secret2"', "Secret2"),
        ("SET PASSWORD FOR u = PASSWORD('Secret3')", "Secret3"),
        ("SET PASSWORD = 'Secret4'", "Secret4"),
        ("CHANGE MASTER TO MASTER_HOST='h', MASTER_PASSWORD='Secret5'", "Secret5"),
        ("GRANT ALL ON *.* TO u IDENTIFIED BY 'it''s Secret6'", "Secret6"),
        ("SELECT PASSWORD('Secret7')", "Secret7"),
    ],
)
def test_passwords_are_redacted(statement: str, secret: str) -> None:
    redacted = redact_statement(statement)
    assert secret not in redacted
    assert "'***'" in redacted


def test_other_statements_are_kept() -> None:
    for statement in ["SELECT 'password' FROM t", "SELECT 1", "UPDATE t SET a = 'x'"]:
        assert redact_statement(statement) == statement


def test_logs_off_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Nothing is written unless a file is configured; requests are still counted.
    """
    monkeypatch.chdir(tmp_path)
    clock = Clock()
    log = RequestLog(_config, clock.seconds)
    clock.advance(10)
    log.finished(_Session(), _ServerSession(), ComQuery(b"SELECT SLEEP(5)"), False)
    assert log.slow is None and log.audit is None
    assert list(tmp_path.iterdir()) == []
    assert log.stats.by_command["query"][0] == 1


def test_slow_and_audit_lines(tmp_path: Path) -> None:
    """
    The slow-query log takes requests at or over the threshold, the audit
    log every request; each line says who, what, where, how long, how.
    """
    slow, audit = tmp_path / "slow.log", tmp_path / "audit.log"
    config = _config(
        slow_query_log_file=slow,
        audit_log_file=audit,
        slow_query_time_threshold="100ms",
    )
    clock = Clock()
    log = RequestLog(lambda: config, clock.seconds)
    session, server = _Session(), _ServerSession()
    for seconds, query, failed in [
        (0.01, b"SELECT 1", False),
        (0.1, b"SELECT SLEEP(0.1)", False),
        (0.5, b"CREATE USER x IDENTIFIED BY 'pw_secret'", True),
    ]:
        session.last_command_at = clock.seconds()
        clock.advance(seconds)
        log.finished(session, server, ComQuery(query), failed)
    audited = _lines(audit)
    assert [line["statement"] for line in audited] == [
        "SELECT 1",
        "SELECT SLEEP(0.1)",
        "CREATE USER x IDENTIFIED BY '***'",
    ]
    first = audited[0]
    assert first["cs_id"] == 42
    assert first["user"] == "app@sys#c"
    assert first["client"] == "10.0.0.7:50312"
    assert first["database"] == "shop"
    assert first["server"] == "127.0.0.1:3306"
    assert first["ss_id"] == 9
    assert first["command"] == "query"
    assert first["result"] == "ok"
    assert abs(first["seconds"] - 0.01) < 1e-6
    assert audited[2]["result"] == "error"
    assert [line["statement"] for line in _lines(slow)] == [
        "SELECT SLEEP(0.1)",
        "CREATE USER x IDENTIFIED BY '***'",
    ]
    assert "pw_secret" not in audit.read_text() + slow.read_text()
    log.close()


def test_execute_logs_the_prepared_text(tmp_path: Path) -> None:
    """
    A COM_STMT_EXECUTE names the server's statement id: the line carries the
    client's prepared text.
    """
    audit = tmp_path / "audit.log"
    config = _config(audit_log_file=audit)
    log = RequestLog(lambda: config, Clock().seconds)
    session, server = _Session(), _ServerSession()
    statement = type("Statement", (), {"sql": b"SELECT ? + 1"})()
    session.statements = _Statements({1: statement})
    server.statements = {1: 77}
    log.finished(session, server, ComStmtExecute(77, 0, 1, b""), False)
    log.finished(session, server, ComPing(), False)
    lines = _lines(audit)
    assert lines[0]["command"] == "stmt_execute"
    assert lines[0]["statement"] == "SELECT ? + 1"
    assert lines[1]["command"] == "ping" and lines[1]["statement"] is None


def test_files_follow_the_configuration_and_rotate(tmp_path: Path) -> None:
    """
    A changed configuration (ALTER PROXYCONFIG) opens, moves or closes the
    logs at the next request; a file rotates at query_log_rotate_size and
    keeps query_log_max_files old ones.
    """
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    config = _config(audit_log_file=first, query_log_rotate_size=1024, query_log_max_files=2)
    current = [config]
    log = RequestLog(lambda: current[0], Clock().seconds)
    session, server = _Session(), _ServerSession()
    for n in range(40):
        log.finished(session, server, ComQuery(b"SELECT %d" % n), False)
    rotated = sorted(path.name for path in tmp_path.iterdir())
    assert rotated == ["a.log", "a.log.1", "a.log.2"]
    # Rotated before the write that finds the file at the size: one line over at most.
    assert first.stat().st_size < 1024 + 400
    current[0] = _config(audit_log_file=second)
    log.finished(session, server, ComQuery(b"SELECT 'moved'"), False)
    assert [line["statement"] for line in _lines(second)] == ["SELECT 'moved'"]
    current[0] = _config()
    log.finished(session, server, ComQuery(b"SELECT 'off'"), False)
    assert log.audit is None
    assert len(_lines(second)) == 1


def test_unwritable_file_is_logged_not_raised(tmp_path: Path) -> None:
    config = _config(audit_log_file=tmp_path / "missing" / "dir" / "audit.log")
    events: list[dict[str, Any]] = []
    from obproxy_tx import audit as audit_module

    publisher = LogPublisher(events.append)  # type: ignore[arg-type]
    original = audit_module._log
    audit_module._log = logs.Logger(namespace="test", observer=publisher)
    try:
        log = RequestLog(lambda: config, Clock().seconds)
        log.finished(_Session(), _ServerSession(), ComQuery(b"SELECT 1"), False)
    finally:
        audit_module._log = original
    assert log.audit is None
    assert any("cannot open the audit log" in formatEvent(event) for event in events)


class _Owner:
    """A class whose instances log as the sessions do (Logger as a class attribute)."""

    log: Any = None


def test_session_events_carry_their_session() -> None:
    """
    An event a client session logs carries cs_id, ss_id, user and client,
    as fields and at the end of its text; a server session's its ss_id, its
    server and its client session's cs_id.
    """
    events: list[dict[str, Any]] = []
    publisher = LogPublisher(events.append)  # type: ignore[arg-type]

    class Client(_Session):
        _log = logs.Logger(namespace="test", observer=publisher)

        def lost(self, ss: Any, reason: Any) -> None:
            pass

    class Server(_ServerSession):
        _log = logs.Logger(namespace="test", observer=publisher)

    client = Client()
    server = Server()
    server.key = ("127.0.0.1:3306", "app@sys#c")  # type: ignore[attr-defined]
    server._on_lost = client.lost  # type: ignore[attr-defined]
    client.active = server  # type: ignore[assignment]
    client._log.info("client {peer} did something", peer=client.peer)
    server._log.warn("server {server} broke the protocol", server="127.0.0.1:3306")
    first, second = events
    assert first["cs_id"] == 42 and first["ss_id"] == 9
    assert first["user"] == "app@sys#c" and first["client"] == "10.0.0.7:50312"
    assert formatEvent(first) == (
        "client 10.0.0.7 did something [cs_id=42 ss_id=9 user=app@sys#c client=10.0.0.7:50312]"
    )
    assert second["cs_id"] == 42 and second["ss_id"] == 9
    assert second["server"] == "127.0.0.1:3306"
    assert formatEvent(second).endswith(
        "[cs_id=42 ss_id=9 server=127.0.0.1:3306 user=app@sys#c client=10.0.0.7:50312]"
    )


def test_other_events_are_unchanged() -> None:
    events: list[dict[str, Any]] = []
    log = logs.Logger(namespace="test", observer=LogPublisher(events.append))  # type: ignore[arg-type]
    log.info("plain {n}", n=1)
    assert "cs_id" not in events[0] and events[0]["log_format"] == "plain {n}"


def test_json_lines() -> None:
    """
    The JSON observer writes one JSON object a line with the event's fields
    (a session's included).
    """
    stream = io.StringIO()
    observer = logs.json_logger(stream)
    log = logs.Logger(namespace="test", observer=observer)
    log.info("hello {who}", who="world", cs_id=5)
    record = json.loads(stream.getvalue().strip().strip("\x1e"))
    assert record["who"] == "world" and record["cs_id"] == 5
    assert record["log_format"] == "hello {who}"


def test_observer_for_twistd() -> None:
    """
    C{-o log_format=json} gives an observer for twistd's log destination;
    text, twistd's own --logger, or no twistd give none.
    """
    json_config = _config(log_format="json")
    assert logs.observer_for_twistd({"nodaemon": True, "logfile": None}, json_config) is not None
    assert logs.observer_for_twistd({"logfile": "-"}, json_config) is not None
    assert logs.observer_for_twistd({"logger": "x.y", "nodaemon": True}, json_config) is None
    assert logs.observer_for_twistd({"nodaemon": True}, _config()) is None
    assert logs.observer_for_twistd(None, json_config) is None
