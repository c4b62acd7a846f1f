"""
Tests for L{obproxy_tx.wire.relay.AnswerRelay}: a proxy between a client and a
server, made of two L{ConnectionPair}s, relays answers verbatim in any
chunking; both proxy conversations end where the generic path would leave
them; OK packets are learnt from and rewritten where needed; LOCAL INFILE
hands over to the generic path; a lost server leaves the client conversation
able to report it.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from obproxy_tx.testing import DEFAULT_CAPABILITIES, ConnectionPair
from obproxy_tx.wire.connection import LocalInfileData, Phase, Role, RowData
from obproxy_tx.wire.constants import (
    MAX_PACKET_CHUNK,
    Capability,
    ColumnType,
    CursorType,
    ServerStatus,
)
from obproxy_tx.wire.errors import ErrorCode, RemoteProtocolError
from obproxy_tx.wire.packets import (
    BinaryRow,
    ColumnCount,
    ColumnDefinition41,
    ComQuery,
    ComStmtExecute,
    ComStmtPrepare,
    EOFPacket,
    ERRPacket,
    LocalInfileRequest,
    OKPacket,
    StmtPrepareOK,
    TextRow,
)
from obproxy_tx.wire.relay import AnswerRelay

S = Role.SERVER
C = Role.CLIENT
AUTOCOMMIT = ServerStatus.SERVER_STATUS_AUTOCOMMIT
IN_TRANS = ServerStatus.SERVER_STATUS_IN_TRANS
MORE = ServerStatus.SERVER_MORE_RESULTS_EXISTS
CHANGED = ServerStatus.SERVER_SESSION_STATE_CHANGED
DEPRECATE = DEFAULT_CAPABILITIES | Capability.CLIENT_DEPRECATE_EOF
NO_TRACK = DEFAULT_CAPABILITIES & ~Capability.CLIENT_SESSION_TRACK
CHUNKINGS = [None, 1, 2, 3, 5, 7, 64]


def column(name: bytes, column_type: ColumnType = ColumnType.MYSQL_TYPE_VAR_STRING) -> Any:
    return ColumnDefinition41(name=name, column_type=column_type)


class Proxy:
    """
    A client talking to a proxy (C{front}: client <-> proxy's server side) and
    the proxy talking to a server (C{back}: proxy's client side <-> server).

    @ivar learnt: the OK packets the relay handed to C{learn_ok}.
    """

    def __init__(
        self, client_caps: Capability = DEFAULT_CAPABILITIES, server_caps: Capability | None = None
    ) -> None:
        server_caps = client_caps if server_caps is None else server_caps
        self.front = ConnectionPair(client_caps, client_caps)
        self.front.handshake()
        self.back = ConnectionPair(server_caps, server_caps)
        self.back.handshake()
        self.learnt: list[OKPacket] = []
        self.rewrite: Any = None
        self.relay = AnswerRelay(self._learn)

    def _learn(self, ok: OKPacket) -> OKPacket:
        self.learnt.append(ok)
        return self.rewrite(ok) if self.rewrite is not None else ok

    def command(self, command: Any) -> bool:
        """
        The client sends C{command}; the proxy forwards it. Whether the relay can
        take the answer (and if so it is started).
        """
        (received,) = self.front.send(C, command)
        self.back.send(C, received)
        if not AnswerRelay.possible(self.back.client, self.front.server):
            return False
        assert self.relay.start(self.back.client, self.front.server)
        return True

    def answer(self, *events: Any) -> bytes:
        """
        The server's bytes for C{events} (not delivered anywhere yet).
        """
        return b"".join(self.back.server.send(event) for event in events)

    def relay_bytes(self, data: bytes, chunk: int | None, deliver: bool = True) -> bytes:
        """
        Feed C{data} to the relay in chunks; return what it gives the client,
        which receives it too (its events in L{seen}) unless C{deliver} is false.
        """
        out = []
        for piece in pieces(data, chunk):
            assert not self.relay.done
            out.extend(self.relay.feed(piece))
        joined = b"".join(out)
        if deliver:
            self.seen = self.to_client(joined)
        return joined

    def to_client(self, data: bytes) -> list[Any]:
        return self.front.client.receive_data(data)

    def idle_everywhere(self) -> None:
        for pair in (self.front, self.back):
            assert pair.phase() is Phase.COMMAND_IDLE
            assert pair.server._framer.next_seq == 0 and pair.client._framer.next_seq == 0
            assert pair.server.command is None and pair.client.command is None


def pieces(data: bytes, chunk: int | None) -> Iterator[bytes]:
    if chunk is None:
        yield data
        return
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


@pytest.mark.parametrize("chunk", CHUNKINGS)
@pytest.mark.parametrize("caps", [DEFAULT_CAPABILITIES, DEPRECATE])
def test_text_result_set_goes_through_verbatim(chunk: int | None, caps: Capability) -> None:
    """
    Column count, definitions, (EOF), rows, terminator: the client gets the
    server's very bytes in any chunking, and all four conversations end idle
    with the terminator's status flags.
    """
    proxy = Proxy(caps)
    assert proxy.command(ComQuery(b"SELECT a, b FROM t"))
    data = proxy.answer(
        ColumnCount(2),
        column(b"a"),
        column(b"b"),
        EOFPacket(status_flags=AUTOCOMMIT),
        TextRow((b"1", None)),
        TextRow((b"", b"x" * 300)),
        proxy.back.server.end_of_rows(AUTOCOMMIT | IN_TRANS),
    )
    out = proxy.relay_bytes(data, chunk)
    assert out == data
    assert proxy.relay.done and not proxy.relay.failed and proxy.relay.leftover is None
    events = proxy.seen
    assert [e.__class__ for e in events][:3] == [
        ColumnCount,
        ColumnDefinition41,
        ColumnDefinition41,
    ]
    assert RowData(b"\x011\xfb") in events
    proxy.idle_everywhere()
    assert proxy.back.client.in_transaction and proxy.front.server.in_transaction
    assert proxy.front.server.status_flags == AUTOCOMMIT | IN_TRANS
    assert not proxy.learnt
    # The next command works on every conversation (sequence ids start again).
    assert proxy.command(ComQuery(b"SELECT 1"))


@pytest.mark.parametrize("chunk", CHUNKINGS)
def test_ok_with_last_insert_id_is_learnt_and_relayed(chunk: int | None) -> None:
    """An OK carrying a last_insert_id goes to learn_ok and on to the client as it was."""
    proxy = Proxy()
    assert proxy.command(ComQuery(b"INSERT INTO t VALUES (NULL)"))
    ok = OKPacket(affected_rows=1, last_insert_id=300, status_flags=AUTOCOMMIT, warnings=2)
    data = proxy.answer(ok)
    assert proxy.relay_bytes(data, chunk) == data
    assert proxy.learnt == [ok]
    assert proxy.relay.done
    proxy.idle_everywhere()
    assert proxy.front.server.warnings == 2


def test_plain_ok_is_not_decoded() -> None:
    """An OK without last_insert_id or state changes is only read for its status."""
    proxy = Proxy()
    assert proxy.command(ComQuery(b"DO 1"))
    data = proxy.answer(OKPacket(status_flags=AUTOCOMMIT))
    assert proxy.relay_bytes(data, None) == data
    assert not proxy.learnt
    proxy.idle_everywhere()


@pytest.mark.parametrize("chunk", [None, 3])
def test_session_state_is_stripped_for_a_client_without_session_track(chunk: int | None) -> None:
    """
    A client that did not ask for CLIENT_SESSION_TRACK gets the OK learn_ok
    returns, encoded for its capabilities (with the same sequence id).
    """
    proxy = Proxy(NO_TRACK, DEFAULT_CAPABILITIES)
    assert proxy.command(ComQuery(b"USE db"))
    ok = OKPacket(
        status_flags=AUTOCOMMIT | CHANGED,
        info=b"changed",
        session_state_changes=b"\x01\x03\x02db",
    )
    stripped = OKPacket(status_flags=AUTOCOMMIT, info=b"changed")
    proxy.rewrite = lambda seen: stripped
    data = proxy.answer(ok)
    out = proxy.relay_bytes(data, chunk)
    assert out != data
    assert proxy.learnt == [ok]
    assert proxy.seen == [stripped]
    proxy.idle_everywhere()


def test_info_is_reencoded_for_a_client_without_session_track() -> None:
    """Without CLIENT_SESSION_TRACK the info is not length-encoded: such OKs are re-encoded."""
    proxy = Proxy(NO_TRACK, DEFAULT_CAPABILITIES)
    assert proxy.command(ComQuery(b"UPDATE t SET a = 1"))
    ok = OKPacket(affected_rows=3, status_flags=AUTOCOMMIT, info=b"Rows matched: 3")
    proxy.relay_bytes(proxy.answer(ok), None)
    assert proxy.seen == [ok]
    proxy.idle_everywhere()


@pytest.mark.parametrize("chunk", CHUNKINGS)
def test_err_first_and_err_after_rows(chunk: int | None) -> None:
    """An ERR ends the answer at once (first packet, or after some rows); failed is set."""
    proxy = Proxy()
    assert proxy.command(ComQuery(b"SELEC"))
    data = proxy.answer(ERRPacket(1064, "syntax", "42000"))
    assert proxy.relay_bytes(data, chunk) == data
    assert proxy.relay.done and proxy.relay.failed
    proxy.idle_everywhere()
    assert proxy.command(ComQuery(b"SELECT SLEEP(10)"))
    assert not proxy.relay.failed
    data = proxy.answer(
        ColumnCount(1),
        column(b"x"),
        EOFPacket(status_flags=AUTOCOMMIT),
        TextRow((b"0",)),
        ERRPacket(1317, "Query execution was interrupted", "70100"),
    )
    assert proxy.relay_bytes(data, chunk) == data
    assert proxy.relay.done and proxy.relay.failed
    assert proxy.seen[-1].error_code == 1317
    proxy.idle_everywhere()


@pytest.mark.parametrize("chunk", CHUNKINGS)
@pytest.mark.parametrize("caps", [DEFAULT_CAPABILITIES, DEPRECATE])
def test_multi_results(chunk: int | None, caps: Capability) -> None:
    """SERVER_MORE_RESULTS_EXISTS keeps the answer going through OKs and result sets."""
    proxy = Proxy(caps)
    assert proxy.command(ComQuery(b"CALL p()"))
    server = proxy.back.server
    parts = [OKPacket(affected_rows=1, status_flags=AUTOCOMMIT | MORE)]
    data = b"".join(server.send(p) for p in parts)
    for name in (b"a", b"b"):
        data += proxy.answer(ColumnCount(1), column(name), EOFPacket(status_flags=AUTOCOMMIT))
        data += proxy.answer(TextRow((name,)), server.end_of_rows(AUTOCOMMIT | MORE))
    data += proxy.answer(OKPacket(status_flags=AUTOCOMMIT))
    assert proxy.relay_bytes(data, chunk) == data
    assert proxy.relay.done
    events = proxy.seen
    assert RowData(b"\x01a") in events and RowData(b"\x01b") in events
    proxy.idle_everywhere()
    assert not proxy.front.server.more_results


def test_binary_rows_of_an_execute() -> None:
    """A COM_STMT_EXECUTE without a cursor: binary rows (first byte 0x00) go through."""
    proxy = Proxy()
    (received,) = proxy.front.send(C, ComStmtPrepare(b"SELECT ?"))
    proxy.back.send(C, received)
    prepare = [StmtPrepareOK(1, 1, 1), column(b"?"), EOFPacket(), column(b"x"), EOFPacket()]
    proxy.back.send(S, *prepare)
    proxy.front.send(S, *prepare)
    assert proxy.command(
        ComStmtExecute(1, parameters=(), raw_parameters=b"\x00\x01\x08\x00" + b"\x05" + b"\x00" * 7)
    )
    columns = [column(b"x", ColumnType.MYSQL_TYPE_LONGLONG)]
    data = proxy.answer(
        ColumnCount(1),
        *columns,
        EOFPacket(status_flags=AUTOCOMMIT),
        BinaryRow((5,)),
        EOFPacket(status_flags=AUTOCOMMIT),
    )
    assert proxy.relay_bytes(data, 3) == data
    proxy.idle_everywhere()


def test_cursor_execute_and_compression_are_not_relayed() -> None:
    """An execute asking for a cursor, or different EOF formats, stay on the generic path."""
    proxy = Proxy()
    (received,) = proxy.front.send(C, ComStmtPrepare(b"SELECT 1"))
    proxy.back.send(C, received)
    prepare = [StmtPrepareOK(1, 1, 0), column(b"1"), EOFPacket()]
    proxy.back.send(S, *prepare)
    proxy.front.send(S, *prepare)
    assert not proxy.command(
        ComStmtExecute(1, CursorType.CURSOR_TYPE_READ_ONLY, raw_parameters=b"")
    )
    mixed = Proxy(DEFAULT_CAPABILITIES, DEPRECATE)
    assert not mixed.command(ComQuery(b"SELECT 1"))


@pytest.mark.parametrize("chunk", [None, 1, 4096, 1 << 20])
@pytest.mark.parametrize("size", [MAX_PACKET_CHUNK - 1, MAX_PACKET_CHUNK, MAX_PACKET_CHUNK + 10])
def test_rows_of_16_mib_and_more(chunk: int | None, size: int) -> None:
    """
    A row of 16 MiB or more is sent as several chunks (the continuation's first
    byte is data, not a packet type): it goes through piece by piece.
    """
    if chunk == 1 and size > 100:
        chunk = 65536
    proxy = Proxy()
    assert proxy.command(ComQuery(b"SELECT big"))
    # A text row of one value: its length-encoded length, then the bytes.
    value = b"\xfe" * (size - 9)
    data = proxy.answer(
        ColumnCount(1),
        column(b"big"),
        EOFPacket(status_flags=AUTOCOMMIT),
        TextRow((value,)),
        TextRow((b"small",)),
        EOFPacket(status_flags=AUTOCOMMIT),
    )
    assert proxy.relay_bytes(data, chunk) == data
    assert proxy.relay.done
    proxy.idle_everywhere()


@pytest.mark.parametrize("chunk", [None, 1, 5])
def test_local_infile_hands_over(chunk: int | None) -> None:
    """
    At a LOCAL INFILE request the relay stops; both conversations carry on
    from the request through the generic path (the file, the empty chunk, the OK).
    """
    proxy = Proxy()
    assert proxy.command(ComQuery(b"LOAD DATA LOCAL INFILE 'f' INTO TABLE t"))
    data = proxy.answer(LocalInfileRequest(b"f"))
    out = proxy.relay_bytes(data, chunk, deliver=False)
    assert out == b""
    assert not proxy.relay.done and proxy.relay.leftover == data
    assert proxy.back.client.phase is Phase.RESULT_PENDING
    (request,) = proxy.back.client.receive_data(proxy.relay.leftover)
    assert request == LocalInfileRequest(b"f")
    assert proxy.to_client(proxy.front.server.send(request)) == [request]
    assert proxy.front.phase() is Phase.LOCAL_INFILE
    for chunk_data in (b"1\n2\n", b""):
        (got,) = proxy.front.send(C, LocalInfileData(chunk_data))
        proxy.back.send(C, got)
    (ok,) = proxy.back.send(S, OKPacket(affected_rows=2, status_flags=AUTOCOMMIT))
    assert proxy.front.send(S, ok) == [ok]
    proxy.idle_everywhere()


def test_bytes_after_the_answer_are_left_over() -> None:
    """What the server sends after a complete answer is not relayed but handed back."""
    proxy = Proxy()
    assert proxy.command(ComQuery(b"DO 1"))
    data = proxy.answer(OKPacket(status_flags=AUTOCOMMIT))
    extra = b"\x05\x00\x00\x00\xffabcd"
    assert proxy.relay_bytes(data + extra, None, deliver=False) == data
    assert proxy.relay.done and proxy.relay.leftover == extra


def test_out_of_order_sequence_id_breaks_the_server_connection() -> None:
    """A wrong sequence id is the server's protocol error: the server conversation is unusable."""
    proxy = Proxy()
    assert proxy.command(ComQuery(b"SELECT 1"))
    with pytest.raises(RemoteProtocolError) as caught:
        proxy.relay.feed(b"\x01\x00\x00\x05\x01")
    assert caught.value.error_code == ErrorCode.ER_NET_PACKETS_OUT_OF_ORDER
    assert proxy.back.client.phase is Phase.ERROR


def test_malformed_column_count_and_eof() -> None:
    """A column count of 0, a short OK and a wrong EOF after the definitions are refused."""
    for bad in (b"\x03\x00\x00\x01\xfc\x00\x00", b"\x01\x00\x00\x01\x00"):
        proxy = Proxy()
        assert proxy.command(ComQuery(b"SELECT 1"))
        with pytest.raises(RemoteProtocolError):
            proxy.relay.feed(bad)
    proxy = Proxy()
    assert proxy.command(ComQuery(b"SELECT 1"))
    data = proxy.answer(ColumnCount(1), column(b"a"))
    proxy.relay.feed(data)
    with pytest.raises(RemoteProtocolError):
        proxy.relay.feed(b"\x01\x00\x00\x03\x01")


@pytest.mark.parametrize("cut", [0, 1, 2])
def test_abandon_leaves_the_client_able_to_get_an_err(cut: int) -> None:
    """
    The server is lost mid-rows: at a packet boundary the client conversation
    is where the client is, so the proxy's ERR reaches the client in order;
    inside a packet it is closed (no ERR possible).
    """
    proxy = Proxy()
    assert proxy.command(ComQuery(b"SELECT a"))
    data = proxy.answer(
        ColumnCount(1), column(b"a"), EOFPacket(status_flags=AUTOCOMMIT), TextRow((b"1",))
    )
    if cut == 1:
        data = data[:-1]  # the last row is cut short
    elif cut == 2:
        data = data[:-5]  # only part of the last row's header... and the row before ends
    out = proxy.relay_bytes(data, None, deliver=False)
    proxy.relay.abandon()
    client_events = proxy.to_client(out)
    if cut == 1:
        assert proxy.front.server.phase is Phase.CLOSED
        return
    assert proxy.front.server.phase is Phase.RESULT_ROWS
    error = ERRPacket(ErrorCode.ER_NET_READ_ERROR, "lost", "08S01")
    client_events += proxy.to_client(proxy.front.server.send(error))
    assert client_events[-1] == error
    assert proxy.front.phase() is Phase.COMMAND_IDLE
