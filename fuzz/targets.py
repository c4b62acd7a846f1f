"""
The atheris fuzz targets. Each takes any bytes; a target "crashes" (atheris
saves the input) when anything but the documented protocol error escapes.

  - C{replay}: a mode byte and a recording (L{fuzz.replay}) through the
    sans-IO proxy: both conversations and L{AnswerRelay};
  - C{framer}: bytes into L{PacketFramer} and L{CompressedFramer} (zlib and
    zstd), in two chunkings, with a small packet limit: packets, or a
    L{RemoteProtocolError}; never more than one packet held;
  - C{decoders}: the first byte picks a packet decoder, the next eight the
    capabilities, the rest is the payload: a packet or a L{RemoteProtocolError};
  - C{proxy}: a recording's client bytes into a logged-in client session of
    the proxy itself, its server bytes from that client's backend
    (L{fuzz.proxy}): nothing escapes the sessions, nothing unexpected is
    logged, and a new client is served afterwards.

Run one with atheris's (libFuzzer's) options::

    python -m fuzz.targets replay fuzz/corpus -max_total_time=60

L{fuzz.run} runs them all for a bounded time on a copy of the seed corpus.
"""

from __future__ import annotations

import struct
import sys
from typing import Callable, Dict

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports(include=["obproxy_tx", "fuzz"]):
    from fuzz.proxy import run_proxy
    from fuzz.replay import replay
    from obproxy_tx.wire import packets as p
    from obproxy_tx.wire.compression import CompressedFramer
    from obproxy_tx.wire.connection import LocalInfileData, StatisticsResponse
    from obproxy_tx.wire.constants import Capability
    from obproxy_tx.wire.errors import RemoteProtocolError
    from obproxy_tx.wire.framing import PacketFramer

#: The packet limit of the framer target.
_LIMIT = 1 << 12


def target_replay(data: bytes) -> None:
    """A recording through the sans-IO proxy (see L{fuzz.replay})."""
    replay(data)


def target_framer(data: bytes) -> None:
    """Bytes into the framers, whole and cut in two."""
    middle = len(data) // 2
    for make in (
        lambda: PacketFramer(max_packet_size=_LIMIT),
        lambda: CompressedFramer(algorithm="zlib", max_packet_size=_LIMIT),
        lambda: CompressedFramer(algorithm="zstd", max_packet_size=_LIMIT),
    ):
        for pieces in ((data,), (data[:middle], data[middle:])):
            framer = make()
            try:
                for piece in pieces:
                    for packet in framer.receive_data(piece):
                        if len(packet.payload) > _LIMIT:
                            raise AssertionError("a packet over the limit was accepted")
                    if framer.buffered > _LIMIT + 4 + (1 << 24) + 7:
                        raise AssertionError(f"{framer.buffered} bytes held")
            except RemoteProtocolError:
                pass


def _columns() -> list[p.ColumnDefinition41]:
    from obproxy_tx.wire.constants import ColumnFlag, ColumnType

    kinds = [
        ColumnType.MYSQL_TYPE_LONGLONG,
        ColumnType.MYSQL_TYPE_VAR_STRING,
        ColumnType.MYSQL_TYPE_DOUBLE,
        ColumnType.MYSQL_TYPE_DATETIME,
        ColumnType.MYSQL_TYPE_TIME,
        ColumnType.MYSQL_TYPE_NEWDECIMAL,
        ColumnType.MYSQL_TYPE_TINY,
        ColumnType.MYSQL_TYPE_DATE,
        ColumnType.MYSQL_TYPE_FLOAT,
        ColumnType.MYSQL_TYPE_BIT,
        ColumnType.MYSQL_TYPE_YEAR,
        ColumnType.MYSQL_TYPE_SHORT,
    ]
    return [
        p.ColumnDefinition41(name=b"c", column_type=kind, flags=ColumnFlag(0)) for kind in kinds
    ]


_COLUMNS = _columns()
_DECODERS: list[Callable[[bytes, Capability], object]] = [
    p.HandshakeV10.decode,
    p.SSLRequest.decode,
    p.HandshakeResponse41.decode,
    p.AuthSwitchRequest.decode,
    p.AuthSwitchResponse.decode,
    p.AuthMoreData.decode,
    p.OKPacket.decode,
    lambda b, c: p.OKPacket.decode(b, c).session_state_items(),
    p.ERRPacket.decode,
    p.EOFPacket.decode,
    p.ColumnCount.decode,
    p.ColumnDefinition41.decode,
    lambda b, c: p.TextRow.decode(b, c, 3),
    lambda b, c: p.BinaryRow.decode(b, c, _COLUMNS),
    p.LocalInfileRequest.decode,
    p.StmtPrepareOK.decode,
    p.decode_command,
    lambda b, c: p.ComStmtExecute.decode(b, c, 4),
    lambda b, c: p.ComStmtExecute.decode(b, c, 2, None, {0}),
    LocalInfileData.decode,
    StatisticsResponse.decode,
]


def target_decoders(data: bytes) -> None:
    """One decoder, chosen by the first byte, on the payload after the capabilities."""
    if len(data) < 9:
        return
    decode = _DECODERS[data[0] % len(_DECODERS)]
    caps = Capability(struct.unpack_from("<Q", data, 1)[0] & int(~Capability(0)))
    try:
        decode(data[9:], caps)
    except RemoteProtocolError as exc:
        if exc.error_code <= 0 or len(exc.sqlstate) != 5:
            raise AssertionError(f"a protocol error without a MySQL code: {exc!r}") from exc


def target_proxy(data: bytes) -> None:
    """A recording's bytes through the proxy's sessions (see L{fuzz.proxy.run_proxy})."""
    run_proxy(data)


TARGETS: Dict[str, Callable[[bytes], None]] = {
    "replay": target_replay,
    "framer": target_framer,
    "decoders": target_decoders,
    "proxy": target_proxy,
}


def main(argv: list[str]) -> None:
    """
    C{python -m fuzz.targets NAME [libFuzzer arguments...]}.
    """
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.stderr.write(
            f"usage: python -m fuzz.targets {{{','.join(TARGETS)}}} [libFuzzer args]\n"
        )
        raise SystemExit(2)
    target = TARGETS[argv[1]]
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
