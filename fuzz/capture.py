"""
Record real MySQL traffic into the seed corpus C{fuzz/corpus/}.

A recording relay (Twisted, in a thread) sits between real clients (PyMySQL,
mysql-connector in pure Python) and the test bed's servers (MariaDB and
seekdb, started or reused through L{tests.testbed}); every chunk one side's
C{dataReceived} got is written in the L{fuzz.replay} record format, one file
per connection, prefixed with the relay mode byte. TLS is switched off (the
replay does not decrypt), compression is used in one session.

Run from the repository root (the servers keep running if they were)::

    OBPROXY_TESTBED_DIR=/tmp/tb python -m fuzz.capture [mariadb] [seekdb]

Scrambles, connection ids and timestamps differ on every run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, List

from twisted.internet import protocol

from fuzz.replay import CLIENT, MODE_RELAY, SERVER, Record, encode_records
from tests import testbed

CORPUS = Path(__file__).resolve().parent / "corpus"


class _ServerSide(protocol.Protocol):
    """The relay's connection to the server."""

    transport: Any = None

    def __init__(self, client_side: _ClientSide) -> None:
        self.client_side = client_side

    def connectionMade(self) -> None:  # noqa: N802
        self.client_side.server_connected(self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.client_side.records.append((SERVER, data))
        self.client_side.transport.write(data)

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.client_side.transport.loseConnection()


class _ClientSide(protocol.Protocol):
    """The relay's connection from a client: recorded until it closes."""

    transport: Any = None

    def __init__(self, factory: _RecordingFactory) -> None:
        self.factory = factory
        self.records: List[Record] = []
        self.server: _ServerSide | None = None
        self.pending: List[bytes] = []

    def connectionMade(self) -> None:  # noqa: N802
        from twisted.internet import reactor

        creator = protocol.ClientCreator(reactor, _ServerSide, self)
        creator.connectTCP(self.factory.host, self.factory.port)
        self.transport.pauseProducing()

    def server_connected(self, server: _ServerSide) -> None:
        self.server = server
        self.transport.resumeProducing()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.records.append((CLIENT, data))
        assert self.server is not None
        self.server.transport.write(data)

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        if self.server is not None:
            self.server.transport.loseConnection()
        self.factory.finished(self.records)


class _RecordingFactory(protocol.ServerFactory):
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.done: List[List[Record]] = []
        self.changed = threading.Condition()

    def buildProtocol(self, addr: Any) -> _ClientSide:  # noqa: N802
        return _ClientSide(self)

    def finished(self, records: List[Record]) -> None:
        with self.changed:
            self.done.append(records)
            self.changed.notify_all()


class Recorder:
    """
    A recording relay in front of one server, the reactor in a thread.
    """

    def __init__(self, host: str, port: int) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.factory = _RecordingFactory(host, port)
        ready = threading.Event()
        listening: List[Any] = []

        def listen() -> None:
            listening.append(reactor.listenTCP(0, self.factory, interface="127.0.0.1"))
            ready.set()

        reactor.callWhenRunning(listen)
        if not reactor.running:
            threading.Thread(
                target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True
            ).start()
        ready.wait(10)
        self.port = listening[0].getHost().port

    def record(self, session: Callable[[int], None]) -> List[Record]:
        """
        Run C{session(port)} (a client talking to the relay), return what was recorded.
        """
        with self.factory.changed:
            seen = len(self.factory.done)
        session(self.port)
        with self.factory.changed:
            self.factory.changed.wait_for(lambda: len(self.factory.done) > seen, timeout=10)
            return self.factory.done[seen]


def _pymysql_session(server: testbed.Server, local_file: str) -> Callable[[int], None]:
    import pymysql  # type: ignore[import-untyped]

    account = server.accounts["native"]

    def run(port: int) -> None:
        conn = pymysql.connect(
            host="127.0.0.1",
            port=port,
            user=account.user,
            password=account.password,
            database=server.database,
            local_infile=True,
            client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS,
            ssl_disabled=True,
        )
        with conn.cursor() as cur:
            cur.execute("SELECT 1, 'a', NULL, 2.5, NOW(), CAST(3 AS UNSIGNED)")
            cur.fetchall()
            cur.execute("DROP TABLE IF EXISTS fuzz_seed")
            cur.execute("CREATE TABLE fuzz_seed (id INT PRIMARY KEY, name VARCHAR(40), b BLOB)")
            cur.execute("INSERT INTO fuzz_seed VALUES (1, 'one', x'00ff'), (2, NULL, '')")
            cur.execute("SELECT * FROM fuzz_seed; SELECT COUNT(*) FROM fuzz_seed")
            while cur.nextset():
                cur.fetchall()
            with contextlib.suppress(pymysql.MySQLError):
                cur.execute("SELEKT nonsense")
            cur.execute(f"LOAD DATA LOCAL INFILE '{local_file}' INTO TABLE fuzz_seed")
            cur.execute("SELECT REPEAT('x', 600)")
            cur.fetchall()
            cur.execute("DROP TABLE fuzz_seed")
        conn.select_db(server.database)
        conn.ping(reconnect=False)
        conn.close()

    return run


def _connector_session(server: testbed.Server, compress: bool) -> Callable[[int], None]:
    import mysql.connector

    account = server.accounts["native"]

    def run(port: int) -> None:
        conn = mysql.connector.connect(
            host="127.0.0.1",
            port=port,
            user=account.user,
            password=account.password,
            database=server.database,
            use_pure=True,
            ssl_disabled=True,
            compress=compress,
        )
        cur = conn.cursor(prepared=True)
        cur.execute("SELECT ?, ?, ?, ?", (1, "two", None, 4.5))
        cur.fetchall()
        cur.execute("SELECT ? + 1", (41,))
        cur.fetchall()
        cur.close()
        plain = conn.cursor()
        plain.execute("SELECT @@version, DATABASE()")
        plain.fetchall()
        plain.close()
        # The connector cannot parse MariaDB's answer: recorded all the same.
        with contextlib.suppress(mysql.connector.Error):
            conn.cmd_statistics()
        conn.cmd_ping()
        conn.close()

    return run


def capture(kind: str) -> List[Path]:
    """
    Record the sessions against one server kind into the corpus.

    @param kind: C{"mariadb"} or C{"seekdb"}.
    @return: the files written.
    """
    server = testbed.start(kind)
    recorder = Recorder(server.host, server.port)
    handle, local_file = tempfile.mkstemp(suffix=".tsv")
    os.write(handle, b"3\tthree\t\\N\n4\tfour\tabc\n")
    os.close(handle)
    sessions = {
        "pymysql": _pymysql_session(server, local_file),
        "connector-prepared": _connector_session(server, compress=False),
        "connector-compressed": _connector_session(server, compress=True),
    }
    written = []
    try:
        for name, session in sessions.items():
            records = recorder.record(session)
            path = CORPUS / f"{kind}-{name}.bin"
            path.write_bytes(bytes((MODE_RELAY,)) + encode_records(records))
            written.append(path)
    finally:
        os.unlink(local_file)
    return written


def main(argv: List[str] | None = None) -> int:
    """
    C{python -m fuzz.capture [mariadb] [seekdb]}.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kinds", nargs="*", default=["mariadb", "seekdb"])
    args = parser.parse_args(argv)
    CORPUS.mkdir(exist_ok=True)
    for kind in args.kinds:
        for path in capture(kind):
            print(f"{path.relative_to(Path.cwd())}: {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
