"""
The floor for any Python proxy: a bare Twisted TCP relay, bytes in, bytes out.

    python bench/relay.py LISTEN_PORT HOST:PORT

Listens on 127.0.0.1:LISTEN_PORT (0 picks one; the port is printed as
C{listening on PORT}) and relays every connection to HOST:PORT with
L{twisted.protocols.portforward}, which is what "a few lines of Twisted"
gives: one C{transport.write} per read, backpressure through producers, no
protocol knowledge. The benchmark compares the proxy's CPU per query with this.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import reactor
from twisted.protocols.portforward import ProxyFactory


def main(argv: list[str]) -> int:
    """
    C{relay.py LISTEN_PORT HOST:PORT}.
    """
    if len(argv) != 3:
        sys.stderr.write("usage: relay.py LISTEN_PORT HOST:PORT\n")
        return 2
    host, _, port = argv[2].rpartition(":")
    # portforward's factory is untyped for listenTCP's stubs; it is a ServerFactory.
    factory: Any = ProxyFactory(host, int(port))
    listening = reactor.listenTCP(int(argv[1]), factory, interface="127.0.0.1")
    address: Any = listening.getHost()
    sys.stdout.write(f"listening on {address.port}\n")
    sys.stdout.flush()
    reactor.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
