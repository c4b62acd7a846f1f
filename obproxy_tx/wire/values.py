"""
Python values on the wire: the binary protocol's value encodings (prepared
statement parameters and binary rows), the text protocol's, and the column
type a Python value gets in a result set.

Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_binary_resultset.html}
(C{ProtocolBinary::*} value formats).

Binary values map to Python as follows:

  - C{TINY}, C{SHORT}, C{YEAR}, C{INT24}, C{LONG}, C{LONGLONG}: C{int}
    (signedness from C{UNSIGNED_FLAG});
  - C{FLOAT}, C{DOUBLE}: C{float};
  - C{DECIMAL}, C{NEWDECIMAL}: L{decimal.Decimal};
  - C{DATE}: L{datetime.date}; C{DATETIME}, C{TIMESTAMP}: L{datetime.datetime};
    C{TIME}: L{datetime.timedelta} (MySQL's TIME is a duration, up to 838 hours);
    dates Python cannot hold (C{0000-00-00}, zero months or days) decode as
    their text (C{"0000-00-00 00:00:00"}), which encodes back to the same bytes;
  - every string, blob, C{ENUM}, C{SET}, C{BIT}, C{JSON}, C{GEOMETRY} and
    C{VECTOR} type: C{bytes} (the caller knows the character set);
  - C{NULL}: C{None}.

Decoding a value always re-encodes to the same bytes for what real servers send
(they use the shortest temporal encodings, as L{encode_binary_value} does).
"""

from __future__ import annotations

import datetime
import decimal
import struct

from obproxy_tx.wire.codec import PayloadReader, lenenc_bytes
from obproxy_tx.wire.constants import ColumnFlag, ColumnType
from obproxy_tx.wire.errors import ErrorCode, LocalProtocolError, RemoteProtocolError

__all__ = [
    "BINARY_CHARSET",
    "LONG_DATA",
    "UTF8MB4_GENERAL_CI",
    "column_length_for",
    "decode_binary_value",
    "encode_binary_value",
    "infer_column_type",
    "text_value",
]

#: The collation id of binary strings and non-string columns.
BINARY_CHARSET = 63
#: C{utf8mb4_general_ci}, known to MySQL, MariaDB and OceanBase alike.
UTF8MB4_GENERAL_CI = 45

_T = ColumnType


