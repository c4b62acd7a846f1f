"""
Writing to a TCP transport at once instead of on the reactor's next turn.

C{transport.write} in Twisted only buffers: it registers the socket for
writing (C{epoll_ctl}), and the reactor's next turn sends the buffer and
unregisters it again (another C{epoll_ctl}). For a request/response relay that
is two extra system calls and one extra reactor turn per message in each
direction, more than the proxy's whole protocol work on a point select.

L{write_now} sends with one C{send} when nothing is buffered (the usual case:
the peer reads as fast as we write) and hands whatever the kernel did not take
to C{transport.write}, which buffers it and pauses the registered producer as
usual, so ordering, backpressure and error handling stay Twisted's. Transports
it does not know (TLS, unix sockets, test doubles) just get C{write}.
"""

from __future__ import annotations

import contextlib
from typing import Any

from twisted.internet import tcp

__all__ = ["no_delay", "write_now"]

#: The plain TCP transports whose socket may be written directly.
_PLAIN_TCP: frozenset[Any] = frozenset((tcp.Server, tcp.Client))


def _direct_write_possible() -> bool:
    """
    Whether this Twisted keeps the write buffer where L{write_now} looks
    (C{FileDescriptor.dataBuffer}, C{_tempDataLen}, ...); if not, every write
    goes through C{transport.write}.
    """
    from twisted.internet.abstract import FileDescriptor

    probe = tcp.Server.__new__(tcp.Server)
    try:
        FileDescriptor.__init__(probe, reactor=object())  # type: ignore[arg-type]
    except Exception:  # pragma: no cover - a Twisted we do not know
        return False
    return all(
        hasattr(probe, name)
        for name in (
            "_tempDataLen",
            "dataBuffer",
            "connected",
            "disconnecting",
            "_writeDisconnecting",
            "TLS",
        )
    )


_ENABLED = _direct_write_possible()


def write_now(transport: Any, data: bytes) -> None:
    """
    Write C{data} to C{transport}: straight to its socket when that is a plain
    TCP connection with nothing buffered, else through C{transport.write}.

    @param transport: the transport.
    @param data: the bytes (non-empty).
    """
    if (
        transport.__class__ in _PLAIN_TCP
        and _ENABLED
        and not transport._tempDataLen
        and not transport.dataBuffer
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnecting
        and not transport.TLS
    ):
        try:
            sent = transport.socket.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            # Let the reactor meet the error on its own write and close as usual.
            sent = 0
        if sent == len(data):
            return
        if sent:
            data = data[sent:]
    transport.write(data)


def no_delay(transport: Any) -> None:
    """
    Switch Nagle's algorithm off on a TCP transport (others are left alone).

    Writes go out as they are made (L{write_now}); with Nagle on, a small
    write right after another (a C{COM_STMT_CLOSE}, then the next
    C{COM_STMT_PREPARE}; the last piece of an answer) waits for the peer's
    delayed ACK, 40 ms on Linux. MySQL clients and servers set it too.

    @param transport: the transport.
    """
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        with contextlib.suppress(OSError):  # not a TCP socket after all
            set_no_delay(True)
