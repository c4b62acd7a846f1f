"""
The proxy inside your own Twisted application.

C{build_proxy_service} turns a configuration into an ordinary
L{twisted.application.service.MultiService}; add it to your service tree next
to your own services and it starts and stops with them::

    config = load_config("conf.yaml", rootservice_list="127.0.0.1:2881")
    proxy = build_proxy_service(config, reactor)
    proxy.setServiceParent(my_application)

Run this file to try it (a seekdb or OceanBase listening on 127.0.0.1:2881)::

    python examples/embedded_proxy.py -r 127.0.0.1:2881 -p 2883

It prints C{listening on PORT} once the proxy accepts clients (C{-p 0} picks a
free port), then serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.logger import globalLogBeginner, textFileLogObserver

from obproxy_tx.config import ConfigError, load_config
from obproxy_tx.tap import build_proxy_service

CONF = Path(__file__).resolve().parent / "conf.yaml"


async def main(reactor: Any, argv: Sequence[str]) -> None:
    """
    Run an application whose service tree holds the proxy.

    @param reactor: the reactor.
    @param argv: the command-line arguments (see C{--help}).
    """
    parser = argparse.ArgumentParser(description="obproxy_tx embedded in a Twisted application")
    parser.add_argument("-c", "--config", default=str(CONF), help="YAML configuration file")
    parser.add_argument("-p", "--port", default="0", help="listen port (0: a free one)")
    parser.add_argument("-r", "--servers", default=None, help="'ip:port;ip:port' of the cluster")
    args = parser.parse_args(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)

    # --- the few lines that embed the proxy ---------------------------------------
    config = load_config(args.config, listen_port=args.port, rootservice_list=args.servers)
    application = MultiService()  # your application's own service tree
    proxy = build_proxy_service(config, reactor)
    proxy.setServiceParent(application)
    application.startService()
    reactor.addSystemEventTrigger("before", "shutdown", application.stopService)
    # -------------------------------------------------------------------------------

    port = await proxy.when_listening()
    print(f"listening on {port.getHost().port}", flush=True)  # type: ignore[attr-defined]
    await Deferred()  # serve until the reactor stops (Ctrl-C, SIGTERM)


def run(argv: Sequence[str]) -> None:
    """
    Run L{main} under C{react}; a configuration problem is one line on stderr.
    """

    async def guarded(reactor: Any) -> None:
        try:
            await main(reactor, argv)
        except ConfigError as e:
            print(e, file=sys.stderr)
            raise SystemExit(1) from None

    react(lambda reactor: Deferred.fromCoroutine(guarded(reactor)))


if __name__ == "__main__":
    run(sys.argv[1:])
