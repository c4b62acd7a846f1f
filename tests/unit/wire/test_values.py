"""
Tests for L{obproxy_tx.wire.values}.
"""

from __future__ import annotations

import datetime
import decimal
import math
import pickle
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from obproxy_tx.wire.codec import PayloadReader
from obproxy_tx.wire.constants import ColumnFlag, ColumnType
from obproxy_tx.wire.errors import LocalProtocolError, RemoteProtocolError
from obproxy_tx.wire.values import (
    BINARY_CHARSET,
    LONG_DATA,
    UTF8MB4_GENERAL_CI,
    column_length_for,
    decode_binary_value,
    encode_binary_value,
    infer_column_type,
    text_value,
)

T = ColumnType
UNSIGNED = ColumnFlag.UNSIGNED_FLAG
NONE = ColumnFlag(0)


def _decode(column_type: int, data: bytes, flags: int = 0) -> object:
    reader = PayloadReader(data)
    value = decode_binary_value(reader, column_type, flags)
    assert reader.at_end()
    return value


def _round_trip(column_type: int, value: object, unsigned: bool = False) -> bytes:
    data = encode_binary_value(column_type, value, unsigned)
    decoded = _decode(column_type, data, UNSIGNED if unsigned else NONE)
    assert decoded == value
    assert encode_binary_value(column_type, decoded, unsigned) == data
    return data


INTEGER_LIMITS = [
    (T.MYSQL_TYPE_TINY, 1, 8),
    (T.MYSQL_TYPE_SHORT, 2, 16),
    (T.MYSQL_TYPE_INT24, 4, 32),
    (T.MYSQL_TYPE_LONG, 4, 32),
    (T.MYSQL_TYPE_LONGLONG, 8, 64),
]


@pytest.mark.parametrize(("column_type", "size", "bits"), INTEGER_LIMITS)
def test_integer_limits(column_type: ColumnType, size: int, bits: int) -> None:
    """Integers at their type's signed and unsigned limits round-trip with the right width."""
    for value in (-(1 << (bits - 1)), -1, 0, (1 << (bits - 1)) - 1):
        assert len(_round_trip(column_type, value)) == size
    for value in (0, (1 << bits) - 1):
        assert len(_round_trip(column_type, value, unsigned=True)) == size
    with pytest.raises(LocalProtocolError):
        encode_binary_value(column_type, 1 << bits, True)
    with pytest.raises(LocalProtocolError):
        encode_binary_value(column_type, -1, True)
    with pytest.raises(LocalProtocolError):
        encode_binary_value(column_type, 1 << (bits - 1))


def test_year_is_two_bytes() -> None:
    """YEAR travels as a 2-byte integer."""
    assert _round_trip(T.MYSQL_TYPE_YEAR, 2024) == b"\xe8\x07"


def test_integer_from_bool_and_bad_value() -> None:
    """bool encodes as an integer; a non-number is a local error."""
    assert encode_binary_value(T.MYSQL_TYPE_TINY, True) == b"\x01"
    with pytest.raises(LocalProtocolError):
        encode_binary_value(T.MYSQL_TYPE_LONG, "abc")


def test_floats() -> None:
    """FLOAT is 4 bytes, DOUBLE 8; both round-trip (FLOAT via its single-precision value)."""
    assert _round_trip(T.MYSQL_TYPE_DOUBLE, 1.1) == struct.pack("<d", 1.1)
    single = struct.unpack("<f", struct.pack("<f", 1.1))[0]
    assert _round_trip(T.MYSQL_TYPE_FLOAT, single) == struct.pack("<f", 1.1)
    assert math.isinf(_decode(T.MYSQL_TYPE_DOUBLE, struct.pack("<d", math.inf)))  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        encode_binary_value(T.MYSQL_TYPE_FLOAT, 1e300)
    with pytest.raises(LocalProtocolError):
        encode_binary_value(T.MYSQL_TYPE_DOUBLE, "x")


@given(st.floats(allow_nan=False))
def test_double_any(value: float) -> None:
    """Any double round-trips exactly."""
    _round_trip(T.MYSQL_TYPE_DOUBLE, value)


