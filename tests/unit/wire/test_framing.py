"""
Tests for L{obproxy_tx.wire.framing}.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obproxy_tx.wire.constants import MAX_PACKET_CHUNK
from obproxy_tx.wire.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from obproxy_tx.wire.framing import Packet, PacketFramer, frame_payload


def _header(length: int, seq: int) -> bytes:
    return length.to_bytes(3, "little") + bytes((seq,))


def _chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = []
    start = 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


def test_frame_small_payload() -> None:
    """A short payload gets one header with its length and the next sequence id."""
    framer = PacketFramer()
    assert framer.frame(b"\x03select 1") == _header(9, 0) + b"\x03select 1"
    assert framer.next_seq == 1
    assert framer.frame(b"") == _header(0, 1)
    assert framer.next_seq == 2


def test_receive_one_packet() -> None:
    """One whole framed packet is returned as a Packet with its seq and payload."""
    framer = PacketFramer()
    assert framer.receive_data(_header(3, 0) + b"abc") == [Packet(0, b"abc")]
    assert framer.next_seq == 1
    assert framer.buffered == 0


def test_receive_byte_at_a_time() -> None:
    """Feeding bytes one at a time yields the same packets as feeding them at once."""
    stream = _header(3, 0) + b"abc" + _header(0, 1) + _header(5, 2) + b"hello"
    framer = PacketFramer()
    got: list[Packet] = []
    for index in range(len(stream)):
        got.extend(framer.receive_data(stream[index : index + 1]))
    assert got == [Packet(0, b"abc"), Packet(1, b""), Packet(2, b"hello")]


def test_buffered_counts_partial_bytes() -> None:
    """C{buffered} reports bytes received that do not yet form a packet."""
    framer = PacketFramer()
    assert framer.receive_data(_header(10, 0) + b"abc") == []
    assert framer.buffered == 7
    assert framer.receive_data(b"defghij") == [Packet(0, b"abcdefghij")]
    assert framer.buffered == 0


def test_out_of_order_raises() -> None:
    """When the sequence id skips, receive_data raises ER_NET_PACKETS_OUT_OF_ORDER."""
    framer = PacketFramer()
    with pytest.raises(RemoteProtocolError) as info:
        framer.receive_data(_header(1, 1) + b"x")
    assert info.value.error_code == ErrorCode.ER_NET_PACKETS_OUT_OF_ORDER
    assert info.value.sqlstate == "08S01"


def test_out_of_order_detected_from_header_alone() -> None:
    """A wrong sequence id is reported as soon as the header arrives."""
    framer = PacketFramer()
    with pytest.raises(RemoteProtocolError):
        framer.receive_data(_header(100, 7))


def test_sequence_shared_between_directions() -> None:
    """Sending after receiving continues the received sequence."""
    framer = PacketFramer()
    framer.receive_data(_header(1, 0) + b"\x0e")
    assert framer.frame(b"\x00\x00\x00\x02\x00\x00\x00")[3] == 1
    assert framer.receive_data(_header(1, 2) + b"x") == [Packet(2, b"x")]


def test_reset_sequence() -> None:
    """reset_sequence makes the next expected and sent sequence id 0."""
    framer = PacketFramer()
    framer.frame(b"a")
    framer.frame(b"b")
    framer.reset_sequence()
    assert framer.next_seq == 0
    assert framer.receive_data(_header(1, 0) + b"c") == [Packet(0, b"c")]


def test_set_sequence_range() -> None:
    """set_sequence accepts 0..255 and rejects anything else as a local error."""
    framer = PacketFramer()
    framer.set_sequence(255)
    assert framer.frame(b"")[3] == 255
    assert framer.next_seq == 0
    with pytest.raises(LocalProtocolError):
        framer.set_sequence(256)


def test_sequence_wraps_at_256() -> None:
    """Sequence ids wrap from 255 to 0 on both sending and receiving."""
    sender = PacketFramer()
    receiver = PacketFramer()
    stream = b"".join(sender.frame(bytes([i % 256])) for i in range(300))
    packets = receiver.receive_data(stream)
    assert [p.seq for p in packets] == [i % 256 for i in range(300)]
    assert sender.next_seq == receiver.next_seq == 300 % 256


def test_pipelined_commands_with_next_packet() -> None:
    """feed plus next_packet lets the caller reset the sequence between pipelined commands."""
    framer = PacketFramer()
    framer.feed(_header(5, 0) + b"\x19\x01\x00\x00\x00" + _header(1, 0) + b"\x0e")
    assert framer.next_packet() == Packet(0, b"\x19\x01\x00\x00\x00")
    framer.reset_sequence()
    assert framer.next_packet() == Packet(0, b"\x0e")
    assert framer.next_packet() is None


def test_too_large_rejected_from_header() -> None:
    """A payload above max_packet_size raises ER_NET_PACKET_TOO_LARGE before its body arrives."""
    framer = PacketFramer(max_packet_size=10)
    assert framer.receive_data(_header(10, 0) + b"0123456789") == [Packet(0, b"0123456789")]
    with pytest.raises(RemoteProtocolError) as info:
        framer.receive_data(_header(11, 1))
    assert info.value.error_code == ErrorCode.ER_NET_PACKET_TOO_LARGE


def test_too_large_multi_chunk() -> None:
    """The size limit applies to the joined payload of continuation chunks."""
    framer = PacketFramer(max_packet_size=MAX_PACKET_CHUNK + 5)
    data = _header(MAX_PACKET_CHUNK, 0) + bytes(MAX_PACKET_CHUNK) + _header(6, 1)
    with pytest.raises(RemoteProtocolError) as info:
        framer.receive_data(data)
    assert info.value.error_code == ErrorCode.ER_NET_PACKET_TOO_LARGE


def test_frame_payload_exact_chunk() -> None:
    """A payload of exactly 0xFFFFFF bytes is framed as a full chunk plus an empty one."""
    payload = b"\xab" * MAX_PACKET_CHUNK
    data, next_seq = frame_payload(payload, 7)
    assert next_seq == 9
    assert data[:4] == _header(MAX_PACKET_CHUNK, 7)
    assert data[4 : 4 + MAX_PACKET_CHUNK] == payload
    assert data[4 + MAX_PACKET_CHUNK :] == _header(0, 8)


def test_large_payloads_round_trip() -> None:
    """Payloads around multiples of 0xFFFFFF are split and rejoined unchanged."""
    for size in (
        MAX_PACKET_CHUNK - 1,
        MAX_PACKET_CHUNK,
        MAX_PACKET_CHUNK + 1,
        2 * MAX_PACKET_CHUNK,
        2 * MAX_PACKET_CHUNK + 3,
    ):
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
        sender = PacketFramer()
        receiver = PacketFramer()
        data = sender.frame(payload)
        chunks = size // MAX_PACKET_CHUNK + 1
        assert len(data) == size + 4 * chunks
        assert sender.next_seq == chunks
        # Feed in uneven pieces to cross chunk boundaries.
        got: list[Packet] = []
        step = 1 << 22
        for start in range(0, len(data), step):
            got.extend(receiver.receive_data(data[start : start + step]))
        assert len(got) == 1
        assert got[0].seq == 0
        assert got[0].payload == payload
        assert receiver.next_seq == chunks


def test_multi_chunk_seq_wraps() -> None:
    """A multi-chunk packet whose chunk ids wrap past 255 is reassembled."""
    payload = bytes(MAX_PACKET_CHUNK) + b"tail"
    sender = PacketFramer()
    sender.set_sequence(255)
    data = sender.frame(payload)
    assert data[3] == 255
    receiver = PacketFramer()
    receiver.set_sequence(255)
    packets = receiver.receive_data(data)
    assert packets == [Packet(255, payload)]
    assert receiver.next_seq == 1


def test_take_buffered() -> None:
    """take_buffered hands over unparsed bytes and empties the framer."""
    framer = PacketFramer()
    framer.receive_data(_header(4, 0) + b"ab")
    framer.feed(b"c")
    assert framer.take_buffered() == _header(4, 0) + b"abc"
    assert framer.buffered == 0


def test_take_buffered_inside_multichunk_refused() -> None:
    """take_buffered refuses while a multi-chunk packet is half received."""
    framer = PacketFramer()
    framer.receive_data(_header(MAX_PACKET_CHUNK, 0) + bytes(MAX_PACKET_CHUNK))
    with pytest.raises(LocalProtocolError):
        framer.take_buffered()


def test_check_sequence_off() -> None:
    """With check_sequence off, any sequence id is accepted."""
    framer = PacketFramer(check_sequence=False)
    assert framer.receive_data(_header(1, 9) + b"x" + _header(1, 3) + b"y") == [
        Packet(9, b"x"),
        Packet(3, b"y"),
    ]


def test_feed_accepts_bytearray_and_memoryview() -> None:
    """Non-bytes buffers are accepted and packets carry bytes payloads."""
    framer = PacketFramer()
    (packet,) = framer.receive_data(bytearray(_header(2, 0) + b"hi"))
    assert type(packet.payload) is bytes
    (packet,) = framer.receive_data(memoryview(_header(2, 1) + b"yo"))
    assert packet.payload == b"yo"


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=10),
    start_seq=st.integers(0, 255),
    cuts=st.lists(st.integers(0, 10_000), max_size=20),
)
def test_any_chunking_gives_same_packets(
    payloads: list[bytes], start_seq: int, cuts: list[int]
) -> None:
    """Any split of the stream into pieces yields the packets that were framed."""
    sender = PacketFramer()
    sender.set_sequence(start_seq)
    stream = b"".join(sender.frame(p) for p in payloads)
    receiver = PacketFramer()
    receiver.set_sequence(start_seq)
    got: list[Packet] = []
    for piece in _chunked(stream, cuts):
        got.extend(receiver.receive_data(piece))
    assert [p.payload for p in got] == payloads
    assert [p.seq for p in got] == [(start_seq + i) % 256 for i in range(len(payloads))]
    assert receiver.buffered == 0
    assert receiver.next_seq == sender.next_seq


@settings(max_examples=25, deadline=None)
@given(
    multiple=st.integers(1, 2),
    delta=st.integers(-2, 2),
    start_seq=st.integers(250, 255),
    cuts=st.lists(st.integers(0, 3 * MAX_PACKET_CHUNK), max_size=6),
)
def test_split_payloads_any_chunking(
    multiple: int, delta: int, start_seq: int, cuts: list[int]
) -> None:
    """Payloads near k*0xFFFFFF survive framing, any chunking and seq wraparound."""
    size = multiple * MAX_PACKET_CHUNK + delta
    payload = b"\x5a" * size
    data, next_seq = frame_payload(payload, start_seq)
    chunks = size // MAX_PACKET_CHUNK + 1
    assert next_seq == (start_seq + chunks) % 256
    receiver = PacketFramer()
    receiver.set_sequence(start_seq)
    got: list[Packet] = []
    for piece in _chunked(data, cuts):
        got.extend(receiver.receive_data(piece))
    assert len(got) == 1
    assert got[0].seq == start_seq
    assert got[0].payload == payload
    assert receiver.next_seq == next_seq


@given(payload=st.binary(max_size=100), seq=st.integers(0, 255))
def test_frame_header_layout(payload: bytes, seq: int) -> None:
    """The header is the 3-byte little-endian length then the sequence id."""
    data, _ = frame_payload(payload, seq)
    assert data == len(payload).to_bytes(3, "little") + bytes((seq,)) + payload
