"""
Query a MySQL-protocol server with the obproxy_tx client and print the results.

    python examples/client.py --host 127.0.0.1 --port 3306 --user u --password pw "SELECT 1"
    python examples/client.py --port 3307 --user demo --password demo_pw \\
        --tls --tls-ca ca.pem "SELECT * FROM demo.fruits"

Each statement given on the command line runs in turn; rows are printed tab
separated as they arrive (streamed, not collected). The exit status is 1 when
the server answered with an error.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import react

from obproxy_tx.protocol.client import ServerError, connect
from obproxy_tx.protocol.tls import client_tls_options


def _show(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


async def run(reactor: Any, args: argparse.Namespace) -> int:
    """
    Connect, run each statement, print its rows, quit.

    @param reactor: the reactor.
    @param args: the parsed command line.
    @return: the exit status.
    """
    tls = None
    if args.tls:
        tls = client_tls_options(
            args.tls_hostname or args.host, args.tls_ca, verify=not args.tls_insecure
        )
    endpoint = TCP4ClientEndpoint(reactor, args.host, args.port)
    connection = await connect(reactor, endpoint, args.user, args.password, args.database, tls=tls)
    status = 0
    try:
        for sql in args.statements:

            def print_row(row: tuple[Any, ...]) -> None:
                print("\t".join(_show(value) for value in row))

            try:
                results = await connection.query_multi(sql, on_row=print_row)
            except ServerError as error:
                print(f"ERROR {error.code} ({error.sqlstate}): {error.message}", file=sys.stderr)
                status = 1
                continue
            for result in results:
                if result.columns:
                    print(
                        f"-- {result.row_count} row(s); columns: {', '.join(result.column_names)}"
                    )
                else:
                    print(f"-- OK, {result.affected_rows} row(s) affected")
    finally:
        await connection.quit()
    return status


def main(argv: Sequence[str] | None = None) -> None:
    """
    Parse the command line and run.

    @param argv: the arguments (default C{sys.argv[1:]}).
    """
    parser = argparse.ArgumentParser(description="Query a MySQL server with obproxy_tx.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3306)
    parser.add_argument("--user", default="root")
    parser.add_argument("--password", default="")
    parser.add_argument("--database")
    parser.add_argument("--tls", action="store_true", help="require TLS")
    parser.add_argument("--tls-ca", help="CA certificate (PEM) to verify the server with")
    parser.add_argument("--tls-hostname", help="name the certificate must match (default: --host)")
    parser.add_argument("--tls-insecure", action="store_true", help="do not verify the certificate")
    parser.add_argument("statements", nargs="+", metavar="SQL")
    args = parser.parse_args(argv)

    def start(reactor: Any) -> Deferred[None]:
        async def go() -> None:
            status = await run(reactor, args)
            if status:
                raise SystemExit(status)

        return Deferred.fromCoroutine(go())

    react(start)


if __name__ == "__main__":
    main()
