"""
Metrics and logs against real MariaDB with real clients: the Prometheus
endpoint's figures move with the traffic and agree with C{SHOW PROXYSTAT};
the slow-query and audit logs; passwords and verifiers appear in no log,
no C{SHOW PROXYCONFIG} and no error message; and through C{twistd}:
C{-o prometheus_listen_port=N} moves the endpoint, C{-o log_format=json}
writes JSON lines carrying each session's fields, and with two workers every
worker's figures reach the parent's endpoint.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pymysql
import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.logger import formatEvent, globalLogPublisher

from obproxy_tx import metrics
from obproxy_tx.config import ITEMS
from tests.integration.test_twistd import free_port, spawn, stop, twistd_command
from tests.proxy_fixtures import in_thread, reactor, start_proxy_for, stop_proxy_later, verifier

pytestmark = pytest.mark.integration

Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]

PROXYSYS_PASSWORD = "M7_proxysys_pw"
WRONG_PASSWORD = "M7_wrong_pw"
CREATED_PASSWORD = "M7_created_pw"
ALTERED_PASSWORD = "M7_altered_pw"


def scrape(port: int) -> Samples:
    """
    GET the endpoint (blocking) and parse it with prometheus_client's own parser.
    """
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode("utf-8")
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of C{name} having C{labels} (any other labels)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


@pytest.fixture
def captured() -> Iterator[List[Dict[str, Any]]]:
    """Every log event emitted during the test."""
    events: List[Dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


@pytest_twisted.inlineCallbacks
def test_metrics_logs_and_secrets(
    mariadb: Any, tmp_path: Path, captured: List[Dict[str, Any]]
) -> Iterator[Any]:
    """
    Through a proxy in front of MariaDB (PyMySQL clients):

      - the endpoint's request, error, latency, session and byte figures
        move as the traffic does, and SHOW PROXYSTAT's counters are the
        endpoint's;
      - the slow-query log has the slow statement only, the audit log every
        relayed one with who, where and how long;
      - a created user's password, a wrong login password, an ALTERed
        password item and the configured verifiers appear in no log event,
        no log file, no SHOW PROXYCONFIG row and no error message;
      - session events carry cs_id, user and the client's address.
    """
    native = mariadb.accounts["native"]
    slow, audit = tmp_path / "slow.log", tmp_path / "audit.log"
    proxy = start_proxy_for(
        [f"{mariadb.host}:{mariadb.port}"],
        "mysql",
        [(native.user, native.password)],
        extra=(
            f"obproxy_sys_password: '{verifier(PROXYSYS_PASSWORD)}'\n"
            "prometheus_listen_port: 0\n"
            f"slow_query_log_file: '{slow}'\n"
            f"audit_log_file: '{audit}'\n"
            "slow_query_time_threshold: 250ms\n"
        ),
        backend=mariadb,
    )
    service = metrics.MetricsService(
        proxy.manager.config, reactor, metrics.manager_figures(proxy.manager)
    )
    service.config = proxy.manager.config
    service.startService()
    assert service.port is not None
    http_port = service.port.getHost().port
    server = f"{mariadb.host}:{mariadb.port}"

    def traffic() -> Dict[str, Any]:
        out: Dict[str, Any] = {"errors": []}
        out["before"] = scrape(http_port)
        with proxy.connect() as connection, connection.cursor() as cursor:
            for _ in range(5):
                cursor.execute("SELECT 1")
            for statement in (
                "SELECT * FROM no_such_table_m7",
                # A syntax error after the password: refused whatever the account may do.
                f"CREATE USER 'm7_nobody'@'%' IDENTIFIED BY '{CREATED_PASSWORD}' NONSENSE",
            ):
                try:
                    cursor.execute(statement)
                except pymysql.MySQLError as error:
                    out["errors"].append(str(error))
            cursor.execute("SELECT SLEEP(0.3)")
            out["open"] = scrape(http_port)
        try:
            pymysql.connect(
                host="127.0.0.1", port=proxy.port, user=native.user, password=WRONG_PASSWORD
            )
        except pymysql.MySQLError as error:
            out["errors"].append(str(error))
        admin = pymysql.connect(
            host="127.0.0.1",
            port=proxy.port,
            user="root@proxysys",
            password=PROXYSYS_PASSWORD,
            autocommit=True,
        )
        with admin, admin.cursor() as cursor:
            cursor.execute(f"ALTER PROXYCONFIG SET metadata_password = '{ALTERED_PASSWORD}'")
            try:
                cursor.execute("ALTER PROXYCONFIG SET metadata_password = 'x', nonsense")
            except pymysql.MySQLError as error:
                out["errors"].append(str(error))
            cursor.execute("SHOW PROXYCONFIG ALL")
            out["config"] = cursor.fetchall()
            cursor.execute("SHOW PROXYSTAT")
            out["proxystat"] = {row[0]: row[1] for row in cursor.fetchall()}
            out["after"] = scrape(http_port)
        return out

    try:
        out: Dict[str, Any] = yield in_thread(traffic)
    finally:
        yield service.stopService()
        yield stop_proxy_later(proxy)
    before, opened, after = out["before"], out["open"], out["after"]

    # Requests by command, errors, latency: 5 + 2 failing + 1 slow at least.
    queries = value(opened, "obproxy_requests_total", command="query") - value(
        before, "obproxy_requests_total", command="query"
    )
    assert queries >= 8
    errors = value(opened, "obproxy_request_errors_total", command="query") - value(
        before, "obproxy_request_errors_total", command="query"
    )
    assert errors == 2, out["errors"]
    count = value(opened, "obproxy_request_duration_seconds_count", command="query")
    assert count == value(opened, "obproxy_requests_total", command="query")
    fast = value(opened, "obproxy_request_duration_seconds_bucket", command="query", le="0.25")
    slow_ones = count - fast
    assert slow_ones >= 1  # the SLEEP(0.3)
    assert value(opened, "obproxy_request_duration_seconds_sum", command="query") >= 0.3
    # Sessions by state while the client is connected, server sessions by server.
    assert total(opened, "obproxy_client_sessions") >= 1
    assert total(opened, "obproxy_server_sessions", server=server) >= 1
    assert value(opened, "obproxy_client_bytes_received_total") > value(
        before, "obproxy_client_bytes_received_total"
    )
    assert value(opened, "obproxy_server_bytes_relayed_total") > value(
        before, "obproxy_server_bytes_relayed_total"
    )
    assert value(after, "obproxy_client_login_failures_total") >= 1
    # SHOW PROXYSTAT reads the same counters (no login or request in between).
    for name in ("client_logins", "client_login_failures", "client_connections"):
        assert out["proxystat"][name] == value(after, f"obproxy_{name}_total"), name
    assert total(after, "obproxy_server_congested") == 0

    # Slow-query and audit logs.
    slow_lines = [json.loads(line) for line in slow.read_text().splitlines()]
    assert [line["statement"] for line in slow_lines] == ["SELECT SLEEP(0.3)"]
    assert slow_lines[0]["seconds"] >= 0.3
    audit_lines = [json.loads(line) for line in audit.read_text().splitlines()]
    statements = [line["statement"] for line in audit_lines]
    assert statements.count("SELECT 1") == 5
    assert "SELECT * FROM no_such_table_m7" in statements
    assert "CREATE USER 'm7_nobody'@'%' IDENTIFIED BY '***' NONSENSE" in statements
    failed = [line for line in audit_lines if line["result"] == "error"]
    assert len(failed) == 2
    assert {line["server"] for line in audit_lines} == {server}
    assert all(line["user"].startswith(native.user + "@") for line in audit_lines)
    assert all(line["client"].startswith("127.0.0.1:") for line in audit_lines)

    # Secrets: in no log event, log file, SHOW PROXYCONFIG row or error message.
    secrets = [
        CREATED_PASSWORD,
        WRONG_PASSWORD,
        ALTERED_PASSWORD,
        PROXYSYS_PASSWORD,
        native.password,
        verifier(PROXYSYS_PASSWORD)[1:],
        verifier(native.password)[1:],
        verifier(ALTERED_PASSWORD)[1:],
    ]
    texts = [formatEvent(event) + repr(sorted(event.items(), key=str)) for event in captured]
    texts += [slow.read_text(), audit.read_text(), repr(out["config"]), *out["errors"]]
    assert len(out["errors"]) == 4, out["errors"]
    for text in texts:
        for secret in secrets:
            assert secret.lower() not in text.lower(), (secret, text)
    shown = {row[0]: row[1] for row in out["config"]}
    assert shown["metadata_password"] == "******"
    assert ITEMS["obproxy_sys_password"].sensitive
    assert shown["obproxy_sys_password"] == "******"

    # Session events carry their session.
    admin_login = [
        event
        for event in captured
        if "local admin" in formatEvent(event) and "logged in" in formatEvent(event)
    ]
    assert admin_login, [formatEvent(event) for event in captured]
    event = admin_login[-1]
    assert event["user"] == "root@proxysys" or event["user"].startswith("root@proxysys")
    assert event["client"].startswith("127.0.0.1:")
    assert isinstance(event["cs_id"], int)
    assert f"[cs_id={event['cs_id']} " in formatEvent(event)


def _wait_http(process: Any, port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"exited early:\n{process.stdout.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"no metrics on {port}")


def _login(port: int, user: str, password: str) -> None:
    connection = pymysql.connect(host="127.0.0.1", port=port, user=user, password=password)
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _mariadb_args(mariadb: Any, tmp_path: Path) -> List[str]:
    native = mariadb.accounts["native"]
    config = tmp_path / "conf.yaml"
    config.write_text(
        "clusters:\n"
        "  - name: cl_m7\n"
        "    type: mysql\n"
        f"    servers: ['{mariadb.host}:{mariadb.port}']\n"
        "    users:\n"
        f"      - {{name: {native.user}, tenant: sys, verifier: '{verifier(native.password)}'}}\n"
    )
    return ["-c", str(config)]


def test_twistd_port_option_and_json_log(
    mariadb: Any, tmp_path: Path, processes: List[Any]
) -> None:
    """
    C{twistd obproxy -o prometheus_listen_port=N -o log_format=json}: the
    endpoint answers on N, every line on standard output is JSON, and the
    session events among them carry cs_id, user and client.
    """
    native = mariadb.accounts["native"]
    sql_port, http_port = free_port(), free_port()
    process = spawn(
        processes,
        twistd_command(
            "-n",
            "--pidfile=",
            "obproxy",
            *_mariadb_args(mariadb, tmp_path),
            "-p",
            str(sql_port),
            "-o",
            f"prometheus_listen_port={http_port},log_format=json,syslog_level=DEBUG",
        ),
    )
    _wait_http(process, http_port)
    _login(sql_port, native.user, native.password)
    samples = scrape(http_port)
    assert value(samples, "obproxy_client_logins_total") == 1
    assert value(samples, "obproxy_requests_total", command="query") >= 1
    output = stop(process, code=-15)
    records = []
    for line in output.splitlines():
        line = line.strip("\x1e").strip()
        if line:
            records.append(json.loads(line))
    assert any("listening on" in str(record.get("log_format")) for record in records)
    sessions = [record for record in records if "cs_id" in record and "client" in record]
    assert sessions, output
    assert any(record.get("user", "").startswith(native.user) for record in sessions)
    assert native.password not in output


def test_workers_reach_the_parents_endpoint(
    mariadb: Any, tmp_path: Path, processes: List[Any]
) -> None:
    """
    With work_thread_num 2 the parent's endpoint answers every worker's
    figures, labelled worker="0" and worker="1"; logins spread over them add
    up to the logins made.
    """
    native = mariadb.accounts["native"]
    sql_port, http_port = free_port(), free_port()
    process = spawn(
        processes,
        twistd_command(
            "-n",
            "--pidfile=",
            "obproxy",
            *_mariadb_args(mariadb, tmp_path),
            "-p",
            str(sql_port),
            "-o",
            f"prometheus_listen_port={http_port},work_thread_num=2",
        ),
    )
    _wait_http(process, http_port)
    deadline = time.monotonic() + 30
    samples: Samples = {}
    while time.monotonic() < deadline:
        samples = scrape(http_port)
        if value(samples, "obproxy_workers_answering") == 2:
            break
        time.sleep(0.2)
    assert value(samples, "obproxy_workers_answering") == 2
    for _ in range(6):
        _login(sql_port, native.user, native.password)
    samples = scrape(http_port)
    logins = {
        worker: value(samples, "obproxy_client_logins_total", worker=worker)
        for worker in ("0", "1")
    }
    assert sum(logins.values()) == 6, logins
    assert ("obproxy_client_logins_total", ()) not in samples
    stop(process, code=-15)


def test_default_port_is_odps() -> None:
    assert ITEMS["prometheus_listen_port"].default == 2884
    assert ITEMS["enable_prometheus"].default is True