class _LongData:
    """
    The type of L{LONG_DATA}.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "LONG_DATA"

    def __reduce__(self) -> str:
        return "LONG_DATA"


#: The value of a C{COM_STMT_EXECUTE} parameter whose data was sent earlier
#: with C{COM_STMT_SEND_LONG_DATA} (it is not in the execute packet).
LONG_DATA = _LongData()

_I8 = struct.Struct("<b")
_U8 = struct.Struct("<B")
_I16 = struct.Struct("<h")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_U64 = struct.Struct("<Q")
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")
_DATE = struct.Struct("<HBB")
_DATETIME = struct.Struct("<HBBBBB")
_DATETIME_US = struct.Struct("<HBBBBBI")
_TIME = struct.Struct("<BIBBB")
_TIME_US = struct.Struct("<BIBBBI")

_INTEGERS: dict[int, tuple[struct.Struct, struct.Struct]] = {
    _T.MYSQL_TYPE_TINY: (_I8, _U8),
    _T.MYSQL_TYPE_SHORT: (_I16, _U16),
    _T.MYSQL_TYPE_YEAR: (_U16, _U16),
    _T.MYSQL_TYPE_INT24: (_I32, _U32),
    _T.MYSQL_TYPE_LONG: (_I32, _U32),
    _T.MYSQL_TYPE_LONGLONG: (_I64, _U64),
}
_DATES = frozenset((_T.MYSQL_TYPE_DATE, _T.MYSQL_TYPE_NEWDATE))
_DATETIMES = frozenset(
    (
        _T.MYSQL_TYPE_DATETIME,
        _T.MYSQL_TYPE_TIMESTAMP,
        _T.MYSQL_TYPE_DATETIME2,
        _T.MYSQL_TYPE_TIMESTAMP2,
    )
)
_TIMES = frozenset((_T.MYSQL_TYPE_TIME, _T.MYSQL_TYPE_TIME2))
_DECIMALS = frozenset((_T.MYSQL_TYPE_DECIMAL, _T.MYSQL_TYPE_NEWDECIMAL))

_MICROSECOND = datetime.timedelta(microseconds=1)
_US_PER_DAY = 86_400_000_000


def _malformed(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed packet: {message}", ErrorCode.ER_MALFORMED_PACKET)


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------


def _date_text(year: int, month: int, day: int) -> str:
    return f"{year:04d}-{month:02d}-{day:02d}"


def _datetime_text(
    year: int, month: int, day: int, hour: int, minute: int, second: int, micro: int
) -> str:
    text = f"{_date_text(year, month, day)} {hour:02d}:{minute:02d}:{second:02d}"
    if micro:
        text += f".{micro:06d}"
    return text


def _decode_datetime(reader: PayloadReader, date_only: bool) -> object:
    length = reader.read_uint8()
    micro = hour = minute = second = 0
    if length == 0:
        year = month = day = 0
    elif length == 4:
        year, month, day = _DATE.unpack(reader.read_bytes(4))
    elif length == 7:
        year, month, day, hour, minute, second = _DATETIME.unpack(reader.read_bytes(7))
    elif length == 11:
        year, month, day, hour, minute, second, micro = _DATETIME_US.unpack(reader.read_bytes(11))
    else:
        raise _malformed(f"binary date/time value of length {length}")
    if date_only and not (hour or minute or second or micro):
        try:
            return datetime.date(year, month, day)
        except (ValueError, OverflowError):
            return _date_text(year, month, day)
    try:
        return datetime.datetime(year, month, day, hour, minute, second, micro)
    except (ValueError, OverflowError):
        return _datetime_text(year, month, day, hour, minute, second, micro)


def _decode_time(reader: PayloadReader) -> datetime.timedelta:
    length = reader.read_uint8()
    if length == 0:
        return datetime.timedelta(0)
    if length == 8:
        negative, days, hours, minutes, seconds = _TIME.unpack(reader.read_bytes(8))
        micro = 0
    elif length == 12:
        negative, days, hours, minutes, seconds, micro = _TIME_US.unpack(reader.read_bytes(12))
    else:
        raise _malformed(f"binary TIME value of length {length}")
    try:
        value = datetime.timedelta(
            days=days, hours=hours, minutes=minutes, seconds=seconds, microseconds=micro
        )
    except OverflowError:
        raise _malformed("binary TIME value out of range") from None
    return -value if negative else value


def decode_binary_value(reader: PayloadReader, column_type: int, flags: int) -> object:
    """
    Read one non-NULL binary-protocol value.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_binary_resultset.html}

    @param reader: positioned at the value; advanced past it.
    @param column_type: the value's L{ColumnType}.
    @param flags: the column's L{ColumnFlag}s (only C{UNSIGNED_FLAG} matters).
    @return: the Python value (see the module docstring for the mapping).
    @raise RemoteProtocolError: the value is truncated or malformed.
    """
    pair = _INTEGERS.get(column_type)
    if pair is not None:
        fmt = pair[1] if flags & ColumnFlag.UNSIGNED_FLAG else pair[0]
        return int(fmt.unpack(reader.read_bytes(fmt.size))[0])
    if column_type == _T.MYSQL_TYPE_DOUBLE:
        return reader.read_double()
    if column_type == _T.MYSQL_TYPE_FLOAT:
        return reader.read_float()
    if column_type in _DATETIMES:
        return _decode_datetime(reader, False)
    if column_type in _DATES:
        return _decode_datetime(reader, True)
    if column_type in _TIMES:
        return _decode_time(reader)
    if column_type == _T.MYSQL_TYPE_NULL:
        return None
    data = reader.read_lenenc_bytes()
    if column_type in _DECIMALS:
        try:
            return decimal.Decimal(data.decode("ascii"))
        except (UnicodeDecodeError, decimal.InvalidOperation):
            raise _malformed(f"bad DECIMAL value {data!r}") from None
    return data


# --------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------


def _parse_temporal(text: str) -> tuple[int, int, int, int, int, int, int]:
    try:
        date_part, _, time_part = text.strip().partition(" ")
        if "T" in date_part:
            date_part, _, time_part = date_part.partition("T")
        year, month, day = (int(x) for x in date_part.split("-"))
        hour = minute = second = micro = 0
        if time_part:
            clock, _, fraction = time_part.partition(".")
            hour, minute, second = (int(x) for x in clock.split(":"))
            if fraction:
                micro = int(fraction[:6].ljust(6, "0"))
    except ValueError:
        raise LocalProtocolError(f"not a date/time: {text!r}") from None
    return year, month, day, hour, minute, second, micro


def _encode_datetime(value: object, date_only: bool) -> bytes:
    if isinstance(value, datetime.datetime):
        fields = (
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
        )
    elif isinstance(value, datetime.date):
        fields = (value.year, value.month, value.day, 0, 0, 0, 0)
    elif isinstance(value, (str, bytes)):
        text = value if isinstance(value, str) else value.decode("ascii", "replace")
        fields = _parse_temporal(text)
    else:
        raise LocalProtocolError(f"cannot encode {value!r} as a date/time")
    year, month, day, hour, minute, second, micro = fields
    if date_only:
        hour = minute = second = micro = 0
    if micro:
        return b"\x0b" + _DATETIME_US.pack(year, month, day, hour, minute, second, micro)
    if hour or minute or second:
        return b"\x07" + _DATETIME.pack(year, month, day, hour, minute, second)
    if year or month or day:
        return b"\x04" + _DATE.pack(year, month, day)
    return b"\x00"


def _parse_duration(text: str) -> datetime.timedelta:
    try:
        text = text.strip()
        negative = text.startswith("-")
        if negative:
            text = text[1:]
        days = 0
        if " " in text:
            day_text, _, text = text.partition(" ")
            days = int(day_text)
        clock, _, fraction = text.partition(".")
        pieces = [int(x) for x in clock.split(":")]
        # As MySQL reads them: "11:12" is 11:12:00, "12" is 00:00:12.
        if len(pieces) == 1:
            pieces = [0, 0, pieces[0]]
        elif len(pieces) == 2:
            pieces.append(0)
        hours, minutes, seconds = pieces
        micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
    except ValueError:
        raise LocalProtocolError(f"not a time: {text!r}") from None
    value = datetime.timedelta(
        days=days, hours=hours, minutes=minutes, seconds=seconds, microseconds=micro
    )
    return -value if negative else value


def _encode_time(value: object) -> bytes:
    if isinstance(value, datetime.timedelta):
        duration = value
    elif isinstance(value, datetime.time):
        duration = datetime.timedelta(
            hours=value.hour,
            minutes=value.minute,
            seconds=value.second,
            microseconds=value.microsecond,
        )
    elif isinstance(value, (str, bytes)):
        duration = _parse_duration(value if isinstance(value, str) else value.decode("ascii"))
    else:
        raise LocalProtocolError(f"cannot encode {value!r} as a TIME")
    total = duration // _MICROSECOND
    negative = total < 0
    total = -total if negative else total
    days, rest = divmod(total, _US_PER_DAY)
    seconds, micro = divmod(rest, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if micro:
        return b"\x0c" + _TIME_US.pack(negative, days, hours, minutes, seconds, micro)
    if total:
        return b"\x08" + _TIME.pack(negative, days, hours, minutes, seconds)
    return b"\x00"


def _decimal_text(value: object) -> bytes:
    if isinstance(value, decimal.Decimal):
        return format(value, "f").encode("ascii")
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, (int, float)):
        return _decimal_text(decimal.Decimal(value) if isinstance(value, int) else repr(value))
    if isinstance(value, str):
        return value.encode("ascii", "replace")
    if isinstance(value, bytes):
        return value
    raise LocalProtocolError(f"cannot encode {value!r} as a DECIMAL")


def _string_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    text = text_value(value)
    return b"" if text is None else text


def encode_binary_value(column_type: int, value: object, unsigned: bool = False) -> bytes:
    """
    Encode one non-NULL value in the binary protocol.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_binary_resultset.html}

    Temporal values use the shortest encoding that holds them (as servers do).
    Strings are UTF-8 encoded; other values for string types use their text
    form (L{text_value}).

    @param column_type: the L{ColumnType} to encode as.
    @param value: the Python value (not C{None}: NULLs live in the NULL bitmap).
    @param unsigned: whether an integer type is unsigned.
    @return: the encoded value.
    @raise LocalProtocolError: C{value} does not fit C{column_type}.
    """
    pair = _INTEGERS.get(column_type)
    if pair is not None:
        fmt = pair[1] if unsigned else pair[0]
        try:
            return fmt.pack(int(value))  # type: ignore[call-overload]
        except (struct.error, TypeError, ValueError, OverflowError):
            raise LocalProtocolError(
                f"cannot encode {value!r} as {ColumnType(column_type).name}"
                f"{' UNSIGNED' if unsigned else ''}"
            ) from None
    if column_type == _T.MYSQL_TYPE_DOUBLE or column_type == _T.MYSQL_TYPE_FLOAT:
        fmt = _F64 if column_type == _T.MYSQL_TYPE_DOUBLE else _F32
        try:
            return fmt.pack(float(value))  # type: ignore[arg-type]
        except (struct.error, TypeError, ValueError, OverflowError):
            raise LocalProtocolError(f"cannot encode {value!r} as a float") from None
    if column_type in _DATETIMES:
        return _encode_datetime(value, False)
    if column_type in _DATES:
        return _encode_datetime(value, True)
    if column_type in _TIMES:
        return _encode_time(value)
    if column_type == _T.MYSQL_TYPE_NULL:
        return b""
    if column_type in _DECIMALS:
        return lenenc_bytes(_decimal_text(value))
    if column_type == _T.MYSQL_TYPE_BIT and isinstance(value, int):
        return lenenc_bytes(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))
    return lenenc_bytes(_string_bytes(value))


# --------------------------------------------------------------------------
# Text protocol and type inference
# --------------------------------------------------------------------------


def _duration_text(value: datetime.timedelta) -> str:
    total = value // _MICROSECOND
    sign = "-" if total < 0 else ""
    total = abs(total)
    seconds, micro = divmod(total, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = f"{sign}{hours:02d}:{minutes:02d}:{seconds:02d}"
    if micro:
        text += f".{micro:06d}"
    return text


def text_value(value: object) -> bytes | None:
    """
    Format a Python value as a text-protocol result value (what a MySQL
    server would send for it in a C{TextRow}).

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query_response_text_resultset_row.html}

    @param value: C{None}, C{bytes}, C{str}, C{bool}, C{int}, C{float},
        L{decimal.Decimal}, a L{datetime.datetime}/L{datetime.date}/
        L{datetime.time}/L{datetime.timedelta}; anything else is formatted with
        C{str()}.
    @return: the bytes, or C{None} for NULL.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, int):
        return str(value).encode("ascii")
    if isinstance(value, float):
        return repr(value).encode("ascii")
    if isinstance(value, decimal.Decimal):
        return format(value, "f").encode("ascii")
    if isinstance(value, datetime.datetime):
        return _datetime_text(
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
        ).encode("ascii")
    if isinstance(value, datetime.date):
        return _date_text(value.year, value.month, value.day).encode("ascii")
    if isinstance(value, datetime.time):
        return value.isoformat().encode("ascii")
    if isinstance(value, datetime.timedelta):
        return _duration_text(value).encode("ascii")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return str(value).encode("utf-8", "surrogateescape")