@given(st.integers(-(1 << 63), (1 << 63) - 1))
def test_longlong_any(value: int) -> None:
    """Any signed 64-bit integer round-trips."""
    _round_trip(T.MYSQL_TYPE_LONGLONG, value)


def test_decimal() -> None:
    """DECIMAL values are length-encoded text and keep their scale."""
    assert _round_trip(T.MYSQL_TYPE_NEWDECIMAL, decimal.Decimal("-12.50")) == b"\x06-12.50"
    assert _round_trip(T.MYSQL_TYPE_DECIMAL, decimal.Decimal("0")) == b"\x010"
    assert encode_binary_value(T.MYSQL_TYPE_NEWDECIMAL, decimal.Decimal("1E+3")) == b"\x041000"
    assert encode_binary_value(T.MYSQL_TYPE_NEWDECIMAL, 5) == b"\x015"
    assert encode_binary_value(T.MYSQL_TYPE_NEWDECIMAL, 0.5) == b"\x030.5"
    assert encode_binary_value(T.MYSQL_TYPE_NEWDECIMAL, True) == b"\x011"
    assert encode_binary_value(T.MYSQL_TYPE_NEWDECIMAL, "3.25") == b"\x043.25"
    assert encode_binary_value(T.MYSQL_TYPE_NEWDECIMAL, b"7") == b"\x017"
    with pytest.raises(LocalProtocolError):
        encode_binary_value(T.MYSQL_TYPE_NEWDECIMAL, object())
    with pytest.raises(RemoteProtocolError):
        _decode(T.MYSQL_TYPE_NEWDECIMAL, b"\x03abc")
    with pytest.raises(RemoteProtocolError):
        _decode(T.MYSQL_TYPE_NEWDECIMAL, b"\x02\xff\xfe")


def test_strings_are_bytes() -> None:
    """String-like types decode to bytes; str values encode as UTF-8."""
    for column_type in (
        T.MYSQL_TYPE_VAR_STRING,
        T.MYSQL_TYPE_STRING,
        T.MYSQL_TYPE_VARCHAR,
        T.MYSQL_TYPE_BLOB,
        T.MYSQL_TYPE_TINY_BLOB,
        T.MYSQL_TYPE_MEDIUM_BLOB,
        T.MYSQL_TYPE_LONG_BLOB,
        T.MYSQL_TYPE_ENUM,
        T.MYSQL_TYPE_SET,
        T.MYSQL_TYPE_JSON,
        T.MYSQL_TYPE_GEOMETRY,
        T.MYSQL_TYPE_BIT,
        T.MYSQL_TYPE_VECTOR,
    ):
        _round_trip(column_type, b"\x00value\xff")
    assert encode_binary_value(T.MYSQL_TYPE_VAR_STRING, "é") == b"\x02\xc3\xa9"
    assert encode_binary_value(T.MYSQL_TYPE_VAR_STRING, bytearray(b"ab")) == b"\x02ab"
    assert encode_binary_value(T.MYSQL_TYPE_VAR_STRING, 12) == b"\x0212"
    assert len(encode_binary_value(T.MYSQL_TYPE_BLOB, b"x" * 300)) == 303


def test_bit_from_int() -> None:
    """An int given for BIT becomes big-endian bytes."""
    assert encode_binary_value(T.MYSQL_TYPE_BIT, 0) == b"\x01\x00"
    assert encode_binary_value(T.MYSQL_TYPE_BIT, 0x1234) == b"\x02\x12\x34"


def test_null_type_has_no_bytes() -> None:
    """The NULL type occupies no bytes."""
    assert encode_binary_value(T.MYSQL_TYPE_NULL, 0) == b""
    assert _decode(T.MYSQL_TYPE_NULL, b"") is None


