"""
The floor for any Python proxy: a bare Twisted TCP relay, bytes in, bytes out.

    python bench/relay.py LISTEN_PORT HOST:PORT [--lean-reactor]

Listens on 127.0.0.1:LISTEN_PORT (0 picks one; the port is printed as
C{listening on PORT}) and relays every connection to HOST:PORT with
L{twisted.protocols.portforward}, which is what "a few lines of Twisted"
gives: one C{transport.write} per read, backpressure through producers, no
protocol knowledge. The benchmark compares the proxy's CPU per query with this.

With C{--lean-reactor} it runs on the reactor C{twistd obproxy} runs on
(L{obproxy_tx.reactor}) instead of Twisted's default: the C{relay-lean}
target, which shows how much of the proxy's CPU per query the reactor saves
and how much its protocol work costs on equal footing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from twisted.protocols.portforward import ProxyFactory


def main(argv: list[str]) -> int:
    """
    C{relay.py LISTEN_PORT HOST:PORT [--lean-reactor]}.
    """
    if len(argv) not in (3, 4) or argv[3:] not in ([], ["--lean-reactor"]):
        sys.stderr.write("usage: relay.py LISTEN_PORT HOST:PORT [--lean-reactor]\n")
        return 2
    if argv[3:]:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from obproxy_tx.reactor import install_default

        install_default()
    from twisted.internet import reactor

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
