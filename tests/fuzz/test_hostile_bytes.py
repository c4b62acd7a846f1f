"""
Arbitrary bytes into the framers, the two conversation state machines
(stopped anywhere in a whole conversation) and L{AnswerRelay}: the result is
events, or a L{RemoteProtocolError} carrying a MySQL error code, never another
exception; the connection is then in the ERROR phase and the ERR packet it
offers for the peer parses; and no more than one packet's worth of bytes is
ever held for a packet not complete yet.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from obproxy_tx.wire.compression import CompressedFramer
from obproxy_tx.wire.connection import ClientConnection, Phase, Role, ServerConnection
from obproxy_tx.wire.constants import Capability
from obproxy_tx.wire.errors import ErrorCode, ProtocolError, RemoteProtocolError
from obproxy_tx.wire.framing import PacketFramer, frame_payload
from obproxy_tx.wire.packets import ComQuery, ComStmtExecute, ERRPacket, OKPacket
from obproxy_tx.wire.relay import AnswerRelay
from tests.fuzz import conversation
from tests.fuzz.budget import examples

_SETTINGS = settings(
    max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
_KNOWN_CODES = {int(code) for code in ErrorCode}
#: The ERR packet a server sends before the client's protocol is known.
_ERR_CAPS = Capability.CLIENT_PROTOCOL_41


def _check_error(exc: ProtocolError) -> None:
    """A protocol error carries a MySQL error number we know and a SQLSTATE."""
    assert isinstance(exc, RemoteProtocolError), exc
    assert exc.error_code in _KNOWN_CODES, exc.error_code
    assert len(exc.sqlstate) == 5
    assert exc.message


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])] or [data]


#: Hostile input: random bytes, or packets framed with plausible headers
#: (random or right sequence ids, sizes up to twice the limit) around
#: random payloads.
_framed = st.builds(
    lambda payload, seq, size: (
        ((size if size is not None else len(payload)) | (seq << 24)).to_bytes(4, "little") + payload
    ),
    st.binary(max_size=64),
    st.integers(0, 255),
    st.none() | st.integers(0, conversation.MAX_PACKET * 2) | st.just(0xFFFFFF),
)
hostile = st.lists(st.binary(max_size=64) | _framed, min_size=1, max_size=6).map(b"".join)


@_SETTINGS
@given(data=hostile, cuts=st.lists(st.integers(0, 400), max_size=6))
def test_framer_bytes(data: bytes, cuts: list[int]) -> None:
    """The framer gives packets or a RemoteProtocolError; it holds at most one packet."""
    framer = PacketFramer(max_packet_size=conversation.MAX_PACKET)
    try:
        for piece in _cut(data, cuts):
            for packet in framer.receive_data(piece):
                assert len(packet.payload) <= conversation.MAX_PACKET
            assert framer.buffered <= conversation.MAX_PACKET + 4
    except ProtocolError as exc:
        _check_error(exc)


@_SETTINGS
@given(
    data=hostile,
    algorithm=st.sampled_from(["zlib", "zstd"]),
    compress_garbage=st.booleans(),
)
def test_compressed_framer_bytes(data: bytes, algorithm: str, compress_garbage: bool) -> None:
    """The compressed framer too, whether the garbage is compressed or raw."""
    if compress_garbage:
        # Well-formed compressed packets around a hostile inner stream.
        data = CompressedFramer(algorithm=algorithm)._wrap([data])
    framer = CompressedFramer(algorithm=algorithm, max_packet_size=conversation.MAX_PACKET)
    try:
        for packet in framer.receive_data(data):
            assert len(packet.payload) <= conversation.MAX_PACKET
    except ProtocolError as exc:
        _check_error(exc)


def _script_len(deprecate_eof: bool) -> int:
    return len(conversation.script(deprecate_eof))


@st.composite
def _stopped(draw: Any) -> tuple[Any, list[Any], bool]:
    deprecate_eof = draw(st.booleans())
    steps = draw(st.integers(0, _script_len(deprecate_eof)))
    pair, rest = conversation.walk(deprecate_eof, steps)
    return pair, rest, deprecate_eof


def _feed(receiver: Any, pieces: list[bytes]) -> None:
    """
    Feed C{pieces} to C{receiver}: events or a checked protocol error; the
    bytes held for an incomplete packet stay under one packet.
    """
    try:
        for piece in pieces:
            receiver.receive_data(piece)
            if receiver.our_turn:
                continue  # pipelined packets wait, whole, for our answer
            assert receiver._framer.buffered <= conversation.MAX_PACKET + 8
        event("accepted")
    except ProtocolError as exc:
        _check_error(exc)
        event(f"refused: {ErrorCode(exc.error_code).name}")
        assert receiver.phase is Phase.ERROR
        err = receiver.error_packet_for(exc)
        if receiver.role is Role.SERVER and err:
            # What the client is told parses as an ERR with that code.
            reader = PacketFramer()
            reader.set_sequence(err[3])
            (packet,) = reader.receive_data(err)
            parsed = ERRPacket.decode(packet.payload, receiver.capabilities | _ERR_CAPS)
            assert parsed.error_code in _KNOWN_CODES
        else:
            assert err == b""


@_SETTINGS
@given(
    stopped=_stopped(),
    data=hostile,
    to_server=st.booleans(),
    cuts=st.lists(st.integers(0, 400), max_size=4),
)
def test_connection_garbage_anywhere(
    stopped: tuple[Any, list[Any], bool], data: bytes, to_server: bool, cuts: list[int]
) -> None:
    """Garbage to either side at any point of a conversation."""
    pair, _rest, _ = stopped
    receiver = pair.server if to_server else pair.client
    _feed(receiver, _cut(data, cuts))


@_SETTINGS
@given(
    stopped=_stopped(),
    payload=st.binary(max_size=80),
    mutate=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    drop=st.integers(0, 100),
)
def test_connection_mutated_next_packet(
    stopped: tuple[Any, list[Any], bool],
    payload: bytes,
    mutate: list[tuple[int, int]],
    drop: int,
) -> None:
    """
    The next packet of the conversation with bytes changed, cut short or
    replaced by a random payload, framed with the right sequence id: the
    receiver decodes it or refuses it with a protocol error.
    """
    pair, rest, _ = stopped
    assume(rest)
    role, event = rest[0]
    sender = pair.side(role)
    receiver = pair.side(Role.CLIENT if role is Role.SERVER else Role.SERVER)
    seq = receiver._framer.next_seq
    try:
        body = bytearray(event.encode(sender.capabilities) if not hasattr(event, "row") else b"")
    except TypeError:
        body = bytearray()
    if not body or drop > 90:
        body = bytearray(payload)
    for position, value in mutate:
        if body:
            body[position % len(body)] = value
    if drop < 30 and body:
        del body[len(body) - 1 - drop % len(body) :]
    data = frame_payload(bytes(body), seq)[0]
    _feed(receiver, [data])


def _relay_at_answer(deprecate_eof: bool, execute: bool) -> tuple[Any, Any, AnswerRelay]:
    caps = conversation.DEFAULT_CAPABILITIES | (
        Capability.CLIENT_DEPRECATE_EOF if deprecate_eof else 0
    )
    front = conversation.ConnectionPair(caps, caps, max_packet_size=conversation.MAX_PACKET)
    front.handshake()
    # The relay holds at most one packet of the server's limit.
    back = conversation.ConnectionPair(caps, caps, max_packet_size=conversation.MAX_PACKET)
    back.handshake()
    command: Any = ComStmtExecute(1, raw_parameters=b"") if execute else ComQuery(b"SELECT 1")
    (received,) = front.send(Role.CLIENT, command)
    back.send(Role.CLIENT, received)
    relay = AnswerRelay(lambda ok: ok)
    assert AnswerRelay.possible(back.client, front.server)
    assert relay.start(back.client, front.server)
    return front, back, relay


@_SETTINGS
@given(
    deprecate_eof=st.booleans(),
    execute=st.booleans(),
    data=hostile,
    cuts=st.lists(st.integers(0, 400), max_size=5),
    valid_prefix=st.integers(0, 6),
)
def test_answer_relay_garbage(
    deprecate_eof: bool, execute: bool, data: bytes, cuts: list[int], valid_prefix: int
) -> None:
    """
    A server answer that starts well (a result set's first packets, with the
    right sequence ids) and goes on with anything: the relay passes bytes on,
    finishes, hands over, or raises a protocol error with a MySQL code; after
    an error, L{AnswerRelay.abandon} leaves the client conversation where an
    ERR may be sent or closed.
    """
    from obproxy_tx.wire.packets import ColumnCount, ColumnDefinition41, EOFPacket, TextRow

    front, back, relay = _relay_at_answer(deprecate_eof, execute)
    server = back.server
    answer = [ColumnCount(1), ColumnDefinition41(name=b"a")]
    if not deprecate_eof:
        answer.append(EOFPacket())
    answer += [TextRow((b"x",))] * 3
    prefix = b"".join(server.send(event) for event in answer[:valid_prefix]) if not execute else b""
    held = 0
    try:
        for piece in _cut(prefix + data, cuts):
            if relay.done:
                break
            out = relay.feed(piece)
            held = len(relay._hold)
            # A packet the relay must see whole is held while incomplete:
            # never more than one packet of the limit (with its header).
            assert held <= conversation.MAX_PACKET + 4, held
            for chunk in out:
                assert isinstance(chunk, bytes)
    except ProtocolError as exc:
        _check_error(exc)
        assert back.client.phase is Phase.ERROR
        relay.abandon()
        client_side = front.server
        try:
            client_side.error_packet_for(exc)
        except ProtocolError as inner:  # pragma: no cover - a failure shows it
            raise AssertionError(f"no ERR possible after a relay error: {inner}") from inner


@settings(max_examples=examples(30), deadline=None)
@given(size=st.integers(conversation.MAX_PACKET + 1, 0xFFFFFF), seq=st.integers(0, 255))
def test_announced_size_over_limit_refused_at_header(size: int, seq: int) -> None:
    """A header announcing more than the limit is refused before its payload arrives."""
    server = ServerConnection(
        conversation.DEFAULT_CAPABILITIES, max_packet_size=conversation.MAX_PACKET
    )
    client = ClientConnection(
        conversation.DEFAULT_CAPABILITIES, max_packet_size=conversation.MAX_PACKET
    )
    server.send(client_greeting(server))
    try:
        server.receive_data(((size) | (1 << 24)).to_bytes(4, "little") + b"\x00")
    except RemoteProtocolError as exc:
        assert exc.error_code == ErrorCode.ER_NET_PACKET_TOO_LARGE
    else:  # pragma: no cover - a failure shows it
        raise AssertionError("an oversized header was accepted")
    assert server._framer.buffered <= 5
    del client, seq


def client_greeting(server: ServerConnection) -> Any:
    """The greeting a L{ConnectionPair} would send, for C{server}."""
    return conversation.ConnectionPair(server.capabilities).greeting()


def test_ok_packet_refuses_trailing_garbage_under_session_track() -> None:
    """An OK with bytes after its session-state block is malformed (sanity of the checks above)."""
    caps = conversation.DEFAULT_CAPABILITIES
    payload = OKPacket(info=b"x").encode(caps) + b"junk"
    try:
        OKPacket.decode(payload, caps)
    except RemoteProtocolError as exc:
        assert exc.error_code == ErrorCode.ER_MALFORMED_PACKET
    else:  # pragma: no cover
        raise AssertionError("trailing garbage accepted")
