"""
Primitive MySQL encodings: fixed-width little-endian integers, length-encoded
integers and strings, NUL-terminated strings.

Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_data_types.html}

L{PayloadReader} is a cursor over one packet payload; running off its end raises
L{RemoteProtocolError} (a peer's malformed packet), never C{IndexError} or
C{struct.error}.
"""

from __future__ import annotations

import struct

from obproxy_tx.wire.errors import ErrorCode, LocalProtocolError, RemoteProtocolError

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I8 = struct.Struct("<b")
_I16 = struct.Struct("<h")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")

#: The length-encoded NULL marker used in text result rows.
NULL_MARKER = 0xFB


def int1(value: int) -> bytes:
    """Encode an unsigned 8-bit integer."""
    return bytes((value,))


def int2(value: int) -> bytes:
    """Encode an unsigned 16-bit little-endian integer."""
    return _U16.pack(value)


def int3(value: int) -> bytes:
    """Encode an unsigned 24-bit little-endian integer."""
    return _U32.pack(value)[:3]


def int4(value: int) -> bytes:
    """Encode an unsigned 32-bit little-endian integer."""
    return _U32.pack(value)


def int6(value: int) -> bytes:
    """Encode an unsigned 48-bit little-endian integer."""
    return _U64.pack(value)[:6]


def int8(value: int) -> bytes:
    """Encode an unsigned 64-bit little-endian integer."""
    return _U64.pack(value)


def lenenc_int(value: int) -> bytes:
    """
    Encode a length-encoded integer.

    @raise LocalProtocolError: if C{value} is negative or needs more than 64 bits.
    """
    if value < 0xFB:
        if value < 0:
            raise LocalProtocolError(f"length-encoded integer cannot be negative: {value}")
        return bytes((value,))
    if value <= 0xFFFF:
        return b"\xfc" + _U16.pack(value)
    if value <= 0xFFFFFF:
        return b"\xfd" + _U32.pack(value)[:3]
    if value <= 0xFFFFFFFFFFFFFFFF:
        return b"\xfe" + _U64.pack(value)
    raise LocalProtocolError(f"length-encoded integer too large: {value}")


def lenenc_bytes(value: bytes) -> bytes:
    """Encode a length-encoded string."""
    return lenenc_int(len(value)) + value


def nul_bytes(value: bytes) -> bytes:
    """Encode a NUL-terminated string (C{value} must not contain NUL)."""
    return value + b"\x00"


