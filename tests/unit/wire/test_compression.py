"""
Tests for L{obproxy_tx.wire.compression}.
"""

from __future__ import annotations

import os
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obproxy_tx.wire.compression import CompressedFramer, zstd_available
from obproxy_tx.wire.constants import MAX_PACKET_CHUNK
from obproxy_tx.wire.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from obproxy_tx.wire.framing import Packet, PacketFramer

ALGORITHMS = [
    "zlib",
    pytest.param(
        "zstd",
        marks=pytest.mark.skipif(not zstd_available(), reason="no zstd module installed"),
    ),
]


def _compressed_header(length: int, seq: int, uncompressed: int) -> bytes:
    return length.to_bytes(3, "little") + bytes((seq,)) + uncompressed.to_bytes(3, "little")


def _chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = []
    start = 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


def test_small_payload_sent_uncompressed() -> None:
    """A packet under 50 bytes travels raw, with an uncompressed length of 0."""
    framer = CompressedFramer()
    data = framer.frame(b"\x0e")
    assert data == _compressed_header(5, 0, 0) + b"\x01\x00\x00\x00\x0e"
    assert framer.next_seq == 1


def test_large_payload_compressed_with_zlib() -> None:
    """A compressible packet of 50 bytes or more is zlib-compressed."""
    payload = b"\x03" + b"select 1 union all " * 20
    data = CompressedFramer().frame(payload)
    length = int.from_bytes(data[:3], "little")
    assert data[3] == 0
    assert int.from_bytes(data[4:7], "little") == len(payload) + 4
    assert length < len(payload)
    inner = zlib.decompress(data[7:])
    assert inner == len(payload).to_bytes(3, "little") + b"\x00" + payload


def test_incompressible_payload_sent_raw() -> None:
    """A piece that compression would not shrink is sent as is."""
    payload = os.urandom(200)
    data = CompressedFramer().frame(payload)
    assert data[4:7] == b"\x00\x00\x00"
    assert data[7 + 4 :] == payload


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_round_trip(algorithm: str) -> None:
    """Packets framed by one compressed framer are received by another."""
    sender = CompressedFramer(algorithm)
    receiver = CompressedFramer(algorithm)
    payloads = [b"\x03select 1", b"a" * 1000, b"", os.urandom(300)]
    received: list[Packet] = []
    for payload in payloads:
        received.extend(receiver.receive_data(sender.frame(payload)))
    assert [p.payload for p in received] == payloads
    assert receiver.next_seq == sender.next_seq == 4
    assert receiver.buffered == 0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_frame_many_batches(algorithm: str) -> None:
    """frame_many packs many small packets into one compressed packet."""
    sender = CompressedFramer(algorithm)
    rows = [b"\x05row%02d" % i for i in range(100)]
    data = sender.frame_many(rows)
    assert sender.next_seq == 1
    assert len(data) < sum(len(r) + 4 for r in rows)
    received = CompressedFramer(algorithm).receive_data(data)
    assert [p.payload for p in received] == rows
    assert [p.seq for p in received] == list(range(100))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_payload_over_16mib(algorithm: str) -> None:
    """A payload over 0xFFFFFF bytes is split across compressed packets and rejoined."""
    payload = b"\x03" + b"x" * (MAX_PACKET_CHUNK + 10)
    sender = CompressedFramer(algorithm)
    data = sender.frame(payload)
    assert sender.next_seq == 2
    receiver = CompressedFramer(algorithm)
    got: list[Packet] = []
    for start in range(0, len(data), 1 << 16):
        got.extend(receiver.receive_data(data[start : start + (1 << 16)]))
    assert [p.payload for p in got] == [payload]