@pytest.mark.parametrize(
    "column_type",
    [
        T.MYSQL_TYPE_DATETIME,
        T.MYSQL_TYPE_TIMESTAMP,
        T.MYSQL_TYPE_DATETIME2,
        T.MYSQL_TYPE_TIMESTAMP2,
    ],
)
def test_datetime_shortest_encoding(column_type: ColumnType) -> None:
    """Datetimes use 4, 7 or 11 bytes as their value needs, as servers send them."""
    assert len(_round_trip(column_type, datetime.datetime(2024, 2, 29))) == 5
    assert len(_round_trip(column_type, datetime.datetime(2024, 2, 29, 1, 2, 3))) == 8
    assert len(_round_trip(column_type, datetime.datetime(2024, 2, 29, 1, 2, 3, 4))) == 12
    data = encode_binary_value(column_type, datetime.datetime(1999, 12, 31, 23, 59, 58, 999999))
    assert data == b"\x0b\xcf\x07\x0c\x1f\x17\x3b\x3a\x3f\x42\x0f\x00"


def test_zero_datetime_is_text() -> None:
    """Zero and invalid dates decode as their text and re-encode to the same bytes."""
    assert _round_trip(T.MYSQL_TYPE_DATETIME, "0000-00-00 00:00:00") == b"\x00"
    assert _round_trip(T.MYSQL_TYPE_DATE, "0000-00-00") == b"\x00"
    partial = b"\x04\xe8\x07\x00\x00"
    assert _decode(T.MYSQL_TYPE_DATE, partial) == "2024-00-00"
    assert encode_binary_value(T.MYSQL_TYPE_DATE, "2024-00-00") == partial
    weird = b"\x0b\xe8\x07\x02\x1e\x01\x02\x03\x01\x00\x00\x00"
    assert _decode(T.MYSQL_TYPE_DATETIME, weird) == "2024-02-30 01:02:03.000001"
    assert encode_binary_value(T.MYSQL_TYPE_DATETIME, "2024-02-30 01:02:03.000001") == weird


def test_date() -> None:
    """DATE values are 4 bytes and decode to datetime.date."""
    assert _round_trip(T.MYSQL_TYPE_DATE, datetime.date(2020, 1, 2)) == b"\x04\xe4\x07\x01\x02"
    assert _round_trip(T.MYSQL_TYPE_NEWDATE, datetime.date(1, 1, 1)) == b"\x04\x01\x00\x01\x01"
    assert encode_binary_value(T.MYSQL_TYPE_DATE, datetime.datetime(2020, 1, 2, 3)) == (
        b"\x04\xe4\x07\x01\x02"
    )


def test_temporal_from_strings() -> None:
    """ISO-ish strings encode as dates, datetimes and times."""
    assert encode_binary_value(T.MYSQL_TYPE_DATETIME, "2020-01-02T03:04:05.5") == (
        encode_binary_value(T.MYSQL_TYPE_DATETIME, datetime.datetime(2020, 1, 2, 3, 4, 5, 500000))
    )
    assert encode_binary_value(T.MYSQL_TYPE_DATETIME, b"2020-01-02") == (
        encode_binary_value(T.MYSQL_TYPE_DATE, datetime.date(2020, 1, 2))
    )
    assert encode_binary_value(T.MYSQL_TYPE_TIME, "-1 02:03:04.5") == encode_binary_value(
        T.MYSQL_TYPE_TIME, -datetime.timedelta(days=1, hours=2, minutes=3, seconds=4.5)
    )
    assert encode_binary_value(T.MYSQL_TYPE_TIME, b"12:30") == encode_binary_value(
        T.MYSQL_TYPE_TIME, datetime.timedelta(minutes=750)
    )
    with pytest.raises(LocalProtocolError):
        encode_binary_value(T.MYSQL_TYPE_DATETIME, "yesterday")
    with pytest.raises(LocalProtocolError):
        encode_binary_value(T.MYSQL_TYPE_DATETIME, 5)
    with pytest.raises(LocalProtocolError):
        encode_binary_value(T.MYSQL_TYPE_TIME, "noon")
    with pytest.raises(LocalProtocolError):
        encode_binary_value(T.MYSQL_TYPE_TIME, 5)


