"""
The client side of the ledger test (L{tests.integration.test_ha_ledger}), run as its own process
so that 32 PyMySQL threads do not compete with the proxy for one interpreter.

  python -m tests.integration.ledger_load --port P --user U --password W --threads 32 --seconds 12

Each thread keeps one connection through the proxy and runs sysbench-like traffic until the time
is up: point reads of C{sbtest} (autocommit; 6 % of all operations are reads the server takes
50 ms over, so that some are running when a server dies), autocommit inserts into
C{ledger}, and transactions of three ledger inserts. Every ledger row has an id unique to the
run (thread and sequence), and the script records what the client was told about it:

  - C{acked}: the autocommit insert or the transaction's COMMIT succeeded;
  - C{failed}: a transaction that failed before its COMMIT was sent (none of it may be present);
  - C{unknown}: the error came while the insert or the COMMIT was running (it may have run).

It prints one JSON document: those id lists, every error with its code, message, kind and time
(seconds since the start, whose wall-clock time is C{wall_start}), whether a connection that
failed inside a transaction was disconnected, and the operations done with their times.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from typing import Any, Dict, List

import pymysql

_LOCK = threading.Lock()


def _error(exc: BaseException) -> tuple[int, str]:
    args = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return int(args[0]), str(args[1])
    return -1, f"{type(exc).__name__}: {exc}"


class Worker(threading.Thread):
    """One client thread: its connection, its ids and what it was told."""

    def __init__(self, number: int, options: argparse.Namespace, started: float) -> None:
        super().__init__(name=f"ledger-{number}", daemon=True)
        self.number = number
        self.options = options
        self.started = started
        self.random = random.Random(number)
        self.sequence = 0
        self.result: Dict[str, Any] = {
            "acked": [],
            "failed": [],
            "unknown": [],
            "errors": [],
            "ops": [],
        }
        self.connection: Any = None

    def now(self) -> float:
        return time.monotonic() - self.started

    def connect(self) -> None:
        options = self.options
        for _ in range(50):
            try:
                self.connection = pymysql.connect(
                    host="127.0.0.1",
                    port=options.port,
                    user=options.user,
                    password=options.password,
                    database=options.database,
                    autocommit=True,
                    connect_timeout=10,
                    read_timeout=30,
                    write_timeout=30,
                )
                return
            except pymysql.err.MySQLError as exc:
                self.record("connect", exc, False)
                time.sleep(0.1)
        raise RuntimeError("cannot connect through the proxy")

    def next_id(self) -> int:
        self.sequence += 1
        return self.number * 10_000_000 + self.sequence

    def record(self, kind: str, exc: BaseException, disconnected: bool | None) -> None:
        code, message = _error(exc)
        self.result["errors"].append(
            {
                "kind": kind,
                "code": code,
                "message": message,
                "at": round(self.now(), 3),
                "disconnected": disconnected,
            }
        )

    def done(self, kind: str) -> None:
        self.result["ops"].append((kind, round(self.now(), 3)))

    def disconnected(self) -> bool:
        """Whether the proxy closed this connection (a ping fails); then connect again."""
        try:
            self.connection.ping(reconnect=False)
        except pymysql.err.MySQLError:
            self.connect()
            return True
        return False

    def run(self) -> None:
        self.connect()
        deadline = self.options.seconds
        while self.now() < deadline:
            self.step()

    def step(self) -> None:
        """
        One operation of the mix: 6 % slow reads, 44 % reads, 25 % autocommit
        inserts, 25 % transactions.
        """
        choice = self.random.random()
        if choice < 0.06:
            self.read(slow=True)
        elif choice < 0.5:
            self.read()
        elif choice < 0.75:
            self.autocommit_insert()
        else:
            self.transaction()

    def read(self, slow: bool = False) -> None:
        # A slow read (the server takes 50 ms) is likely to be running when a server dies.
        key = self.random.randint(1, self.options.rows)
        sql = (
            "SELECT c, SLEEP(0.05) FROM sbtest WHERE id = %s"
            if slow
            else ("SELECT c FROM sbtest WHERE id = %s")
        )
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(sql, (key,))
                row = cursor.fetchone()
            if row is None or row[0] != f"row-{key}":
                raise AssertionError(f"read {key} gave {row!r}")
            self.done("slow read" if slow else "read")
        except (pymysql.err.MySQLError, AssertionError) as exc:
            self.record("read", exc, self.disconnected())

    def _insert(self, cursor: Any, ident: int, kind: str) -> None:
        cursor.execute(
            "INSERT INTO ledger (id, client, kind, amount) VALUES (%s, %s, %s, %s)",
            (ident, self.number, kind, self.random.randint(1, 1000)),
        )

    def autocommit_insert(self) -> None:
        ident = self.next_id()
        try:
            with self.connection.cursor() as cursor:
                self._insert(cursor, ident, "autocommit")
            self.result["acked"].append([ident])
            self.done("write")
        except pymysql.err.MySQLError as exc:
            self.result["unknown"].append([ident])
            self.record("write", exc, self.disconnected())

    def transaction(self) -> None:
        ids: List[int] = []
        stage = "begin"
        try:
            self.connection.begin()
            with self.connection.cursor() as cursor:
                for _ in range(3):
                    ident = self.next_id()
                    stage = "insert"
                    ids.append(ident)
                    self._insert(cursor, ident, "transaction")
                    # The insert that fails may itself have run: still inside the
                    # transaction, so rolled back unless the COMMIT succeeds.
            stage = "commit"
            self.connection.commit()
            self.result["acked"].append(ids)
            self.done("transaction")
        except pymysql.err.MySQLError as exc:
            (self.result["unknown"] if stage == "commit" else self.result["failed"]).append(ids)
            self.record(f"transaction {stage}", exc, self.disconnected())


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", default="")
    parser.add_argument("--database", default="test")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--rows", type=int, default=1000)
    options = parser.parse_args(argv)
    started = time.monotonic()
    wall_start = time.time()
    workers = [Worker(n + 1, options, started) for n in range(options.threads)]
    for worker in workers:
        worker.start()
    print(json.dumps({"event": "started"}), flush=True)
    for worker in workers:
        worker.join(options.seconds + 120)
    merged: Dict[str, Any] = {"acked": [], "failed": [], "unknown": [], "errors": [], "ops": []}
    for worker in workers:
        for key in merged:
            merged[key].extend(worker.result[key])
    merged["alive_threads"] = sum(worker.is_alive() for worker in workers)
    merged["wall_start"] = wall_start
    print(json.dumps(merged), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
