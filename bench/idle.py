"""
The idle-sessions driver: open many logged-in connections and hold them.

    python -m bench.idle HOST PORT USER PASSWORD DATABASE COUNT

Logs in C{COUNT} connections one after another (C{tests.testbed.wireclient}, so no client library
is needed), prints C{ready OK ERRORS SECONDS}, and waits for a line on standard input; then sends
C{COM_PING} on every open connection, prints C{pinged OK ERRORS}, and exits, closing them all.
The benchmark reads the proxy's RSS between the two lines.  The first error's message goes to
standard error.
"""

from __future__ import annotations

import resource
import sys
import time
from typing import List

from tests.testbed import wireclient

COM_PING = b"\x0e"


def _raise_file_limit(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def main(argv: List[str]) -> int:
    """
    Run the driver; see the module's docstring.
    """
    host, port, user, password, database, count = argv
    _raise_file_limit(int(count))
    clients: List[wireclient.WireClient] = []
    errors = 0
    first_error = ""
    began = time.monotonic()
    for _ in range(int(count)):
        try:
            client = wireclient.connect(host, int(port), timeout=60)
            client.login(user, password, database)
            client.transcript = []  # nothing of it is needed: keep the driver small
            clients.append(client)
        except (OSError, wireclient.WireError) as exc:
            errors += 1
            first_error = first_error or f"login: {exc}"
    print(f"ready {len(clients)} {errors} {time.monotonic() - began:.2f}", flush=True)
    sys.stdin.readline()
    ok = failed = 0
    for client in clients:
        try:
            client.command(COM_PING)
            payload = client.read_packet()
            client.transcript = []
            if payload[:1] == b"\x00":
                ok += 1
            else:
                failed += 1
                first_error = first_error or f"ping: {wireclient.error_from_payload(payload)}"
        except (OSError, wireclient.WireError) as exc:
            failed += 1
            first_error = first_error or f"ping: {exc}"
    print(f"pinged {ok} {failed}", flush=True)
    if first_error:
        print(first_error, file=sys.stderr, flush=True)
    for client in clients:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
