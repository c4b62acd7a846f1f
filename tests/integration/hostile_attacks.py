"""
Attacks of L{tests.integration.test_hostile_clients} that open many
connections, run in a subprocess so that their client-side work does not
share the interpreter (and its lock) with the in-process proxy under test:
the bystander's latency then shows what the attack costs the proxy, not the
test's own threads.

Usage (prints one JSON object)::

    python -m tests.integration.hostile_attacks slowloris PORT COUNT SECONDS
    python -m tests.integration.hostile_attacks flood PORT COUNT USER PASSWORD DB \
        OTHER_USER OTHER_PASSWORD
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from typing import Any, Dict, List

import pymysql


def slowloris(port: int, count: int, seconds: float) -> Dict[str, Any]:
    """
    Open C{count} connections that never finish their handshake: the even
    ones drip one byte of a handshake response every 0.1 s, the odd ones stay
    silent. Stop after C{seconds} or when all are closed by the server.

    @return: C{closed}: how many the server closed; C{elapsed}: seconds from
        the last connect until the last close seen.
    """
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    started = time.monotonic()
    for sock in socks:
        sock.setblocking(False)
    drip = b"\x50\x00\x00\x01" + b"\x85\xa6\x3f" * 30
    closed = [False] * count
    last_close = started
    step = 0
    while not all(closed) and time.monotonic() - started < seconds:
        for i, sock in enumerate(socks):
            if closed[i]:
                continue
            try:
                while True:
                    data = sock.recv(65536)
                    if not data:
                        closed[i] = True
                        last_close = time.monotonic()
                        break
            except BlockingIOError:
                pass
            except OSError:
                closed[i] = True
                last_close = time.monotonic()
            if not closed[i] and i % 2 == 0 and step < len(drip):
                try:
                    sock.send(drip[step : step + 1])
                except OSError:
                    closed[i] = True
                    last_close = time.monotonic()
        step += 1
        time.sleep(0.1)
    for sock in socks:
        sock.close()
    return {"closed": sum(closed), "elapsed": last_close - started}


def flood(
    port: int,
    count: int,
    user: str,
    password: str,
    database: str,
    other_user: str,
    other_password: str,
) -> Dict[str, Any]:
    """
    C{count} clients log in at once (half as C{user}, half as C{other_user}),
    run C{SELECT 1} and hold their connection until all have tried.

    @return: C{held}: how many got in; C{errors}: the error codes of the rest.
    """
    held: List[Any] = []
    errors: List[int] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        name, secret = (user, password) if i % 2 else (other_user, other_password)
        try:
            connection = pymysql.connect(
                host="127.0.0.1",
                port=port,
                user=name,
                password=secret,
                database=database,
                connect_timeout=30,
            )
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            with lock:
                held.append(connection)
        except pymysql.err.MySQLError as error:
            with lock:
                errors.append(int(error.args[0]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    result = {"held": len(held), "errors": errors}
    for connection in held:
        connection.close()
    return result


def main(argv: List[str]) -> None:
    """
    Run the attack named by C{argv[0]} and print its result as JSON.
    """
    kind, args = argv[0], argv[1:]
    if kind == "slowloris":
        result = slowloris(int(args[0]), int(args[1]), float(args[2]))
    elif kind == "flood":
        result = flood(int(args[0]), int(args[1]), *args[2:7])
    else:
        raise SystemExit(f"unknown attack {kind!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
