"""
Every packet class round-trips: for any canonical packet hypothesis draws,
C{decode(encode(packet)) == packet} and encoding it again gives the same
bytes; and the framing of any payload reads back the same in any chunking.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obproxy_tx.wire.compression import CompressedFramer
from obproxy_tx.wire.constants import MAX_PACKET_CHUNK
from obproxy_tx.wire.framing import PacketFramer, frame_payload
from tests.fuzz import strategies as s
from tests.fuzz.budget import examples

_SETTINGS = settings(
    max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _check_round_trip(drawn: s.Drawn) -> None:
    packet, caps, decode = drawn
    payload = bytes(packet.encode(caps))
    decoded = decode(payload, caps)
    assert decoded == packet, (packet, payload, decoded)
    assert bytes(decoded.encode(caps)) == payload


def _round_trip_test(name: str) -> Any:
    @_SETTINGS
    @given(drawn=s.ALL_PACKETS[name])
    def test(drawn: s.Drawn) -> None:
        _check_round_trip(drawn)

    test.__name__ = f"test_round_trip_{name}"
    test.__doc__ = f"Any canonical {name} decodes to itself and encodes to the same bytes."
    return test


for _name in s.ALL_PACKETS:
    globals()[f"test_round_trip_{_name}"] = _round_trip_test(_name)
del _name


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


@settings(max_examples=examples(80), deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=6),
    first_seq=st.integers(0, 255),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
)
def test_framing_round_trip_any_chunking(
    payloads: list[bytes], first_seq: int, cuts: list[int]
) -> None:
    """Framed payloads come back whole, in order, with their sequence ids, however cut."""
    writer = PacketFramer()
    writer.set_sequence(first_seq)
    data = writer.frame_many(payloads)
    reader = PacketFramer()
    reader.set_sequence(first_seq)
    packets = []
    for piece in _chunks(data, cuts):
        packets.extend(reader.receive_data(piece))
    assert [p.payload for p in packets] == payloads
    assert [p.seq for p in packets] == [(first_seq + i) & 0xFF for i in range(len(payloads))]
    assert reader.buffered == 0
    assert reader.next_seq == writer.next_seq


@settings(max_examples=5, deadline=None)
@given(extra=st.integers(-2, 2), seq=st.integers(0, 255))
def test_framing_multi_chunk_boundaries(extra: int, seq: int) -> None:
    """Payloads around the 16 MiB chunk size split and join again."""
    payload = b"x" * (MAX_PACKET_CHUNK + extra)
    data, following = frame_payload(payload, seq)
    reader = PacketFramer()
    reader.set_sequence(seq)
    (packet,) = reader.receive_data(data)
    assert packet.payload == payload and packet.seq == seq
    assert reader.next_seq == following


@settings(max_examples=examples(40), deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=400), min_size=1, max_size=5),
    algorithm=st.sampled_from(["zlib", "zstd"]),
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
)
def test_compressed_framing_round_trip(
    payloads: list[bytes], algorithm: str, cuts: list[int]
) -> None:
    """The compressed protocol carries any payloads, in any chunking."""
    writer = CompressedFramer(algorithm=algorithm)
    data = writer.frame_many(payloads)
    reader = CompressedFramer(algorithm=algorithm)
    packets = []
    for piece in _chunks(data, cuts):
        packets.extend(reader.receive_data(piece))
    assert [p.payload for p in packets] == payloads