_NUMERIC = ColumnFlag.BINARY_FLAG | ColumnFlag.NUM_FLAG


def infer_column_type(value: object) -> tuple[ColumnType, ColumnFlag, int]:
    """
    Choose the column type a result-set column holding C{value} gets.

    @param value: a sample value of the column.
    @return: C{(column type, flags, collation id)}: C{None} → C{NULL};
        C{bool} → C{TINY}; C{int} → C{LONGLONG} (C{UNSIGNED} above 2**63-1,
        C{NEWDECIMAL} beyond 64 bits); C{float} → C{DOUBLE}; L{decimal.Decimal}
        → C{NEWDECIMAL}; C{str} → C{VAR_STRING} in utf8mb4; C{bytes} → C{BLOB}
        binary; datetimes → C{DATETIME}; dates → C{DATE}; times and timedeltas →
        C{TIME}; anything else → C{VAR_STRING} (its C{str()}).
    """
    if value is None:
        return _T.MYSQL_TYPE_NULL, ColumnFlag.BINARY_FLAG, BINARY_CHARSET
    if isinstance(value, str):
        return _T.MYSQL_TYPE_VAR_STRING, ColumnFlag(0), UTF8MB4_GENERAL_CI
    if isinstance(value, bool):
        return _T.MYSQL_TYPE_TINY, _NUMERIC, BINARY_CHARSET
    if isinstance(value, int):
        if -(1 << 63) <= value < (1 << 63):
            return _T.MYSQL_TYPE_LONGLONG, _NUMERIC, BINARY_CHARSET
        if 0 <= value < (1 << 64):
            return (
                _T.MYSQL_TYPE_LONGLONG,
                _NUMERIC | ColumnFlag.UNSIGNED_FLAG,
                BINARY_CHARSET,
            )
        return _T.MYSQL_TYPE_NEWDECIMAL, _NUMERIC, BINARY_CHARSET
    if isinstance(value, float):
        return _T.MYSQL_TYPE_DOUBLE, _NUMERIC, BINARY_CHARSET
    if isinstance(value, decimal.Decimal):
        return _T.MYSQL_TYPE_NEWDECIMAL, _NUMERIC, BINARY_CHARSET
    if isinstance(value, (bytes, bytearray, memoryview)):
        return (
            _T.MYSQL_TYPE_BLOB,
            ColumnFlag.BINARY_FLAG | ColumnFlag.BLOB_FLAG,
            BINARY_CHARSET,
        )
    if isinstance(value, datetime.datetime):
        return _T.MYSQL_TYPE_DATETIME, ColumnFlag.BINARY_FLAG, BINARY_CHARSET
    if isinstance(value, datetime.date):
        return _T.MYSQL_TYPE_DATE, ColumnFlag.BINARY_FLAG, BINARY_CHARSET
    if isinstance(value, (datetime.time, datetime.timedelta)):
        return _T.MYSQL_TYPE_TIME, ColumnFlag.BINARY_FLAG, BINARY_CHARSET
    return _T.MYSQL_TYPE_VAR_STRING, ColumnFlag(0), UTF8MB4_GENERAL_CI


#: Display lengths used by L{column_length_for} per type.
_DISPLAY_LENGTHS: dict[int, int] = {
    _T.MYSQL_TYPE_NULL: 0,
    _T.MYSQL_TYPE_TINY: 4,
    _T.MYSQL_TYPE_LONGLONG: 20,
    _T.MYSQL_TYPE_DOUBLE: 22,
    _T.MYSQL_TYPE_NEWDECIMAL: 65,
    _T.MYSQL_TYPE_BLOB: 65535,
    _T.MYSQL_TYPE_DATETIME: 26,
    _T.MYSQL_TYPE_DATE: 10,
    _T.MYSQL_TYPE_TIME: 17,
    _T.MYSQL_TYPE_VAR_STRING: 1020,
}


def column_length_for(column_type: int) -> int:
    """
    A reasonable display length for a computed column of C{column_type}
    (what L{infer_column_type}'s types get in generated column definitions).

    @param column_type: the L{ColumnType}.
    @return: the length.
    """
    return _DISPLAY_LENGTHS.get(column_type, 255)