@settings(max_examples=60, deadline=None)
@given(
    payloads=st.lists(
        st.one_of(st.binary(max_size=120), st.builds(lambda n: b"ab" * n, st.integers(0, 500))),
        min_size=1,
        max_size=8,
    ),
    cuts=st.lists(st.integers(0, 20_000), max_size=12),
    batched=st.booleans(),
)
def test_any_chunking(payloads: list[bytes], cuts: list[int], batched: bool) -> None:
    """Any split of a compressed stream yields the framed packets."""
    sender = CompressedFramer()
    stream = sender.frame_many(payloads) if batched else b"".join(sender.frame(p) for p in payloads)
    receiver = CompressedFramer()
    got: list[Packet] = []
    for piece in _chunked(stream, cuts):
        got.extend(receiver.receive_data(piece))
    assert [p.payload for p in got] == payloads
    assert receiver.next_seq == sender.next_seq
    assert receiver.buffered == 0


def test_byte_at_a_time() -> None:
    """Feeding a compressed stream one byte at a time gives the same packets."""
    sender = CompressedFramer()
    payloads = [b"q" * 100, b"\x0e", b"z" * 70]
    stream = b"".join(sender.frame(p) for p in payloads)
    receiver = CompressedFramer()
    got: list[Packet] = []
    for index in range(len(stream)):
        got.extend(receiver.receive_data(stream[index : index + 1]))
    assert [p.payload for p in got] == payloads


def test_inner_packet_across_compressed_packets() -> None:
    """An inner packet cut across two compressed packets is reassembled."""
    inner = PacketFramer().frame(b"hello world")
    stream = (
        _compressed_header(5, 0, 0)
        + inner[:5]
        + _compressed_header(len(inner) - 5, 1, 0)
        + inner[5:]
    )
    assert CompressedFramer().receive_data(stream) == [Packet(0, b"hello world")]


def test_inner_sequence_not_checked() -> None:
    """Inner sequence ids are not checked; the compressed one is."""
    framer = PacketFramer()
    framer.set_sequence(9)
    inner = framer.frame(b"x")
    stream = _compressed_header(len(inner), 0, 0) + inner
    assert CompressedFramer().receive_data(stream) == [Packet(9, b"x")]


def test_compressed_sequence_checked() -> None:
    """A compressed packet with the wrong sequence id raises ER_NET_PACKETS_OUT_OF_ORDER."""
    inner = PacketFramer().frame(b"x")
    with pytest.raises(RemoteProtocolError) as info:
        CompressedFramer().receive_data(_compressed_header(len(inner), 3, 0) + inner)
    assert info.value.error_code == ErrorCode.ER_NET_PACKETS_OUT_OF_ORDER


def test_sequence_shared_and_reset() -> None:
    """The compressed sequence continues across directions and restarts at reset."""
    client = CompressedFramer()
    server = CompressedFramer()
    server.receive_data(client.frame(b"\x03select 1"))
    reply = server.frame(b"\x01")
    assert reply[3] == 1
    assert reply[7 + 3] == 1  # the inner id follows the compressed one
    client.receive_data(reply)
    assert client.next_seq == server.next_seq == 2
    client.reset_sequence()
    server.reset_sequence()
    assert server.receive_data(client.frame(b"\x0e")) == [Packet(0, b"\x0e")]


def test_corrupt_zlib_data() -> None:
    """Compressed bytes that do not inflate raise ER_NET_UNCOMPRESS_ERROR."""
    with pytest.raises(RemoteProtocolError) as info:
        CompressedFramer().receive_data(_compressed_header(4, 0, 100) + b"junk")
    assert info.value.error_code == ErrorCode.ER_NET_UNCOMPRESS_ERROR


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_wrong_uncompressed_length(algorithm: str) -> None:
    """A piece that inflates to another length than announced is an error."""
    sender = CompressedFramer(algorithm)
    data = bytearray(sender.frame(b"y" * 500))
    announced = int.from_bytes(data[4:7], "little")
    for wrong in (announced - 1, announced + 1):
        data[4:7] = wrong.to_bytes(3, "little")
        with pytest.raises(RemoteProtocolError) as info:
            CompressedFramer(algorithm).receive_data(bytes(data))
        assert info.value.error_code == ErrorCode.ER_NET_UNCOMPRESS_ERROR