def test_time() -> None:
    """TIME values use 0, 8 or 12 bytes and decode to timedelta, negative ones included."""
    assert _round_trip(T.MYSQL_TYPE_TIME, datetime.timedelta(0)) == b"\x00"
    data = _round_trip(T.MYSQL_TYPE_TIME, datetime.timedelta(hours=838, minutes=59, seconds=59))
    assert data == b"\x08\x00\x22\x00\x00\x00\x16\x3b\x3b"
    data = _round_trip(T.MYSQL_TYPE_TIME, -datetime.timedelta(hours=1, microseconds=5))
    assert data == b"\x0c\x01\x00\x00\x00\x00\x01\x00\x00\x05\x00\x00\x00"
    _round_trip(T.MYSQL_TYPE_TIME2, datetime.timedelta(seconds=1))
    assert encode_binary_value(T.MYSQL_TYPE_TIME, datetime.time(1, 2, 3)) == (
        b"\x08\x00\x00\x00\x00\x00\x01\x02\x03"
    )
    assert encode_binary_value(T.MYSQL_TYPE_TIME, "5") == encode_binary_value(
        T.MYSQL_TYPE_TIME, datetime.timedelta(seconds=5)
    )


@given(
    st.timedeltas(
        min_value=-datetime.timedelta(hours=838, minutes=59, seconds=59),
        max_value=datetime.timedelta(hours=838, minutes=59, seconds=59),
    )
)
def test_time_any(value: datetime.timedelta) -> None:
    """Any TIME in MySQL's range round-trips."""
    _round_trip(T.MYSQL_TYPE_TIME, value)


@given(st.datetimes(min_value=datetime.datetime(1, 1, 1)))
def test_datetime_any(value: datetime.datetime) -> None:
    """Any Python datetime round-trips."""
    _round_trip(T.MYSQL_TYPE_DATETIME, value)


@pytest.mark.parametrize(
    ("column_type", "data"),
    [
        (T.MYSQL_TYPE_DATETIME, b"\x05\x00\x00\x00\x00\x00"),
        (T.MYSQL_TYPE_DATETIME, b"\x07\x00\x00"),
        (T.MYSQL_TYPE_TIME, b"\x05\x00\x00\x00\x00\x00"),
        (T.MYSQL_TYPE_TIME, b"\x0c\x00"),
        (T.MYSQL_TYPE_LONG, b"\x00\x00"),
        (T.MYSQL_TYPE_DOUBLE, b"\x00" * 7),
        (T.MYSQL_TYPE_VAR_STRING, b"\x05abc"),
        (T.MYSQL_TYPE_VAR_STRING, b""),
        (T.MYSQL_TYPE_VAR_STRING, b"\xff"),
    ],
)
def test_malformed_values(column_type: ColumnType, data: bytes) -> None:
    """Truncated or impossible binary values raise RemoteProtocolError."""
    with pytest.raises(RemoteProtocolError):
        decode_binary_value(PayloadReader(data), column_type, 0)


def test_time_with_huge_days_is_malformed() -> None:
    """A TIME whose day count Python cannot hold is malformed, not an OverflowError."""
    data = b"\x08\x00\x3f\x42\x0f\x00\x00\x00\x00"
    assert _decode(T.MYSQL_TYPE_TIME, data) == datetime.timedelta(days=999_999)
    with pytest.raises(RemoteProtocolError):
        _decode(T.MYSQL_TYPE_TIME, b"\x08\x00\xff\xff\xff\xff\x00\x00\x00")


def test_text_value() -> None:
    """text_value formats Python values the way a server's text protocol does."""
    cases = [
        (None, None),
        (b"raw", b"raw"),
        ("é", b"\xc3\xa9"),
        (True, b"1"),
        (False, b"0"),
        (-42, b"-42"),
        (1.5, b"1.5"),
        (decimal.Decimal("1E+2"), b"100"),
        (datetime.datetime(2020, 1, 2, 3, 4, 5), b"2020-01-02 03:04:05"),
        (datetime.datetime(2020, 1, 2, 3, 4, 5, 60), b"2020-01-02 03:04:05.000060"),
        (datetime.date(2020, 1, 2), b"2020-01-02"),
        (datetime.time(3, 4, 5), b"03:04:05"),
        (datetime.timedelta(hours=100, seconds=1), b"100:00:01"),
        (-datetime.timedelta(seconds=1, microseconds=5), b"-00:00:01.000005"),
        (bytearray(b"ba"), b"ba"),
        (memoryview(b"mv"), b"mv"),
        (pytest, str(pytest).encode()),
    ]
    for value, expected in cases:
        assert text_value(value) == expected, value


