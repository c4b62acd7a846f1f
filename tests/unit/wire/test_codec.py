"""
Tests for L{obproxy_tx.wire.codec}.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from obproxy_tx.wire.codec import (
    PayloadReader,
    int1,
    int2,
    int3,
    int4,
    int6,
    int8,
    lenenc_bytes,
    lenenc_int,
    nul_bytes,
)
from obproxy_tx.wire.errors import ErrorCode, LocalProtocolError, RemoteProtocolError


def test_fixed_width_integers() -> None:
    """Fixed-width integers are little-endian with the spec's widths."""
    assert int1(0xAB) == b"\xab"
    assert int2(0x0102) == b"\x02\x01"
    assert int3(0x010203) == b"\x03\x02\x01"
    assert int4(0x01020304) == b"\x04\x03\x02\x01"
    assert int6(0x010203040506) == b"\x06\x05\x04\x03\x02\x01"
    assert int8(1) == b"\x01" + b"\x00" * 7


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (250, b"\xfa"),
        (251, b"\xfc\xfb\x00"),
        (0xFFFF, b"\xfc\xff\xff"),
        (0x10000, b"\xfd\x00\x00\x01"),
        (0xFFFFFF, b"\xfd\xff\xff\xff"),
        (0x1000000, b"\xfe\x00\x00\x00\x01\x00\x00\x00\x00"),
        (0xFFFFFFFFFFFFFFFF, b"\xfe" + b"\xff" * 8),
    ],
)
def test_lenenc_int_boundaries(value: int, encoded: bytes) -> None:
    """Length-encoded integers switch width exactly at the spec's boundaries."""
    assert lenenc_int(value) == encoded
    reader = PayloadReader(encoded)
    assert reader.read_lenenc_int() == value
    assert reader.at_end()


def test_lenenc_int_out_of_range() -> None:
    """Negative or over-64-bit values cannot be length-encoded."""
    with pytest.raises(LocalProtocolError):
        lenenc_int(-1)
    with pytest.raises(LocalProtocolError):
        lenenc_int(1 << 64)


@given(st.integers(0, (1 << 64) - 1))
def test_lenenc_int_round_trip(value: int) -> None:
    """Any 64-bit unsigned value round-trips through the length-encoded form."""
    encoded = lenenc_int(value)
    reader = PayloadReader(encoded)
    assert reader.read_lenenc_int() == value
    assert reader.at_end()


@given(st.integers(0, (1 << 64) - 1))
def test_lenenc_int_truncated(value: int) -> None:
    """Every proper prefix of a length-encoded integer is a RemoteProtocolError."""
    encoded = lenenc_int(value)
    for length in range(len(encoded)):
        with pytest.raises(RemoteProtocolError) as info:
            PayloadReader(encoded[:length]).read_lenenc_int()
        assert info.value.error_code == ErrorCode.ER_MALFORMED_PACKET


@given(st.binary(max_size=300), st.binary(max_size=5))
def test_lenenc_bytes_round_trip(value: bytes, tail: bytes) -> None:
    """Length-encoded strings round-trip and leave the reader right after them."""
    reader = PayloadReader(lenenc_bytes(value) + tail)
    assert reader.read_lenenc_bytes() == value
    assert reader.read_rest() == tail


def test_lenenc_null_and_ff() -> None:
    """0xFB is NULL only where NULL is allowed; 0xFF is never an integer."""
    assert PayloadReader(b"\xfb").read_lenenc_bytes_or_null() is None
    with pytest.raises(RemoteProtocolError):
        PayloadReader(b"\xfb").read_lenenc_int()
    reader = PayloadReader(b"\xff")
    with pytest.raises(RemoteProtocolError):
        reader.read_lenenc_int()
    assert reader.position == 0
    assert PayloadReader(b"\x01a").read_lenenc_bytes_or_null() == b"a"


def test_nul_strings() -> None:
    """NUL-terminated strings are read up to the NUL; the lenient reader accepts a missing NUL."""
    reader = PayloadReader(nul_bytes(b"abc") + b"def")
    assert reader.read_nul_bytes() == b"abc"
    with pytest.raises(RemoteProtocolError):
        PayloadReader(b"def").read_nul_bytes()
    assert PayloadReader(b"def").read_nul_bytes_or_rest() == b"def"
    assert PayloadReader(b"de\x00f").read_nul_bytes_or_rest() == b"de"


def test_reader_fixed_widths() -> None:
    """The reader's fixed-width methods match the encoders, signed ones included."""
    data = int2(0xFFFE) + int3(0x123456) + int4(0xFFFFFFFF) + int6(5) + int8(1 << 63) + b"\xff"
    reader = PayloadReader(data)
    assert reader.peek_uint8() == 0xFE
    assert reader.read_uint16() == 0xFFFE
    assert reader.read_uint24() == 0x123456
    assert reader.read_uint32() == 0xFFFFFFFF
    assert reader.read_uint48() == 5
    assert reader.read_uint64() == 1 << 63
    assert reader.read_int8() == -1
    assert reader.at_end()
    assert PayloadReader(b"\xfe\xff").read_int16() == -2
    assert PayloadReader(b"\xff\xff\xff\xff").read_int32() == -1
    assert PayloadReader(b"\xff" * 8).read_int64() == -1
    assert PayloadReader(b"\x00\x00\x80\x3f").read_float() == 1.0
    assert PayloadReader(b"\x00" * 6 + b"\xf0\x3f").read_double() == 1.0


def test_reader_bounds() -> None:
    """Reading or skipping past the end raises RemoteProtocolError, never IndexError."""
    reader = PayloadReader(b"ab")
    for call in (
        lambda: reader.read_bytes(3),
        lambda: reader.read_bytes(-1),
        lambda: reader.skip(3),
        lambda: reader.skip(-1),
        lambda: reader.read_uint32(),
        lambda: PayloadReader(b"").read_uint8(),
        lambda: PayloadReader(b"").peek_uint8(),
    ):
        with pytest.raises(RemoteProtocolError):
            call()
    reader.skip(1)
    assert reader.remaining() == 1
    assert reader.read_rest() == b"b"
    assert reader.read_rest() == b""
