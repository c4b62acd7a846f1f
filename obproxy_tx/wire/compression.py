"""
The compressed protocol (C{CLIENT_COMPRESS} with zlib, or
C{CLIENT_ZSTD_COMPRESSION_ALGORITHM} with zstd) as a framing layer.

Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_compression.html}

Once the handshake's OK has passed and both sides negotiated compression, the
ordinary packet stream (3-byte length, sequence id, payload) is cut into
pieces, and each piece travels in a compressed packet with a 7-byte header:
3 bytes compressed length, 1 byte compressed sequence id, 3 bytes uncompressed
length. An uncompressed length of 0 means the piece is sent as is (pieces
under 50 bytes, or that compression would not shrink).

The compressed sequence id is the one that is checked (strictly, shared by
both directions and reset per command, exactly like the plain one); the inner
packets' ids are not checked by MySQL or MariaDB in this mode, so the inner
framer here does not check them either. When sending, the inner id starts at
the current compressed id, as MySQL's C{net_flush} synchronises them.

zstd needs the C{zstandard} module (or Python 3.14's C{compression.zstd});
zlib is always there.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Any, Callable

from obproxy_tx.wire.constants import MAX_PACKET_CHUNK
from obproxy_tx.wire.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from obproxy_tx.wire.framing import DEFAULT_MAX_PACKET_SIZE, Packet, PacketFramer

__all__ = [
    "MIN_COMPRESS_LENGTH",
    "CompressedFramer",
    "zstd_available",
]

#: Pieces shorter than this are sent uncompressed (MySQL's C{MIN_COMPRESS_LENGTH}).
MIN_COMPRESS_LENGTH = 50

_HEADER_SIZE = 7
_U32 = struct.Struct("<I")


def _header(compressed_length: int, seq: int, uncompressed_length: int) -> bytes:
    return _U32.pack(compressed_length | (seq << 24)) + _U32.pack(uncompressed_length)[:3]


def _uncompress_error(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, ErrorCode.ER_NET_UNCOMPRESS_ERROR)


class _Zlib:
    """
    zlib, as MySQL's C{CLIENT_COMPRESS} uses it (one zlib stream per packet).
    """

    name = "zlib"

    def __init__(self, level: int) -> None:
        self.level = level

    def compress(self, data: bytes) -> bytes:
        return zlib.compress(data, self.level)

    def decompress(self, data: bytes, size: int) -> bytes:
        decompressor = zlib.decompressobj()
        try:
            result = decompressor.decompress(data, size + 1)
        except zlib.error as error:
            raise _uncompress_error(f"zlib: {error}") from None
        if len(result) != size or not decompressor.eof:
            raise _uncompress_error(
                f"zlib: packet claims {size} uncompressed bytes, got {len(result)} or more"
            )
        return result


def _load_zstd() -> Any:
    try:
        import zstandard

        return zstandard
    except ImportError:
        pass
    try:
        from compression import zstd  # type: ignore[import-not-found,unused-ignore]

        return zstd
    except ImportError:
        return None


def zstd_available() -> bool:
    """
    Tell whether a zstd module is importable (so zstd compression can be
    offered with C{CLIENT_ZSTD_COMPRESSION_ALGORITHM}).

    @return: whether L{CompressedFramer} can use C{algorithm="zstd"}.
    """
    return _load_zstd() is not None


class _Zstd:
    """
    zstd, as MySQL's C{CLIENT_ZSTD_COMPRESSION_ALGORITHM} uses it (one frame
    per packet).
    """

    name = "zstd"

    def __init__(self, level: int) -> None:
        module = _load_zstd()
        if module is None:
            raise LocalProtocolError("zstd compression needs the 'zstandard' module")
        self.level = level
        self._compress: Callable[[bytes], bytes]
        self._decompress: Callable[[bytes, int], bytes]
        if hasattr(module, "ZstdCompressor") and hasattr(module, "ZstdError"):
            compressor = module.ZstdCompressor(level=level)
            decompressor = module.ZstdDecompressor()
            error = module.ZstdError
            self._compress = compressor.compress

            def decompress(data: bytes, size: int) -> bytes:
                try:
                    return bytes(decompressor.decompress(data, max_output_size=size))
                except error as exc:
                    raise _uncompress_error(f"zstd: {exc}") from None

        else:  # pragma: no cover - Python 3.14's compression.zstd
            error = module.ZstdError

            def compress(data: bytes) -> bytes:
                return bytes(module.compress(data, level=level))

            def decompress(data: bytes, size: int) -> bytes:
                try:
                    return bytes(module.decompress(data))
                except error as exc:
                    raise _uncompress_error(f"zstd: {exc}") from None

            self._compress = compress
        self._decompress = decompress

    def compress(self, data: bytes) -> bytes:
        return self._compress(data)

    def decompress(self, data: bytes, size: int) -> bytes:
        result = self._decompress(data, size)
        if len(result) != size:
            raise _uncompress_error(
                f"zstd: packet claims {size} uncompressed bytes, got {len(result)}"
            )
        return result


class CompressedFramer:
    """
    The compressed protocol's framing for one connection, with the interface
    of L{PacketFramer} (L{receive_data}, L{feed}/L{next_packet}, L{frame},
    L{reset_sequence}, L{next_seq}, L{buffered}, L{take_buffered}). Sans-IO.

    @ivar algorithm: C{"zlib"} or C{"zstd"}.
    @ivar level: the compression level.
    @ivar inner: the L{PacketFramer} of the uncompressed packet stream.
    """

    __slots__ = (
        "algorithm",
        "level",
        "inner",
        "_codec",
        "_seq",
        "_pieces",
        "_pieces_len",
        "_buffer",
        "_offset",
    )

    def __init__(
        self,
        algorithm: str = "zlib",
        level: int = 6,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        inner: PacketFramer | None = None,
    ) -> None:
        """
        @param algorithm: C{"zlib"} or C{"zstd"}.
        @param level: the compression level (zlib 0-9, zstd 1-22).
        @param max_packet_size: the largest logical payload accepted.
        @param inner: the framer to take over (its sequence id continues);
            default a new one.
        @raise LocalProtocolError: the algorithm is unknown or its module is missing.
        """
        if algorithm == "zlib":
            self._codec: _Zlib | _Zstd = _Zlib(level)
        elif algorithm == "zstd":
            self._codec = _Zstd(level)
        else:
            raise LocalProtocolError(f"unknown compression algorithm {algorithm!r}")
        self.algorithm = algorithm
        self.level = level
        if inner is None:
            inner = PacketFramer(max_packet_size)
        inner.check_sequence = False
        self.inner = inner
        self._seq = inner.next_seq
        self._pieces: list[bytes] = []
        self._pieces_len = 0
        self._buffer = b""
        self._offset = 0

    @classmethod
    def upgrade(
        cls, framer: PacketFramer, algorithm: str = "zlib", level: int = 6
    ) -> CompressedFramer:
        """
        Switch a connection's framing to the compressed protocol (right after
        the handshake's OK when C{CLIENT_COMPRESS} was negotiated). Bytes the
        old framer received but did not parse are compressed-protocol bytes
        already and are carried over.

        @param framer: the connection's plain framer.
        @param algorithm: C{"zlib"} or C{"zstd"}.
        @param level: the compression level.
        @return: the new framer; use it instead of C{framer} from now on.
        @raise LocalProtocolError: C{framer} is inside a multi-chunk packet, or
            the algorithm is unavailable.
        """
        leftover = framer.take_buffered()
        inner = PacketFramer(framer.max_packet_size)
        compressed = cls(algorithm, level, framer.max_packet_size, inner)
        compressed.set_sequence(framer.next_seq)
        compressed.feed(leftover)
        return compressed

    # --- sequence -----------------------------------------------------------

    @property
    def next_seq(self) -> int:
        """
        The compressed sequence id the next compressed packet, received or
        sent, must carry.
        """
        return self._seq

    @property
    def buffered(self) -> int:
        """
        Received bytes not yet returned as packets (compressed bytes waiting
        for the rest of their compressed packet, plus uncompressed bytes
        waiting for the rest of their logical packet).
        """
        return len(self._buffer) - self._offset + self._pieces_len + self.inner.buffered

    @property
    def max_packet_size(self) -> int:
        """The largest logical payload accepted from the peer."""
        return self.inner.max_packet_size

    def reset_sequence(self) -> None:
        """
        Start a new command: the next compressed packet (and inner packet)
        has sequence id 0.
        """
        self._seq = 0
        self.inner.reset_sequence()

    def set_sequence(self, seq: int) -> None:
        """
        Set the next compressed (and inner) sequence id.

        @param seq: 0..255.
        @raise LocalProtocolError: C{seq} is not a byte.
        """
        self.inner.set_sequence(seq)
        self._seq = seq

    # --- sending ------------------------------------------------------------

    def _wrap(self, framed: Sequence[bytes]) -> bytes:
        # Whole inner packets are grouped into compressed packets of at most
        # 0xFFFFFF uncompressed bytes; only a packet that does not fit alone is
        # cut (some clients cannot reassemble inner packets spread over more
        # than two compressed packets).
        out: list[bytes] = []
        batch: list[bytes] = []
        batch_len = 0
        for data in framed:
            if batch_len + len(data) > MAX_PACKET_CHUNK and batch:
                self._emit(out, b"".join(batch))
                batch = []
                batch_len = 0
            if len(data) > MAX_PACKET_CHUNK:
                view = memoryview(data)
                cut = len(data) - len(data) % MAX_PACKET_CHUNK
                for start in range(0, cut, MAX_PACKET_CHUNK):
                    self._emit(out, bytes(view[start : start + MAX_PACKET_CHUNK]))
                data = data[cut:]
                if not data:
                    continue
            batch.append(data)
            batch_len += len(data)
        if batch:
            self._emit(out, b"".join(batch))
        self.inner.set_sequence(self._seq)
        return b"".join(out)

    def _emit(self, out: list[bytes], piece: bytes) -> None:
        body = piece
        uncompressed = 0
        if len(piece) >= MIN_COMPRESS_LENGTH:
            packed = self._codec.compress(piece)
            if len(packed) < len(piece):
                body = packed
                uncompressed = len(piece)
        out.append(_header(len(body), self._seq, uncompressed))
        out.append(body)
        self._seq = (self._seq + 1) & 0xFF

    def frame(self, payload: bytes) -> bytes:
        """
        Frame one logical packet, then compress it into one compressed packet
        (or several, past 16 MiB).

        @param payload: the packet's payload.
        @return: the bytes to write.
        """
        self.inner.set_sequence(self._seq)
        return self._wrap((self.inner.frame(payload),))

    def frame_many(self, payloads: Sequence[bytes]) -> bytes:
        """
        Frame several logical packets (e.g. a result set's rows) into as few
        compressed packets as possible, which compresses much better than
        one at a time.

        @param payloads: the packets' payloads, in order.
        @return: the bytes to write.
        """
        self.inner.set_sequence(self._seq)
        return self._wrap([self.inner.frame(payload) for payload in payloads])

    # --- receiving ----------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """
        Buffer received bytes without parsing them; see L{next_packet}.

        @param data: bytes from the transport, in any chunking.
        """
        if data:
            if type(data) is not bytes:
                data = bytes(data)
            self._pieces.append(data)
            self._pieces_len += len(data)

    def _next_compressed(self) -> bytes | None:
        while True:
            buffer = self._buffer
            offset = self._offset
            available = len(buffer) - offset
            need = _HEADER_SIZE
            if available >= _HEADER_SIZE:
                word = _U32.unpack_from(buffer, offset)[0]
                length = word & 0xFFFFFF
                seq = word >> 24
                if seq != self._seq:
                    raise RemoteProtocolError(
                        f"compressed packets out of order: got sequence id {seq}, "
                        f"expected {self._seq}",
                        ErrorCode.ER_NET_PACKETS_OUT_OF_ORDER,
                    )
                end = offset + _HEADER_SIZE + length
                if end <= len(buffer):
                    uncompressed = int.from_bytes(buffer[offset + 4 : offset + 7], "little")
                    body = buffer[offset + _HEADER_SIZE : end]
                    if end == len(buffer):
                        self._buffer = b""
                        self._offset = 0
                    else:
                        self._offset = end
                    self._seq = (seq + 1) & 0xFF
                    if uncompressed:
                        return self._codec.decompress(body, uncompressed)
                    return body
                need = _HEADER_SIZE + length
            if available + self._pieces_len < need:
                return None
            self._pieces.insert(0, buffer[offset:])
            self._buffer = b"".join(self._pieces)
            self._offset = 0
            self._pieces = []
            self._pieces_len = 0

    def next_packet(self) -> Packet | None:
        """
        Return the next complete logical packet.

        @return: the packet, or C{None} if more bytes are needed.
        @raise RemoteProtocolError: compressed packets out of order
            (C{ER_NET_PACKETS_OUT_OF_ORDER}), a piece that does not decompress
            to its announced length (C{ER_NET_UNCOMPRESS_ERROR}) or an oversized
            packet (C{ER_NET_PACKET_TOO_LARGE}).
        """
        while True:
            packet = self.inner.next_packet()
            if packet is not None:
                return packet
            stream = self._next_compressed()
            if stream is None:
                return None
            self.inner.feed(stream)

    def receive_data(self, data: bytes) -> list[Packet]:
        """
        Feed received bytes and return every logical packet now complete.

        @param data: bytes from the transport, in any chunking.
        @return: the complete packets, in order.
        @raise RemoteProtocolError: see L{next_packet}.
        """
        self.feed(data)
        packets: list[Packet] = []
        while True:
            packet = self.next_packet()
            if packet is None:
                return packets
            packets.append(packet)

    def take_buffered(self) -> bytes:
        """
        Remove and return the received compressed bytes not parsed yet.

        @return: the bytes.
        @raise LocalProtocolError: uncompressed bytes of a partial packet are held.
        """
        if self.inner.buffered:
            raise LocalProtocolError("cannot hand over the stream inside a compressed packet")
        rest = self._buffer[self._offset :] + b"".join(self._pieces)
        self._buffer = b""
        self._offset = 0
        self._pieces = []
        self._pieces_len = 0
        return rest