def test_infer_column_type() -> None:
    """Python values map to sensible result-set column types."""
    numeric = ColumnFlag.BINARY_FLAG | ColumnFlag.NUM_FLAG
    cases = [
        (None, (T.MYSQL_TYPE_NULL, ColumnFlag.BINARY_FLAG, BINARY_CHARSET)),
        ("s", (T.MYSQL_TYPE_VAR_STRING, NONE, UTF8MB4_GENERAL_CI)),
        (True, (T.MYSQL_TYPE_TINY, numeric, BINARY_CHARSET)),
        (1, (T.MYSQL_TYPE_LONGLONG, numeric, BINARY_CHARSET)),
        (1 << 63, (T.MYSQL_TYPE_LONGLONG, numeric | UNSIGNED, BINARY_CHARSET)),
        (1 << 64, (T.MYSQL_TYPE_NEWDECIMAL, numeric, BINARY_CHARSET)),
        (-(1 << 63) - 1, (T.MYSQL_TYPE_NEWDECIMAL, numeric, BINARY_CHARSET)),
        (1.0, (T.MYSQL_TYPE_DOUBLE, numeric, BINARY_CHARSET)),
        (decimal.Decimal(1), (T.MYSQL_TYPE_NEWDECIMAL, numeric, BINARY_CHARSET)),
        (
            b"b",
            (T.MYSQL_TYPE_BLOB, ColumnFlag.BINARY_FLAG | ColumnFlag.BLOB_FLAG, BINARY_CHARSET),
        ),
        (
            datetime.datetime(2020, 1, 1),
            (T.MYSQL_TYPE_DATETIME, ColumnFlag.BINARY_FLAG, BINARY_CHARSET),
        ),
        (datetime.date(2020, 1, 1), (T.MYSQL_TYPE_DATE, ColumnFlag.BINARY_FLAG, BINARY_CHARSET)),
        (datetime.time(1), (T.MYSQL_TYPE_TIME, ColumnFlag.BINARY_FLAG, BINARY_CHARSET)),
        (
            datetime.timedelta(1),
            (T.MYSQL_TYPE_TIME, ColumnFlag.BINARY_FLAG, BINARY_CHARSET),
        ),
        (object(), (T.MYSQL_TYPE_VAR_STRING, NONE, UTF8MB4_GENERAL_CI)),
    ]
    for value, expected in cases:
        assert infer_column_type(value) == expected, value


@given(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(1 << 63), (1 << 64) - 1),
        st.floats(allow_nan=False),
        st.decimals(allow_nan=False, allow_infinity=False, places=4),
        st.binary(max_size=20),
        st.text(max_size=20),
        st.datetimes(min_value=datetime.datetime(1, 1, 1)),
        st.dates(),
        st.timedeltas(
            min_value=-datetime.timedelta(hours=838), max_value=datetime.timedelta(hours=838)
        ),
    )
)
def test_inferred_type_encodes_value(value: object) -> None:
    """Every value encodes in the binary protocol with the type inferred for it."""
    column_type, flags, _ = infer_column_type(value)
    if value is None:
        return
    data = encode_binary_value(column_type, value, bool(flags & UNSIGNED))
    decoded = _decode(column_type, data, flags)
    if isinstance(value, str):
        assert decoded == value.encode("utf-8", "surrogateescape")
    elif (
        isinstance(value, datetime.date)
        and not isinstance(value, datetime.datetime)
        or isinstance(value, decimal.Decimal)
    ):
        assert decoded == value
    elif isinstance(value, bool):
        assert decoded == int(value)
    else:
        assert decoded == value


def test_column_length_for() -> None:
    """Display lengths exist for inferred types and default to 255."""
    assert column_length_for(T.MYSQL_TYPE_LONGLONG) == 20
    assert column_length_for(T.MYSQL_TYPE_GEOMETRY) == 255


def test_long_data_marker() -> None:
    """LONG_DATA is a singleton that survives pickling and prints its name."""
    assert repr(LONG_DATA) == "LONG_DATA"
    assert pickle.loads(pickle.dumps(LONG_DATA)) is LONG_DATA
