"""
Command line for the test bed:
C{python -m tests.testbed {mariadb,seekdb,seekdb_tls,all} {start,stop,status,env}}, and
C{python -m tests.testbed certs} (make the TLS certificates if needed, print their paths), and
C{python -m tests.testbed replication {start,stop,status,env,config}} (a MariaDB primary -> replica
pair and a proxy configuration for it, L{tests.testbed.replication}).

  - C{start}: start the server(s), or keep the running one(s); prints where they listen.
  - C{stop}: stop them by pid.
  - C{status}: tell whether each is running (exit status 1 if any is not).
  - C{env}: print C{export} lines (host, port, users, passwords, CA) for running servers.

Servers started here keep running until C{stop}; pytest reuses them and leaves them running.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import List, Sequence

from tests.testbed import KINDS, Server, TestbedError, certificates, start, status, stop


def _describe(server: Server) -> str:
    accounts = ", ".join(
        f"{role}={a.user}/{a.password or '(empty)'}" for role, a in sorted(server.accounts.items())
    )
    tls = f" tls-ca={server.tls.ca}" if server.tls else ""
    return (
        f"{server.kind}: {server.host}:{server.port} pid {server.pid} version {server.version!r}"
        f" db={server.database} {accounts}{tls}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the command line; return the exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m tests.testbed", description=__doc__)
    parser.add_argument("kind", choices=[*KINDS, "all", "certs", "replication"])
    parser.add_argument("action", nargs="?", choices=["start", "stop", "status", "env", "config"])
    args = parser.parse_args(argv)
    if args.kind == "certs":
        certs = certificates()
        for name in ("ca", "cert", "key", "client_cert", "client_key"):
            print(f"{name}: {getattr(certs, name)}")
        return 0
    if args.action is None:
        parser.error("an action is required: start, stop, status or env")
    if args.action == "config" and args.kind != "replication":
        parser.error("config is an action of replication only")
    if args.kind == "replication":
        from tests.testbed.replication import replication_main

        return replication_main(args.action)
    kinds: List[str] = list(KINDS) if args.kind == "all" else [args.kind]

    if args.action == "start":
        certificates()  # once, before the threads

        def run(kind: str) -> str:
            began = time.monotonic()
            server = start(kind)
            how = "started" if server.started_here else "already running"
            return f"{_describe(server)} ({how}, {time.monotonic() - began:.1f} s)"

        failed = False
        with ThreadPoolExecutor(len(kinds)) as pool:
            futures = [(kind, pool.submit(run, kind)) for kind in kinds]
            for kind, future in futures:
                try:
                    print(future.result(), flush=True)
                except TestbedError as exc:
                    print(f"{kind}: FAILED: {exc}", file=sys.stderr, flush=True)
                    failed = True
        return 1 if failed else 0

    if args.action == "stop":
        for kind in kinds:
            print(f"{kind}: {'stopped' if stop(kind) else 'was not running'}")
        return 0

    if args.action == "status":
        code = 0
        for kind in kinds:
            server = status(kind)
            if server is None:
                print(f"{kind}: not running")
                code = 1
            else:
                print(_describe(server))
        return code

    # env
    code = 0
    for kind in kinds:
        server = status(kind)
        if server is None:
            print(f"# {kind}: not running", file=sys.stderr)
            code = 1
            continue
        for name, value in server.env().items():
            print(f"export {name}={shlex.quote(value)}")
    if code == 0:
        print(f"export OBPROXY_TESTBED_CA={shlex.quote(certificates().ca)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
