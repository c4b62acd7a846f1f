"""
L{obproxy_tx.session.fastwrite}: writes go straight to a plain TCP socket when
nothing is buffered, and through C{transport.write} otherwise; Nagle is
switched off on TCP transports only.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from twisted.internet import tcp
from twisted.internet.testing import StringTransport

from obproxy_tx.session.fastwrite import no_delay, write_now


class _Recorder:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[Any] = []
        self.error = error

    def setTcpNoDelay(self, enabled: bool) -> None:  # noqa: N802
        self.calls.append(enabled)
        if self.error is not None:
            raise self.error


def test_no_delay_on_tcp_transports_only() -> None:
    """setTcpNoDelay(True) where there is one; nothing otherwise; an OSError is no failure."""
    tcp_like = _Recorder()
    no_delay(tcp_like)
    assert tcp_like.calls == [True]
    no_delay(StringTransport())  # no such method: left alone
    failing = _Recorder(OSError("not a TCP socket"))
    no_delay(failing)
    assert failing.calls == [True]


def test_other_transports_get_write() -> None:
    """A transport that is no plain TCP connection gets transport.write."""
    transport = StringTransport()
    write_now(transport, b"abc")
    assert transport.value() == b"abc"


def _server_transport(sock: socket.socket) -> Any:
    """A tcp.Server around C{sock}, without a reactor's bookkeeping."""
    transport: Any = tcp.Server.__new__(tcp.Server)
    transport._tempDataBuffer = []
    transport._tempDataLen = 0
    transport.dataBuffer = b""
    transport.offset = 0
    transport.connected = 1
    transport.disconnecting = 0
    transport.socket = sock
    transport.written: list[bytes] = []
    transport.write = transport.written.append
    return transport


@pytest.fixture
def pair() -> Any:
    left, right = socket.socketpair()
    left.setblocking(False)
    yield left, right
    left.close()
    right.close()


def test_plain_tcp_writes_at_once(pair: Any) -> None:
    """Nothing buffered: the bytes are on the socket before write_now returns."""
    left, right = pair
    transport = _server_transport(left)
    write_now(transport, b"hello")
    assert right.recv(100) == b"hello"
    assert transport.written == []


def test_buffered_bytes_keep_their_order(pair: Any) -> None:
    """With bytes already buffered, the new ones queue behind them (transport.write)."""
    left, right = pair
    transport = _server_transport(left)
    transport._tempDataLen = 3
    write_now(transport, b"later")
    assert transport.written == [b"later"]
    right.setblocking(False)
    with pytest.raises(BlockingIOError):
        right.recv(100)


def test_what_the_kernel_does_not_take_is_buffered(pair: Any) -> None:
    """A full socket buffer: the rest goes to transport.write, in order."""
    left, right = pair
    transport = _server_transport(left)
    big = b"x" * (8 << 20)
    write_now(transport, big)
    assert len(transport.written) == 1
    rest = transport.written[0]
    assert 0 < len(rest) < len(big) and big.endswith(rest)
