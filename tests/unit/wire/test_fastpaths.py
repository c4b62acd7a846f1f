"""
The wire layer's fast paths give what the general machinery gives: a whole
COM_QUERY read at once (L{PacketFramer.receive_single}), a COM_QUERY sent
without the tables or as the client's own bytes (L{ClientConnection.send_query}).
"""

from __future__ import annotations

import struct

import pytest

from obproxy_tx.testing import DEFAULT_CAPABILITIES, ConnectionPair
from obproxy_tx.wire.connection import Phase, Role
from obproxy_tx.wire.constants import Capability
from obproxy_tx.wire.errors import LocalProtocolError
from obproxy_tx.wire.framing import Packet, PacketFramer, frame_payload
from obproxy_tx.wire.packets import ComPing, ComQuery

C = Role.CLIENT


def logged_in(capabilities: Capability = DEFAULT_CAPABILITIES) -> ConnectionPair:
    pair = ConnectionPair(capabilities, capabilities)
    pair.handshake()
    return pair


def test_receive_single_takes_exactly_one_whole_packet() -> None:
    """One whole chunk with the expected sequence id: its payload; the next id follows."""
    framer = PacketFramer()
    assert framer.receive_single(frame_payload(b"\x03SELECT 1", 0)[0]) == b"\x03SELECT 1"
    assert framer.next_seq == 1 and framer.buffered == 0


@pytest.mark.parametrize(
    "data",
    [
        frame_payload(b"\x03SELECT 1", 0)[0][:-1],  # cut short
        frame_payload(b"\x03SELECT 1", 0)[0] + b"\x01",  # more behind it
        frame_payload(b"\x03SELECT 1", 1)[0],  # wrong sequence id
        struct.pack("<I", 0xFFFFFF) + b"x" * 8,  # the first chunk of a large packet
    ],
)
def test_receive_single_leaves_everything_else_to_feed(data: bytes) -> None:
    """Anything but one whole small packet is not taken: nothing changes, feed() takes it."""
    framer = PacketFramer()
    assert framer.receive_single(data) is None
    assert framer.next_seq == 0 and framer.buffered == 0


def test_receive_single_refuses_while_bytes_wait() -> None:
    """With bytes already buffered the read continues them: receive_single takes nothing."""
    framer = PacketFramer()
    whole = frame_payload(b"\x03SELECT 1", 0)[0]
    framer.feed(whole[:3])
    assert framer.receive_single(whole[3:]) is None
    framer.feed(whole[3:])
    assert framer.next_packet() == Packet(0, b"\x03SELECT 1")


@pytest.mark.parametrize("chunk_size", [None, 1, 4, 5])
def test_query_received_whole_or_in_pieces(chunk_size: int | None) -> None:
    """A COM_QUERY read whole or in pieces gives the same event, phase and sequence ids."""
    pair = logged_in()
    pair.chunk_size = chunk_size
    assert pair.send(C, ComQuery(b"SELECT 1")) == [ComQuery(b"SELECT 1")]
    assert pair.phase() is Phase.RESULT_PENDING
    assert pair.server.command == ComQuery(b"SELECT 1")
    assert pair.server._framer.next_seq == pair.client._framer.next_seq == 1


def test_pipelined_query_waits_for_its_turn() -> None:
    """A second command in the same read stays buffered until the first is answered."""
    pair = logged_in()
    data = pair.client.send(ComQuery(b"SELECT 1"))
    second = frame_payload(b"\x0e", 0)[0]
    assert pair.server.receive_data(data + second) == [ComQuery(b"SELECT 1")]
    assert pair.server.has_buffered()


def test_send_query_reuses_the_client_bytes() -> None:
    """The client's framed COM_QUERY is sent as it is, with the same effect as send()."""
    pair = logged_in()
    framed = frame_payload(b"\x03SELECT 1", 0)[0]
    command = ComQuery(b"SELECT 1")
    assert pair.client.send_query(command, framed) is framed
    assert pair.client.phase is Phase.RESULT_PENDING and pair.client.command is command
    assert pair.server.receive_data(framed) == [command]
    pair.phase()


def test_send_query_falls_back_when_the_bytes_would_differ() -> None:
    """Bytes of another length, or query attributes on the way out: send() frames it."""
    pair = logged_in()
    command = ComQuery(b"SELECT 1")
    wrong = frame_payload(b"\x03SELECT 12", 0)[0]
    assert pair.client.send_query(command, wrong) == frame_payload(b"\x03SELECT 1", 0)[0]
    attrs_pair = logged_in(DEFAULT_CAPABILITIES | Capability.CLIENT_QUERY_ATTRIBUTES)
    framed = frame_payload(b"\x03SELECT 1", 0)[0]
    sent = attrs_pair.client.send_query(command, framed)
    assert sent != framed
    assert attrs_pair.server.receive_data(sent) == [command]


def test_send_query_outside_idle_is_refused_as_send_refuses_it() -> None:
    """Not the client's turn: the general send() raises, as for any command."""
    pair = logged_in()
    pair.send(C, ComPing())
    with pytest.raises(LocalProtocolError):
        pair.client.send_query(ComQuery(b"SELECT 1"), frame_payload(b"\x03SELECT 1", 0)[0])
