"""
A scripted MySQL conversation that walks through every phase of
L{obproxy_tx.wire.connection}: login with an auth switch and more data, a
text result set, multiple results, a prepared statement and its binary
result, LOAD DATA LOCAL, COM_FIELD_LIST, COM_STATISTICS, COM_CHANGE_USER and
the simple commands. The fuzz tests stop it anywhere and inject bytes.
"""

from __future__ import annotations

from typing import Any, List, Tuple

from obproxy_tx.testing import DEFAULT_CAPABILITIES, ConnectionPair

__all__ = ["DEFAULT_CAPABILITIES", "MAX_PACKET", "ConnectionPair", "script", "start", "walk"]
from obproxy_tx.wire.connection import LocalInfileData, Role, StatisticsResponse
from obproxy_tx.wire.constants import Capability, ColumnType, ServerStatus
from obproxy_tx.wire.packets import (
    AuthMoreData,
    AuthSwitchRequest,
    AuthSwitchResponse,
    BinaryRow,
    BoundParameter,
    ColumnCount,
    ColumnDefinition41,
    ComChangeUser,
    ComFieldList,
    ComInitDB,
    ComPing,
    ComQuery,
    ComStatistics,
    ComStmtClose,
    ComStmtExecute,
    ComStmtPrepare,
    ComStmtSendLongData,
    EOFPacket,
    ERRPacket,
    HandshakeResponse41,
    LocalInfileRequest,
    OKPacket,
    StmtPrepareOK,
    TextRow,
)

S = Role.SERVER
C = Role.CLIENT
AUTOCOMMIT = ServerStatus.SERVER_STATUS_AUTOCOMMIT
MORE = ServerStatus.SERVER_MORE_RESULTS_EXISTS

#: The largest payload the fuzzed connections accept (small: so a hostile
#: size is refused at once and the buffering bound is easy to check).
MAX_PACKET = 4096

Step = Tuple[Role, Any]


def _col(name: bytes, kind: ColumnType = ColumnType.MYSQL_TYPE_VAR_STRING) -> ColumnDefinition41:
    return ColumnDefinition41(name=name, column_type=kind)


def script(deprecate_eof: bool) -> List[Step]:
    """
    The conversation after C{pair.send(S, greeting)}, as (sender, event) steps.

    @param deprecate_eof: whether C{CLIENT_DEPRECATE_EOF} is negotiated (EOFs
        after definitions are then left out of the script).
    """
    caps = DEFAULT_CAPABILITIES | (Capability.CLIENT_DEPRECATE_EOF if deprecate_eof else 0)
    eof: List[Step] = [] if deprecate_eof else [(S, EOFPacket(status_flags=AUTOCOMMIT))]
    end = (
        OKPacket(status_flags=AUTOCOMMIT, header=0xFE)
        if deprecate_eof
        else EOFPacket(status_flags=AUTOCOMMIT)
    )
    long_col = _col(b"n", ColumnType.MYSQL_TYPE_LONGLONG)
    return [
        (
            C,
            HandshakeResponse41(
                capabilities=caps,
                max_packet_size=1 << 24,
                character_set=45,
                username="fuzz",
                auth_response=b"\x01" * 20,
                database="test",
                auth_plugin_name="mysql_native_password",
                connect_attrs={"_client_name": "fuzz"},
            ),
        ),
        (S, AuthSwitchRequest.for_scramble("caching_sha2_password", b"s" * 20)),
        (C, AuthSwitchResponse(b"\x02" * 32)),
        (S, AuthMoreData(b"\x04")),
        (C, AuthSwitchResponse(b"secret\x00")),
        (S, OKPacket(status_flags=AUTOCOMMIT)),
        (C, ComQuery(b"SELECT a, b FROM t; SELECT 1")),
        (S, ColumnCount(2)),
        (S, _col(b"a")),
        (S, _col(b"b")),
        *eof,
        (S, TextRow((b"1", None))),
        (S, TextRow((b"x" * 300, b""))),
        (
            S,
            EOFPacket(status_flags=AUTOCOMMIT | MORE)
            if not deprecate_eof
            else OKPacket(status_flags=AUTOCOMMIT | MORE, header=0xFE),
        ),
        (S, OKPacket(affected_rows=1, status_flags=AUTOCOMMIT)),
        (C, ComStmtPrepare(b"SELECT ? + 1")),
        (S, StmtPrepareOK(1, 1, 1)),
        (S, _col(b"?")),
        *eof,
        (S, long_col),
        *eof,
        (C, ComStmtSendLongData(1, 0, b"chunk")),
        (C, ComStmtExecute(1, parameters=(BoundParameter(ColumnType.MYSQL_TYPE_LONGLONG, 41),))),
        (S, ColumnCount(1)),
        (S, long_col),
        *eof,
        (S, BinaryRow((42,))),
        (S, end),
        (C, ComQuery(b"LOAD DATA LOCAL INFILE 'f' INTO TABLE t")),
        (S, LocalInfileRequest(b"f")),
        (C, LocalInfileData(b"1\n2\n")),
        (C, LocalInfileData(b"")),
        (S, OKPacket(affected_rows=2, status_flags=AUTOCOMMIT)),
        (C, ComFieldList(b"t")),
        (S, _col(b"a")),
        (S, end),
        (C, ComStatistics()),
        (S, StatisticsResponse(b"Uptime: 1")),
        (C, ComInitDB(b"nope")),
        (S, ERRPacket(1049, "Unknown database 'nope'", "42000")),
        (C, ComChangeUser("other", b"\x03" * 20, "test", 45, "mysql_native_password")),
        (S, OKPacket(status_flags=AUTOCOMMIT)),
        (C, ComStmtClose(1)),
        (C, ComPing()),
        (S, OKPacket(status_flags=AUTOCOMMIT)),
    ]


def start(deprecate_eof: bool, chunk_size: int | None = None) -> ConnectionPair:
    """
    A pair whose server has sent its greeting.

    @param deprecate_eof: offer C{CLIENT_DEPRECATE_EOF}.
    @param chunk_size: see L{ConnectionPair.chunk_size}.
    """
    caps = DEFAULT_CAPABILITIES | (Capability.CLIENT_DEPRECATE_EOF if deprecate_eof else 0)
    pair = ConnectionPair(caps, caps, chunk_size=chunk_size, max_packet_size=MAX_PACKET)
    pair.send(S, pair.greeting())
    return pair


def walk(deprecate_eof: bool, steps: int) -> tuple[ConnectionPair, List[Step]]:
    """
    Run the first C{steps} steps of the script.

    @return: the pair and the steps not run.
    """
    pair = start(deprecate_eof)
    remaining = script(deprecate_eof)
    for role, event in remaining[:steps]:
        pair.send(role, event)
    return pair, remaining[steps:]