def test_max_packet_size_enforced() -> None:
    """The inner framer's packet size limit applies under compression."""
    sender = CompressedFramer()
    receiver = CompressedFramer(max_packet_size=100)
    with pytest.raises(RemoteProtocolError) as info:
        receiver.receive_data(sender.frame(b"z" * 101))
    assert info.value.error_code == ErrorCode.ER_NET_PACKET_TOO_LARGE


def test_upgrade_keeps_sequence_and_leftovers() -> None:
    """upgrade continues the plain framer's sequence and keeps bytes already received."""
    plain = PacketFramer()
    plain.receive_data(b"\x01\x00\x00\x00\x00")  # seq 0 received
    plain.frame(b"\x00\x00\x00\x02\x00\x00\x00")  # our OK, seq 1
    peer = CompressedFramer()
    peer.reset_sequence()
    early = peer.frame(b"\x03select 1")
    plain.feed(early[:5])
    compressed = CompressedFramer.upgrade(plain, "zlib", 3)
    assert compressed.level == 3
    assert compressed.algorithm == "zlib"
    assert compressed.next_seq == 2
    compressed.reset_sequence()
    assert compressed.receive_data(early[5:]) == [Packet(0, b"\x03select 1")]


def test_take_buffered() -> None:
    """take_buffered returns unparsed compressed bytes and refuses inside an inner packet."""
    framer = CompressedFramer()
    framer.feed(b"\x05\x00")
    assert framer.take_buffered() == b"\x05\x00"
    inner = PacketFramer().frame(b"hello")
    framer.receive_data(_compressed_header(5, 0, 0) + inner[:5])
    with pytest.raises(LocalProtocolError):
        framer.take_buffered()


def test_set_sequence() -> None:
    """set_sequence moves both the compressed and the inner counter."""
    framer = CompressedFramer()
    framer.set_sequence(255)
    data = framer.frame(b"x")
    assert data[3] == 255 and data[7 + 3] == 255
    assert framer.next_seq == 0
    assert framer.max_packet_size == 1 << 30


def test_unknown_algorithm() -> None:
    """An unknown algorithm is a local error."""
    with pytest.raises(LocalProtocolError):
        CompressedFramer("lzma")


class _FakeSocket:
    """Collects what mysql-connector's broker sends and serves what it reads."""

    def __init__(self, incoming: bytes = b"") -> None:
        self.sent = bytearray()
        self.incoming = bytearray(incoming)

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def recv_into(self, view: Any, size: int) -> int:
        count = min(size, len(self.incoming))
        view[:count] = self.incoming[:count]
        del self.incoming[:count]
        return count


def test_interoperates_with_mysql_connector() -> None:
    """What mysql-connector-python's compressed broker sends we read, and the other way round."""
    network = pytest.importorskip("mysql.connector.network")
    broker = network.NetworkBrokerCompressed()
    sock = _FakeSocket()
    queries = [b"\x03select 1", b"\x03" + b"select 2 union " * 30]
    for query in queries:
        broker.send(sock, "test", query, packet_number=0, compressed_packet_number=0)
        server = CompressedFramer()
        assert server.receive_data(bytes(sock.sent)) == [Packet(0, query)]
        sock.sent.clear()
    server = CompressedFramer()
    server.receive_data(
        _compressed_header(5, 0, 0) + b"\x01\x00\x00\x00\x03"  # a query, seq 0
    )
    rows = [b"\x01" + bytes([i]) * 40 for i in range(5)]
    reply = server.frame(b"\x01") + server.frame_many(rows)
    client = network.NetworkBrokerCompressed()
    sock = _FakeSocket(reply)
    got = [bytes(client.recv(sock, "test")) for _ in range(6)]
    assert [g[4:] for g in got] == [b"\x01", *rows]