class PayloadReader:
    """
    A read cursor over one packet payload.

    @ivar data: the payload.
    @ivar position: the offset of the next byte to read.
    """

    __slots__ = ("data", "position")

    def __init__(self, data: bytes, position: int = 0) -> None:
        self.data = data
        self.position = position

    def _short(self, wanted: int) -> RemoteProtocolError:
        return RemoteProtocolError(
            f"malformed packet: wanted {wanted} byte(s) at offset {self.position}, "
            f"payload has {len(self.data)}",
            ErrorCode.ER_MALFORMED_PACKET,
        )

    def remaining(self) -> int:
        """Return how many bytes are left."""
        return len(self.data) - self.position

    def at_end(self) -> bool:
        """Return whether every byte has been read."""
        return self.position >= len(self.data)

    def peek_uint8(self) -> int:
        """Return the next byte without consuming it."""
        if self.position >= len(self.data):
            raise self._short(1)
        return self.data[self.position]

    def read_bytes(self, count: int) -> bytes:
        """Read exactly C{count} bytes."""
        end = self.position + count
        if count < 0 or end > len(self.data):
            raise self._short(count)
        value = self.data[self.position : end]
        self.position = end
        return value

    def read_rest(self) -> bytes:
        """Read every remaining byte (a C{string<EOF>})."""
        value = self.data[self.position :]
        self.position = len(self.data)
        return value

    def skip(self, count: int) -> None:
        """Skip C{count} bytes."""
        if count < 0 or self.position + count > len(self.data):
            raise self._short(count)
        self.position += count

    def read_uint8(self) -> int:
        """Read an unsigned 8-bit integer."""
        if self.position >= len(self.data):
            raise self._short(1)
        value = self.data[self.position]
        self.position += 1
        return value

    def read_uint16(self) -> int:
        """Read an unsigned 16-bit little-endian integer."""
        return int(_U16.unpack(self.read_bytes(2))[0])

    def read_uint24(self) -> int:
        """Read an unsigned 24-bit little-endian integer."""
        return int.from_bytes(self.read_bytes(3), "little")

    def read_uint32(self) -> int:
        """Read an unsigned 32-bit little-endian integer."""
        return int(_U32.unpack(self.read_bytes(4))[0])

    def read_uint48(self) -> int:
        """Read an unsigned 48-bit little-endian integer."""
        return int.from_bytes(self.read_bytes(6), "little")

    def read_uint64(self) -> int:
        """Read an unsigned 64-bit little-endian integer."""
        return int(_U64.unpack(self.read_bytes(8))[0])

    def read_int8(self) -> int:
        """Read a signed 8-bit integer."""
        return int(_I8.unpack(self.read_bytes(1))[0])

    def read_int16(self) -> int:
        """Read a signed 16-bit little-endian integer."""
        return int(_I16.unpack(self.read_bytes(2))[0])

    def read_int32(self) -> int:
        """Read a signed 32-bit little-endian integer."""
        return int(_I32.unpack(self.read_bytes(4))[0])

    def read_int64(self) -> int:
        """Read a signed 64-bit little-endian integer."""
        return int(_I64.unpack(self.read_bytes(8))[0])

    def read_float(self) -> float:
        """Read a little-endian IEEE 754 single."""
        return float(_F32.unpack(self.read_bytes(4))[0])

    def read_double(self) -> float:
        """Read a little-endian IEEE 754 double."""
        return float(_F64.unpack(self.read_bytes(8))[0])

    def read_lenenc_int(self) -> int:
        """
        Read a length-encoded integer.

        @raise RemoteProtocolError: on the 0xFB (NULL) or 0xFF prefix, which are
            not integers; use L{read_lenenc_bytes_or_null} where NULL is legal.
        """
        first = self.read_uint8()
        if first < 0xFB:
            return first
        if first == 0xFC:
            return self.read_uint16()
        if first == 0xFD:
            return self.read_uint24()
        if first == 0xFE:
            return self.read_uint64()
        self.position -= 1
        raise RemoteProtocolError(
            f"malformed packet: 0x{first:02x} is not a length-encoded integer "
            f"(offset {self.position})",
            ErrorCode.ER_MALFORMED_PACKET,
        )

    def read_lenenc_bytes(self) -> bytes:
        """Read a length-encoded string."""
        return self.read_bytes(self.read_lenenc_int())

    def read_lenenc_bytes_or_null(self) -> bytes | None:
        """Read a length-encoded string, or C{None} for the 0xFB NULL marker."""
        if self.peek_uint8() == NULL_MARKER:
            self.position += 1
            return None
        return self.read_lenenc_bytes()

    def read_nul_bytes(self) -> bytes:
        """Read a NUL-terminated string (the NUL is consumed, not returned)."""
        end = self.data.find(b"\x00", self.position)
        if end < 0:
            raise RemoteProtocolError(
                f"malformed packet: unterminated string at offset {self.position}",
                ErrorCode.ER_MALFORMED_PACKET,
            )
        value = self.data[self.position : end]
        self.position = end + 1
        return value

    def read_nul_bytes_or_rest(self) -> bytes:
        """Read up to a NUL or the end, whichever comes first (lenient C{string<NUL>})."""
        end = self.data.find(b"\x00", self.position)
        if end < 0:
            return self.read_rest()
        value = self.data[self.position : end]
        self.position = end + 1
        return value
